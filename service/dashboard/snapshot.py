"""One snapshot per refresh interval, shared by every viewer: `Dashboard.current()` returns the cached
snapshot while it is younger than `max_age_s`; otherwise one caller builds the next one (a lock makes
the others wait for it instead of querying too), so a hundred open pages cost one query set a second.

Each built snapshot also feeds a short history (the sparklines and the rates).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from service.api.broker import BrokerLink
from service.broker.topology import DEAD_LETTER_QUEUE, all_queue_names
from service.config import Settings
from service.dashboard import queues, reads
from service.dashboard.model import DeadLetter, QueueRow, Rates, Snapshot
from service.errors import InfrastructureError

log = logging.getLogger("ast.api")

MAX_AGE_S = 1.0
HISTORY = 300  # refreshes kept: five minutes at one a second
SPARK_POINTS = 120
RATE_WINDOW_S = 10.0
FAILURES_SHOWN = 20
ACQUIRE_TIMEOUT_S = 5.0
BROKER_TIMEOUT_S = 3.0  # a broker that does not answer leaves its rows empty, not the page hanging
BROKER_ERRORS = (InfrastructureError, OSError, TimeoutError, RuntimeError)


@dataclass(frozen=True)
class Point:
    """What the history keeps of one snapshot."""

    at: float
    total: int
    completed: int
    failed: int
    depths: dict[str, int]


def rates(points: deque[Point], now: Point) -> Rates:
    """Per-second changes from the oldest point within the window to `now` (never negative: a
    retention sweep or a wipe deletes tasks)."""
    base = next((p for p in points if now.at - p.at <= RATE_WINDOW_S and p is not now), None)
    if base is None or now.at - base.at < 0.5:
        return Rates()
    span = now.at - base.at
    return Rates(max(0.0, (now.total - base.total) / span), max(0.0, (now.completed - base.completed) / span),
                 max(0.0, (now.failed - base.failed) / span))


def sparkline(points: deque[Point], name: str) -> tuple[int, ...]:
    return tuple(p.depths.get(name, 0) for p in list(points)[-SPARK_POINTS:])


@dataclass
class Dashboard:
    """Per API process: the cached snapshot, its history, and the last peek at the DLQ."""

    settings: Settings
    max_age_s: float = MAX_AGE_S
    clock: Callable[[], float] = time.monotonic
    _snapshot: Snapshot | None = None
    _built_at: float = float("-inf")
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _history: deque[Point] = field(default_factory=lambda: deque(maxlen=HISTORY))
    _peek: queues.DlqPeek = field(default_factory=queues.DlqPeek)
    builds: int = 0

    async def current(self, build: Callable[[], Awaitable[Snapshot]]) -> Snapshot:
        if self._snapshot is not None and self.clock() - self._built_at < self.max_age_s:
            return self._snapshot
        async with self._lock:
            if self._snapshot is not None and self.clock() - self._built_at < self.max_age_s:
                return self._snapshot  # built by whoever held the lock before us
            snapshot = await build()
            self._snapshot, self._built_at = snapshot, self.clock()
            self.builds += 1
            return snapshot

    async def build(self, pool: asyncpg.Pool[Any], broker: BrokerLink) -> Snapshot:
        """The SQL reads on one connection while the broker is asked, side by side."""
        started = time.perf_counter()
        problems: list[str] = []
        async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as raw:
            conn = reads.CountingConnection(raw)
            broker_side = asyncio.create_task(self._broker_side(broker, problems))
            try:
                counts = await reads.task_counts(conn)
                failures = await reads.failures(conn, FAILURES_SHOWN)
                workers = await reads.workers(conn, timedelta(milliseconds=self.settings.worker_lease_ms))
            except BaseException:
                broker_side.cancel()
                with contextlib.suppress(BaseException):
                    await broker_side
                raise
            queue_rows, dlq_depth = await broker_side
            named = [d.task_id for d in self._peek.letters if d.task_id is not None]
            found = await reads.statuses(conn, named)
        letters = [_with_status(letter, found) for letter in self._peek.letters]
        snapshot = Snapshot(datetime.now(UTC), counts, queue_rows, failures, letters, dlq_depth, workers,
                            queries=conn.queries, problems=problems)
        self._remember(snapshot)
        snapshot.build_ms = (time.perf_counter() - started) * 1000
        return snapshot

    async def _broker_side(
        self, broker: BrokerLink, problems: list[str]
    ) -> tuple[list[QueueRow], int | None]:
        queue_rows = await self._queues(broker, problems)
        dlq_depth = next((q.ready for q in queue_rows if q.name == DEAD_LETTER_QUEUE), None)
        await self._peek_dlq(broker, dlq_depth)
        return queue_rows, dlq_depth

    async def _queues(self, broker: BrokerLink, problems: list[str]) -> list[QueueRow]:
        names = all_queue_names(self.settings.max_retries, self.settings.retry_base_ms)
        try:
            async with asyncio.timeout(BROKER_TIMEOUT_S):
                declared = await queues.declared_counts(broker, names)
        except BROKER_ERRORS as error:
            problems.append(f"RabbitMQ does not answer: {type(error).__name__}")
            declared = {}
        unacked = None
        if self.settings.rabbit_management_url and declared:
            try:
                unacked = await queues.unacked_counts(self.settings.rabbit_management_url,
                                                      self.settings.rabbit_vhost)
            except Exception as error:  # noqa: BLE001 - the page shows the rest and says what failed
                problems.append(f"RabbitMQ management does not answer: {type(error).__name__}")
        return queues.queue_rows(names, declared, unacked)

    async def _peek_dlq(self, broker: BrokerLink, depth: int | None) -> None:
        """Peeks again only when the depth changed (see `service.dashboard.queues`)."""
        if depth is None or not self._peek.stale(depth):
            return
        try:
            async with asyncio.timeout(BROKER_TIMEOUT_S):
                letters = await queues.peek_dlq(broker) if depth else []
        except BROKER_ERRORS:
            return  # the next refresh tries again
        self._peek = queues.DlqPeek(depth, letters)

    def _remember(self, snapshot: Snapshot) -> None:
        counts = snapshot.counts
        point = Point(self.clock(), counts.total, counts.by_status.get("COMPLETED", 0),
                      counts.by_status.get("FAILED", 0),
                      {q.name: q.depth or 0 for q in snapshot.queues})
        self._history.append(point)
        snapshot.rates = rates(self._history, point)
        snapshot.queues = [_with_spark(q, sparkline(self._history, q.name)) for q in snapshot.queues]


def _with_status(letter: DeadLetter, found: dict[Any, asyncpg.Record]) -> DeadLetter:
    row = found.get(letter.task_id)
    if row is None:
        return letter
    return DeadLetter(letter.task_id, letter.type, letter.reason, letter.count, letter.ast_reason,
                      row["status"], row["replayed_by"] is not None)


def _with_spark(queue: QueueRow, spark: tuple[int, ...]) -> QueueRow:
    return QueueRow(queue.name, queue.kind, queue.ready, queue.unacked, queue.consumers, spark)

