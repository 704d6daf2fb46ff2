"""The harness's one recording client of the service's HTTP API: every exchange lands in a History.

Like Jepsen's client `invoke!`, each exchange is an invocation followed by exactly one completion:
2xx is `ok`, 4xx is `fail` (a definite refusal: nothing happened), and a timeout, transport error
or 5xx is `info`: the request may or may not have taken effect. Only the contract's surface is used.

`RecordingTransport` is the one place that records. Any `httpx.Client` built on it records every
request, naming its `f` from method and path (`derive_f`); such a raw client keeps httpx's
semantics and raises transport errors after recording them. `ServiceClient` is the typed facade
(`submit`, `get`, `cancel`, ...) over an `httpx.Client` on that transport: it never raises for
these outcomes, the caller reads `CallResult.outcome`. Both record identically, through the same
code. It is synchronous, so Locust users under gevent can use it too.
"""

from __future__ import annotations

import contextlib
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
_RESULT_EXTENSION = "harness.call_result"


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
    """The history's `f` for a request (`submit`, `get`, ...); outside the contract's routes, `other`.

    The checker finds operations by `f`, so every request to one route must get the same name.
    """
    method = method.upper()
    for route_method, pattern, f in _ROUTES:
        if route_method == method and pattern.fullmatch(path):
            return f
    return OTHER_F


def _request_body(request: httpx.Request) -> Any:
    """The JSON body (so equal bodies get equal digests), the raw text if not JSON, None if streamed."""
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


def _is_event_stream(response: httpx.Response) -> bool:
    """An SSE answer is not read here: it runs until the task ends, and the caller consumes it."""
    return str(response.headers.get("content-type", "")).startswith("text/event-stream")


def complete_with_answer(history: History, invocation: Operation, status_code: int, body: Any) -> Operation:
    """Completes `invocation` with an HTTP answer (`body` decoded JSON, or text, or None): 2xx ok,
    4xx fail, else info, with the task fields and error code read off the body. Every recorder
    (this transport, the Locust users of loadtests/) classifies through here."""
    task_id, status = _task_fields(body)
    return history.complete(
        invocation,
        _classify(status_code),
        status_code=status_code,
        task_id=task_id,
        task_status=status,
        error=_error_code(body),
        value=_trim(invocation.f, body),
    )


def complete_with_error(history: History, invocation: Operation, error: BaseException) -> Operation:
    """Completes `invocation` whose request got no answer (timeout, reset, refused): `info`."""
    return history.complete(invocation, "info", error=f"{type(error).__name__}: {error}"[:300])


class RecordingTransport(httpx.BaseTransport):
    """Wraps a transport so every request through it lands in a History (Jepsen's `invoke!`).

    The invocation is written before the request leaves, so a crash mid-call still shows it was
    sent. Each request's `CallResult` is left in its `extensions`, where `ServiceClient` reads it.
    Transport errors are recorded as `info` and re-raised: a raw client chose httpx's semantics.
    """

    def __init__(self, inner: httpx.BaseTransport, history: History, *, process: str | None = None) -> None:
        self.inner = inner
        self.history = history
        self.process = process or f"http-{next(_process_ids)}"

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        invocation = self.history.invoke(
            self.process,
            derive_f(request.method, request.url.path),
            request.method,
            request.url.path,
            body=_request_body(request),
            idempotency_key=request.headers.get("Idempotency-Key"),
        )
        try:
            response = self.inner.handle_request(request)
            if not _is_event_stream(response):
                response.read()
        except httpx.HTTPError as error:
            op = complete_with_error(self.history, invocation, error)
            request.extensions[_RESULT_EXTENSION] = CallResult(op, None, None)
            raise
        request.extensions[_RESULT_EXTENSION] = self._complete(invocation, response)
        return response

    def _complete(self, invocation: Operation, response: httpx.Response) -> CallResult:
        outcome = _classify(response.status_code)
        if _is_event_stream(response):
            op = self.history.complete(invocation, outcome, status_code=response.status_code)
            return CallResult(op, response.status_code, None)
        body = _decode(response)
        op = complete_with_answer(self.history, invocation, response.status_code, body)
        return CallResult(op, response.status_code, body)

    def close(self) -> None:
        self.inner.close()


class ServiceClient:
    """The contract's calls, typed, over an `httpx.Client` whose transport records them.

    `process` names this client in the history (Jepsen's process id). `transport` is the one
    under the recorder (a `MockTransport` in unit tests); by default a real HTTP transport.
    """

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
        self.process = process or f"client-{next(_process_ids)}"
        recorder = RecordingTransport(transport or httpx.HTTPTransport(), history, process=self.process)
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s, transport=recorder)

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> CallResult:
        """Sends one request; never raises for HTTP or transport failures (they are recorded)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
        request = self._http.build_request(method, path, json=body, params=params, headers=headers)
        with contextlib.suppress(httpx.HTTPError):
            self._http.send(request)
        result: CallResult = request.extensions[_RESULT_EXTENSION]
        return result

    def submit(
        self,
        task_type: str,
        payload: dict[str, Any],
        priority: int | None = None,
        idempotency_key: str | None = None,
    ) -> CallResult:
        body: dict[str, Any] = {"type": task_type, "payload": payload}
        if priority is not None:
            body["priority"] = priority
        return self.call("POST", "/tasks", body=body, idempotency_key=idempotency_key)

    def get(self, task_id: str) -> CallResult:
        return self.call("GET", f"/tasks/{task_id}")

    def list(
        self,
        status: str | None = None,
        task_type: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> CallResult:
        params = {"status": status, "type": task_type, "limit": limit, "cursor": cursor}
        return self.call("GET", "/tasks", params={k: v for k, v in params.items() if v is not None})

    def events(self, task_id: str) -> CallResult:
        return self.call("GET", f"/tasks/{task_id}/events")

    def cancel(self, task_id: str) -> CallResult:
        return self.call("POST", f"/tasks/{task_id}/cancel")

    def send_event(self, event_type: str, key: str, payload: dict[str, Any] | None = None) -> CallResult:
        body: dict[str, Any] = {"type": event_type, "key": key}
        if payload is not None:
            body["payload"] = payload
        return self.call("POST", "/events", body=body)

    def replay_dlq(self, task_ids: Sequence[str] | None = None) -> CallResult:
        return self.call("POST", "/dlq/replay", body={} if task_ids is None else {"taskIds": list(task_ids)})

    def queues(self) -> CallResult:
        return self.call("GET", "/queues")

    def ready(self) -> CallResult:
        return self.call("GET", "/ready")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
