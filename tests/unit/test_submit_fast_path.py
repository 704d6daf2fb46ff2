"""`POST /tasks` answers the same through its fast path as through FastAPI's handler.

A request whose content type is exactly `application/json` and that is plainly valid skips FastAPI's
per-request machinery (`service.api.routes.tasks.SubmitRoute`); `Application/JSON` is the same media
type to FastAPI but never takes the fast path. So each request is sent both ways, against an app
whose pool is a fake, and the answers (status, headers, body, with the new task's id masked) and
what reached the database must agree.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx
import pytest

from service.api.app import create_app
from service.api.routes import tasks
from service.api.routes.tasks import TaskAcceptedResponse
from service.api.schemas import TaskAccepted
from service.config import Settings
from service.models import Status

FAST = "application/json"
STANDARD = "Application/JSON"
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class _Conn:
    def __init__(self, calls: list[tuple[Any, ...]], taken: dict[str, dict[str, Any]]) -> None:
        self.calls = calls
        self.taken = taken

    async def fetchrow(self, query: str, *args: Any) -> dict[str, Any] | None:
        if "INSERT INTO tasks" in query:
            task_id, task_type, priority, max_retries, payload, input_hash, key = args[:7]
            self.calls.append((task_type, priority, max_retries, payload, input_hash, key))
            row = {"task_id": task_id, "type": task_type, "status": "PENDING", "trace_id": args[7],
                   "input_hash": input_hash}
            if key is not None:
                if key in self.taken:
                    return None
                self.taken[key] = row
            return row
        return self.taken.get(args[0])


class _Acquired:
    def __init__(self, conn: _Conn) -> None:
        self.conn = conn

    async def __aenter__(self) -> _Conn:
        return self.conn

    async def __aexit__(self, *_: object) -> None:
        return None


class _Pool:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.taken: dict[str, dict[str, Any]] = {}

    def acquire(self, timeout: float | None = None) -> _Acquired:
        return _Acquired(_Conn(self.calls, self.taken))


async def _answer(content_type: str, body: bytes, headers: dict[str, str]) -> tuple[Any, ...]:
    app = create_app(Settings())
    pool = _Pool()
    app.state.pool = pool
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        answers = []
        for _ in range(2):  # the second time, an Idempotency-Key is a replay
            response = await client.post(
                "/tasks", content=body, headers={"content-type": content_type, **headers}
            )
            answers.append((
                response.status_code,
                [(name, UUID_RE.sub("ID", value)) for name, value in response.headers.multi_items()],
                UUID_RE.sub("ID", response.text),
            ))
        metrics = app.state.metrics.render().decode()
    submitted = [line for line in metrics.splitlines() if line.startswith("ast_api_tasks_submitted_total{")]
    return answers, pool.calls, submitted


SIMULATE = {"type": "simulate", "payload": {"durationMs": 0, "steps": 1}}
CASES: list[tuple[str, bytes, dict[str, str]]] = [
    ("valid", json.dumps(SIMULATE).encode(), {}),
    ("valid with priority", json.dumps({**SIMULATE, "priority": 7}).encode(), {}),
    ("idempotency key", json.dumps(SIMULATE).encode(), {"Idempotency-Key": "key-1"}),
    ("key too long", json.dumps(SIMULATE).encode(), {"Idempotency-Key": "k" * 201}),
    ("key with a control character", json.dumps(SIMULATE).encode(), {"Idempotency-Key": "a\tb"}),
    ("empty body", b"", {}),
    ("not JSON", b"{not json", {}),
    ("NaN", b'{"type": "simulate", "payload": {"durationMs": NaN}}', {}),
    ("a list", b"[1, 2]", {}),
    ("unknown type", json.dumps({"type": "nope", "payload": {}}).encode(), {}),
    ("unknown field", json.dumps({**SIMULATE, "extra": 1}).encode(), {}),
    ("priority out of range", json.dumps({**SIMULATE, "priority": 10}).encode(), {}),
    ("priority as text", json.dumps({**SIMULATE, "priority": "3"}).encode(), {}),
    ("bad payload", json.dumps({"type": "simulate", "payload": {"steps": 0}}).encode(), {}),
    ("repository payload", json.dumps(
        {"type": "initialize_repository", "payload": {"repoUrl": "https://u:p@example.com/r.git"}}
    ).encode(), {}),
    ("local repository refused", json.dumps(
        {"type": "initialize_repository", "payload": {"repoUrl": "file:///tmp/r"}}
    ).encode(), {}),
]


@pytest.mark.parametrize(("name", "body", "headers"), CASES, ids=[case[0] for case in CASES])
async def test_fast_path_answers_as_fastapi_does(name: str, body: bytes, headers: dict[str, str]) -> None:
    fast = await _answer(FAST, body, headers)
    standard = await _answer(STANDARD, body, headers)
    assert fast == standard


async def test_the_202_is_what_fastapi_makes_of_the_model() -> None:
    task_id = uuid.uuid4()
    expected = TaskAccepted(task_id=task_id, status=Status.PENDING).model_dump_json(by_alias=True).encode()
    response = TaskAcceptedResponse(str(task_id), Status.PENDING)
    assert response.body == expected
    assert response.headers["location"] == f"/tasks/{task_id}"
    assert response.status_code == 202


async def test_only_a_plainly_valid_json_request_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[bool] = []
    plainly_valid = tasks._plainly_valid

    async def spy(request: Any) -> Any:
        result = await plainly_valid(request)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(tasks, "_plainly_valid", spy)
    valid = json.dumps(SIMULATE).encode()
    answers, calls, submitted = await _answer(FAST, valid, {})
    assert [answer[0] for answer in answers] == [202, 202]
    assert len(calls) == 2
    assert submitted == ['ast_api_tasks_submitted_total{type="simulate"} 2.0']
    answers, _, _ = await _answer(STANDARD, valid, {})
    assert [answer[0] for answer in answers] == [202, 202]
    answers, _, _ = await _answer(FAST, b"{not json", {})
    assert [answer[0] for answer in answers] == [422, 422]
    assert taken == [True, True, False, False, False, False]
