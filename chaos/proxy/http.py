"""A small HTTP/1.1 server on asyncio streams: enough for a JSON API driven by HTTP clients.

Keep-alive, Content-Length and chunked request bodies; one handler coroutine answers every
request. It lives in the proxy's own event loop, so API calls and proxied bytes share no locks,
and it installs no signal handlers (the caller decides how the process stops).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

MAX_HEADERS = 100
MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]


class BadHttpRequest(Exception):
    """The bytes on the wire are not an HTTP/1.x request this server reads."""


async def _read_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS):
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            return headers
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise BadHttpRequest("malformed header line")
        headers[name.strip().lower()] = value.strip()
    raise BadHttpRequest("too many headers")


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = (await reader.readline()).split(b";")[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError as exc:
            raise BadHttpRequest("bad chunk size") from exc
        if size == 0:
            await _read_headers(reader)
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readline()
        if len(body) > MAX_BODY_BYTES:
            raise BadHttpRequest("body too large")


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader)
    length = headers.get("content-length", "0")
    if not length.isdigit() or int(length) > MAX_BODY_BYTES:
        raise BadHttpRequest("bad Content-Length")
    return await reader.readexactly(int(length))


async def read_request(reader: asyncio.StreamReader) -> tuple[Request, bool] | None:
    """The next request on a connection and whether the client wants it kept open; None at EOF."""
    line = await reader.readline()
    if not line.strip():
        return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadHttpRequest("malformed request line")
    method, target, version = parts
    headers = await _read_headers(reader)
    body = await _read_body(reader, headers)
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
    return Request(method.upper(), target.split("?", 1)[0], headers, body), keep_alive


def encode_response(response: Response, keep_alive: bool) -> bytes:
    reason = HTTPStatus(response.status).phrase
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    if response.status != 204:
        lines.append(f"Content-Type: {response.content_type}")
        lines.append(f"Content-Length: {len(response.body)}")
    lines += [f"{name}: {value}" for name, value in response.headers.items()]
    lines.append("Connection: " + ("keep-alive" if keep_alive else "close"))
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (response.body if response.status != 204 else b"")


async def serve_http(handler: Handler, host: str, port: int) -> asyncio.Server:
    """Start answering on host:port (port 0: any free port); the caller closes the server."""

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, BadHttpRequest):
                while (parsed := await read_request(reader)) is not None:
                    request, keep_alive = parsed
                    writer.write(encode_response(await handler(request), keep_alive))
                    await writer.drain()
                    if not keep_alive:
                        break
        finally:
            writer.close()  # also when the server's shutdown cancels an idle keep-alive client

    return await asyncio.start_server(on_client, host, port, reuse_address=True)
