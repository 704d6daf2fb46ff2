"""How the relay forms its batches: the linger after a NOTIFY gathers a trickle of commits into one
batch, a full batch is followed at once by the next, and a row the broker refuses stays unsent with
its error while the rest of its batch is marked sent."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aio_pika
import asyncpg
import pytest

from harness.stack.base import StackEndpoints, StackProvider
from harness.stack.local import LocalStack
from service.config import Settings
from service.outbox.relay import OutboxRelay

pytestmark = pytest.mark.integration

_INSERT = """INSERT INTO outbox (message_id, exchange, routing_key, body)
             VALUES ($1::uuid, $2, $3, $4::jsonb)"""
_EVENTS = "ast.events.x"


async def _insert(conn: asyncpg.Connection, exchange: str, routing_key: str, message_id: str = "") -> str:
    message_id = message_id or str(uuid.uuid4())
    await conn.execute(_INSERT, message_id, exchange, routing_key, json.dumps({"id": message_id}))
    return message_id


@pytest.fixture
def own_relay(clean_state: StackEndpoints, stack: StackProvider) -> Iterator[StackEndpoints]:
    """The embedded stack's relay stands aside while the test runs its own."""
    if not isinstance(stack, LocalStack):
        pytest.skip("needs the embedded stack's relay process to stand aside")
    assert stack.relay is not None
    stack.relay.process.stop()
    try:
        yield clean_state
    finally:
        stack.restart_relay()


def _settings(endpoints: StackEndpoints, **knobs: int) -> Settings:
    return Settings(postgres_url=endpoints.postgres_dsn, rabbit_url=endpoints.amqp_url, **knobs)


@asynccontextmanager
async def _running(relay: OutboxRelay) -> AsyncIterator[None]:
    task = asyncio.ensure_future(relay.run())
    try:
        async with asyncio.timeout(30):
            while relay._listener is None or relay._channel is None:  # noqa: SLF001 - wait until idle
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # its first (empty) claim and reconciler round are over
        yield
    finally:
        await relay.stop()
        await asyncio.wait_for(task, 30)


@dataclass
class _Batch:
    """A relay driven by hand, a PostgreSQL connection, and a queue bound to `routing_key`."""

    relay: OutboxRelay
    conn: asyncpg.Connection
    queue: aio_pika.abc.AbstractQueue
    routing_key: str

    async def receive(self, count: int) -> list[aio_pika.abc.AbstractIncomingMessage]:
        received: list[aio_pika.abc.AbstractIncomingMessage] = []
        async with asyncio.timeout(10):
            while len(received) < count:
                message = await self.queue.get(fail=False)
                if message is None:
                    await asyncio.sleep(0.02)
                    continue
                await message.ack()
                received.append(message)
        return received


@asynccontextmanager
async def _by_hand(endpoints: StackEndpoints, name: str) -> AsyncIterator[_Batch]:
    relay = OutboxRelay(_settings(endpoints))
    routing_key = f"relay.{name}.{uuid.uuid4().hex[:6]}"
    connection = await aio_pika.connect(endpoints.amqp_url)
    conn = await asyncpg.connect(endpoints.postgres_dsn)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(_EVENTS, routing_key=routing_key)
        yield _Batch(relay, conn, queue, routing_key)
    finally:
        await relay.stop()
        await relay._reset()  # noqa: SLF001
        await conn.close()
        await connection.close()


async def _trickle(dsn: str, count: int, gap_s: float) -> None:
    """`count` event rows, each its own commit (and NOTIFY), `gap_s` apart."""
    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(count):
            await _insert(conn, _EVENTS, "relay.linger")
            await asyncio.sleep(gap_s)
    finally:
        await conn.close()


async def _published(relay: OutboxRelay, count: int) -> None:
    async with asyncio.timeout(30):
        while relay.published < count:
            await asyncio.sleep(0.005)


def test_the_linger_gathers_a_trickle_of_commits_into_one_batch(own_relay: StackEndpoints) -> None:
    async def scenario() -> None:
        relay = OutboxRelay(_settings(own_relay, relay_linger_ms=500, relay_poll_ms=60_000))
        async with _running(relay):
            await _trickle(own_relay.postgres_dsn, 10, 0.005)  # ten commits, ten NOTIFYs, a few ms apart
            await _published(relay, 10)
        assert relay.batches == 1

    asyncio.run(scenario())


