"""The harness's one client of the service's HTTP API; it records every call into a History.

Like Jepsen's client `invoke!`, each call is an invocation followed by exactly one completion:
2xx is `ok`, 4xx is `fail` (a definite refusal: nothing happened), and a timeout, transport error
or 5xx is `info`: the request may or may not have taken effect. Calls never raise for these
outcomes; the caller reads `CallResult.outcome`. Only the contract's surface is used.

`AsyncServiceClient` is the main client; `ServiceClient` is a thin synchronous twin for Locust
users, which run under gevent and cannot use asyncio.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from harness.history import History, Operation, OpType

DEFAULT_TIMEOUT_S = 10.0
_process_ids = itertools.count(1)


@dataclass(frozen=True)
class CallResult:
    """What one call returned: its completion in the history plus the decoded answer, if any."""

    op: Operation
    status_code: int | None
    body: Any

    @property
    def outcome(self) -> OpType:
        return self.op.type

    @property
    def ok(self) -> bool:
        return self.op.type == "ok"

    @property
    def task_id(self) -> str | None:
        return self.op.task_id


@dataclass(frozen=True)
class Request:
    """One call to make: what the history records and what httpx sends."""

    f: str
    method: str
    path: str
    body: Any = None
    params: dict[str, Any] | None = None
    idempotency_key: str | None = None

    def headers(self, token: str) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if self.idempotency_key is not None:
            headers["Idempotency-Key"] = self.idempotency_key
        return headers


def _decode(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:500] or None


def _classify(status_code: int) -> OpType:
    if 200 <= status_code < 300:
        return "ok"
    if 400 <= status_code < 500:
        return "fail"
    return "info"


def _task_fields(body: Any) -> tuple[str | None, str | None]:
    if isinstance(body, dict):
        task_id, status = body.get("taskId"), body.get("status")
        return (str(task_id) if task_id else None, str(status) if status else None)
    return None, None


def _error_code(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("code"))
    return None


def _trim(request: Request, body: Any) -> Any:
    """Keeps the history small: list answers are summarised, single objects kept."""
    if request.f in {"list", "events"} and isinstance(body, dict) and isinstance(body.get("items"), list):
        return {"items": len(body["items"]), "nextCursor": body.get("nextCursor")}
    return body


def _record_response(
    history: History, invocation: Operation, request: Request, response: httpx.Response
) -> CallResult:
    body = _decode(response)
    task_id, status = _task_fields(body)
    op = history.complete(
        invocation,
        _classify(response.status_code),
        status_code=response.status_code,
        task_id=task_id,
        task_status=status,
        error=_error_code(body),
        value=_trim(request, body),
    )
    return CallResult(op, response.status_code, body)


def _record_error(history: History, invocation: Operation, error: httpx.HTTPError) -> CallResult:
    op = history.complete(invocation, "info", error=f"{type(error).__name__}: {error}"[:300])
    return CallResult(op, None, None)


class _Requests:
    """The contract's calls as Request values; both clients share them."""

    @staticmethod
    def submit(
        task_type: str, payload: dict[str, Any], priority: int | None, idempotency_key: str | None
    ) -> Request:
        body: dict[str, Any] = {"type": task_type, "payload": payload}
        if priority is not None:
            body["priority"] = priority
        return Request("submit", "POST", "/tasks", body=body, idempotency_key=idempotency_key)

    @staticmethod
    def listing(status: str | None, task_type: str | None, limit: int | None, cursor: str | None) -> Request:
        params = {"status": status, "type": task_type, "limit": limit, "cursor": cursor}
        return Request("list", "GET", "/tasks", params={k: v for k, v in params.items() if v is not None})

    @staticmethod
    def send_event(event_type: str, key: str, payload: dict[str, Any] | None) -> Request:
        body: dict[str, Any] = {"type": event_type, "key": key}
        if payload is not None:
            body["payload"] = payload
        return Request("event", "POST", "/events", body=body)

    @staticmethod
    def replay_dlq(task_ids: Sequence[str] | None) -> Request:
        body: dict[str, Any] = {} if task_ids is None else {"taskIds": list(task_ids)}
        return Request("replay", "POST", "/dlq/replay", body=body)


