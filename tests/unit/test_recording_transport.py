"""RecordingTransport records raw httpx traffic exactly as ServiceClient records its calls."""

from __future__ import annotations

import httpx
import pytest

from harness.client import RecordingTransport, ServiceClient, derive_f
from harness.history import History

pytestmark = pytest.mark.unit
TASK_ID = "7d7c1f2e-0000-4000-8000-000000000001"


@pytest.mark.parametrize(
    ("method", "path", "f"),
    [
        ("POST", "/tasks", "submit"),
        ("GET", "/tasks", "list"),
        ("GET", f"/tasks/{TASK_ID}", "get"),
        ("GET", f"/tasks/{TASK_ID}/events", "events"),
        ("GET", f"/tasks/{TASK_ID}/stream", "stream"),
        ("POST", f"/tasks/{TASK_ID}/cancel", "cancel"),
        ("POST", "/events", "event"),
        ("POST", "/dlq/replay", "replay"),
        ("GET", "/queues", "queues"),
        ("GET", "/ready", "ready"),
        ("GET", "/health", "health"),
        ("GET", "/metrics", "metrics"),
        ("GET", "/openapi.json", "openapi"),
        ("get", "/tasks/", "list"),
        ("DELETE", f"/tasks/{TASK_ID}", "other"),
        ("GET", "/nowhere", "other"),
    ],
)
def test_f_is_derived_from_method_and_path(method: str, path: str, f: str) -> None:
    assert derive_f(method, path) == f


def _error(code: str) -> dict[str, object]:
    return {"error": {"code": code, "message": "m", "details": None}}


def _service(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/tasks" and request.method == "POST":
        return httpx.Response(202, json={"taskId": TASK_ID, "status": "PENDING"})
    if request.url.path.endswith("/cancel"):
        return httpx.Response(409, json=_error("ALREADY_TERMINAL"))
    if request.url.path == "/queues":
        return httpx.Response(503, json=_error("UNAVAILABLE"))
    if request.url.path.endswith("/stream"):
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b"data: {}\n\n")
    raise httpx.ConnectError("refused", request=request)


def _strip(history: History) -> list[tuple[object, ...]]:
    return [(op.type, op.f, op.method, op.path, op.body_digest, op.idempotency_key, op.status_code,
             op.task_id, op.task_status, op.error) for op in history]


def test_a_raw_client_records_what_service_client_records() -> None:
    raw, reference = History(), History()
    transport = RecordingTransport(httpx.MockTransport(_service), raw, process="p")
    with httpx.Client(base_url="http://api", transport=transport) as api:
        body = {"type": "simulate", "payload": {"steps": 1}}
        api.post("/tasks", json=body, headers={"Idempotency-Key": "k"})
        api.post(f"/tasks/{TASK_ID}/cancel")
        api.get("/queues")
    with ServiceClient("http://api", reference, transport=httpx.MockTransport(_service)) as client:
        client.submit("simulate", {"steps": 1}, idempotency_key="k")
        client.cancel(TASK_ID)
        client.queues()

    assert _strip(raw) == _strip(reference)
    assert [op.type for op in raw.completions()] == ["ok", "fail", "info"]
    assert raw.completions("submit")[0].task_id == TASK_ID


def test_a_transport_error_is_recorded_as_unknown_and_raised() -> None:
    history = History()
    transport = RecordingTransport(httpx.MockTransport(_service), history)
    with httpx.Client(base_url="http://api", transport=transport) as api, pytest.raises(httpx.ConnectError):
        api.get(f"/tasks/{TASK_ID}")

    done = history.completions()
    assert [(op.type, op.f) for op in done] == [("info", "get")]
    assert done[0].error
    assert "ConnectError" in done[0].error


def test_an_event_stream_is_recorded_without_being_read() -> None:
    history = History()
    transport = RecordingTransport(httpx.MockTransport(_service), history)
    with httpx.Client(base_url="http://api", transport=transport) as api, api.stream(
        "GET", f"/tasks/{TASK_ID}/stream"
    ) as response:
        assert list(response.iter_lines()) == ["data: {}", ""]

    assert [(op.type, op.f, op.status_code) for op in history.completions()] == [("ok", "stream", 200)]


def test_a_non_json_body_still_gets_a_digest() -> None:
    history = History()
    transport = RecordingTransport(httpx.MockTransport(_service), history)
    with httpx.Client(base_url="http://api", transport=transport) as api:
        api.post("/tasks", content=b'{"type": ', headers={"content-type": "application/json"})

    assert history.ops[0].body_digest is not None
