"""One proxied TCP connection: two links (upstream: client -> server, downstream: back), each a
reader task and a writer task with a bounded queue between them.

Toxics are looked up per chunk from the proxy's current list, so a toxic added while data flows
acts on live connections; timers (timeout, reset_peer) and limit counters are per link and start
when the toxic reaches the link. With no toxic on a link and nothing queued, the reader writes
straight through (the clean-link fast path the overhead benchmark measures).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections.abc import Callable
from typing import Protocol

from chaos.proxy import toxics as tx
from chaos.proxy.model import Stream, Toxic

READ_BYTES = 65536
QUEUE_CHUNKS = 32
TIMED_TYPES = ("timeout", "reset_peer")


class ToxicSource(Protocol):
    """Where a link reads the toxics currently configured for its direction."""

    def toxics(self, stream: Stream) -> tuple[Toxic, ...]: ...


class Link:
    """One direction of a connection: bytes from `reader` to `writer` through the toxics."""

    def __init__(
        self,
        conn: Connection,
        stream: Stream,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.stream = stream
        self._conn = conn
        self._reader = reader
        self._writer = writer
        self._queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(maxsize=QUEUE_CHUNKS)
        self._pending = 0
        self._last_due = 0.0
        self._next_send = 0.0
        self._rolls: dict[int, bool] = {}
        self._timers: dict[int, asyncio.Task[None]] = {}
        self._sent: dict[int, int] = {}
        self._changed = asyncio.Event()

    def active(self) -> list[Toxic]:
        """The toxics acting on this link now: configured for its stream, and its toxicity roll won."""
        return [toxic for toxic in self._conn.source.toxics(self.stream) if self._applies(toxic)]

    def _applies(self, toxic: Toxic) -> bool:
        rolled = self._rolls.get(toxic.revision)
        if rolled is None:
            rolled = toxic.toxicity >= 1.0 or self._conn.rng.random() < toxic.toxicity
            self._rolls[toxic.revision] = rolled
        return rolled

    def refresh(self) -> None:
        """The toxics changed: (re)start timers, enforce a limit already reached, wake the writer."""
        active = self.active()
        timed = {toxic.revision: toxic for toxic in active if toxic.type in TIMED_TYPES}
        for revision in [r for r in self._timers if r not in timed]:
            self._timers.pop(revision).cancel()
        for revision, toxic in timed.items():
            if revision not in self._timers:
                self._timers[revision] = asyncio.create_task(self._fire(toxic))
        limit = tx.first_of(active, "limit_data")
        if limit is not None and tx.limit_remaining(limit, self._sent.get(limit.revision, 0)) == 0:
            self._conn.close()
        self._changed.set()

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

    async def read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ConnectionError, OSError):
            while data := await self._reader.read(READ_BYTES):
                active = self.active()
                if not active and self._pending == 0:
                    self._writer.write(data)
                    await self._writer.drain()
                    continue
                due = max(loop.time() + tx.latency_s(active, self._conn.rng), self._last_due)
                self._last_due = due
                self._pending += 1
                await self._queue.put((due, data))
        await self._queue.put(None)

    async def write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ConnectionError, OSError):
            while (item := await self._queue.get()) is not None:
                due, data = item
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                await self._hold_while_timed_out()
                await self._send(data)
                self._pending -= 1
            slow_close = tx.first_of(self.active(), "slow_close")
            if slow_close is not None:
                await asyncio.sleep(slow_close.attr("delay") / 1000.0)
        self._conn.close()

    async def _hold_while_timed_out(self) -> None:
        """A timeout toxic stops all data of its link until it is removed (or closes the link)."""
        while True:
            self._changed.clear()
            if tx.first_of(self.active(), "timeout") is None:
                return
            await self._changed.wait()

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
            self._writer.write(piece)
            await self._writer.drain()
            return
        loop = asyncio.get_running_loop()
        offset = 0
        for size in tx.pace_sizes(len(piece), rate):
            self._next_send = max(self._next_send, loop.time())
            if (wait := self._next_send - loop.time()) > 0:
                await asyncio.sleep(wait)
            self._writer.write(piece[offset : offset + size])
            await self._writer.drain()
            self._next_send += size / rate
            offset += size


class Connection:
    """A client socket joined to its upstream socket by two links."""

    def __init__(
        self,
        source: ToxicSource,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        on_closed: Callable[[Connection], None],
        rng: random.Random,
    ) -> None:
        self.source = source
        self.rng = rng
        self._writers = (client[1], upstream[1])
        self._on_closed = on_closed
        self._closed = False
        self.links = (
            Link(self, "upstream", client[0], upstream[1]),
            Link(self, "downstream", upstream[0], client[1]),
        )
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for link in self.links:
            self._tasks.append(asyncio.create_task(link.read_loop()))
            self._tasks.append(asyncio.create_task(link.write_loop()))
        self.refresh()

    def refresh(self) -> None:
        for link in self.links:
            if not self._closed:
                link.refresh()

    def close(self) -> None:
        """Close both sockets (FIN) and stop every task of this connection; idempotent."""
        if self._closed:
            return
        self._closed = True
        for writer in self._writers:
            writer.close()
        self._stop_tasks()

    def reset(self) -> None:
        """Abort both sockets with SO_LINGER 0, so each peer sees a TCP RST (ECONNRESET)."""
        if self._closed:
            return
        self._closed = True
        for writer in self._writers:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self._stop_tasks()

    def _stop_tasks(self) -> None:
        current = asyncio.current_task()
        for link in self.links:
            link.cancel_timers()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._on_closed(self)
