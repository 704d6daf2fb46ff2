"""The harness's one client of the service's HTTP API; it records every call into a History.

Like Jepsen's client `invoke!`, each call is an invocation followed by exactly one completion:
2xx is `ok`, 4xx is `fail` (a definite refusal: nothing happened), and a timeout, transport error
or 5xx is `info`: the request may or may not have taken effect. Calls never raise for these
outcomes; the caller reads `CallResult.outcome`. Only the contract's surface is used.

`AsyncServiceClient` is the main client; `ServiceClient` is a thin synchronous twin for Locust
users, which run under gevent and cannot use asyncio.

`RecordingTransport` (and its async twin) give the same records to any plain `httpx.Client`,
naming each request's `f` from its method and path (`derive_f`), so suites that speak raw
HTTP still leave a history the checker can read.
"""

from __future__ import annotations

import itertools
import json
import re
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


def _trim(f: str, body: Any) -> Any:
    """Keeps the history small: list answers are summarised, single objects kept."""
    if f in {"list", "events"} and isinstance(body, dict) and isinstance(body.get("items"), list):
        return {"items": len(body["items"]), "nextCursor": body.get("nextCursor")}
    return body


def _record_response(history: History, invocation: Operation, response: httpx.Response) -> CallResult:
    body = _decode(response)
    task_id, status = _task_fields(body)
    op = history.complete(
        invocation,
        _classify(response.status_code),
        status_code=response.status_code,
        task_id=task_id,
        task_status=status,
        error=_error_code(body),
        value=_trim(invocation.f, body),
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


def _invoke(history: History, process: str, request: Request) -> Operation:
    """Records the invocation before the request leaves: a crash mid-call still shows it was sent."""
    return history.invoke(
        process,
        request.f,
        request.method,
        request.path,
        body=request.body,
        idempotency_key=request.idempotency_key,
    )


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
        invocation = _invoke(self.history, self.process, request)
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
        return _record_response(self.history, invocation, response)

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
        invocation = _invoke(self.history, self.process, request)
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
        return _record_response(self.history, invocation, response)

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


# --- recording any httpx client -------------------------------------------------------------------

_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(pattern), f)
    for method, pattern, f in (
        ("POST", r"/tasks/?", "submit"),
        ("GET", r"/tasks/?", "list"),
        ("GET", r"/tasks/[^/]+/events/?", "events"),
        ("GET", r"/tasks/[^/]+/stream/?", "stream"),
        ("POST", r"/tasks/[^/]+/cancel/?", "cancel"),
        ("GET", r"/tasks/[^/]+/?", "get"),
        ("POST", r"/events/?", "event"),
        ("POST", r"/dlq/replay/?", "replay"),
        ("GET", r"/queues/?", "queues"),
        ("GET", r"/health/?", "health"),
        ("GET", r"/ready/?", "ready"),
        ("GET", r"/metrics/?", "metrics"),
        ("GET", r"/openapi\.json", "openapi"),
    )
)
OTHER_F = "other"


def derive_f(method: str, path: str) -> str:
    """The history's `f` for a request, named as ServiceClient names its calls (`submit`, `get`, ...).

    The checker finds submits by `f`, so a raw httpx call must be named exactly as the client's
    own method would be; anything outside the contract's routes is `other`.
    """
    method = method.upper()
    for route_method, pattern, f in _ROUTES:
        if route_method == method and pattern.fullmatch(path):
            return f
    return OTHER_F


def _request_body(request: httpx.Request) -> Any:
    """The JSON body (so its digest equals ServiceClient's), the raw text if not JSON, None if streamed."""
    try:
        content = request.content
    except httpx.RequestNotRead:
        return None
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return content.decode("utf-8", "replace")


def _invoke_raw(history: History, process: str, request: httpx.Request) -> Operation:
    return history.invoke(
        process,
        derive_f(request.method, request.url.path),
        request.method,
        request.url.path,
        body=_request_body(request),
        idempotency_key=request.headers.get("Idempotency-Key"),
    )


def _is_event_stream(response: httpx.Response) -> bool:
    """An SSE answer is not read here: it runs until the task ends, and the caller consumes it."""
    return str(response.headers.get("content-type", "")).startswith("text/event-stream")


def _record_unread(history: History, invocation: Operation, response: httpx.Response) -> None:
    history.complete(invocation, _classify(response.status_code), status_code=response.status_code)


class RecordingTransport(httpx.BaseTransport):
    """Wraps any transport so every request through an `httpx.Client` lands in a History.

    It records exactly what ServiceClient records (ok for 2xx, fail for 4xx, info for 5xx and
    transport errors), so tests written against plain httpx still leave a checkable history.
    Unlike ServiceClient it re-raises transport errors: the caller chose httpx's semantics.
    """

    def __init__(self, inner: httpx.BaseTransport, history: History, *, process: str | None = None) -> None:
        self.inner = inner
        self.history = history
        self.process = process or f"http-{next(_process_ids)}"

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        invocation = _invoke_raw(self.history, self.process, request)
        try:
            response = self.inner.handle_request(request)
            if _is_event_stream(response):
                _record_unread(self.history, invocation, response)
                return response
            response.read()
        except httpx.HTTPError as error:
            _record_error(self.history, invocation, error)
            raise
        _record_response(self.history, invocation, response)
        return response

    def close(self) -> None:
        self.inner.close()


class AsyncRecordingTransport(httpx.AsyncBaseTransport):
    """The async twin of RecordingTransport, for `httpx.AsyncClient`."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, history: History, *, process: str | None = None
    ) -> None:
        self.inner = inner
        self.history = history
        self.process = process or f"http-{next(_process_ids)}"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        invocation = _invoke_raw(self.history, self.process, request)
        try:
            response = await self.inner.handle_async_request(request)
            if _is_event_stream(response):
                _record_unread(self.history, invocation, response)
                return response
            await response.aread()
        except httpx.HTTPError as error:
            _record_error(self.history, invocation, error)
            raise
        _record_response(self.history, invocation, response)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
