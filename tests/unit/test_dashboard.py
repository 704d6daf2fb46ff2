"""The dashboard's pure parts: the login cookie and what it opens, the shared snapshot, rates and
sparklines, reading a dead letter, redaction, and escaping in the templates. No servers."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import pytest
from aio_pika.abc import AbstractIncomingMessage
from starlette.types import Receive, Scope, Send

from service.api import session
from service.api.auth import BearerAuth
from service.config import Settings
from service.dashboard import queues
from service.dashboard.model import DeadLetter, Failure, QueueRow, Snapshot, TaskCounts, Worker
from service.dashboard.queues import dead_letter, queue_kind
from service.dashboard.render import REDACTED, redact, render, spark_points
from service.dashboard.snapshot import Dashboard, Point, rates
from tests.fakes import FakeMessage

pytestmark = pytest.mark.unit

TOKEN = "t0ken"
SCRIPT = "<script>window.__xss=1</script>"


# ---- the login cookie -----------------------------------------------------------------------------

def test_the_session_cookie_is_derived_from_the_token_and_never_holds_it() -> None:
    value = session.session_value(TOKEN)
    assert value == session.session_value(TOKEN.encode())
    assert TOKEN not in value
    assert value != session.session_value("another")
    assert session.cookie_of(f"a=1; {session.COOKIE}={value}; b=2".encode()) == value
    assert session.cookie_of(b"a=1") is None


@pytest.mark.parametrize(("method", "path", "csrf", "allowed"), [
    ("GET", "/dashboard", False, True),
    ("GET", "/dashboard/live", False, True),
    ("GET", "/tasks", False, False),  # the API itself still wants the bearer token
    ("GET", "/dashboardx", False, False),
    ("POST", "/dlq/replay", False, False),  # another site's form could send the cookie
    ("POST", "/dlq/replay", True, True),  # the page's script sends the header too
])
def test_what_the_cookie_opens(method: str, path: str, csrf: bool, allowed: bool) -> None:
    tokens = [TOKEN.encode()]
    cookie = session.session_value(TOKEN)
    assert session.session_allows(cookie, tokens, method=method, path=path, csrf=csrf) is allowed
    assert not session.session_allows("0" * 64, tokens, method=method, path=path, csrf=csrf)
    assert not session.session_allows(None, tokens, method=method, path=path, csrf=csrf)


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_the_middleware_sends_a_person_to_the_form_and_an_api_client_a_401() -> None:
    app = BearerAuth(_ok, tokens=[TOKEN])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        page = await http.get("/dashboard")
        assert (page.status_code, page.headers["location"]) == (303, session.LOGIN_PATH)
        assert (await http.get(session.LOGIN_PATH)).status_code == 200
        assert (await http.get("/tasks")).status_code == 401
        http.cookies.set(session.COOKIE, session.session_value(TOKEN))
        assert (await http.get("/dashboard/live")).status_code == 200
        assert (await http.post("/dlq/replay")).status_code == 401
        assert (await http.post("/dlq/replay", headers={"x-ast-dashboard": "1"})).status_code == 200


# ---- one snapshot for every viewer ---------------------------------------------------------------

def _snapshot() -> Snapshot:
    return Snapshot(datetime.now(UTC), TaskCounts({}, {}), [], [], [], 0, [])


async def test_concurrent_viewers_share_one_build_until_it_is_a_second_old() -> None:
    now = [0.0]
    dashboard = Dashboard(Settings(), clock=lambda: now[0])
    calls = 0

    async def build() -> Snapshot:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return _snapshot()

    first = await asyncio.gather(*(dashboard.current(build) for _ in range(50)))
    assert calls == 1
    assert all(s is first[0] for s in first)
    now[0] = 0.9
    assert await dashboard.current(build) is first[0]
    now[0] = 1.0
    assert await dashboard.current(build) is not first[0]
    assert calls == dashboard.builds == 2


def test_rates_are_per_second_over_the_window_and_never_negative() -> None:
    points: deque[Point] = deque()
    for at, total, completed, failed in ((0, 100, 50, 5), (2, 110, 56, 7), (4, 120, 60, 9)):
        points.append(Point(at, total, completed, failed, {}))
    measured = rates(points, points[-1])
    assert (measured.accepted, measured.completed, measured.failed) == (5.0, 2.5, 1.0)
    points.append(Point(5, 0, 0, 0, {}))  # the tables were wiped
    wiped = rates(points, points[-1])
    assert (wiped.accepted, wiped.completed, wiped.failed) == (0.0, 0.0, 0.0)
    alone: deque[Point] = deque([Point(0, 1, 1, 1, {})])
    assert rates(alone, alone[0]).accepted is None


def test_a_sparkline_spans_its_box_and_scales_to_its_maximum() -> None:
    points = spark_points((0, 5, 10)).split()
    assert [p.split(",")[0] for p in points] == ["0.0", "60.0", "120.0"]
    assert [float(p.split(",")[1]) for p in points] == [23.0, 12.0, 1.0]
    assert spark_points(()) == ""


# ---- dead letters and payloads -------------------------------------------------------------------

def test_a_dead_letter_is_read_from_its_x_death_headers() -> None:
    task_id = uuid.uuid4()
    deaths = [{"reason": "delivery_limit", "queue": "ast.simulate.q", "count": 2},
              {"reason": "rejected", "queue": "ast.simulate.q", "count": 1}]
    message = FakeMessage(json.dumps({"taskId": str(task_id), "type": "simulate"}).encode(),
                          headers={"x-death": deaths, "x-ast-reason": b"crashed"})
    letter = dead_letter(cast(AbstractIncomingMessage, message))
    assert letter == DeadLetter(task_id, "simulate", "delivery_limit from ast.simulate.q", 3, "crashed")
    poison = dead_letter(cast(AbstractIncomingMessage, FakeMessage(b"[" * 10_000)))
    assert (poison.task_id, poison.reason, poison.count) == (None, "", 0)
    assert [queue_kind(n) for n in ("ast.jobs.dlq", "ast.simulate.q", "ast.simulate.retry.200ms.q")] == [
        "dead-letter", "job", "retry"]


def test_redaction_hides_secret_keys_and_url_credentials_at_any_depth() -> None:
    payload: dict[str, Any] = {"repoUrl": "https://user:pw@git.example/r.git", "ref": "main",
                               "auth": {"apiKey": "k", "Password": "p"}, "items": [{"token": "x"}]}
    assert redact(payload) == {
        "repoUrl": f"https://{REDACTED}@git.example/r.git", "ref": "main",
        "auth": {"apiKey": REDACTED, "Password": REDACTED}, "items": [{"token": REDACTED}],
    }


def test_every_value_in_the_live_fragment_is_escaped() -> None:
    task_id = uuid.uuid4()
    snapshot = Snapshot(
        datetime.now(UTC), TaskCounts({"FAILED": 1}, {SCRIPT: {"FAILED": 1}}),
        [QueueRow(SCRIPT, "job", 1, 0, 1, (0, 1))],
        [Failure(task_id, SCRIPT, SCRIPT, SCRIPT, datetime.now(UTC))],
        [DeadLetter(task_id, SCRIPT, SCRIPT, 1, SCRIPT, "FAILED")], 1,
        [Worker(SCRIPT, 1, (task_id,), None, None)], problems=[SCRIPT],
    )
    html = render("live.html", s=snapshot)
    assert "<script" not in html
    assert html.count("&lt;script&gt;") >= 9


async def test_the_dlq_is_peeked_only_when_its_depth_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each peek is a delivery of what it reads: an open page must not peek every second."""
    peeks: list[int] = []

    async def peek(broker: object, limit: int = 50) -> list[DeadLetter]:
        peeks.append(limit)
        return []

    monkeypatch.setattr(queues, "peek_dlq", peek)
    dashboard = Dashboard(Settings())
    for depth in (3, 3, 3, 4, 4, None, 4, 0, 0):
        await dashboard._peek_dlq(cast(Any, None), depth)
    assert len(peeks) == 2  # at 3 and at 4; an empty DLQ needs no peek