class AsyncServiceClient:
    """The async client. `process` names this client in the history (Jepsen's process id)."""

    def __init__(
        self,
        base_url: str,
        history: History,
        *,
        token: str = "",
        process: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.history = history
        self.token = token
        self.process = process or f"client-{next(_process_ids)}"
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, transport=transport)

    async def call(self, request: Request) -> CallResult:
        """Sends one request and records it; never raises for HTTP or transport failures."""
        invocation = self.history.invoke(
            self.process,
            request.f,
            request.method,
            request.path,
            body=request.body,
            idempotency_key=request.idempotency_key,
        )
        try:
            response = await self._http.request(
                request.method,
                request.path,
                json=request.body,
                params=request.params,
                headers=request.headers(self.token),
            )
        except httpx.HTTPError as error:
            return _record_error(self.history, invocation, error)
        return _record_response(self.history, invocation, request, response)

    async def submit(
        self,
        task_type: str,
        payload: dict[str, Any],
        priority: int | None = None,
        idempotency_key: str | None = None,
    ) -> CallResult:
        return await self.call(_Requests.submit(task_type, payload, priority, idempotency_key))

    async def get(self, task_id: str) -> CallResult:
        return await self.call(Request("get", "GET", f"/tasks/{task_id}"))

    async def list(
        self,
        status: str | None = None,
        task_type: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> CallResult:
        return await self.call(_Requests.listing(status, task_type, limit, cursor))

    async def events(self, task_id: str) -> CallResult:
        return await self.call(Request("events", "GET", f"/tasks/{task_id}/events"))

    async def cancel(self, task_id: str) -> CallResult:
        return await self.call(Request("cancel", "POST", f"/tasks/{task_id}/cancel"))

    async def send_event(
        self, event_type: str, key: str, payload: dict[str, Any] | None = None
    ) -> CallResult:
        return await self.call(_Requests.send_event(event_type, key, payload))

    async def replay_dlq(self, task_ids: Sequence[str] | None = None) -> CallResult:
        return await self.call(_Requests.replay_dlq(task_ids))

    async def queues(self) -> CallResult:
        return await self.call(Request("queues", "GET", "/queues"))

    async def ready(self) -> CallResult:
        return await self.call(Request("ready", "GET", "/ready"))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncServiceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class ServiceClient:
    """The synchronous twin of AsyncServiceClient (same calls, same history records)."""

    def __init__(
        self,
        base_url: str,
        history: History,
        *,
        token: str = "",
        process: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.history = history
        self.token = token
        self.process = process or f"client-{next(_process_ids)}"
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, transport=transport)

    def call(self, request: Request) -> CallResult:
        invocation = self.history.invoke(
            self.process,
            request.f,
            request.method,
            request.path,
            body=request.body,
            idempotency_key=request.idempotency_key,
        )
        try:
            response = self._http.request(
                request.method,
                request.path,
                json=request.body,
                params=request.params,
                headers=request.headers(self.token),
            )
        except httpx.HTTPError as error:
            return _record_error(self.history, invocation, error)
        return _record_response(self.history, invocation, request, response)

    def submit(
        self,
        task_type: str,
        payload: dict[str, Any],
        priority: int | None = None,
        idempotency_key: str | None = None,
    ) -> CallResult:
        return self.call(_Requests.submit(task_type, payload, priority, idempotency_key))

    def get(self, task_id: str) -> CallResult:
        return self.call(Request("get", "GET", f"/tasks/{task_id}"))

    def list(
        self,
        status: str | None = None,
        task_type: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> CallResult:
        return self.call(_Requests.listing(status, task_type, limit, cursor))

    def events(self, task_id: str) -> CallResult:
        return self.call(Request("events", "GET", f"/tasks/{task_id}/events"))

    def cancel(self, task_id: str) -> CallResult:
        return self.call(Request("cancel", "POST", f"/tasks/{task_id}/cancel"))

    def send_event(self, event_type: str, key: str, payload: dict[str, Any] | None = None) -> CallResult:
        return self.call(_Requests.send_event(event_type, key, payload))

    def replay_dlq(self, task_ids: Sequence[str] | None = None) -> CallResult:
        return self.call(_Requests.replay_dlq(task_ids))

    def queues(self) -> CallResult:
        return self.call(Request("queues", "GET", "/queues"))

    def ready(self) -> CallResult:
        return self.call(Request("ready", "GET", "/ready"))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
