"""The snapshot of a deployment, and the wait until nothing is in flight before it is judged."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from harness.observe.postgres import read_postgres
from harness.observe.rabbitmq import read_rabbitmq
from harness.state import Settled, Snapshot, unsettled_reasons


async def take_snapshot(
    postgres_dsn: str,
    management_url: str,
    *,
    vhost: str = "/",
    amqp_url: str | None = None,
    peek_dlq: bool = True,
) -> Snapshot:
    """Reads both stores; a store that fails is recorded as an error, never raised."""
    pg, rabbit = await asyncio.gather(
        read_postgres(postgres_dsn),
        read_rabbitmq(management_url, vhost=vhost, amqp_url=amqp_url, peek_dlq=peek_dlq),
        return_exceptions=True,
    )
    values: dict[str, Any] = {}
    if isinstance(pg, BaseException):
        values["postgres_error"] = f"{type(pg).__name__}: {pg}"
    else:
        values.update(tasks=pg.tasks, events=pg.events, results=pg.results, outbox=pg.outbox)
    if isinstance(rabbit, BaseException):
        values["rabbitmq_error"] = f"{type(rabbit).__name__}: {rabbit}"
        values["dlq_complete"] = False
    else:
        values.update(
            queues=rabbit.queues, dlq_messages=rabbit.dlq_messages, dlq_complete=rabbit.dlq_complete
        )
    return Snapshot(**values)


async def wait_until_settled(
    postgres_dsn: str,
    management_url: str,
    *,
    timeout_s: float = 60.0,
    poll_s: float = 0.5,
    vhost: str = "/",
    amqp_url: str | None = None,
    still_running: frozenset[str] = frozenset(),
) -> Settled:
    """Polls until nothing is in flight, or the deadline; then takes the full snapshot (with the DLQ).

    WAITING_FOR_EVENT and terminal tasks count as settled; whether a waiting task was *meant* to
    wait is the checker's question (invariant 1), not this one's.
    """
    start = time.monotonic()
    while True:
        light = await take_snapshot(
            postgres_dsn, management_url, vhost=vhost, amqp_url=amqp_url, peek_dlq=False
        )
        timed_out = time.monotonic() - start >= timeout_s
        if timed_out or not unsettled_reasons(light, still_running=still_running):
            # The full snapshot must agree too: queue depths it reads may trail the light one.
            final = await take_snapshot(postgres_dsn, management_url, vhost=vhost, amqp_url=amqp_url)
            reasons = unsettled_reasons(final, still_running=still_running)
            if timed_out or not reasons:
                return Settled(final, not reasons, time.monotonic() - start, tuple(reasons))
        await asyncio.sleep(poll_s)
