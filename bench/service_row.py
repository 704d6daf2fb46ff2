"""The service row: `POST /tasks` of a no-op `simulate` job over HTTP, completion read from `tasks`."""

from __future__ import annotations

import time
from typing import Any

import httpx

from bench.stats import BenchError

JOB = {"type": "simulate", "payload": {"durationMs": 0, "steps": 1}}


class ServiceClient:
    """One pooled HTTP/1.1 client for the submitters and the GET /tasks timings."""

    def __init__(self, api_url: str, token: str = "", connections: int = 64) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self.http = httpx.AsyncClient(base_url=api_url, headers=headers, limits=limits, timeout=60)

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def submit(self) -> str:
        answer = await self.http.post("/tasks", json=JOB)
        if answer.status_code != 202:
            raise BenchError(f"POST /tasks answered {answer.status_code}: {answer.text[:200]}")
        return str(answer.json()["taskId"])

    async def timed_get(self, path: str, params: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        """One GET; (milliseconds, its JSON)."""
        start = time.perf_counter()
        answer = await self.http.get(path, params=params)
        elapsed = (time.perf_counter() - start) * 1000
        if answer.status_code != 200:
            raise BenchError(f"GET {path} answered {answer.status_code}: {answer.text[:200]}")
        body: dict[str, Any] = answer.json()
        return elapsed, body
