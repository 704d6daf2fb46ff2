"""The service row: `POST /tasks` of a no-op `simulate` job over HTTP, completion read from `tasks`.

The client runs on the same two cores as the system it measures, so its own CPU is taken from the
service: httpx spent about 2.7 ms of CPU per POST here, more than the API answering it (0.6 ms),
while the bare row's submitter spends 0.4 ms per job and Celery's driver 0.8. aiohttp is the
default client; `--client httpx` keeps the old one for a side-by-side run.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

import aiohttp
import httpx

from bench.stats import BenchError

JOB = {"type": "simulate", "payload": {"durationMs": 0, "steps": 1}}
CLIENTS = ("aiohttp", "httpx")


class _Client(Protocol):
    async def post(self, path: str, body: bytes) -> tuple[int, bytes]: ...
    async def get(self, path: str, params: dict[str, Any]) -> tuple[int, bytes]: ...
    async def close(self) -> None: ...


class _Aiohttp:
    def __init__(self, api_url: str, headers: dict[str, str], connections: int) -> None:
        connector = aiohttp.TCPConnector(limit=connections)
        timeout = aiohttp.ClientTimeout(total=60)
        self._session = aiohttp.ClientSession(api_url, headers=headers, connector=connector, timeout=timeout)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        headers = {"content-type": "application/json"}
        async with self._session.post(path, data=body, headers=headers) as answer:
            return answer.status, await answer.read()

    async def get(self, path: str, params: dict[str, Any]) -> tuple[int, bytes]:
        query = {key: str(value) for key, value in params.items() if value is not None}
        async with self._session.get(path, params=query) as answer:
            return answer.status, await answer.read()

    async def close(self) -> None:
        await self._session.close()


class _Httpx:
    def __init__(self, api_url: str, headers: dict[str, str], connections: int) -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self._http = httpx.AsyncClient(base_url=api_url, headers=headers, limits=limits, timeout=60)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        answer = await self._http.post(path, content=body, headers={"content-type": "application/json"})
        return answer.status_code, answer.content

    async def get(self, path: str, params: dict[str, Any]) -> tuple[int, bytes]:
        answer = await self._http.get(path, params=params)
        return answer.status_code, answer.content

    async def close(self) -> None:
        await self._http.aclose()


class ServiceClient:
    """One pooled HTTP/1.1 client for the submitters and the GET /tasks timings."""

    def __init__(self, api_url: str, token: str = "", connections: int = 64, kind: str = "aiohttp") -> None:
        if kind not in CLIENTS:
            raise BenchError(f"unknown HTTP client {kind!r}: one of {', '.join(CLIENTS)}")
        self._api_url, self._connections, self._kind = api_url, connections, kind
        self._headers = {"authorization": f"Bearer {token}"} if token else {}
        self._body = json.dumps(JOB).encode()
        self._client: _Client | None = None

    async def __aenter__(self) -> ServiceClient:
        # aiohttp's session must be made inside the running loop.
        make = _Aiohttp if self._kind == "aiohttp" else _Httpx
        self._client = make(self._api_url, self._headers, self._connections)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.close()

    @property
    def client(self) -> _Client:
        assert self._client is not None, "use ServiceClient as an async context manager"
        return self._client

    async def submit(self) -> str:
        status, body = await self.client.post("/tasks", self._body)
        if status != 202:
            raise BenchError(f"POST /tasks answered {status}: {body[:200]!r}")
        return str(json.loads(body)["taskId"])

    async def timed_get(self, path: str, params: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        """One GET; (milliseconds, its JSON)."""
        start = time.perf_counter()
        status, body = await self.client.get(path, params)
        elapsed = (time.perf_counter() - start) * 1000
        if status != 200:
            raise BenchError(f"GET {path} answered {status}: {body[:200]!r}")
        answer: dict[str, Any] = json.loads(body)
        return elapsed, answer
