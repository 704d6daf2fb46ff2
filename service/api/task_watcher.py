"""One poll of PostgreSQL for every open task stream of this API process, fanned out to the streams.

A stream used to poll its own task every 200 ms, so N open streams cost 5N transactions a second
for as long as clients kept them open. Here one `TaskWatcher` per process asks, once per tick, which
of the watched tasks changed (one query for all of them, returning only the changed rows) and hands
each change to the streams watching that task. The poll runs only while some stream is open.

Polling rather than LISTEN/NOTIFY because workers write task changes without a NOTIFY (only the
outbox notifies), and a poll survives a database restart: a failed tick is retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from service.api import queries
from service.api.deps import ACQUIRE_TIMEOUT_S
from service.api.errors import UNAVAILABLE_ERRORS

log = logging.getLogger("ast.api")

POLL_INTERVAL_S = 0.2
_MAX_BACKOFF_S = 5.0


class Subscription:
    """What one stream reads: the newest row of its task, or None once the task is gone.

    Only the newest row is kept: a stream that falls behind skips intermediate versions (as the
    per-stream poll did) instead of queueing them without bound.
    """

    def __init__(self) -> None:
        self._latest: asyncpg.Record | None = None
        self._gone = False
        self._ready = asyncio.Event()

    def offer(self, row: asyncpg.Record) -> None:
        self._latest = row
        self._ready.set()

    def vanish(self) -> None:
        self._gone = True
        self._ready.set()

    async def next(self) -> asyncpg.Record | None:
        """Waits for a newer row than the last one read; None if the task no longer exists."""
        await self._ready.wait()
        self._ready.clear()
        return None if self._gone else self._latest


class _Watch:
    """One watched task: the newest row seen and the streams that follow it."""

    def __init__(self, row: asyncpg.Record) -> None:
        self.row = row
        self.subscribers: set[Subscription] = set()

    def join(self, row: asyncpg.Record, subscription: Subscription) -> None:
        """A stream that read an older row is brought up to date; a newer row updates everyone."""
        if row["version"] > self.row["version"]:
            self.publish(row)
        elif row["version"] < self.row["version"]:
            subscription.offer(self.row)
        self.subscribers.add(subscription)

    def publish(self, row: asyncpg.Record) -> None:
        self.row = row
        for subscription in self.subscribers:
            subscription.offer(row)


class TaskWatcher:
    """The shared poll: `watch(row)` follows one task; `polls` counts the queries made."""

    def __init__(self, pool: asyncpg.Pool[Any], interval_s: float = POLL_INTERVAL_S) -> None:
        self._pool = pool
        self._interval_s = interval_s
        self._watches: dict[uuid.UUID, _Watch] = {}
        self._emptied = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self.polls = 0

    @property
    def watched(self) -> int:
        return len(self._watches)

    @contextlib.asynccontextmanager
    async def watch(self, row: asyncpg.Record) -> AsyncIterator[Subscription]:
        """Follows the task of `row` (as the stream last read it) until the block ends."""
        subscription = Subscription()
        task_id: uuid.UUID = row["task_id"]
        watch = self._watches.setdefault(task_id, _Watch(row))
        watch.join(row, subscription)
        self._emptied.clear()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="task-watcher")
        try:
            yield subscription
        finally:
            self._leave(task_id, subscription)

    def _leave(self, task_id: uuid.UUID, subscription: Subscription) -> None:
        watch = self._watches.get(task_id)
        if watch is None:
            return
        watch.subscribers.discard(subscription)
        if not watch.subscribers:
            del self._watches[task_id]
        if not self._watches:
            self._emptied.set()

    async def _run(self) -> None:
        """Ticks while any task is watched; wakes at once when the last stream leaves."""
        delay = self._interval_s
        while self._watches:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._emptied.wait(), delay)
            if not self._watches:
                return
            delay = await self._tick(delay)

    async def _tick(self, delay: float) -> float:
        """One query for every watched task; returns the delay before the next tick."""
        watched = {task_id: watch.row["version"] for task_id, watch in self._watches.items()}
        self.polls += 1
        try:
            async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                changed = await queries.changed_tasks(conn, watched)
        except UNAVAILABLE_ERRORS as error:
            log.warning("stream poll failed: %s", type(error).__name__, extra={"step": "stream"})
            return min(_MAX_BACKOFF_S, delay * 2)
        except Exception:
            # A bug here must not silence every open stream: log it, back off, poll again.
            log.exception("stream poll failed unexpectedly", extra={"step": "stream"})
            return _MAX_BACKOFF_S
        for task_id, row in changed:
            self._fan_out(task_id, row)
        return self._interval_s

    def _fan_out(self, task_id: uuid.UUID, row: asyncpg.Record | None) -> None:
        watch = self._watches.get(task_id)
        if watch is None:
            return
        if row is None:
            del self._watches[task_id]
            for subscription in watch.subscribers:
                subscription.vanish()
        elif row["version"] > watch.row["version"]:
            watch.publish(row)
