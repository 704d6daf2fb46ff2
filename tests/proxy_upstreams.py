"""Upstream servers for the proxy's tests and benchmark, on free 127.0.0.1 ports in a thread.

- echo: sends back every byte it reads;
- blob: reads a 9-byte request (8-byte big-endian count, 1 flag byte), sends that many bytes,
  then closes when the flag is 1, else waits for the client to close.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import sys
import threading
import time
from types import TracebackType

BLOB_BYTE = b"x"


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def _blob(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        count, close = struct.unpack(">QB", await reader.readexactly(9))
        chunk = BLOB_BYTE * 65536
        while count > 0:
            writer.write(chunk[: min(count, len(chunk))])
            count -= min(count, len(chunk))
            await writer.drain()
        if not close:
            await reader.read()
    writer.close()


class Upstreams:
    """The echo and blob servers, in their own event loop thread."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="upstreams", daemon=True)
        self._servers: list[asyncio.Server] = []
        self.echo_port = 0
        self.blob_port = 0

    async def _start(self) -> None:
        for handler in (_echo, _blob):
            self._servers.append(await asyncio.start_server(handler, "127.0.0.1", 0))
        self.echo_port, self.blob_port = (s.sockets[0].getsockname()[1] for s in self._servers)

    async def _stop(self) -> None:
        for server in self._servers:
            server.close()

    def __enter__(self) -> Upstreams:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    @property
    def echo(self) -> str:
        return f"127.0.0.1:{self.echo_port}"

    @property
    def blob(self) -> str:
        return f"127.0.0.1:{self.blob_port}"


def connect(port: int, timeout_s: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def round_trip_s(sock: socket.socket, payload: bytes = b"ping") -> float:
    """Seconds for `payload` to come back whole from an echo upstream."""
    started = time.perf_counter()
    sock.sendall(payload)
    received = 0
    while received < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed during a round trip")
        received += len(chunk)
    return time.perf_counter() - started


def request_blob(sock: socket.socket, count: int, close: bool = False) -> None:
    sock.sendall(struct.pack(">QB", count, int(close)))


def read_to_eof(sock: socket.socket) -> bytes:
    """Everything until the peer closes (a reset propagates as ConnectionResetError)."""
    data = bytearray()
    while chunk := sock.recv(65536):
        data += chunk
    return bytes(data)


async def _serve_echo_until_stdin_closes() -> None:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    # `python -m tests.proxy_upstreams`: an echo server in a process of its own (the benchmark's
    # upstream); prints its port, stops when stdin closes.
    asyncio.run(_serve_echo_until_stdin_closes())
