"""PostgreSQL as the checker sees it: the contract's tables read into `harness.state` rows.

Only the columns the contract lets the checker read are required ("What the checker may read");
a deployment that lacks one fails the read with one line naming it. A few more columns are read
when the deployment has them (the report's event details, evidence ids, the payload the counts
match unknown submits by): which exist is asked of the catalogue once per read, so no query ever
names a column that is not there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from harness.state import EventRow, OutboxRow, ResultRow, TaskRow


class MissingColumns(Exception):
    """The deployment's tables lack columns the contract names."""


@dataclass(frozen=True)
class TableRead:
    """One table's read: the columns it must have, those it may have, and the order of its rows."""

    table: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    order_by: tuple[str, ...] = ()

    def sql(self, present: frozenset[str]) -> str:
        missing = [c for c in self.required if c not in present]
        if missing:
            raise MissingColumns(f"table {self.table} has no column {', '.join(missing)}")
        columns = [*self.required, *(c for c in self.optional if c in present)]
        order = [c for c in self.order_by if c in present]
        select = ", ".join(_TEXT_COLUMNS.get(c, c) for c in columns)
        return f"SELECT {select} FROM {self.table}" + (f" ORDER BY {', '.join(order)}" if order else "")


_TEXT_COLUMNS = {c: f"{c}::text AS {c}" for c in ("task_id", "replay_of")}

TASKS = TableRead(
    "tasks",
    required=(
        "task_id", "type", "status", "progress", "retry_count", "max_retries", "version", "attempt",
        "priority", "result", "error", "idempotency_key", "replay_of", "created_at", "updated_at",
    ),
    optional=("payload",),
)
EVENTS = TableRead(
    "task_events",
    required=(
        "event_id", "task_id", "kind", "from_status", "status", "progress", "attempt", "version",
        "created_at",
    ),
    optional=("state", "worker_id", "message"),
    order_by=("event_id",),
)
RESULTS = TableRead(
    "task_results", required=("task_id", "created_at"), optional=("result_id", "worker_id"),
    order_by=("created_at", "result_id"),
)
OUTBOX = TableRead(
    "outbox", required=("sent_at",), optional=("outbox_id", "task_id"), order_by=("outbox_id",)
)

_COLUMNS_SQL = """SELECT t.name, a.attname::text FROM unnest($1::text[]) AS t(name)
    JOIN pg_attribute a ON a.attrelid = to_regclass(t.name)
    WHERE a.attnum > 0 AND NOT a.attisdropped"""


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


async def _columns(conn: asyncpg.Connection[Any], tables: list[str]) -> Mapping[str, frozenset[str]]:
    """The columns each table has, as the queries below resolve it (the search path)."""
    found: dict[str, set[str]] = {t: set() for t in tables}
    for table, column in await conn.fetch(_COLUMNS_SQL, tables):
        found[table].add(column)
    return {t: frozenset(c) for t, c in found.items()}


@dataclass(frozen=True)
class PostgresState:
    tasks: tuple[TaskRow, ...]
    events: tuple[EventRow, ...]
    results: tuple[ResultRow, ...]
    outbox: tuple[OutboxRow, ...]


async def read_postgres(dsn: str) -> PostgresState:
    """Reads the four tables in one REPEATABLE READ transaction, so they agree with each other."""
    reads = (TASKS, EVENTS, RESULTS, OUTBOX)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await _set_json_codecs(conn)
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            columns = await _columns(conn, [r.table for r in reads])
            tasks, events, results, outbox = [
                _rows(await conn.fetch(r.sql(columns[r.table]))) for r in reads
            ]
    finally:
        await conn.close()
    return PostgresState(
        tuple(TaskRow(**r) for r in tasks),
        tuple(EventRow(**r) for r in events),
        tuple(ResultRow(**r) for r in results),
        tuple(OutboxRow(**r) for r in outbox),
    )
