"""Several relays share one outbox without publishing a row twice (the normal case)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter

import aio_pika
import asyncpg
import pytest

from harness.stack.base import StackEndpoints, StackProvider
from harness.stack.local import LocalStack
from service.config import Settings
from service.outbox.relay import OutboxRelay

pytestmark = pytest.mark.integration
ROWS = 300


async def _fill_outbox(dsn: str, routing_key: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    ids = {str(uuid.uuid4()) for _ in range(ROWS)}
    try:
        await conn.executemany(
            "INSERT INTO outbox (message_id, exchange, routing_key, body)"
            " VALUES ($1::uuid, 'ast.events.x', $2, $3)",
            [(message_id, routing_key, json.dumps({"n": message_id})) for message_id in ids],
        )
    finally:
        await conn.close()
    return ids


async def _run_relays(endpoints: StackEndpoints, count: int) -> Counter[str]:
    routing_key = f"relay.test.{uuid.uuid4().hex[:6]}"
    connection = await aio_pika.connect(endpoints.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind("ast.events.x", routing_key=routing_key)
        expected = await _fill_outbox(endpoints.postgres_dsn, routing_key)
        settings = Settings(
            postgres_url=endpoints.postgres_dsn,
            rabbit_url=endpoints.amqp_url,
            relay_batch_size=20,
            max_retries=3,
            retry_base_ms=200,
        )
        relays = [OutboxRelay(settings) for _ in range(count)]
        runs = [asyncio.ensure_future(relay.run()) for relay in relays]
        seen: Counter[str] = Counter()
        async with queue.iterator() as messages:
            async for message in messages:
                await message.ack()
                seen[str(message.message_id)] += 1
                if set(seen) >= expected:
                    break
        for relay in relays:
            await relay.stop()
        await asyncio.gather(*runs)
        # Stopped relays publish nothing more, and every publish they made was confirmed, so a
        # double publish, if there was one, is in the queue now.
        while (message := await queue.get(fail=False)) is not None:
            await message.ack()
            seen[str(message.message_id)] += 1
        assert sum(relay.published for relay in relays) == ROWS
        assert all(relay.published > 0 for relay in relays), "both relays took a share of the work"
        assert set(seen) == expected
        return seen


def test_two_relays_publish_every_row_exactly_once(clean_state: StackEndpoints, stack: StackProvider) -> None:
    if not isinstance(stack, LocalStack):
        pytest.skip("needs the embedded stack's relay process to stand aside")
    assert stack.relay is not None
    stack.relay.process.stop()
    try:
        seen = asyncio.run(_run_relays(clean_state, count=2))
    finally:
        stack.restart_relay()

    assert max(seen.values()) == 1, [k for k, v in seen.items() if v > 1][:5]
