"""Submitting jobs (closed loop: C submitters back to back; open loop: a fixed offered rate) and
waiting until the database says every one is COMPLETED."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from bench.stats import BenchError, Submit

SubmitOne = Callable[[], Awaitable[str]]
"""Submits one job and returns its id; raises on anything but acceptance."""

POLL_S = 0.2
STALL_S = 60.0


async def closed_loop(jobs: int, concurrency: int, submit_one: SubmitOne) -> list[Submit]:
    """`concurrency` submitters, each sending its next job as soon as the last one was answered."""
    remaining = iter(range(jobs))
    done: list[Submit] = []

    async def submitter() -> None:
        for _ in remaining:  # one iterator shared by every submitter: each index taken once
            start = time.time()
            job_id = await submit_one()
            done.append(Submit(job_id, start, time.time()))

    await asyncio.gather(*(submitter() for _ in range(concurrency)))
    return done


async def open_loop(jobs: int, rate: float, submit_one: SubmitOne) -> list[Submit]:
    """One submit started every 1/rate s whatever the answers (no coordinated omission): the
    latency of each is measured from its scheduled start, so a client that falls behind shows."""
    began_wall, began = time.time(), time.monotonic()
    done: list[Submit] = []

    async def one(index: int) -> None:
        scheduled = began_wall + index / rate
        job_id = await submit_one()
        done.append(Submit(job_id, scheduled, time.time()))

    tasks = []
    for index in range(jobs):
        delay = began + index / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index)))
    await asyncio.gather(*tasks)
    return done


async def wait_completed(dsn: str, table: str, ids: Sequence[str], timeout_s: float) -> dict[str, float]:
    """Poll `table` (tasks, or bench.tasks) until every id is COMPLETED; id -> completed_at (epoch s).

    A job that ends FAILED or CANCELLED, no progress for STALL_S, or `timeout_s` overall is an error.
    """
    connection = await asyncpg.connect(dsn)
    count_sql = (
        "SELECT count(*) FILTER (WHERE status = 'COMPLETED'),"
        " count(*) FILTER (WHERE status IN ('FAILED', 'CANCELLED'))"
        f" FROM {table} WHERE task_id = ANY($1::uuid[])"
    )
    fetch_sql = (
        f"SELECT task_id::text, extract(epoch FROM completed_at)::float8 FROM {table}"
        " WHERE task_id = ANY($1::uuid[]) AND status = 'COMPLETED'"
    )
    try:
        deadline = time.monotonic() + timeout_s
        last, last_change = -1, time.monotonic()
        while True:
            counts = await connection.fetchrow(count_sql, list(ids))
            assert counts is not None
            completed, failed = counts
            if failed:
                raise BenchError(f"{table}: {failed} jobs ended FAILED or CANCELLED")
            if completed == len(ids):
                rows = await connection.fetch(fetch_sql, list(ids))
                return {row[0]: float(row[1]) for row in rows}
            now = time.monotonic()
            if completed != last:
                last, last_change = completed, now
            if now - last_change > STALL_S or now > deadline:
                raise BenchError(f"{table}: {completed} of {len(ids)} COMPLETED, no progress; gave up")
            await asyncio.sleep(POLL_S)
    finally:
        await connection.close()
