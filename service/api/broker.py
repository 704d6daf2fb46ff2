"""The API's one robust AMQP connection, used by /ready, /queues and the DLQ replay.

The API must serve `POST /tasks` (which only needs PostgreSQL) even while RabbitMQ is down, so the
connection is made in the background and retried; callers get `InfrastructureError` until it is up.
After the first connect, aio-pika's robust connection reconnects by itself, but only to the node
it first reached; when channels have failed for `_FAILOVER_AFTER_S`, the link drops that
connection and connects again from the top of `RABBIT_URL`, so the API outlives the loss of its
node for good (a cluster's other nodes answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from service.broker.connection import connect_robust
from service.broker.topology import declare_topology
from service.config import Settings
from service.errors import InfrastructureError

log = logging.getLogger("ast.api")

_CHANNEL_TIMEOUT_S = 5.0
# While the robust connection reconnects, aiormq raises RuntimeError("... closed") on a new channel.
_BROKEN_CONNECTION = (RuntimeError, ConnectionError, aiormq.exceptions.AMQPError,
                      aio_pika.exceptions.AMQPException)
_MAX_BACKOFF_S = 5.0
_FAILOVER_AFTER_S = 3.0


class BrokerLink:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._connection: AbstractRobustConnection | None = None
        self._connector: asyncio.Task[None] | None = None
        self._broken_since: float | None = None
        self._closing: set[asyncio.Task[None]] = set()

    async def start(self, *, wait_s: float) -> None:
        """Connects in the background; waits up to `wait_s` so a healthy start is ready at once."""
        self._connector = asyncio.create_task(self._connect_forever(), name="api-amqp-connect")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._connector), wait_s)

    async def close(self) -> None:
        if self._connector is not None and not self._connector.done():
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connection.close(), _CHANNEL_TIMEOUT_S)

    @contextlib.asynccontextmanager
    async def channel(self) -> AsyncIterator[AbstractChannel]:
        """A fresh channel, closed on exit: unacked messages on it go back to their queue."""
        connection = self._connection
        if connection is None or connection.is_closed:
            self._note_broken()
            raise InfrastructureError("RabbitMQ is not connected")
        try:
            channel = await asyncio.wait_for(connection.channel(), _CHANNEL_TIMEOUT_S)
        except (*_BROKEN_CONNECTION, TimeoutError) as error:
            self._note_broken()
            raise InfrastructureError(f"RabbitMQ did not open a channel: {type(error).__name__}") from error
        self._broken_since = None
        try:
            yield channel
        except _BROKEN_CONNECTION as error:
            raise InfrastructureError(f"RabbitMQ channel failed: {type(error).__name__}") from error
        finally:
            if not channel.is_closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(channel.close(), _CHANNEL_TIMEOUT_S)

    def _note_broken(self) -> None:
        """Starts over from the first node that answers once channels have failed long enough."""
        now = asyncio.get_running_loop().time()
        if self._broken_since is None:
            self._broken_since = now
        reconnecting = self._connector is not None and not self._connector.done()
        if reconnecting or now - self._broken_since < _FAILOVER_AFTER_S:
            return
        stale, self._connection, self._broken_since = self._connection, None, None
        log.warning("RabbitMQ unreachable for %.0fs: connecting again", _FAILOVER_AFTER_S,
                    extra={"step": "amqp"})
        if stale is not None:
            closing = asyncio.create_task(_close_quietly(stale))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        self._connector = asyncio.create_task(self._connect_forever(), name="api-amqp-reconnect")

    async def ping(self) -> None:
        """Opens and closes a channel: the broker answered."""
        async with self.channel():
            pass

    async def _connect_forever(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._connect_once()
                return
            except Exception as error:  # noqa: BLE001 - any failure to connect is retried
                log.warning("API cannot reach RabbitMQ yet: %s", type(error).__name__, extra={"step": "amqp"})
                await asyncio.sleep(backoff)
                backoff = min(_MAX_BACKOFF_S, backoff * 2)

    async def _connect_once(self) -> None:
        connection = await connect_robust(self._settings)
        try:
            channel = await connection.channel()
            await declare_topology(
                channel,
                delivery_limit=self._settings.rabbit_delivery_limit,
                max_retries=self._settings.max_retries,
                retry_base_ms=self._settings.retry_base_ms,
            )
            await channel.close()
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        log.info("API connected to RabbitMQ", extra={"step": "amqp"})


async def _close_quietly(connection: AbstractRobustConnection) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(connection.close(), _CHANNEL_TIMEOUT_S)
