"""The outbox relay: publishes rows written in the same transaction as their task, then marks them sent.

Rows are claimed with `FOR UPDATE SKIP LOCKED`, so several relays share the work without double
publishing in the normal case; a crash between the broker's confirm and the commit publishes a row
again, which the workers' inbox absorbs (at-least-once, deduplicated by message id).

Each batch is three round trips to PostgreSQL (BEGIN, the claim, and the update marking what the
broker confirmed together with COMMIT); its messages go out in one socket write on aiormq's
channel, each body as PostgreSQL's own JSON text, and one wait covers all their confirms. After a
NOTIFY wakes it the relay lingers `RELAY_LINGER_MS` so a trickle of rows fills one batch instead of
many; a full batch means more are waiting, and the next one is claimed at once.

Between batches the relay also runs the reconciler (`service.reconciler`) every
`RECONCILE_INTERVAL_MS`, so wherever a relay runs (`ast-relay`, or inside `ast-api`), stuck tasks
are re-driven through this same outbox; and retention (`service.retention`), one small batch of
old terminal tasks at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
from typing import Any, cast

import aiormq
import asyncpg
import pamqp.frame
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.abc import ChannelFrame
from asyncpg.pool import PoolConnectionProxy
from pamqp.base import Frame
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from service.broker.connection import connect
from service.broker.topology import EVENTS_EXCHANGE, declare_topology
from service.config import Settings
from service.db.pool import create_pool
from service.driver_errors import TRANSIENT_ERRORS
from service.reconciler import Reconciler
from service.retention import Retention

log = logging.getLogger("ast.relay")

# The body as jsonb's text (no decode and re-encode here); headers only when there are some.
_CLAIM = """SELECT outbox_id, message_id::text, exchange, routing_key, body::text,
                   NULLIF(headers, '{}'::jsonb) AS headers, priority, task_id::text
            FROM outbox WHERE sent_at IS NULL ORDER BY outbox_id LIMIT $1 FOR UPDATE SKIP LOCKED"""
# One simple-protocol round trip: mark the confirmed rows and commit. The ids are the claim's own
# bigints, written into the text as integers.
_MARK_SENT_AND_COMMIT = (
    "UPDATE outbox SET sent_at = clock_timestamp(), attempts = attempts + 1"
    " WHERE outbox_id = ANY('{{{ids}}}'::bigint[]); COMMIT"
)
_MARK_FAILED = "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE outbox_id = $1"
_MAX_BACKOFF_S = 2.0
_PUBLISH_TIMEOUT_S = 10
_JSON = "application/json"
_PERSISTENT = 2


class OutboxRelay:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stopping = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._pool: asyncpg.Pool[Any] | None = None
        self._listener: asyncpg.Connection[Any] | None = None
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._conn: PoolConnectionProxy[Any] | None = None
        self.published = 0
        self.batches = 0
        self.reconciler = Reconciler(settings, self._ready_messages)
        self._next_reconcile = 0.0
        self.retention = Retention(settings)

    async def run(self) -> None:
        """Publishes until stop(); every failure is logged and retried with a bounded backoff."""
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                await self._connect()
                # A NOTIFY from now on may be for a row this claim does not see: it wakes the wait below.
                self._wakeup.clear()
                sent = await self.publish_batch()
                await self._reconcile_if_due()
                await self._retain_if_due()
                backoff = 0.1
                if sent < self._settings.relay_batch_size:
                    await self._wait_for_work()
            except Exception as error:  # noqa: BLE001 - the relay must outlive every failure
                if isinstance(error, TRANSIENT_ERRORS):
                    log.warning("relay cannot publish, retrying: %s", error, extra={"step": "relay"})
                else:
                    log.exception("relay failed unexpectedly, reconnecting", extra={"step": "relay"})
                await self._reset()
                await self._sleep(backoff)
                backoff = min(_MAX_BACKOFF_S, backoff * 2)
        await self._reset()

    async def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()

    async def publish_batch(self) -> int:
        """Claims a batch, publishes it with confirms, marks what the broker confirmed as sent.

        A row the broker refused stays unsent with its error recorded and is tried again next round;
        it never holds back the rest of the batch.
        """
        assert self._channel is not None
        conn = await self._connection_for_batches()
        await conn.execute("BEGIN")
        try:
            rows = await conn.fetch(_CLAIM, self._settings.relay_batch_size)
            if not rows:
                await conn.execute("COMMIT")
                return 0
            channel = cast(aiormq.Channel, await self._channel.get_underlay_channel())
            outcomes = await _publish_all(channel, rows)
            sent = [row[0] for row, outcome in zip(rows, outcomes, strict=True) if outcome is None]
            for row, outcome in zip(rows, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    await conn.execute(_MARK_FAILED, row[0], f"{type(outcome).__name__}: {outcome}"[:500])
            if sent:
                await conn.execute(_MARK_SENT_AND_COMMIT.format(ids=",".join(map(str, sent))))
            else:
                await conn.execute("COMMIT")
        finally:
            if conn.is_in_transaction() and not conn.is_closed():
                # Nothing is marked: every row claimed here stays unsent (published again later,
                # which the workers' inbox absorbs). The connection is dropped if this fails too.
                try:
                    await conn.execute("ROLLBACK")
                except Exception:  # noqa: BLE001 - the error that got here is the one to report
                    conn.terminate()
        self.batches += 1
        self.published += len(sent)
        if len(sent) < len(rows):
            failure = next(o for o in outcomes if isinstance(o, BaseException))
            raise ConnectionError(f"{len(rows) - len(sent)} of {len(rows)} messages not confirmed: {failure}")
        return len(sent)

    async def _reconcile_if_due(self) -> None:
        """A round when its interval is up; the next is scheduled first, so a failing round never
        holds back publishing (the failure takes the relay's own retry path)."""
        assert self._pool is not None
        now = asyncio.get_running_loop().time()
        if now < self._next_reconcile:
            return
        self._next_reconcile = now + self._settings.reconcile_interval_ms / 1000
        await self.reconciler.run_once(self._pool)

    async def _retain_if_due(self) -> None:
        """At most one small retention batch per round, so publishing never waits behind it."""
        assert self._pool is not None
        now = asyncio.get_running_loop().time()
        if self.retention.due(now):
            await self.retention.run_batch(self._pool, now)

    async def _ready_messages(self, queue: str) -> int:
        assert self._channel is not None
        declared = await self._channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)

    async def _connection_for_batches(self) -> PoolConnectionProxy[Any]:
        """One pooled connection kept for the batches (no acquire and release per batch); any
        failure resets the relay, which drops the pool and this connection with it."""
        assert self._pool is not None
        if self._conn is None:
            self._conn = await self._pool.acquire()
        return self._conn

    async def _connect(self) -> None:
        if self._pool is None:
            self._pool = await create_pool(self._settings.postgres_url, min_size=1, max_size=4)
        if self._listener is None or self._listener.is_closed():
            self._listener = await asyncpg.connect(self._settings.postgres_url)
            await self._listener.add_listener("ast_outbox", self._on_notify)
        if self._channel is None or self._channel.is_closed:
            self._connection = await connect(self._settings)
            self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            await declare_topology(
                self._channel,
                delivery_limit=self._settings.rabbit_delivery_limit,
                max_retries=self._settings.max_retries,
                retry_base_ms=self._settings.retry_base_ms,
            )
            log.info("relay connected", extra={"step": "relay"})

    def _on_notify(self, *_: object) -> None:
        self._wakeup.set()

    async def _wait_for_work(self) -> None:
        """Until a NOTIFY (at once if one came since the last claim began) or the poll interval;
        after a NOTIFY, the linger lets the rows of the next few commits join this batch."""
        if not self._wakeup.is_set():
            try:
                await asyncio.wait_for(self._wakeup.wait(), self._settings.relay_poll_ms / 1000)
            except TimeoutError:
                return
        if self._settings.relay_linger_ms and not self._stopping.is_set():
            await asyncio.sleep(self._settings.relay_linger_ms / 1000)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _reset(self) -> None:
        """Drops every connection so the next round starts clean (a restarted server needs it)."""
        for closer in (self._close_listener, self._close_amqp, self._close_pool):
            try:
                await asyncio.wait_for(closer(), 5)
            except Exception:  # noqa: BLE001 - tearing down a broken connection may fail in any way
                log.debug("ignored error while closing", exc_info=True)

    async def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None and not listener.is_closed():
            await listener.close()

    async def _close_amqp(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and not connection.is_closed:
            await connection.close()

    async def _close_pool(self) -> None:
        pool, self._pool, self._conn = self._pool, None, None
        if pool is not None:
            pool.terminate()


async def _publish_all(channel: aiormq.Channel, rows: list[asyncpg.Record]) -> list[BaseException | None]:
    """Every row's message in one socket write, then one wait for all their confirms: None for a
    row the broker confirmed, else why not (nack, a mandatory message returned, timeout, closed).

    aiormq's `basic_publish` does the same for one message at a time (a write, a timer and a lock
    each); this is its bookkeeping for a whole batch, under the channel's lock: a delivery tag and
    a confirmation future per message, which aiormq's reader resolves on ack, nack or return (the
    channel is opened with `on_return_raises`), or rejects when the channel closes.
    """
    outcomes: list[BaseException | None] = [None] * len(rows)
    waiting: dict[asyncio.Future[Any], int] = {}
    payload = bytearray()
    async with channel.lock:
        first_tag = channel.delivery_tag
        try:
            for index, row in enumerate(rows):
                message_id = row[1]
                try:
                    encoded = _encode(channel, row)
                except Exception as error:  # noqa: BLE001 - this row's fault, the batch goes on
                    outcomes[index] = error
                    continue
                channel.delivery_tag += 1
                tag = channel.delivery_tag
                confirmation = channel.create_future()
                channel.confirmations[tag] = confirmation
                channel.message_id_delivery_tag[message_id] = tag
                confirmation.add_done_callback(partial(_forget, channel, message_id, tag))
                waiting[confirmation] = index
                payload += encoded
            if payload:
                await channel.write_queue.put(ChannelFrame(payload=bytes(payload), should_close=False))
        except BaseException:
            # Nothing reached the writer: give the tags back, as basic_publish does.
            channel.delivery_tag = first_tag
            for confirmation, _ in waiting.items():
                confirmation.cancel()
            for tag in range(first_tag + 1, first_tag + len(waiting) + 1):
                channel.confirmations.pop(tag, None)
            raise
    if waiting:
        await _await_confirms(waiting, outcomes)
    return outcomes


def _encode(channel: aiormq.Channel, row: asyncpg.Record) -> bytes:
    """A row's persistent JSON message as the frames of one publish (job messages mandatory:
    events may have no listener, a job message that no queue takes is an error worth retrying)."""
    _, message_id, exchange, routing_key, body, headers, priority, task_id = row
    if len(routing_key) > 255:
        raise ValueError("routing key too long (max 255 bytes)")
    data = body.encode()
    properties = Basic.Properties(
        content_type=_JSON,
        delivery_mode=_PERSISTENT,
        headers=headers or {},
        priority=priority,
        correlation_id=task_id,
        message_id=message_id,
    )
    frames: list[Frame | ContentHeader | ContentBody] = [
        Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=exchange != EVENTS_EXCHANGE),
        ContentHeader(properties=properties, body_size=len(data)),
        *_body_frames(channel, data),
    ]
    return b"".join(pamqp.frame.marshal(frame, channel.number) for frame in frames)


async def _await_confirms(
    waiting: dict[asyncio.Future[Any], int], outcomes: list[BaseException | None]
) -> None:
    """Each confirmation's outcome into its row's slot; one still pending at the timeout is a TimeoutError."""
    _, pending = await asyncio.wait(waiting, timeout=_PUBLISH_TIMEOUT_S)
    for confirmation in pending:
        confirmation.cancel()
    for confirmation, index in waiting.items():
        if confirmation.cancelled():
            outcomes[index] = TimeoutError(f"no confirm within {_PUBLISH_TIMEOUT_S} s")
        else:
            outcomes[index] = confirmation.exception()


def _body_frames(channel: aiormq.Channel, body: bytes) -> list[ContentBody]:
    size = channel.max_content_size
    return [ContentBody(body[start : start + size]) for start in range(0, len(body), size)]


def _forget(channel: aiormq.Channel, message_id: str, tag: int, _: object) -> None:
    if channel.message_id_delivery_tag.get(message_id) == tag:
        del channel.message_id_delivery_tag[message_id]
