"""The worker's WORKER_CONCURRENCY job slots, and running a suspect job alone.

A job whose message was delivered before (its last worker died, or lost the broker) may be the
one that kills its worker. Run beside others, it would take them down with it each time, and each
of them would lose a run toward its own delivery limit: with several jobs at once, a healthy job
could be dead-lettered for sharing a worker with a crashing one. So a suspect waits until the jobs
running now have finished, holds every slot while it runs, and new jobs wait for it (they are
only held, not started: a crash returns them unrun, which costs them no run).

A suspect waits at most `patience_s` for the others: a worker must not stop taking work for the
length of someone's 15-minute job. Past that it takes one slot and runs beside them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class JobSlots:
    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        self._suspects = 0
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def one(self) -> AsyncIterator[None]:
        """A slot for an ordinary job; none is given while a suspect waits or runs."""
        async with self._changed:
            await self._changed.wait_for(self._ordinary_may_start)
            self._free -= 1
        try:
            yield
        finally:
            await self._give(1)

    @asynccontextmanager
    async def alone(self, patience_s: float) -> AsyncIterator[bool]:
        """Every slot, once the jobs running now have finished; one slot when that takes longer
        than `patience_s`. Yields True when the job runs alone."""
        async with self._changed:
            taken = await self._take_all(patience_s)
            if not taken:
                await self._changed.wait_for(self._ordinary_may_start)
                taken = 1
            self._free -= taken
        try:
            yield taken == self.size
        finally:
            await self._give(taken)

    def _ordinary_may_start(self) -> bool:
        return self._free > 0 and not self._suspects

    async def _take_all(self, patience_s: float) -> int:
        """With the condition's lock held: `size` once every slot is free, 0 after `patience_s`."""
        self._suspects += 1
        try:
            async with asyncio.timeout(patience_s):
                await self._changed.wait_for(lambda: self._free == self.size)
            return self.size
        except TimeoutError:
            return 0
        finally:
            self._suspects -= 1
            self._changed.notify_all()

    async def _give(self, count: int) -> None:
        async with self._changed:
            self._free += count
            self._changed.notify_all()

    @property
    def running(self) -> int:
        return self.size - self._free
