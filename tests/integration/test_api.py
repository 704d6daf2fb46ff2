"""The HTTP API in process (httpx.ASGITransport, and a real uvicorn for chunked bodies) against real
PostgreSQL and RabbitMQ.

Servers: the harness's session `stack` (its `clean_state` empties tables and queues before each
test), or, when API_TEST_POSTGRES_URL and API_TEST_RABBIT_URL are set, those servers (no workers).
The app under test runs without its relay; tasks that must not move are written straight to SQL
with no job message, so the stack's workers never see them.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from typing import Any

import aio_pika
import asyncpg
import httpx
import pytest
import uvicorn

from service.api import app as app_module
from service.api.app import create_app
from service.broker.topology import DEAD_LETTER_QUEUE, all_queue_names
from service.config import Settings
from service.db import tasks as db_tasks
from service.db.migrate import apply_migrations
from service.db.pool import create_pool
from service.models import Status

pytestmark = pytest.mark.integration

SIMULATE = {"type": "simulate", "payload": {"durationMs": 0, "steps": 1}}
SERVER_START_S = 10.0
STREAM_S = 10.0
ClientFactory = Callable[..., Awaitable[httpx.AsyncClient]]


# ---- servers and state --------------------------------------------------------------------------

@pytest.fixture
async def backends(request: pytest.FixtureRequest) -> dict[str, str]:
    """DSN and AMQP URL of clean servers: the env's throwaway ones, or the harness stack's."""
    dsn, amqp = os.environ.get("API_TEST_POSTGRES_URL"), os.environ.get("API_TEST_RABBIT_URL")
    if dsn and amqp:
        await apply_migrations(dsn)
        await _clean(dsn, amqp)
        return {"dsn": dsn, "amqp": amqp}
    endpoints = request.getfixturevalue("clean_state")
    return {"dsn": endpoints.postgres_dsn, "amqp": endpoints.amqp_url}


async def _clean(dsn: str, amqp: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "TRUNCATE tasks, task_events, task_results, outbox, inbox RESTART IDENTITY CASCADE"
        )
    finally:
        await conn.close()
    connection = await aio_pika.connect(amqp)
    async with connection:
        for name in all_queue_names(3, 1000) + all_queue_names(3, 200):
            channel = await connection.channel()
            try:
                await (await channel.declare_queue(name, passive=True)).purge()
                await channel.close()
            except aio_pika.exceptions.ChannelClosed:
                pass


@pytest.fixture
async def db(backends: dict[str, str]) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await create_pool(backends["dsn"], min_size=1, max_size=4)
    yield pool
    await pool.close()


def settings_for(backends: dict[str, str], **overrides: Any) -> Settings:
    values: dict[str, Any] = {"postgres_url": backends["dsn"], "rabbit_url": backends["amqp"],
                              "relay_in_api": False, "api_tokens": []}
    return Settings(**(values | overrides))


@pytest.fixture
async def make_client(backends: dict[str, str]) -> AsyncIterator[ClientFactory]:
    """Builds an app (lifespan run) and an ASGI client on it; everything is closed at teardown."""
    async with AsyncExitStack() as stack:

        async def factory(**overrides: Any) -> httpx.AsyncClient:
            app = create_app(settings_for(backends, **overrides))
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            return await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://api.test", timeout=30)
            )

        yield factory


@pytest.fixture
async def client(make_client: ClientFactory) -> httpx.AsyncClient:
    return await make_client()


async def row_counts(pool: asyncpg.Pool[Any]) -> dict[str, int]:
    async with pool.acquire() as conn:
        return {table: await conn.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608
                for table in ("tasks", "task_events", "outbox")}


async def park_task(pool: asyncpg.Pool[Any], status: Status, **columns: Any) -> uuid.UUID:
    """A task written straight to SQL, with no job message: no worker will ever touch it."""
    task_id = uuid.uuid4()
    values = {"task_id": task_id, "type": "simulate", "status": status.value, "max_retries": 3,
              "payload": {"durationMs": 5}, "input_hash": "h", "trace_id": "t"} | columns
    names = ", ".join(values)
    marks = ", ".join(f"${n}" for n in range(1, len(values) + 1))
    async with pool.acquire() as conn:
        await conn.execute(f"INSERT INTO tasks ({names}) VALUES ({marks})", *values.values())  # noqa: S608
        await conn.execute(
            "INSERT INTO task_events (task_id, kind, status, version) VALUES ($1, 'status', $2, 1)",
            task_id, status.value,
        )
    return task_id


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    if code is not None:
        assert error["code"] == code
    return dict(error)


# ---- POST /tasks --------------------------------------------------------------------------------

async def test_submit_answers_202_with_location_and_writes_task_event_and_job(
    client: httpx.AsyncClient, db: asyncpg.Pool[Any]
) -> None:
    response = await client.post("/tasks", json=SIMULATE)
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "PENDING"
    task_id = uuid.UUID(body["taskId"])
    assert response.headers["location"] == f"/tasks/{task_id}"
    async with db.acquire() as conn:
        first_event = await conn.fetchrow(
            "SELECT from_status, status FROM task_events WHERE task_id = $1 ORDER BY event_id LIMIT 1",
            task_id,
        )
        jobs = await conn.fetch(
            "SELECT routing_key FROM outbox WHERE task_id = $1 AND exchange = 'ast.jobs.x'", task_id
        )
    assert dict(first_event) == {"from_status": None, "status": "PENDING"}
    assert [row["routing_key"] for row in jobs] == ["job.simulate"]


async def test_same_key_same_body_same_task_other_body_409(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": f"key-{uuid.uuid4()}"}
    first = await client.post("/tasks", json=SIMULATE, headers=headers)
    again = await client.post("/tasks", json=SIMULATE, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["taskId"] == again.json()["taskId"]
    other = await client.post("/tasks", json=SIMULATE | {"priority": 5}, headers=headers)
    error = assert_error(other, 409, "IDEMPOTENCY_CONFLICT")
    assert error["details"]["taskId"] == first.json()["taskId"]


async def test_concurrent_requests_with_one_key_share_one_task(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": f"race-{uuid.uuid4()}"}
    answers = await asyncio.gather(*(client.post("/tasks", json=SIMULATE, headers=headers) for _ in range(8)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["taskId"] for a in answers}) == 1


BAD_SUBMISSIONS: list[tuple[str, dict[str, Any]]] = [
    ("unknown type", {"content": json.dumps({"type": "nope", "payload": {}})}),
    ("bad payload", {"content": json.dumps({"type": "simulate", "payload": {"outcome": "explode"}})}),
    ("unknown payload field", {"content": json.dumps({"type": "simulate", "payload": {"zzz": 1}})}),
    ("unsafe repo url", {"content": json.dumps({"type": "initialize_repository",
                                                "payload": {"repoUrl": "file:///etc"}})}),
    ("impact without graph id", {"content": json.dumps({"type": "initialize_impact_analysis",
                                                        "payload": {"repositoryTaskId": "x"}})}),
    ("unknown top-level field", {"content": json.dumps(SIMULATE | {"extra": 1})}),
    ("priority too high", {"content": json.dumps(SIMULATE | {"priority": 10})}),
    ("priority as string", {"content": json.dumps(SIMULATE | {"priority": "1"})}),
    ("payload not an object", {"content": json.dumps({"type": "simulate", "payload": [1]})}),
    ("body a list", {"content": "[1, 2]"}),
    ("body a number", {"content": "3"}),
    ("broken json", {"content": "{\"type\": "}),
    ("empty body", {"content": ""}),
    ("not utf-8", {"content": b"\xff\xfe{"}),
    ("deep nesting", {"content": "[" * 5000 + "]" * 5000}),
    ("huge number", {"content": json.dumps({"type": "simulate", "payload": {"durationMs": 10**400}})}),
    ("empty key", {"content": json.dumps(SIMULATE), "headers": {"Idempotency-Key": ""}}),
    ("long key", {"content": json.dumps(SIMULATE), "headers": {"Idempotency-Key": "k" * 201}}),
    ("control char in key", {"content": json.dumps(SIMULATE), "headers": {"Idempotency-Key": "a\tb"}}),
]


@pytest.mark.parametrize(("case", "request_args"), BAD_SUBMISSIONS, ids=[c for c, _ in BAD_SUBMISSIONS])
async def test_bad_submission_is_422_and_writes_nothing(
    client: httpx.AsyncClient, db: asyncpg.Pool[Any], case: str, request_args: dict[str, Any]
) -> None:
    before = await row_counts(db)
    headers = {"Content-Type": "application/json"} | request_args.get("headers", {})
    response = await client.post("/tasks", content=request_args["content"], headers=headers)
    assert_error(response, 422)
    assert await row_counts(db) == before, case


async def test_body_over_the_limit_is_413_and_writes_nothing(
    make_client: ClientFactory, db: asyncpg.Pool[Any]
) -> None:
    client = await make_client(api_max_body_bytes=2048)
    before = await row_counts(db)
    big = {"type": "simulate", "payload": {"pad": "x" * 4000}}
    assert_error(await client.post("/tasks", json=big), 413, "PAYLOAD_TOO_LARGE")
    assert await row_counts(db) == before


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def served(backends: dict[str, str], **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app on a real uvicorn, for what ASGITransport cannot show (it buffers whole bodies both
    ways): chunked uploads and a live event stream. Yields a client once the server accepts."""
    port = _free_port()
    app = create_app(settings_for(backends, **overrides))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(SERVER_START_S):
            while not server.started:
                assert not serving.done(), "uvicorn stopped before it started"
                await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield http
    finally:
        server.should_exit = True
        await serving


