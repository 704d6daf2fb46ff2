"""One proxied TCP connection: two sockets (asyncio protocols) joined by two links, upstream
(client -> server) and downstream (server -> client).

Toxics are looked up per chunk from the proxy's current list, so a toxic added while data flows
acts on live connections; timers (timeout, reset_peer) and limit counters are per link and start
when the toxic reaches the link. With no toxic acting on a link and nothing queued, a chunk is
written straight from the socket callback to the other socket (the clean-link fast path the
overhead benchmark measures); otherwise it goes through the link's queue and writer task.
Backpressure: a side whose write buffer is full pauses reading on the side that feeds it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import socket
import struct
from collections.abc import Callable
from typing import Protocol, cast

from chaos.proxy import toxics as tx
from chaos.proxy.model import Stream, Toxic

QUEUE_CHUNKS = 32


class ToxicSource(Protocol):
    """Where a link reads the toxics currently configured for its direction."""

    def toxics(self, stream: Stream) -> tuple[Toxic, ...]: ...


class Side(asyncio.Protocol):
    """One socket of a proxied connection: feeds the link that reads it, throttles the one that
    writes to it. It reads nothing until its connection starts (no byte arrives before a link)."""

    def __init__(self, on_made: Callable[[Side], None] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.reads_into: Link | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self._pause_reasons: set[str] = set()
        self._on_made = on_made
        self._early: list[bytes | None] = []
        self.on_lost: Callable[[], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.pause_reading("connecting")
        if self._on_made is not None:
            self._on_made(self)

    def data_received(self, data: bytes) -> None:
        if self.reads_into is not None:
            self.reads_into.feed(data)
        else:
            self._early.append(data)

    def eof_received(self) -> bool:
        if self.reads_into is not None:
            self.reads_into.feed_eof()
        else:
            self._early.append(None)
        return True

    def attach(self, link: Link) -> None:
        """Feed `link` from now on, first with anything that arrived before it existed (an event
        loop may read before a paused-at-birth transport notices the pause)."""
        self.reads_into = link
        early, self._early = self._early, []
        for data in early:
            if data is None:
                link.feed_eof()
            else:
                link.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.writable.set()
        if self.on_lost is not None:
            self.on_lost()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def pause_reading(self, reason: str) -> None:
        if not self._pause_reasons and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self._pause_reasons.add(reason)

    def resume_reading(self, reason: str) -> None:
        self._pause_reasons.discard(reason)
        if not self._pause_reasons and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


class Link:
    """One direction of a connection: bytes from `src` to `dst` through the toxics."""

    def __init__(self, conn: Connection, stream: Stream, src: Side, dst: Side) -> None:
        self.stream = stream
        self._conn = conn
        self._src = src
        self._dst = dst
        self._queue: collections.deque[tuple[float, bytes] | None] = collections.deque()
        self._wake = asyncio.Event()
        self._busy = False
        self._last_due = 0.0
        self._next_send = 0.0
        self._rolls: dict[int, bool] = {}
        self._timers: dict[int, asyncio.Task[None]] = {}
        self._sent: dict[int, int] = {}
        self._timeouts: set[str] = set()
        self._awaiting_dst = False

    def active(self) -> list[Toxic]:
        """The toxics acting on this link now: configured for its stream, and its toxicity roll won."""
        configured = self._conn.source.toxics(self.stream)
        return [toxic for toxic in configured if self._applies(toxic)] if configured else []

    def _applies(self, toxic: Toxic) -> bool:
        rolled = self._rolls.get(toxic.revision)
        if rolled is None:
            rolled = toxic.toxicity >= 1.0 or self._conn.rng.random() < toxic.toxicity
            self._rolls[toxic.revision] = rolled
        return rolled

    # -- the reading side (socket callbacks) -------------------------------------------------

    def feed(self, data: bytes) -> None:
        active = self.active()
        reset = tx.first_of(active, "reset_peer")
        if reset is not None:
            # As Toxiproxy's: the first bytes after the toxic arrives start its clock; none pass.
            if reset.revision not in self._timers:
                self._timers[reset.revision] = self._conn.spawn(self._fire(reset))
            return
        if not active and not self._queue and not self._busy:
            self._write(data)
            return
        loop = asyncio.get_running_loop()
        due = max(loop.time() + tx.latency_s(active, self._conn.rng), self._last_due)
        self._last_due = due
        self._enqueue((due, data))

    def feed_eof(self) -> None:
        self._enqueue(None)

    def _enqueue(self, item: tuple[float, bytes] | None) -> None:
        self._queue.append(item)
        if len(self._queue) >= QUEUE_CHUNKS:
            self._src.pause_reading("queue")
        self._wake.set()

    def _write(self, data: bytes | memoryview) -> None:
        transport = self._dst.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)
            if not self._dst.writable.is_set() and not self._awaiting_dst:
                self._awaiting_dst = True
                self._src.pause_reading("dst")
                self._conn.spawn(self._resume_when_writable())

    async def _resume_when_writable(self) -> None:
        await self._dst.writable.wait()
        self._awaiting_dst = False
        self._src.resume_reading("dst")

    # -- toxics with timers -------------------------------------------------------------------

    def refresh(self) -> None:
        """The toxics changed: (re)start timeout timers, enforce a limit already reached, close when a
        timeout toxic went away (its dropped bytes broke the stream; Toxiproxy closes too)."""
        active = self.active()
        timeouts = {toxic.name for toxic in active if toxic.type == "timeout"}
        if self._timeouts - timeouts:
            self._conn.close()
            return
        self._timeouts = timeouts
        revisions = {toxic.revision for toxic in active}
        for revision in [r for r in self._timers if r not in revisions]:
            self._timers.pop(revision).cancel()
        for toxic in active:
            if toxic.type == "timeout" and toxic.revision not in self._timers:
                self._timers[toxic.revision] = self._conn.spawn(self._fire(toxic))
        limit = tx.first_of(active, "limit_data")
        if limit is not None and tx.limit_remaining(limit, self._sent.get(limit.revision, 0)) == 0:
            self._conn.close()

    async def _fire(self, toxic: Toxic) -> None:
        if toxic.type == "timeout" and toxic.attr("timeout") == 0:
            return
        await asyncio.sleep(toxic.attr("timeout") / 1000.0)
        if toxic.type == "timeout":
            self._conn.close()
        else:
            self._conn.reset()

    def cancel_timers(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    # -- the writing side (the link's task) ---------------------------------------------------

    async def write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            item = self._queue.popleft()
            if len(self._queue) < QUEUE_CHUNKS // 2:
                self._src.resume_reading("queue")
            if item is None:
                break
            self._busy = True
            due, data = item
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            if tx.first_of(self.active(), "timeout") is None:
                await self._send(data)
            self._busy = False
        slow_close = tx.first_of(self.active(), "slow_close")
        if slow_close is not None:
            await asyncio.sleep(slow_close.attr("delay") / 1000.0)
        self._conn.close()

    async def _send(self, data: bytes) -> None:
        active = self.active()
        limit = tx.first_of(active, "limit_data")
        if limit is not None:
            data = data[: tx.limit_remaining(limit, self._sent.get(limit.revision, 0))]
        slicer = tx.first_of(active, "slicer")
        rate = tx.bandwidth_bytes_per_s(active)
        view, offset = memoryview(data), 0
        sizes = [len(data)] if slicer is None else self._slices(len(data), slicer)
        for size in sizes:
            await self._write_paced(view[offset : offset + size], rate)
            offset += size
            if slicer is not None and slicer.attr("delay"):
                await asyncio.sleep(slicer.attr("delay") / 1_000_000)
        if limit is not None:
            sent = self._sent[limit.revision] = self._sent.get(limit.revision, 0) + len(data)
            if tx.limit_remaining(limit, sent) == 0:
                self._conn.close()

    def _slices(self, total: int, slicer: Toxic) -> list[int]:
        average, variation = slicer.attr("average_size"), slicer.attr("size_variation")
        return list(tx.slice_sizes(total, average, variation, self._conn.rng))

    async def _write_paced(self, piece: memoryview, rate: float | None) -> None:
        if rate is None:
            self._write_direct(piece)
            await self._dst.writable.wait()
            return
        loop = asyncio.get_running_loop()
        offset = 0
        for size in tx.pace_sizes(len(piece), rate):
            self._next_send = max(self._next_send, loop.time())
            if (wait := self._next_send - loop.time()) > 0:
                await asyncio.sleep(wait)
            self._write_direct(piece[offset : offset + size])
            await self._dst.writable.wait()
            self._next_send += size / rate
            offset += size

    def _write_direct(self, data: memoryview) -> None:
        transport = self._dst.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)


class Connection:
    """A client socket joined to its upstream socket by two links."""

    def __init__(
        self,
        source: ToxicSource,
        client: Side,
        upstream: Side,
        on_closed: Callable[[Connection], None],
        rng: random.Random,
    ) -> None:
        self.source = source
        self.rng = rng
        self._sides = (client, upstream)
        self._on_closed = on_closed
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.links = (Link(self, "upstream", client, upstream), Link(self, "downstream", upstream, client))
        for side in self._sides:
            side.on_lost = self.close

    def spawn(self, work: collections.abc.Coroutine[object, object, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def start(self) -> None:
        for link in self.links:
            self.spawn(link.write_loop())
        self.refresh()
        for side, link in zip(self._sides, self.links, strict=True):
            side.attach(link)
        for side in self._sides:
            side.resume_reading("connecting")

    def refresh(self) -> None:
        for link in self.links:
            if not self._closed:
                link.refresh()

    def close(self) -> None:
        """Close both sockets (buffered bytes are flushed, then FIN) and stop every task; idempotent."""
        if self._closed:
            return
        self._closed = True
        for side in self._sides:
            if side.transport is not None:
                side.transport.close()
        self._stop_tasks()

    def reset(self) -> None:
        """Abort both sockets with SO_LINGER 0, so each peer sees a TCP RST (ECONNRESET)."""
        if self._closed:
            return
        self._closed = True
        for side in self._sides:
            if side.transport is None:
                continue
            sock = side.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            side.transport.abort()
        self._stop_tasks()

    def _stop_tasks(self) -> None:
        current = asyncio.current_task()
        for link in self.links:
            link.cancel_timers()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        self._on_closed(self)
