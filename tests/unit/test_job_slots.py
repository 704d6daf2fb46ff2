"""The worker's job slots: WORKER_CONCURRENCY jobs at once, and a suspect job alone."""

from __future__ import annotations

import asyncio

from service.worker.slots import JobSlots


class Jobs:
    """Jobs that run until released, recording which ran beside which."""

    def __init__(self, slots: JobSlots) -> None:
        self.slots = slots
        self.running: set[str] = set()
        self.seen_beside: dict[str, set[str]] = {}
        self.release: dict[str, asyncio.Event] = {}
        self.alone: dict[str, bool] = {}

    def start(self, name: str, *, suspect: bool = False, patience_s: float = 10.0) -> asyncio.Task[None]:
        self.release[name] = asyncio.Event()
        return asyncio.ensure_future(self._run(name, suspect, patience_s))

    async def _run(self, name: str, suspect: bool, patience_s: float) -> None:
        if suspect:
            async with self.slots.alone(patience_s) as alone:
                self.alone[name] = alone
                await self._work(name)
        else:
            async with self.slots.one():
                await self._work(name)

    async def _work(self, name: str) -> None:
        self.seen_beside[name] = set(self.running)
        for other in self.running:
            self.seen_beside[other].add(name)
        self.running.add(name)
        await self.release[name].wait()
        self.running.discard(name)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_no_more_than_the_slots_run_at_once() -> None:
    jobs = Jobs(JobSlots(2))
    tasks = [jobs.start(name) for name in "abc"]
    await settle()
    assert jobs.running == {"a", "b"}
    jobs.release["a"].set()
    await settle()
    assert jobs.running == {"b", "c"}
    for name in "bc":
        jobs.release[name].set()
    await asyncio.gather(*tasks)


async def test_a_suspect_waits_for_the_running_jobs_and_runs_alone() -> None:
    jobs = Jobs(JobSlots(4))
    first = [jobs.start(name) for name in ("a", "b")]
    await settle()
    suspect = jobs.start("suspect", suspect=True)
    later = jobs.start("later")
    await settle()
    assert jobs.running == {"a", "b"}, "neither the suspect nor a job after it starts beside them"

    for name in ("a", "b"):
        jobs.release[name].set()
    await settle()
    assert jobs.running == {"suspect"}
    assert jobs.alone["suspect"] is True

    jobs.release["suspect"].set()
    await settle()
    assert jobs.running == {"later"}
    jobs.release["later"].set()
    await asyncio.gather(*first, suspect, later)
    assert jobs.seen_beside["suspect"] == set()


async def test_a_suspect_past_its_patience_runs_beside_a_long_job() -> None:
    jobs = Jobs(JobSlots(2))
    long_job = jobs.start("long")
    await settle()
    suspect = jobs.start("suspect", suspect=True, patience_s=0.05)
    await asyncio.sleep(0.1)
    assert jobs.running == {"long", "suspect"}
    assert jobs.alone["suspect"] is False
    after = jobs.start("after")
    await settle()
    assert "after" not in jobs.running, "both slots are taken"
    for name in ("long", "suspect", "after"):
        jobs.release[name].set()
        await settle()
    await asyncio.gather(long_job, suspect, after)


async def test_a_cancelled_waiter_gives_back_nothing_it_did_not_take() -> None:
    slots = JobSlots(1)
    jobs = Jobs(slots)
    running = jobs.start("running")
    await settle()
    waiting = jobs.start("suspect", suspect=True)
    await settle()
    waiting.cancel()
    await settle()
    after = jobs.start("after")
    jobs.release["running"].set()
    await settle()
    assert jobs.running == {"after"}, "the cancelled suspect no longer blocks ordinary jobs"
    jobs.release["after"].set()
    await asyncio.gather(running, after)
    assert slots.running == 0
