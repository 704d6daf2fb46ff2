"""The "cost as work grows" part: a million finished tasks and their events loaded in bulk, and
GET /tasks timed on the first page and on a cursor page deep in the list."""

from __future__ import annotations

import contextlib
import time

import asyncpg

from bench.service_row import ServiceClient
from bench.stats import percentile

# Finished `simulate` tasks spread over the 3 hours before now minus `age_days` (older than any
# task the benchmark submits afterwards; with age_days 0 younger than any retention period), 4
# events each: PENDING, IN_PROGRESS, progress 100, COMPLETED. Ids are md5-derived so the events
# can name them.
PRELOAD_TASKS = """
INSERT INTO tasks (task_id, type, status, progress, max_retries, payload, created_at, updated_at,
                   started_at, completed_at, version, input_hash, trace_id, attempt)
SELECT md5('bench-preload-' || i)::uuid, 'simulate', 'COMPLETED', 100, 3,
       '{"durationMs": 0, "steps": 1}'::jsonb, t, t + interval '3 ms', t + interval '1 ms',
       t + interval '3 ms', 4, md5(i::text), md5('trace-' || i), 1
FROM generate_series(1, $1::int) AS i,
     LATERAL (SELECT now() - make_interval(days => $3::int) - interval '3 hours'
                     + i * $2::float8 * interval '1 ms' AS t) AS at
"""

PRELOAD_EVENTS = """
INSERT INTO task_events (task_id, kind, from_status, status, progress, attempt, version, created_at)
SELECT md5('bench-preload-' || i)::uuid, e.kind, e.from_status, e.status, e.progress, 1, e.version,
       now() - make_interval(days => $3::int) - interval '3 hours'
           + i * $2::float8 * interval '1 ms' + e.after_ms * interval '1 ms'
FROM generate_series(1, $1::int) AS i,
     (VALUES ('status', NULL, 'PENDING', 0, 1, 0),
             ('status', 'PENDING', 'IN_PROGRESS', 0, 2, 1),
             ('progress', 'IN_PROGRESS', 'IN_PROGRESS', 100, 3, 2),
             ('status', 'IN_PROGRESS', 'COMPLETED', 100, 4, 3))
         AS e(kind, from_status, status, progress, version, after_ms)
"""

EVENTS_PER_TASK = 4
SPAN_MS = 3 * 3600 * 1000


async def preload(dsn: str, tasks: int, age_days: int = 0) -> float:
    """Insert `tasks` finished tasks and their events (one statement each), then VACUUM ANALYZE
    (the visibility map, so index-only scans work as they would on an old table); seconds."""
    started = time.monotonic()
    step_ms = SPAN_MS / max(tasks, 1) * 0.95
    connection = await asyncpg.connect(dsn, command_timeout=3600)
    try:
        await connection.execute("SET synchronous_commit = off")
        # The events' foreign key is checked row by row (4 per task): skipped for this session where
        # allowed (a superuser, as in the embedded stack); the ids match by construction.
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await connection.execute("SET session_replication_role = replica")
        await connection.execute(PRELOAD_TASKS, tasks, step_ms, age_days)
        await connection.execute(PRELOAD_EVENTS, tasks, step_ms, age_days)
        await connection.execute("VACUUM (ANALYZE) tasks")
        await connection.execute("VACUUM (ANALYZE) task_events")
        # Write the load's dirty pages now, not during the measurement that follows.
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await connection.execute("CHECKPOINT")
    finally:
        await connection.close()
    return time.monotonic() - started


async def deep_cursor(dsn: str, offset: int) -> str | None:
    """The cursor of the page that follows the `offset`-th task in the API's (created_at, task_id)
    order, made with the service's own encoder (`service.api.cursor`): the API pages forward
    only, and walking thousands of pages to reach it would cost more than the measurement.
    """
    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow(
            "SELECT created_at, task_id FROM tasks ORDER BY created_at, task_id OFFSET $1 LIMIT 1",
            max(offset - 1, 0),
        )
    finally:
        await connection.close()
    if row is None:
        return None
    from service.api.cursor import encode_cursor

    return encode_cursor(row["created_at"], row["task_id"])


async def time_list(client: ServiceClient, cursor: str | None, rounds: int) -> dict[str, float]:
    """GET /tasks (limit 50) `rounds` times: p50 and p99 in ms, and the items of the last answer."""
    params: dict[str, str | int] = {"limit": 50}
    if cursor:
        params["cursor"] = cursor
    times, items = [], 0
    for _ in range(3):  # warm: the first answers pay for plans and cold pages
        await client.timed_get("/tasks", params)
    for _ in range(rounds):
        elapsed, body = await client.timed_get("/tasks", params)
        times.append(elapsed)
        items = len(body["items"])
    return {"p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99), "items": float(items)}


OLD_TASKS = "SELECT count(*) FROM tasks WHERE completed_at < now() - make_interval(days => $1::int)"


async def count_older(dsn: str, days: int) -> int:
    """Tasks that ended more than `days` ago: what retention has still to delete."""
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval(OLD_TASKS, days))
    finally:
        await connection.close()