def test_without_linger_a_trickle_takes_several_batches(own_relay: StackEndpoints) -> None:
    async def scenario() -> None:
        relay = OutboxRelay(_settings(own_relay, relay_linger_ms=0, relay_poll_ms=60_000))
        async with _running(relay):
            await _trickle(own_relay.postgres_dsn, 5, 0.1)
            await _published(relay, 5)
        assert relay.batches > 1

    asyncio.run(scenario())


def test_a_full_batch_is_followed_at_once_without_lingering(own_relay: StackEndpoints) -> None:
    async def scenario() -> None:
        settings = _settings(own_relay, relay_linger_ms=1000, relay_batch_size=5, relay_poll_ms=60_000)
        relay = OutboxRelay(settings)
        async with _running(relay):
            conn = await asyncpg.connect(own_relay.postgres_dsn)
            try:
                rows = [(str(uuid.uuid4()), _EVENTS, "relay.full", json.dumps({"n": n})) for n in range(12)]
                started = time.monotonic()
                await conn.executemany(_INSERT, rows)  # executemany: one transaction, one statement each
            finally:
                await conn.close()
            await _published(relay, 12)
            took = time.monotonic() - started
        # One linger after the NOTIFYs, then three batches back to back (5, 5, 2), not a linger each.
        assert relay.batches == 3
        assert took < 1.8, took

    asyncio.run(scenario())


def test_a_refused_row_stays_unsent_with_its_error_and_the_rest_are_sent(own_relay: StackEndpoints) -> None:
    async def scenario() -> None:
        async with _by_hand(own_relay, "refused") as batch:
            conn = batch.conn
            events = [await _insert(conn, _EVENTS, batch.routing_key) for _ in range(3)]
            # A job message no queue takes: mandatory, so the broker returns it.
            refused = await _insert(conn, "ast.jobs.x", "no.such.job.type")

            await batch.relay._connect()  # noqa: SLF001 - one batch, driven by hand
            with pytest.raises(ConnectionError, match="1 of 4 messages not confirmed"):
                await batch.relay.publish_batch()

            rows = {
                str(row["message_id"]): row
                for row in await conn.fetch("SELECT message_id, sent_at, attempts, last_error FROM outbox")
            }
            assert all(rows[m]["sent_at"] is not None and rows[m]["attempts"] == 1 for m in events)
            assert rows[refused]["sent_at"] is None
            assert rows[refused]["attempts"] == 1
            assert "PublishError" in rows[refused]["last_error"]

            received = await batch.receive(3)
            for message in received:
                assert message.content_type == "application/json"
                assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
                assert json.loads(message.body) == {"id": message.message_id}
            assert sorted(str(m.message_id) for m in received) == sorted(events)
            await conn.execute("DELETE FROM outbox WHERE message_id = $1::uuid", refused)

    asyncio.run(scenario())


def test_one_write_per_batch_keeps_every_message_whole(own_relay: StackEndpoints) -> None:
    """A batch goes out in one write: a body larger than a frame is split and arrives whole, and a
    row that cannot be sent at all (a routing key over 255 bytes) fails alone."""

    async def scenario() -> None:
        async with _by_hand(own_relay, "whole") as batch:
            conn, routing_key = batch.conn, batch.routing_key
            big = "x" * 300_000  # more than two frames at the default frame_max (128 KiB)
            bodies = {str(uuid.uuid4()): {"n": n, "big": big if n % 2 else ""} for n in range(6)}
            for message_id, body in bodies.items():
                await conn.execute(_INSERT, message_id, _EVENTS, routing_key, json.dumps(body))
            unsendable = await _insert(conn, _EVENTS, "k" * 300)

            await batch.relay._connect()  # noqa: SLF001 - one batch, driven by hand
            with pytest.raises(ConnectionError, match="1 of 7 messages not confirmed"):
                await batch.relay.publish_batch()
            error = await conn.fetchval(
                "SELECT last_error FROM outbox WHERE message_id = $1::uuid AND sent_at IS NULL", unsendable
            )
            assert "routing key" in error.lower()
            # The channel is still good: the next batch goes through it.
            await conn.execute("DELETE FROM outbox WHERE message_id = $1::uuid", unsendable)
            await _insert(conn, _EVENTS, routing_key, message_id=(last := str(uuid.uuid4())))
            assert await batch.relay.publish_batch() == 1

            received = await batch.receive(len(bodies) + 1)
            assert {str(m.message_id): json.loads(m.body) for m in received} == {**bodies, last: {"id": last}}

    asyncio.run(scenario())