async def test_chunked_body_over_the_limit_is_413_on_real_http(
    backends: dict[str, str], db: asyncpg.Pool[Any]
) -> None:
    """Without Content-Length the streamed bytes are counted (real uvicorn, chunked encoding)."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    async with served(backends, api_max_body_bytes=2048) as http:
        before = await row_counts(db)
        json_type = {"Content-Type": "application/json"}
        response = await http.post("/tasks", content=chunks(), headers=json_type)
        assert_error(response, 413, "PAYLOAD_TOO_LARGE")
        ok = await http.post("/tasks", content=_one_chunk(json.dumps(SIMULATE).encode()), headers=json_type)
        assert ok.status_code == 202, ok.text
    assert (await row_counts(db))["tasks"] == before["tasks"] + 1


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


# ---- reading tasks ------------------------------------------------------------------------------

async def test_get_task_and_unknown_or_malformed_ids_are_404(client: httpx.AsyncClient) -> None:
    task_id = (await client.post("/tasks", json=SIMULATE)).json()["taskId"]
    task = (await client.get(f"/tasks/{task_id}")).json()
    assert set(task) == {"taskId", "type", "status", "state", "progress", "priority", "retryCount",
                         "maxRetries", "error", "result", "traceId", "createdAt", "updatedAt",
                         "startedAt", "completedAt"}
    assert task["taskId"] == task_id
    assert task["type"] == "simulate"
    for path in (f"/tasks/{uuid.uuid4()}", "/tasks/not-a-uuid", f"/tasks/{uuid.uuid4()}/events",
                 "/tasks/xyz/events", f"/tasks/{uuid.uuid4()}/stream", "/tasks/%00/stream"):
        assert_error(await client.get(path), 404)
    assert_error(await client.post(f"/tasks/{uuid.uuid4()}/cancel"), 404)
    assert_error(await client.get("/no/such/route"), 404, "NOT_FOUND")
    assert_error(await client.delete("/tasks"), 405, "METHOD_NOT_ALLOWED")


async def test_list_paginates_in_creation_order_with_filters(
    client: httpx.AsyncClient, db: asyncpg.Pool[Any]
) -> None:
    created = [await park_task(db, Status.PENDING) for _ in range(7)]
    failed = await park_task(db, Status.FAILED)
    await park_task(db, Status.PENDING, type="initialize_repository")
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"type": "simulate", "limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/tasks", params=params)).json()
        seen += [item["taskId"] for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [str(t) for t in [*created, failed]]
    only_failed = (await client.get("/tasks", params={"status": "FAILED"})).json()
    assert [item["taskId"] for item in only_failed["items"]] == [str(failed)]
    assert only_failed["nextCursor"] is None
    repo = (await client.get("/tasks", params={"type": "initialize_repository"})).json()
    assert len(repo["items"]) == 1


@pytest.mark.parametrize("params", [
    {"status": "DONE"}, {"type": "nope"}, {"limit": 0}, {"limit": 501}, {"limit": "x"},
    {"cursor": "not-a-cursor"}, {"cursor": "W10"}, {"cursor": "WyJ4IiwieSJd"}, {"cursor": "%%%"},
])
async def test_list_with_bad_query_is_422(client: httpx.AsyncClient, params: dict[str, Any]) -> None:
    assert_error(await client.get("/tasks", params=params), 422)


async def test_events_are_the_timeline_oldest_first(client: httpx.AsyncClient, db: asyncpg.Pool[Any]) -> None:
    task_id = await park_task(db, Status.PENDING)
    assert (await client.post(f"/tasks/{task_id}/cancel")).status_code == 202
    items = (await client.get(f"/tasks/{task_id}/events")).json()["items"]
    assert [item["status"] for item in items] == ["PENDING", "CANCELLED"]
    assert items[1]["fromStatus"] == "PENDING"
    assert items[1]["message"] == "cancelled by request"
    assert set(items[0]) == {"eventId", "kind", "fromStatus", "status", "state", "progress", "attempt",
                             "version", "workerId", "message", "createdAt"}


async def _advance(pool: asyncpg.Pool[Any], task_id: uuid.UUID, step: str) -> None:
    """One change of the task, as a worker makes it: started, half done, or completed."""
    async with pool.acquire() as conn, conn.transaction():
        row = await db_tasks.lock_task(conn, task_id)
        assert row is not None
        if step == "start":
            await db_tasks.change_status(conn, row, Status.IN_PROGRESS)
        elif step == "progress":
            await db_tasks.report_progress(conn, row, progress=50, state="half", worker_id="w")
        else:
            await db_tasks.change_status(conn, row, Status.COMPLETED, progress=100, result={"ok": 1})


async def test_stream_emits_each_change_until_terminal(
    backends: dict[str, str], db: asyncpg.Pool[Any]
) -> None:
    """Each change is made only once the stream has delivered the one before, so the stream's
    poll can never fold two changes into one event."""
    task_id = await park_task(db, Status.PENDING)
    steps = ["start", "progress", "complete"]
    events: list[tuple[str, dict[str, Any]]] = []
    async with (
        served(backends) as http,
        asyncio.timeout(STREAM_S),
        http.stream("GET", f"/tasks/{task_id}/stream") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for block in _sse_blocks(response):
            delivered = _parse_sse(block)
            events += delivered
            if delivered and steps:
                await _advance(db, task_id, steps.pop(0))
    assert [(kind, data["status"]) for kind, data in events] == [
        ("status", "PENDING"), ("status", "IN_PROGRESS"), ("progress", "IN_PROGRESS"), ("status", "COMPLETED")
    ]
    assert events[2][1]["progress"] == 50
    assert events[-1][1]["result"] == {"ok": 1}


async def test_stream_of_a_terminal_task_ends_at_once(
    client: httpx.AsyncClient, db: asyncpg.Pool[Any]
) -> None:
    task_id = await park_task(db, Status.CANCELLED)
    response = await asyncio.wait_for(client.get(f"/tasks/{task_id}/stream"), 5)
    assert [data["status"] for _, data in _parse_sse(response.text)] == ["CANCELLED"]


async def _sse_blocks(response: httpx.Response) -> AsyncIterator[str]:
    """The stream's events as they arrive, one blank-line-terminated block at a time."""
    lines: list[str] = []
    async for line in response.aiter_lines():
        if line:
            lines.append(line)
        elif lines:
            yield "\n".join(lines)
            lines = []


