"""The worker process: consumes the job queues and hands each message to the MessageProcessor.

A broker session is a plain connection watched by this class rather than aio-pika's robust
connection, which in some versions comes back from a broker restart with no consumers: here a lost
connection, closed channel or cancelled consumer ends the session, and a new one consumes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Any, cast

import aio_pika
import aiormq
import asyncpg
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractQueue

from service.broker.connection import connect
from service.broker.topology import DEAD_LETTER_EXCHANGE, JOB_QUEUES, declare_topology
from service.config import Settings
from service.db.pool import create_pool
from service.driver_errors import TRANSIENT_ERRORS
from service.worker.health import HealthServer, Heartbeat, WorkerProbe, health_app
from service.worker.lifecycle import TaskLifecycle
from service.worker.processor import MessageProcessor

log = logging.getLogger("ast.worker")
_TRANSIENT = TRANSIENT_ERRORS
_WATCH_INTERVAL_S = 1.0
# How long a stopping worker listens for deliveries still on their way after its cancel.
_LATE_DELIVERY_S = 0.25


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker_id = settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self._stopping = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._last_delivery = 0.0
        self._consuming = False
        self._dlx: AbstractExchange | None = None
        self._processor: MessageProcessor | None = None
        self._pool: asyncpg.Pool[Any] | None = None
        self._connection: aio_pika.abc.AbstractConnection | None = None

    def is_ready(self) -> bool:
        return self._consuming and not self._stopping.is_set()

    def request_stop(self) -> None:
        if not self._stopping.is_set():
            log.info("SIGTERM: stop consuming, finishing in-flight jobs", extra={"step": "shutdown"})
            self._stopping.set()

    async def run(self) -> None:
        heartbeat = Heartbeat()
        beating = asyncio.ensure_future(heartbeat.run())
        where = self.settings.worker_health_host, self.settings.worker_health_port
        server = HealthServer(health_app(self._probe(heartbeat)), *where)
        await asyncio.to_thread(server.start)
        pool = self._pool = await self._open_pool()
        try:
            if pool is not None:
                await self._prepare(pool)
                await self._consume_until_stopped()
        finally:
            await asyncio.to_thread(server.stop)
            beating.cancel()
            if pool is not None:
                pool.terminate()
        log.info("worker stopped", extra={"step": "shutdown", "workerId": self.worker_id})

    def _probe(self, heartbeat: Heartbeat) -> WorkerProbe:
        return WorkerProbe(
            worker_id=self.worker_id,
            queues=tuple(queue.name for queue in JOB_QUEUES.values()),
            concurrency=self.settings.worker_concurrency,
            is_running=self.is_ready,
            rabbitmq_open=lambda: self._connection is not None and not self._connection.is_closed,
            postgres=self._ping_postgres,
            queue_depths=self._queue_depths,
            loop=asyncio.get_running_loop(),
            heartbeat=heartbeat,
            live_after_s=self.settings.worker_live_after_s,
        )

    async def _ping_postgres(self) -> None:
        if self._pool is None:
            raise ConnectionError("no pool yet")
        async with self._pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

    async def _queue_depths(self) -> dict[str, int]:
        """Ready messages of each job queue (passive declares on a channel of their own)."""
        if self._connection is None or self._connection.is_closed:
            raise ConnectionError("no broker connection")
        channel = await self._connection.channel()
        try:
            depths = {}
            for queue in JOB_QUEUES.values():
                declared = await channel.declare_queue(queue.name, passive=True)
                depths[queue.name] = declared.declaration_result.message_count or 0
            return depths
        finally:
            await asyncio.gather(channel.close(), return_exceptions=True)

    async def _open_pool(self) -> asyncpg.Pool[Any] | None:
        backoff = 0.2
        while not self._stopping.is_set():
            try:
                return await create_pool(
                    self.settings.postgres_url, min_size=1, max_size=self.settings.worker_concurrency + 2
                )
            except _TRANSIENT as error:
                log.warning("database not reachable yet: %s", error)
                await self._pause(backoff)
                backoff = min(backoff * 2, 3.0)
        return None

    async def _prepare(self, pool: asyncpg.Pool[Any]) -> None:
        lifecycle = TaskLifecycle(pool, self.worker_id, self.settings.worker_lease_ms)
        released = await lifecycle.release_leases()
        if released:
            log.warning(
                "released %d task(s) this worker id held before it died",
                released,
                extra={"step": "recover", "count": released},
            )
        self._clean_temp_dir()
        self._processor = MessageProcessor(lifecycle, self.settings, self._dead_letter)

    def _clean_temp_dir(self) -> None:
        """Clones left by a crashed run of this worker are removed before new work starts."""
        try:
            from service.worker.jobs.git_clone import cleanup_stale_clones
        except ImportError:
            return
        cleanup_stale_clones(self.settings.temp_dir)

    async def _consume_until_stopped(self) -> None:
        backoff = 0.2
        while not self._stopping.is_set():
            try:
                await self._session()
                backoff = 0.2
            except Exception as error:  # noqa: BLE001 - a worker must outlive every failure
                if isinstance(error, _TRANSIENT):
                    log.warning("broker session ended: %s; reconnecting", error, extra={"step": "consume"})
                else:
                    log.exception(
                        "broker session failed unexpectedly; reconnecting", extra={"step": "consume"}
                    )
                await self._pause(backoff)
                backoff = min(backoff * 2, 3.0)
            finally:
                self._consuming = False
        await self._drain()

    async def _session(self) -> None:
        """WORKER_CONCURRENCY consumers on each job queue, each holding at most RABBIT_PREFETCH
        unacked messages (the broker applies the prefetch per consumer): with the default prefetch
        of 1, one consumer per queue would run one job of a type at a time whatever the concurrency.
        The processor's job slots still cap the jobs running at once, across all queues."""
        connection = self._connection = await connect(self.settings)
        try:
            channel = await connection.channel(publisher_confirms=True)
            await channel.set_qos(prefetch_count=self.settings.rabbit_prefetch)
            await declare_topology(
                channel,
                delivery_limit=self.settings.rabbit_delivery_limit,
                max_retries=self.settings.max_retries,
                retry_base_ms=self.settings.retry_base_ms,
            )
            self._dlx = await channel.get_exchange(DEAD_LETTER_EXCHANGE, ensure=False)
            consumers: list[tuple[AbstractQueue, str]] = []
            for queue in JOB_QUEUES.values():
                declared = await channel.get_queue(queue.name, ensure=False)
                for _ in range(self.settings.worker_concurrency):
                    consumers.append((declared, await declared.consume(self._on_message)))
            self._consuming = True
            log.info("consuming", extra={"step": "consume", "workerId": self.worker_id})
            await self._watch(channel, consumers)
        finally:
            self._consuming = False
            if self._stopping.is_set():
                await self._finish_inflight()
            await asyncio.gather(connection.close(), return_exceptions=True)

    async def _watch(self, channel: AbstractChannel, consumers: list[tuple[AbstractQueue, str]]) -> None:
        """Returns when stopping (consumers cancelled); raises when the channel or a consumer is gone."""
        while not self._stopping.is_set():
            await self._pause(_WATCH_INTERVAL_S)
            if channel.is_closed:
                raise ConnectionError("channel closed")
            underlay = cast(aiormq.Channel, await channel.get_underlay_channel())
            lost = [tag for _, tag in consumers if tag not in underlay.consumers]
            if lost:
                raise ConnectionError(f"the broker cancelled {len(lost)} of {len(consumers)} consumers")
        for queue, tag in consumers:
            await asyncio.gather(queue.cancel(tag), return_exceptions=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._last_delivery = asyncio.get_running_loop().time()
        task = asyncio.ensure_future(self._handle(message))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        """Runs a delivered message, even one that arrived after SIGTERM: it is in flight. Handing
        it straight back (a nack) would count against the queue's delivery limit, and the broker
        redelivers a nacked message to this same consumer until its cancel lands, in a loop that
        can dead-letter a healthy job behind the service's back. The processor's job slots cap
        the jobs running at once, across all queues."""
        assert self._processor is not None
        await self._processor.process(message)

    async def _finish_inflight(self) -> None:
        """Waits SHUTDOWN_GRACE_MS for every delivered message (running, or waiting for a slot),
        including those that reach the client after the consumers' cancel (a quorum queue may
        still have one on its way); what is left at the deadline is handed back."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_grace_ms / 1000
        announced = False
        while (left := deadline - loop.time()) > 0:
            if self._inflight:
                if not announced:
                    count = len(self._inflight)
                    log.info("waiting up to %.1fs for %d job(s)", left, count, extra={"step": "shutdown"})
                    announced = True
                await asyncio.wait(set(self._inflight), timeout=left)
                continue
            quiet = _LATE_DELIVERY_S - (loop.time() - self._last_delivery)
            if quiet <= 0:
                break
            await asyncio.sleep(min(quiet, left))
        pending = set(self._inflight)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _drain(self) -> None:
        await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        """A message that is not a task of ours goes to the DLQ with its reason in a header."""
        assert self._dlx is not None
        headers = dict(message.headers or {})
        headers["x-ast-reason"] = reason[:500]
        copy = aio_pika.Message(
            body=message.body,
            headers=headers,
            message_id=message.message_id,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            await self._dlx.publish(copy, routing_key=message.routing_key or "", timeout=10)
            await message.ack()
        except Exception as error:  # noqa: BLE001 - fall back to the broker's own dead-lettering
            log.warning("could not publish to the DLX (%s); rejecting instead", error)
            await asyncio.gather(message.reject(requeue=False), return_exceptions=True)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
