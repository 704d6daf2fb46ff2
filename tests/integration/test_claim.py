"""The worker's claim against a real PostgreSQL: a ready task (PENDING or RETRYING) is claimed in
one call with its event; everything else takes the locked path and gets the same answers as before
(a running task is BUSY, a handled message SETTLED, an unknown task UNKNOWN). The delivery limit
counts the runs a task lost with its worker, not the broker's deliveries: DEAD_LETTER at the limit
of lost runs, and a fresh message for a task the broker would dead-letter short of it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from harness.stack.postgres import PostgresCluster
from service.db.pool import create_pool
from service.worker.lifecycle import Claim, TaskLifecycle
from tests.integration.own_postgres import migrated_postgres

pytestmark = pytest.mark.integration

_TASK = """INSERT INTO tasks (task_id, type, status, max_retries, payload, input_hash, trace_id, retry_count)
    VALUES ($1, 'simulate', $2, 3, '{}'::jsonb, 'h', 't', $3)"""


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    with migrated_postgres("ast-claim-") as cluster:
        yield cluster


@pytest.fixture
async def pool(postgres: PostgresCluster) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await create_pool(postgres.dsn, max_size=3)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture(autouse=True)
async def empty(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn:
        await conn.execute("TRUNCATE tasks, task_events, task_results, outbox, inbox")


async def plant(pool: asyncpg.Pool[Any], status: str, retry_count: int = 0) -> uuid.UUID:
    task_id = uuid.uuid4()
    async with pool.acquire() as conn:
        await conn.execute(_TASK, task_id, status, retry_count)
    return task_id


async def events(pool: asyncpg.Pool[Any], task_id: uuid.UUID) -> list[tuple[str | None, str, str | None]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT from_status, status, worker_id FROM task_events WHERE task_id = $1 ORDER BY event_id",
            task_id,
        )
    return [(row["from_status"], row["status"], row["worker_id"]) for row in rows]


@pytest.mark.parametrize("status", ["PENDING", "RETRYING"])
async def test_a_ready_task_is_claimed_with_its_event(pool: asyncpg.Pool[Any], status: str) -> None:
    task_id = await plant(pool, status, retry_count=1 if status == "RETRYING" else 0)
    claim = await TaskLifecycle(pool, "w1", 10_000).claim(task_id, "m1-" + status, 0, 5)
    assert claim.claim is Claim.RUN
    assert claim.task is not None
    assert (claim.task["status"], claim.task["attempt"], claim.task["locked_by"]) == ("IN_PROGRESS", 1, "w1")
    assert claim.task["version"] == 2
    assert claim.task["lease_until"] is not None
    assert claim.task["started_at"] is not None
    assert await events(pool, task_id) == [(status, "IN_PROGRESS", "w1")]


async def test_the_other_answers_are_unchanged(pool: asyncpg.Pool[Any]) -> None:
    worker, other = TaskLifecycle(pool, "w1", 10_000), TaskLifecycle(pool, "w2", 10_000)
    task_id = await plant(pool, "PENDING")
    assert (await worker.claim(task_id, "m1", 0, 5)).claim is Claim.RUN
    assert (await other.claim(task_id, "m1", 1, 5)).claim is Claim.BUSY
    assert await worker.complete(task_id, {"ok": True}, "m1")
    assert (await other.claim(task_id, "m1", 1, 5)).claim is Claim.SETTLED
    assert (await other.claim(task_id, "m2", 0, 5)).claim is Claim.SETTLED  # terminal
    assert (await worker.claim(uuid.uuid4(), "m3", 0, 5)).claim is Claim.UNKNOWN
    assert [status for _, status, _ in await events(pool, task_id)] == ["IN_PROGRESS", "COMPLETED"]


async def lose_runs(pool: asyncpg.Pool[Any], task_id: uuid.UUID, runs: int) -> TaskLifecycle:
    """`runs` runs of the task, each lost with its worker (its lease released as a restarted
    worker does); returns the last worker, whose run is the last one lost."""
    worker = TaskLifecycle(pool, "w0", 10_000)
    for run in range(runs):
        worker = TaskLifecycle(pool, f"w{run}", 10_000)
        assert (await worker.claim(task_id, f"m-{task_id}", run, 99)).claim is Claim.RUN
        await worker.release_leases()
    return worker


async def fresh_messages(pool: asyncpg.Pool[Any], task_id: uuid.UUID) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT headers FROM outbox WHERE task_id = $1 AND exchange = 'ast.jobs.x'", task_id
        )
    return [dict(row["headers"]) for row in rows]


async def test_the_delivery_limit_fails_a_task_whose_worker_died_that_many_times(
    pool: asyncpg.Pool[Any],
) -> None:
    task_id = await plant(pool, "PENDING")
    await lose_runs(pool, task_id, 3)
    survivor = TaskLifecycle(pool, "w-next", 10_000)

    claim = await survivor.claim(task_id, f"m-{task_id}", 3, 3)

    assert claim.claim is Claim.DEAD_LETTER
    async with pool.acquire() as conn:
        task = await conn.fetchrow("SELECT * FROM tasks WHERE task_id = $1", task_id)
    assert (task["status"], task["lost_runs"], task["error"]["code"]) == ("FAILED", 3, "DELIVERY_LIMIT")
    assert "died 3 times" in task["error"]["message"]
    assert [status for _, status, _ in await events(pool, task_id)][-1] == "FAILED"


async def test_a_task_delivered_to_the_limit_but_never_run_gets_a_fresh_message(
    pool: asyncpg.Pool[Any],
) -> None:
    """Held by workers that other jobs crashed, it was returned unrun each time: not its fault."""
    task_id = await plant(pool, "PENDING")

    claim = await TaskLifecycle(pool, "w1", 10_000).claim(task_id, "m-held", 5, 5)

    assert claim.claim is Claim.SETTLED
    assert "re-published" in claim.reason
    assert await fresh_messages(pool, task_id) == [{"x-ast-lost-runs": 0}]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM tasks WHERE task_id = $1", task_id) == "PENDING"
        assert await conn.fetchval("SELECT outcome FROM inbox WHERE message_id = 'm-held'") == "republished"
    assert (await TaskLifecycle(pool, "w2", 10_000).claim(task_id, "m-fresh", 0, 5)).claim is Claim.RUN


async def test_a_task_short_of_its_lost_runs_limit_is_handed_back_with_its_count(
    pool: asyncpg.Pool[Any],
) -> None:
    task_id = await plant(pool, "PENDING")
    await lose_runs(pool, task_id, 1)

    claim = await TaskLifecycle(pool, "w1", 10_000).claim(task_id, f"m-{task_id}", 3, 3)

    assert claim.claim is Claim.SETTLED
    assert claim.task is not None
    assert (claim.task["status"], claim.task["lost_runs"], claim.task["locked_by"]) == ("PENDING", 1, None)
    assert await fresh_messages(pool, task_id) == [{"x-ast-lost-runs": 1}]
    taken = await TaskLifecycle(pool, "w2", 10_000).claim(task_id, "m-fresh", 0, 3)
    assert taken.claim is Claim.RUN
    assert taken.task is not None
    assert taken.task["lost_runs"] == 1


async def test_a_handled_message_of_a_ready_task_is_settled_not_run(pool: asyncpg.Pool[Any]) -> None:
    """A hand-back acks its message and makes the task PENDING again: that message, delivered once
    more, must not run the task (the inbox row says it was handled)."""
    task_id, message = await plant(pool, "PENDING"), f"m-{uuid.uuid4()}"
    worker = TaskLifecycle(pool, "w1", 10_000)
    assert (await worker.claim(task_id, message, 0, 5)).claim is Claim.RUN
    assert await worker.hand_back(task_id, message)
    again = await worker.claim(task_id, message, 1, 5)
    assert again.claim is Claim.SETTLED
    assert again.reason == "message already handled"


async def test_a_message_at_the_limit_of_a_task_leased_elsewhere_is_re_published_not_held(
    pool: asyncpg.Pool[Any],
) -> None:
    """Polling for the lease would hold a message the broker dead-letters on its next return."""
    task_id = await plant(pool, "PENDING")
    holder = TaskLifecycle(pool, "w-holder", 10_000)
    assert (await holder.claim(task_id, "m-first", 0, 3)).claim is Claim.RUN

    claim = await TaskLifecycle(pool, "w-other", 10_000).claim(task_id, "m-first", 3, 3)

    assert claim.claim is Claim.SETTLED
    assert await fresh_messages(pool, task_id) == [{"x-ast-lost-runs": 0}]
    async with pool.acquire() as conn:
        task = await conn.fetchrow("SELECT status, locked_by FROM tasks WHERE task_id = $1", task_id)
    assert (task["status"], task["locked_by"]) == ("IN_PROGRESS", "w-holder"), "left to its holder"
    assert await holder.complete(task_id, {"ok": True}, "m-first")