def _parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in fields:
            events.append((fields.get("event", "message"), json.loads(fields["data"])))
    return events


# ---- cancel, events, DLQ ------------------------------------------------------------------------

async def test_cancel_pending_is_202_and_terminal_is_409(
    client: httpx.AsyncClient, db: asyncpg.Pool[Any]
) -> None:
    task_id = await park_task(db, Status.PENDING)
    response = await client.post(f"/tasks/{task_id}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "CANCELLED"
    assert response.json()["completedAt"] is not None
    async with db.acquire() as conn:
        keys = await conn.fetch("SELECT routing_key FROM outbox WHERE task_id = $1", task_id)
    assert [row["routing_key"] for row in keys] == ["task.cancelled"]
    assert_error(await client.post(f"/tasks/{task_id}/cancel"), 409, "ALREADY_TERMINAL")
    for status in (Status.COMPLETED, Status.FAILED):
        done = await park_task(db, status)
        assert_error(await client.post(f"/tasks/{done}/cancel"), 409, "ALREADY_TERMINAL")


async def test_post_events_resumes_matching_waiting_tasks_only(
    client: httpx.AsyncClient, db: asyncpg.Pool[Any]
) -> None:
    waiting = dict(wait_event_type="approval", wait_event_key="pr-1")
    resumed = [await park_task(db, Status.WAITING_FOR_EVENT, **waiting) for _ in range(2)]
    other = await park_task(db, Status.WAITING_FOR_EVENT, wait_event_type="approval", wait_event_key="pr-2")
    body = {"type": "approval", "key": "pr-1", "payload": {"by": "alice"}}
    response = await client.post("/events", json=body)
    assert response.status_code == 202
    assert response.json() == {"resumed": 2}
    async with db.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM tasks WHERE task_id = ANY($1)", resumed)
        jobs = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE task_id = ANY($1) AND exchange = 'ast.jobs.x'", resumed
        )
        still = await conn.fetchval("SELECT status FROM tasks WHERE task_id = $1", other)
    assert jobs == 2
    assert still == "WAITING_FOR_EVENT"
    for row in rows:
        assert row["resume_data"] == body
        assert row["wait_event_type"] is None
        assert row["status"] != "WAITING_FOR_EVENT"
    assert (await client.post("/events", json=body)).json() == {"resumed": 0}
    for bad in ({"type": "a"}, {"type": "", "key": "k"}, {"type": "a", "key": "k", "x": 1}):
        assert_error(await client.post("/events", json=bad), 422)


