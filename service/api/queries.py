"""The API's SQL reads and the few writes that are not status changes, in one place.

Status changes go through `service.db.tasks` so each one writes its event in the same transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from service.db.tasks import Conn

TASK_BY_ID = "SELECT * FROM tasks WHERE task_id = $1"
TASK_BY_KEY = "SELECT * FROM tasks WHERE idempotency_key = $1"
TASK_EXISTS = "SELECT 1 FROM tasks WHERE task_id = $1"
EVENTS_OF_TASK = "SELECT * FROM task_events WHERE task_id = $1 ORDER BY event_id"
COUNTS_BY_STATUS = "SELECT status, count(*) AS n FROM tasks GROUP BY status"
WAITING_FOR_EVENT = """SELECT * FROM tasks
    WHERE status = 'WAITING_FOR_EVENT' AND wait_event_type = $1 AND wait_event_key = $2
    ORDER BY created_at, task_id FOR UPDATE SKIP LOCKED"""
MARK_REPLAYED = "UPDATE tasks SET replayed_by = $2 WHERE task_id = $1"
LIST_TASKS = """SELECT * FROM tasks
    WHERE ($1::text IS NULL OR status = $1)
      AND ($2::text IS NULL OR type = $2)
      AND ($3::timestamptz IS NULL OR (created_at, task_id) > ($3, $4::uuid))
    ORDER BY created_at, task_id
    LIMIT $5"""
CHANGED_TASKS = """SELECT w.task_id AS watched_id, t.*
    FROM unnest($1::uuid[], $2::bigint[]) AS w(task_id, version)
    LEFT JOIN tasks t ON t.task_id = w.task_id
    WHERE t.task_id IS NULL OR t.version <> w.version"""


async def list_tasks(
    conn: Conn, *, status: str | None, task_type: str | None, after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """One keyset page ordered by (created_at, task_id); `limit` rows at most."""
    created, task_id = after if after is not None else (None, None)
    rows: list[asyncpg.Record] = await conn.fetch(LIST_TASKS, status, task_type, created, task_id, limit)
    return rows


async def counts_by_status(conn: Conn) -> dict[str, int]:
    rows = await conn.fetch(COUNTS_BY_STATUS)
    return {row["status"]: int(row["n"]) for row in rows}


async def fetch_task(conn: Conn, task_id: uuid.UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(TASK_BY_ID, task_id)
    return row


async def changed_tasks(
    conn: Conn, versions: dict[uuid.UUID, int]
) -> list[tuple[uuid.UUID, asyncpg.Record | None]]:
    """Of the tasks in `versions` (task id -> last version seen), the rows whose version differs,
    and None for those that no longer exist: one query, however many tasks are watched."""
    rows = await conn.fetch(CHANGED_TASKS, list(versions), list(versions.values()))
    return [(row["watched_id"], row if row["task_id"] is not None else None) for row in rows]
