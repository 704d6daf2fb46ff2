"""The dashboard's SQL: a fixed set of bounded queries per refresh, however many tasks there are.

Every read goes through `CountingConnection`, so a refresh reports how many queries it made (shown in
the page's footer and checked by the benchmark).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from service.dashboard.model import Failure, TaskCounts, Worker

COUNTS = "SELECT type, status, count(*)::bigint AS n FROM tasks GROUP BY type, status"
FAILURES = """SELECT task_id, type, error, updated_at FROM tasks
    WHERE status = 'FAILED'
      AND ($2::timestamptz IS NULL OR (updated_at, task_id) < ($2, $3::uuid))
    ORDER BY updated_at DESC, task_id DESC
    LIMIT $1"""
# Workers holding a lease now, and those that wrote one of the last events (idle ones included).
WORKERS = """WITH leased AS (
        SELECT locked_by AS worker_id, count(*) AS current, max(lease_until) AS lease_until,
               (array_agg(task_id ORDER BY started_at))[1:$1] AS task_ids
        FROM tasks WHERE status = 'IN_PROGRESS' AND locked_by IS NOT NULL GROUP BY locked_by),
    seen AS (
        SELECT worker_id, max(created_at) AS last_event FROM task_events
        WHERE event_id > (SELECT coalesce(max(event_id), 0) - $2 FROM task_events)
          AND worker_id IS NOT NULL
        GROUP BY worker_id)
    SELECT coalesce(l.worker_id, s.worker_id) AS worker_id, coalesce(l.current, 0) AS current,
           l.lease_until, coalesce(l.task_ids, '{}') AS task_ids, s.last_event
    FROM leased l FULL JOIN seen s ON s.worker_id = l.worker_id
    ORDER BY 1 LIMIT $3"""
TASKS_BY_IDS = "SELECT task_id, status, replayed_by FROM tasks WHERE task_id = ANY($1::uuid[])"
TASK = "SELECT * FROM tasks WHERE task_id = $1"
EVENTS = "SELECT * FROM task_events WHERE task_id = $1 ORDER BY event_id LIMIT $2"
RESULTS = """SELECT result, worker_id, created_at FROM task_results
    WHERE task_id = $1 ORDER BY result_id LIMIT 5"""

RECENT_EVENTS = 5_000
TASKS_PER_WORKER = 5
MAX_WORKERS = 100
MAX_EVENTS = 500
QUERY_TIMEOUT_S = 10.0


class CountingConnection:
    """The reads of one refresh, counted."""

    def __init__(self, conn: asyncpg.pool.PoolConnectionProxy[Any] | asyncpg.Connection[Any]) -> None:
        self._conn = conn
        self.queries = 0

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        self.queries += 1
        rows: list[asyncpg.Record] = await self._conn.fetch(query, *args, timeout=QUERY_TIMEOUT_S)
        return rows

    async def fetchrow(self, query: str, *args: object) -> asyncpg.Record | None:
        self.queries += 1
        row: asyncpg.Record | None = await self._conn.fetchrow(query, *args, timeout=QUERY_TIMEOUT_S)
        return row


async def task_counts(conn: CountingConnection) -> TaskCounts:
    by_status: dict[str, int] = {}
    by_type: dict[str, dict[str, int]] = {}
    for row in await conn.fetch(COUNTS):
        n = int(row["n"])
        by_status[row["status"]] = by_status.get(row["status"], 0) + n
        by_type.setdefault(row["type"], {})[row["status"]] = n
    return TaskCounts(by_status, by_type)


async def failures(
    conn: CountingConnection, limit: int, before: tuple[datetime, uuid.UUID] | None = None
) -> list[Failure]:
    at, task_id = before if before is not None else (None, None)
    return [_failure(row) for row in await conn.fetch(FAILURES, limit, at, task_id)]


def _failure(row: asyncpg.Record) -> Failure:
    error = row["error"] if isinstance(row["error"], dict) else {}
    return Failure(row["task_id"], row["type"], str(error.get("code") or ""), str(error.get("message") or ""),
                   row["updated_at"])


async def workers(conn: CountingConnection, lease: timedelta) -> list[Worker]:
    rows = await conn.fetch(WORKERS, TASKS_PER_WORKER, RECENT_EVENTS, MAX_WORKERS)
    return [
        Worker(row["worker_id"], int(row["current"]), tuple(row["task_ids"]),
               row["lease_until"] - lease if row["lease_until"] is not None else None, row["last_event"])
        for row in rows
    ]


async def statuses(conn: CountingConnection, task_ids: list[uuid.UUID]) -> dict[uuid.UUID, asyncpg.Record]:
    """The status of every task the DLQ names, in one query."""
    if not task_ids:
        return {}
    return {row["task_id"]: row for row in await conn.fetch(TASKS_BY_IDS, task_ids)}


@dataclass(frozen=True)
class TaskPage:
    task: asyncpg.Record
    events: list[asyncpg.Record]
    results: list[asyncpg.Record]


async def task_page(conn: CountingConnection, task_id: uuid.UUID) -> TaskPage | None:
    task = await conn.fetchrow(TASK, task_id)
    if task is None:
        return None
    return TaskPage(task, await conn.fetch(EVENTS, task_id, MAX_EVENTS), await conn.fetch(RESULTS, task_id))
