"""A sampler of queue levels and task counts, every second, for as long as a stack is under test.

It runs in its own thread with its own event loop, so the suite, drill or load run beside it
never waits for it, and a store that does not answer (a drill has just killed it) costs one
sample's `error`, never the run. The samples are the run's time series: queue depths, tasks by
status, and throughput (the growth of terminal tasks between samples).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from harness.observe.rabbitmq import Management, vhost_of
from harness.record.records import QueueLevel, Sample
from harness.stack.base import StackEndpoints

DEFAULT_INTERVAL_S = 1.0
_COUNTS_SQL = "SELECT status, count(*) AS n FROM tasks GROUP BY status"


class Sampler:
    """Calls `sink(sample)` every `interval_s` from `start()` until `stop()`."""

    def __init__(
        self,
        endpoints: StackEndpoints,
        sink: Callable[[Sample], None],
        *,
        suite: str = "",
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self.endpoints = endpoints
        self.sink = sink
        self.suite = suite
        self.interval_s = interval_s
        self.taken = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        db: asyncpg.Connection[Any] | None = None
        async with Management(
            self.endpoints.management_url, vhost=vhost_of(self.endpoints.amqp_url), timeout_s=2.0
        ) as management:
            while not self._stop.is_set():
                started = time.monotonic()
                sample, db = await self._sample(management, db)
                self.sink(sample)
                self.taken += 1
                wait = self.interval_s - (time.monotonic() - started)
                await asyncio.to_thread(self._stop.wait, max(0.0, wait))
        if db is not None:
            with contextlib.suppress(Exception):
                await db.close()

    async def _sample(
        self, management: Management, db: asyncpg.Connection[Any] | None
    ) -> tuple[Sample, asyncpg.Connection[Any] | None]:
        rabbitmq_error = postgres_error = None
        queues: dict[str, QueueLevel] = {}
        tasks: dict[str, int] = {}
        try:
            depths = await management.depths()
            queues = {
                q.name: QueueLevel(ready=q.ready, unacked=q.unacked, consumers=q.consumers) for q in depths
            }
        except Exception as exc:  # noqa: BLE001  (a broker down mid-drill is a sample's error)
            rabbitmq_error = f"{type(exc).__name__}: {exc}"[:300]
        try:
            db = db if db is not None and not db.is_closed() else await self._connect()
            tasks = {row["status"]: int(row["n"]) for row in await db.fetch(_COUNTS_SQL, timeout=2.0)}
        except Exception as exc:  # noqa: BLE001  (a database down mid-drill is a sample's error)
            postgres_error = f"{type(exc).__name__}: {exc}"[:300]
            await _discard(db)
            db = None
        sample = Sample(
            t=time.time(),
            suite=self.suite,
            queues=queues,
            tasks=tasks,
            rabbitmq_error=rabbitmq_error,
            postgres_error=postgres_error,
        )
        return sample, db

    async def _connect(self) -> asyncpg.Connection[Any]:
        return await asyncpg.connect(self.endpoints.postgres_dsn, timeout=2.0)


async def _discard(db: asyncpg.Connection[Any] | None) -> None:
    if db is not None:
        with contextlib.suppress(Exception):
            db.terminate()