async def _plant_in_dlq(amqp_url: str, bodies: list[bytes]) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for body in bodies:
            await channel.default_exchange.publish(
                aio_pika.Message(
                    body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=str(uuid.uuid4())
                ),
                routing_key=DEAD_LETTER_QUEUE,
            )


async def _dlq_depth(client: httpx.AsyncClient, expected: int) -> int:
    """The DLQ's depth as /queues reports it, polled (bounded) until it is `expected`."""
    depth = -1
    for _ in range(50):
        queues = (await client.get("/queues")).json()["queues"]
        depth = next(q["messages"] for q in queues if q["name"] == DEAD_LETTER_QUEUE)
        if depth == expected:
            return depth
        await asyncio.sleep(0.1)
    return depth


async def test_dlq_replay_creates_new_tasks_and_leaves_the_rest(
    client: httpx.AsyncClient, db: asyncpg.Pool[Any], backends: dict[str, str]
) -> None:
    first = await park_task(db, Status.FAILED, payload={"durationMs": 1}, priority=4)
    second = await park_task(db, Status.FAILED)

    def job(task_id: uuid.UUID) -> bytes:
        message = {"taskId": str(task_id), "type": "simulate", "payload": {}, "retryCount": 3}
        return json.dumps(message).encode()

    await _plant_in_dlq(backends["amqp"], [job(first), job(second), b"not json", job(first)])
    assert await _dlq_depth(client, 4) == 4
    response = await client.post("/dlq/replay", json={"taskIds": [str(first)]})
    assert response.status_code == 202
    body = response.json()
    assert body["replayed"] == 1
    assert len(body["taskIds"]) == 1
    assert await _dlq_depth(client, 2) == 2  # the duplicate of `first` was acked without a second task
    new_id = uuid.UUID(body["taskIds"][0])
    async with db.acquire() as conn:
        old = await conn.fetchrow("SELECT * FROM tasks WHERE task_id = $1", first)
        new = await conn.fetchrow("SELECT * FROM tasks WHERE task_id = $1", new_id)
    assert old["status"] == "FAILED"
    assert old["replayed_by"] == new_id
    assert new["replay_of"] == first
    assert new["priority"] == 4
    assert new["payload"] == {"durationMs": 1}
    rest = (await client.post("/dlq/replay")).json()
    assert rest["replayed"] == 1
    assert rest["skipped"] == 1
    assert await _dlq_depth(client, 1) == 1  # the unparsable message stays
    assert_error(await client.post("/dlq/replay", json={"taskIds": ["nope"]}), 422)


