"""The bare pipeline: aio-pika + asyncpg with nothing else. The submitter inserts the task and
publishes (confirmed, persistent) to a quorum queue; each consumer process (prefetch 10) runs
3 transactions of [update the task + insert an event], then acks. No outbox, inbox or leases.

`python -m bench.bare AMQP_URL DSN PREFETCH` is one consumer process; it prints `ready` once
consuming. The same tables (schema `bench`) serve the Celery row.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid

import aio_pika
import asyncpg

QUEUE = "bench.bare.q"

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS bench;
CREATE TABLE IF NOT EXISTS bench.tasks (
    task_id      uuid PRIMARY KEY,
    type         text        NOT NULL,
    status       text        NOT NULL,
    progress     integer     NOT NULL DEFAULT 0,
    payload      jsonb       NOT NULL,
    version      bigint      NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at   timestamptz,
    completed_at timestamptz
);
CREATE TABLE IF NOT EXISTS bench.task_events (
    event_id    bigserial   PRIMARY KEY,
    task_id     uuid        NOT NULL REFERENCES bench.tasks (task_id) ON DELETE CASCADE,
    from_status text,
    status      text        NOT NULL,
    progress    integer,
    version     bigint      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS bench_task_events_task_idx ON bench.task_events (task_id, event_id);
"""

INSERT_TASK = (
    "INSERT INTO bench.tasks (task_id, type, status, payload) VALUES ($1, 'simulate', 'PENDING', $2::jsonb)"
)
PAYLOAD = json.dumps({"durationMs": 0, "steps": 1})

# The three transactions of one job: (update returning the new version, the event it writes).
STEPS = (
    (
        "UPDATE bench.tasks SET status = 'IN_PROGRESS', started_at = clock_timestamp(),"
        " updated_at = clock_timestamp(), version = version + 1 WHERE task_id = $1 RETURNING version",
        "INSERT INTO bench.task_events (task_id, from_status, status, version)"
        " VALUES ($1, 'PENDING', 'IN_PROGRESS', $2)",
    ),
    (
        "UPDATE bench.tasks SET progress = 100, updated_at = clock_timestamp(), version = version + 1"
        " WHERE task_id = $1 RETURNING version",
        "INSERT INTO bench.task_events (task_id, status, progress, version)"
        " VALUES ($1, 'IN_PROGRESS', 100, $2)",
    ),
    (
        "UPDATE bench.tasks SET status = 'COMPLETED', completed_at = clock_timestamp(),"
        " updated_at = clock_timestamp(), version = version + 1 WHERE task_id = $1 RETURNING version",
        "INSERT INTO bench.task_events (task_id, from_status, status, progress, version)"
        " VALUES ($1, 'IN_PROGRESS', 'COMPLETED', 100, $2)",
    ),
)


async def prepare(dsn: str, amqp_url: str) -> None:
    """Create the bench tables (emptied) and the quorum queue (purged)."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(SCHEMA)
        await connection.execute("TRUNCATE bench.tasks, bench.task_events")
    finally:
        await connection.close()
    amqp = await aio_pika.connect(amqp_url)
    async with amqp:
        channel = await amqp.channel()
        queue = await channel.declare_queue(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        await queue.purge()


class Submitter:
    """Insert the task, then publish it with a publisher confirm; one call is one job."""

    def __init__(self, dsn: str, amqp_url: str, concurrency: int) -> None:
        self.dsn, self.amqp_url, self.concurrency = dsn, amqp_url, concurrency
        self.pool: asyncpg.Pool | None = None
        self.amqp: aio_pika.abc.AbstractConnection | None = None
        self.channel: aio_pika.abc.AbstractChannel | None = None

    async def __aenter__(self) -> Submitter:
        self.pool = await asyncpg.create_pool(self.dsn, min_size=self.concurrency, max_size=self.concurrency)
        self.amqp = await aio_pika.connect(self.amqp_url)
        self.channel = await self.amqp.channel(publisher_confirms=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.amqp is not None:
            await self.amqp.close()
        if self.pool is not None:
            await self.pool.close()

    async def submit(self) -> str:
        assert self.pool is not None
        assert self.channel is not None
        task_id = uuid.uuid4()
        await self.pool.execute(INSERT_TASK, task_id, PAYLOAD)
        message = aio_pika.Message(
            str(task_id).encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=str(task_id)
        )
        await self.channel.default_exchange.publish(message, routing_key=QUEUE)
        return str(task_id)


async def run_job(pool: asyncpg.Pool, task_id: uuid.UUID) -> None:
    for update, event in STEPS:
        async with pool.acquire() as connection, connection.transaction():
            version = await connection.fetchval(update, task_id)
            await connection.execute(event, task_id, version)


async def consume(amqp_url: str, dsn: str, prefetch: int) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=prefetch, max_size=prefetch)
    amqp = await aio_pika.connect(amqp_url)
    channel = await amqp.channel()
    await channel.set_qos(prefetch_count=prefetch)
    queue = await channel.declare_queue(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await run_job(pool, uuid.UUID(message.body.decode()))
        await message.ack()

    await queue.consume(on_message)
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await amqp.close()
    await pool.close()


def main() -> None:
    amqp_url, dsn, prefetch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    asyncio.run(consume(amqp_url, dsn, prefetch))


if __name__ == "__main__":
    main()
