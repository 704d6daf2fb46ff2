"""PostgreSQL as the checker sees it: the contract's tables read into `harness.state` rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from harness.state import EventRow, InboxRow, OutboxRow, ResultRow, TaskRow

_TASKS_SQL = """SELECT task_id::text, type, status, progress, retry_count, max_retries, version, attempt,
    priority, payload, result, error, idempotency_key, dead_lettered, replay_of::text, replayed_by::text,
    created_at, updated_at FROM tasks"""
_EVENTS_SQL = """SELECT event_id, task_id::text, kind, status, version, from_status, progress, attempt, state,
    worker_id, message, created_at FROM task_events ORDER BY event_id"""
_RESULTS_SQL = "SELECT result_id, task_id::text, worker_id, created_at FROM task_results ORDER BY result_id"
_OUTBOX_SQL = """SELECT outbox_id, message_id::text, exchange, routing_key, task_id::text, created_at,
    sent_at, attempts, last_error FROM outbox ORDER BY outbox_id"""
_INBOX_SQL = "SELECT message_id, outcome, task_id::text, worker_id FROM inbox"


def _plain(value: Any) -> Any:
    """Timestamps as ISO text and jsonb as Python values, so rows are JSON-ready evidence."""
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _rows(records: list[asyncpg.Record]) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in r.items()} for r in records]


async def _set_json_codecs(conn: asyncpg.Connection[Any]) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


@dataclass(frozen=True)
class PostgresState:
    tasks: tuple[TaskRow, ...]
    events: tuple[EventRow, ...]
    results: tuple[ResultRow, ...]
    outbox: tuple[OutboxRow, ...]
    inbox: tuple[InboxRow, ...]


async def read_postgres(dsn: str) -> PostgresState:
    """Reads all five tables in one REPEATABLE READ transaction, so they agree with each other."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await _set_json_codecs(conn)
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            tasks, events, results, outbox, inbox = [
                _rows(await conn.fetch(sql))
                for sql in (_TASKS_SQL, _EVENTS_SQL, _RESULTS_SQL, _OUTBOX_SQL, _INBOX_SQL)
            ]
    finally:
        await conn.close()
    return PostgresState(
        tuple(TaskRow(**r) for r in tasks),
        tuple(EventRow(**r) for r in events),
        tuple(ResultRow(**r) for r in results),
        tuple(OutboxRow(**r) for r in outbox),
        tuple(InboxRow(**r) for r in inbox),
    )


