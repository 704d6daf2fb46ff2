"""The SSE feed of one task: polls its version and emits each change until the task is terminal.

Polling (every 200 ms) rather than LISTEN keeps one pooled connection per poll instead of a held
connection per client, and survives a database restart: a failed poll is retried, not fatal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from service.api import queries
from service.api.deps import ACQUIRE_TIMEOUT_S
from service.api.errors import UNAVAILABLE_ERRORS
from service.api.schemas import Task
from service.models import TERMINAL, Status

log = logging.getLogger("ast.api")

POLL_INTERVAL_S = 0.2
_MAX_BACKOFF_S = 5.0


async def task_updates(pool: asyncpg.Pool[Any], first: asyncpg.Record) -> AsyncIterator[dict[str, str]]:
    """Yields sse-starlette event dicts: first the current task, then every version change."""
    yield _event("status", first)
    last = first
    while Status(last["status"]) not in TERMINAL:
        row = await _next_version(pool, last)
        if row is None:
            return
        kind = "status" if row["status"] != last["status"] else "progress"
        yield _event(kind, row)
        last = row


async def _next_version(pool: asyncpg.Pool[Any], last: asyncpg.Record) -> asyncpg.Record | None:
    """Waits until the task's version differs from `last`; None if the task disappeared."""
    backoff = POLL_INTERVAL_S
    while True:
        try:
            async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                row = await queries.fetch_task(conn, last["task_id"])
            backoff = POLL_INTERVAL_S
        except UNAVAILABLE_ERRORS as error:
            log.warning("stream poll failed: %s", type(error).__name__,
                        extra={"taskId": str(last["task_id"]), "step": "stream"})
            backoff = min(_MAX_BACKOFF_S, backoff * 2)
            row = last
        if row is None or row["version"] != last["version"]:
            return row
        await asyncio.sleep(backoff)


def _event(kind: str, row: asyncpg.Record) -> dict[str, str]:
    task = Task.from_row(row)
    return {"event": kind, "id": str(row["version"]), "data": task.model_dump_json(by_alias=True)}
