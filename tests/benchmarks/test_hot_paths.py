"""The service's hot paths one at a time, on the session's real PostgreSQL and RabbitMQ, with the
stack's own relay and workers stopped so nothing else touches the rows:

- the submit transaction: `POST /tasks` through the app in this process (no socket, no uvicorn):
  validation, the task row, its first event and its outbox row;
- the outbox: a running relay woken by a batch of new outbox rows, claiming and publishing them
  with confirms until every one is marked sent;
- the worker: claim (lock, lease, IN_PROGRESS event) then completion (result, event, message,
  inbox row) through `TaskLifecycle`, for tasks the API submitted.

Each round handles BATCH items one after another; the table shows a round, `extra_info` the
per-item rate. Numbers are recorded, never asserted: the side-by-side figures are `python -m
bench`'s (README, Benchmark).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from harness.stack.base import StackEndpoints, StackProvider
from harness.stack.local import LocalStack
from harness.stack.readiness import run_sync
from harness.stack.reset import reset_service_state
from service.api.app import create_app
from service.config import Settings
from service.db.pool import create_pool
from service.outbox.relay import OutboxRelay
from service.worker.lifecycle import Claim, TaskLifecycle

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(240)]

BATCH = 100
ROUNDS = 3
JOB = {"type": "simulate", "payload": {"durationMs": 0, "steps": 1}}


@pytest.fixture(scope="module")
def quiet_stack(stack: StackProvider) -> Iterator[StackEndpoints]:
    """The session stack with its relay and workers stopped for this module, started again after."""
    if not isinstance(stack, LocalStack):
        pytest.skip("needs the embedded stack, whose relay and workers can stand aside")
    assert stack.relay is not None
    stack.relay.process.stop()
    for worker in stack.workers.values():
        worker.process.stop()
    try:
        yield stack.endpoints
    finally:
        for name in list(stack.workers):
            stack.restart_worker(name)
        stack.restart_relay()


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for the module's app, pools and relay (the benchmark calls are sync)."""
    new_loop = asyncio.new_event_loop()
    yield new_loop
    new_loop.close()


@pytest.fixture(scope="module")
def settings(quiet_stack: StackEndpoints) -> Settings:
    return Settings(
        postgres_url=quiet_stack.postgres_dsn,
        rabbit_url=quiet_stack.amqp_url,
        relay_in_api=False,
        api_tokens=[],
    )


@pytest.fixture(scope="module")
def api(loop: asyncio.AbstractEventLoop, settings: Settings) -> Iterator[httpx.AsyncClient]:
    """The API app (its lifespan entered: pool, broker link) behind an in-process transport."""
    app = create_app(settings)
    lifespan = app.router.lifespan_context(app)
    loop.run_until_complete(lifespan.__aenter__())
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")
    try:
        yield client
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(lifespan.__aexit__(None, None, None))


@pytest.fixture
def clean(quiet_stack: StackEndpoints) -> StackEndpoints:
    run_sync(reset_service_state(quiet_stack), own_thread=True)
    return quiet_stack


async def _submit(api: httpx.AsyncClient, count: int) -> list[uuid.UUID]:
    ids = []
    for _ in range(count):
        answer = await api.post("/tasks", json=JOB)
        assert answer.status_code == 202, answer.text
        ids.append(uuid.UUID(answer.json()["taskId"]))
    return ids


def _per_item(benchmark: BenchmarkFixture, what: str) -> None:
    assert benchmark.stats is not None
    mean = benchmark.stats.stats.mean
    benchmark.extra_info.update({"batch": BATCH, f"{what}_per_second": round(BATCH / mean, 1),
                                 f"ms_per_{what}": round(1000 * mean / BATCH, 2)})


def test_submit_transaction(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    api: httpx.AsyncClient,
    clean: StackEndpoints,
) -> None:
    def submit_batch() -> list[uuid.UUID]:
        return loop.run_until_complete(_submit(api, BATCH))

    ids = benchmark.pedantic(submit_batch, rounds=ROUNDS, iterations=1)
    assert len(ids) == BATCH
    _per_item(benchmark, "submit")


OUTBOX_ROWS = """INSERT INTO outbox (message_id, exchange, routing_key, body)
    SELECT gen_random_uuid(), 'ast.events.x', 'bench.hot-path', jsonb_build_object('n', i)
    FROM generate_series(1, $1::int) AS i"""


async def _publish_batch(relay: OutboxRelay, dsn: str) -> int:
    """Insert BATCH unsent rows in one statement; wait until the running relay has sent them all."""
    before = relay.published
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(OUTBOX_ROWS, BATCH)
    finally:
        await connection.close()
    async with asyncio.timeout(60):
        while relay.published < before + BATCH:
            await asyncio.sleep(0.001)
    return relay.published - before


def test_outbox_claim_and_publish(
    benchmark: BenchmarkFixture, loop: asyncio.AbstractEventLoop, settings: Settings, clean: StackEndpoints
) -> None:
    relay = OutboxRelay(settings)
    running = loop.create_task(relay.run())

    def publish_batch() -> int:
        return loop.run_until_complete(_publish_batch(relay, clean.postgres_dsn))

    try:
        publish_batch()  # connected and warm
        sent = benchmark.pedantic(publish_batch, rounds=ROUNDS, iterations=1)
    finally:
        loop.run_until_complete(relay.stop())
        loop.run_until_complete(asyncio.wait_for(running, 30))
    assert sent == BATCH
    _per_item(benchmark, "message")


async def _claim_and_complete(lifecycle: TaskLifecycle, ids: list[uuid.UUID]) -> int:
    done = 0
    for task_id in ids:
        message_id = str(uuid.uuid4())
        claimed = await lifecycle.claim(task_id, message_id, 0, 20)
        assert claimed.claim is Claim.RUN, claimed
        done += await lifecycle.complete(task_id, {"ok": True}, message_id)
    return done


def test_worker_claim_and_completion(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    api: httpx.AsyncClient,
    settings: Settings,
    clean: StackEndpoints,
) -> None:
    pool = loop.run_until_complete(create_pool(clean.postgres_dsn, min_size=1, max_size=2))
    lifecycle = TaskLifecycle(pool, "bench-worker", settings.worker_lease_ms)

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (loop.run_until_complete(_submit(api, BATCH)),), {}

    try:
        done = benchmark.pedantic(
            lambda ids: loop.run_until_complete(_claim_and_complete(lifecycle, ids)),
            setup=setup, rounds=ROUNDS, iterations=1,
        )
        count_completed = pool.fetchval("SELECT count(*) FROM tasks WHERE status = 'COMPLETED'")
        completed = loop.run_until_complete(count_completed)
    finally:
        loop.run_until_complete(pool.close())
    assert done == BATCH
    assert completed == BATCH * ROUNDS
    _per_item(benchmark, "job")