# ---- operations ---------------------------------------------------------------------------------

async def test_queues_reports_every_queue_and_counts_by_status(
    client: httpx.AsyncClient, db: asyncpg.Pool[Any]
) -> None:
    await park_task(db, Status.FAILED)
    report = (await client.get("/queues")).json()
    settings = Settings()
    names = [q["name"] for q in report["queues"]]
    assert names == all_queue_names(settings.max_retries, settings.retry_base_ms)
    assert all(isinstance(q["messages"], int) for q in report["queues"])
    assert set(report["tasks"]) == {s.value for s in Status}
    assert report["tasks"]["FAILED"] == 1


async def test_health_ready_and_metrics(client: httpx.AsyncClient) -> None:
    health = (await client.get("/health")).json()
    assert {key: health[key] for key in ("status", "checks")} == {"status": "ok", "checks": {}}
    ready = await client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": "ok", "rabbitmq": "ok"}
    assert datetime.fromisoformat(ready.json()["timestamp"]).tzinfo is not None
    task_id = (await client.post("/tasks", json=SIMULATE)).json()["taskId"]
    await client.get(f"/tasks/{task_id}")
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'ast_api_tasks_submitted_total{type="simulate"} 1.0' in text
    assert 'route="/tasks/{task_id}",status="200"' in text
    assert "ast_api_request_duration_seconds_bucket" in text
    assert task_id not in text


