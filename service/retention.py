"""Retention: terminal tasks that ended more than `RETENTION_DAYS` ago are deleted, with their
events and results (ON DELETE CASCADE) and their outbox and inbox rows.

One batch is one short statement over at most `RETENTION_BATCH_SIZE` tasks, claimed with
`FOR UPDATE SKIP LOCKED` so it never waits on a row the hot path holds; the relay runs one batch per
round when retention is due, and the next at once only while batches come back full, so publishing
is never held up by more than one small batch. An outbox row not yet sent is kept (the relay still
owes its message); `RETENTION_DAYS=0` keeps everything.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg

from service.config import Settings

_DELETE_BATCH = """
WITH doomed AS (
    SELECT task_id FROM tasks
    WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED')
      AND completed_at < clock_timestamp() - $1::interval
    ORDER BY completed_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), sent_messages AS (
    DELETE FROM outbox WHERE task_id IN (SELECT task_id FROM doomed) AND sent_at IS NOT NULL
), handled_messages AS (
    DELETE FROM inbox WHERE task_id IN (SELECT task_id FROM doomed)
), deleted AS (
    DELETE FROM tasks WHERE task_id IN (SELECT task_id FROM doomed) RETURNING task_id
)
SELECT count(*) FROM deleted"""


class Retention:
    def __init__(self, settings: Settings) -> None:
        self._keep = timedelta(days=settings.retention_days)
        self._batch = settings.retention_batch_size
        self._interval_s = settings.retention_interval_ms / 1000
        self._enabled = settings.retention_days > 0
        self._next_run = 0.0
        self.deleted = 0

    def due(self, now: float) -> bool:
        return self._enabled and now >= self._next_run

    async def run_batch(self, pool: asyncpg.Pool[Any], now: float) -> int:
        """Deletes one batch; the next is due at once when this one was full, else after the interval."""
        self._next_run = now + self._interval_s  # a failing batch waits out the interval too
        async with pool.acquire() as conn:
            count = int(await conn.fetchval(_DELETE_BATCH, self._keep, self._batch))
        if count >= self._batch:
            self._next_run = now
        self.deleted += count
        return count
