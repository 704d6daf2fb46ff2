"""Retention against a real PostgreSQL (migrated as `ast-migrate` does): exactly the terminal tasks
that ended more than RETENTION_DAYS ago go, with their events, results, sent outbox rows and inbox
rows; everything else stays, an unsent outbox row included. Batches are bounded, and a task row
another transaction holds is skipped rather than waited for."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from harness.stack.postgres import PostgresCluster
from harness.stack.readiness import run_sync
from service.config import Settings
from service.db.migrate import apply_migrations
from service.db.pool import create_pool
from service.retention import Retention
from tests.integration.own_postgres import migrated_postgres

pytestmark = pytest.mark.integration

_TASK = """INSERT INTO tasks (task_id, type, status, max_retries, payload, input_hash, trace_id,
    created_at, completed_at) VALUES ($1, 'simulate', $2, 3, '{}'::jsonb, 'h', 't',
    now() - make_interval(days => $3), now() - make_interval(days => $4))"""


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    with migrated_postgres("ast-retention-") as cluster:
        yield cluster


@pytest.fixture
async def pool(postgres: PostgresCluster) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await create_pool(postgres.dsn, max_size=3)
    async with pool.acquire() as conn:
        await conn.execute("TRUNCATE tasks, task_events, task_results, outbox, inbox")
    try:
        yield pool
    finally:
        await pool.close()


async def plant(
    conn: asyncpg.pool.PoolConnectionProxy[Any],
    status: str,
    created_days: int,
    ended_days: int | None,
    *,
    unsent: bool = False,
) -> uuid.UUID:
    """A task with one event, one result, a sent outbox row (and an unsent one when asked) and an
    inbox row, its clock set back `created_days` (and `ended_days` for when it became terminal)."""
    task_id = uuid.uuid4()
    await conn.execute(_TASK, task_id, status, created_days, ended_days)
    if ended_days is None:
        await conn.execute("UPDATE tasks SET completed_at = NULL WHERE task_id = $1", task_id)
    await conn.execute(
        "INSERT INTO task_events (task_id, kind, status, version) VALUES ($1, 'status', $2, 1)",
        task_id,
        status,
    )
    await conn.execute("INSERT INTO task_results (task_id, result) VALUES ($1, '{}'::jsonb)", task_id)
    for sent in [True, False] if unsent else [True]:
        await conn.execute(
            """INSERT INTO outbox (message_id, exchange, routing_key, body, task_id, sent_at)
               VALUES ($1, 'ast.events.x', 'task.completed', '{}'::jsonb, $2, CASE WHEN $3 THEN now() END)""",
            uuid.uuid4(),
            task_id,
            sent,
        )
    await conn.execute(
        "INSERT INTO inbox (message_id, task_id, outcome) VALUES ($1, $2, 'completed')",
        str(uuid.uuid4()),
        task_id,
    )
    return task_id


async def rows_of(conn: asyncpg.pool.PoolConnectionProxy[Any], task_id: uuid.UUID) -> dict[str, int]:
    counts = {}
    for table in ("tasks", "task_events", "task_results", "outbox", "inbox"):
        counts[table] = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE task_id = $1", task_id)
    return counts


async def test_deletes_exactly_the_old_terminal_tasks_and_their_rows(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn:
        doomed = [
            await plant(conn, "COMPLETED", 45, 40),
            await plant(conn, "FAILED", 50, 31),
            await plant(conn, "CANCELLED", 40, 40, unsent=True),
        ]
        kept = [
            await plant(conn, "COMPLETED", 40, 29),  # ended inside the window, though created long ago
            await plant(conn, "IN_PROGRESS", 60, None),
            await plant(conn, "WAITING_FOR_EVENT", 60, None),
            await plant(conn, "PENDING", 60, None),
            await plant(conn, "COMPLETED", 0, 0),
        ]
        await conn.execute(  # a message that names no task
            "INSERT INTO outbox (message_id, exchange, routing_key, body, sent_at)"
            " VALUES ($1, 'ast.events.x', 'x', '{}'::jsonb, now() - interval '90 days')",
            uuid.uuid4(),
        )
        before = {task_id: await rows_of(conn, task_id) for task_id in kept}

    retention = Retention(Settings(retention_days=30, retention_batch_size=2, retention_interval_ms=60_000))
    assert await retention.run_batch(pool, now=100.0) == 2
    assert retention.due(100.0), "a full batch: the next one is due at once"
    assert await retention.run_batch(pool, now=100.0) == 1
    assert not retention.due(100.0), "a short batch: the next waits out the interval"
    assert await retention.run_batch(pool, now=200.0) == 0

    async with pool.acquire() as conn:
        for task_id in doomed[:2]:
            assert await rows_of(conn, task_id) == dict.fromkeys(before[kept[0]], 0)
        assert await rows_of(conn, doomed[2]) == {
            "tasks": 0,
            "task_events": 0,
            "task_results": 0,
            "outbox": 1,
            "inbox": 0,
        }, "the unsent message is still owed"
        assert await conn.fetchval("SELECT sent_at FROM outbox WHERE task_id = $1", doomed[2]) is None
        for task_id in kept:
            assert await rows_of(conn, task_id) == before[task_id]
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE task_id IS NULL") == 1


async def test_a_task_held_by_another_transaction_is_skipped_not_waited_for(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn:
        held, free = await plant(conn, "COMPLETED", 40, 40), await plant(conn, "COMPLETED", 40, 40)
    retention = Retention(Settings(retention_days=30))
    async with pool.acquire() as holder, holder.transaction():
        await holder.execute("SELECT 1 FROM tasks WHERE task_id = $1 FOR UPDATE", held)
        assert await asyncio.wait_for(retention.run_batch(pool, now=0.0), 5) == 1
    async with pool.acquire() as conn:
        assert (await rows_of(conn, free))["tasks"] == 0
        assert (await rows_of(conn, held))["tasks"] == 1
    assert await retention.run_batch(pool, now=100.0) == 1


def test_the_migration_is_idempotent(postgres: PostgresCluster) -> None:
    assert run_sync(apply_migrations(postgres.dsn), own_thread=True) == []