async def test_ready_is_503_when_rabbitmq_does_not_answer(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "BROKER_START_WAIT_S", 0.2)
    client = await make_client(rabbit_url=f"amqp://guest:guest@127.0.0.1:{_free_port()}/")
    error = assert_error(await client.get("/ready"), 503, "NOT_READY")
    assert error["details"]["postgres"] == "ok"
    assert error["details"]["rabbitmq"].startswith("down")
    assert (await client.get("/health")).status_code == 200
    assert (await client.post("/tasks", json=SIMULATE)).status_code == 202  # PostgreSQL is enough
    assert_error(await client.get("/queues"), 503, "UNAVAILABLE")


async def test_bearer_auth(make_client: ClientFactory) -> None:
    client = await make_client(api_tokens=["s3cret", "other"])
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"},
                    {"Authorization": "Bearer"}):
        response = await client.get("/tasks", headers=headers)
        assert_error(response, 401, "UNAUTHORIZED")
        assert response.headers["www-authenticate"] == "Bearer"
    assert_error(await client.post("/tasks", json=SIMULATE), 401)
    assert (await client.get("/tasks", headers={"Authorization": "Bearer s3cret"})).status_code == 200
    assert (await client.get("/tasks", headers={"Authorization": "bearer other"})).status_code == 200
    assert_error(await client.get("/metrics"), 401, "UNAUTHORIZED")
    for open_path in ("/health", "/ready", "/openapi.json", "/docs"):
        assert (await client.get(open_path)).status_code == 200, open_path


async def test_relay_in_api_publishes_the_outbox(make_client: ClientFactory, db: asyncpg.Pool[Any]) -> None:
    """With RELAY_IN_API the lifespan runs the outbox relay: a submitted task's job row gets sent."""
    client = await make_client(relay_in_api=True)
    task_id = uuid.UUID((await client.post("/tasks", json=SIMULATE)).json()["taskId"])
    sent = None
    for _ in range(100):
        async with db.acquire() as conn:
            sent = await conn.fetchval(
                "SELECT sent_at FROM outbox WHERE task_id = $1 ORDER BY outbox_id LIMIT 1", task_id
            )
        if sent is not None:
            break
        await asyncio.sleep(0.1)
    assert sent is not None
