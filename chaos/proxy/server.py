"""The Toxiproxy-compatible server: the HTTP API and every proxy in one asyncio loop.

Three ways to run it: `serve()` in a process of its own until SIGINT/SIGTERM (`harness proxy`),
`ToxiproxyServer` inside a running loop, or `ProxyServerThread` beside synchronous code (tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import uvloop

from chaos.proxy.api import ToxiproxyApi
from chaos.proxy.http import serve_http
from chaos.proxy.model import ApiError, parse_new_proxy
from chaos.proxy.proxy import PopulateError, ProxyCollection

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8474


class ToxiproxyServer:
    """The API server and its proxies, started and stopped inside the current event loop."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        self.host = host
        self.port = port
        self.collection = ProxyCollection()
        self._http: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._http = await serve_http(ToxiproxyApi(self.collection), self.host, self.port)
        self.port = self._http.sockets[0].getsockname()[1]

    async def populate_from(self, config: Path) -> None:
        """Create the proxies of a Toxiproxy config file (a JSON array of proxies, like
        toxiproxy-server's `-config`), so a restarted server listens where it did before."""
        try:
            items = json.loads(config.read_text())
            if not isinstance(items, list):
                raise ProxyConfigError(f"{config}: expected a JSON array of proxies")
            await self.collection.populate([parse_new_proxy(item) for item in items])
        except (OSError, ValueError, ApiError, PopulateError) as exc:
            raise ProxyConfigError(f"{config}: {exc}") from exc

    async def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        await self.collection.close()


class ProxyConfigError(Exception):
    """A config file that cannot be read or names a proxy that cannot be created."""


async def serve(host: str, port: int, on_ready: Callable[[str], None], config: Path | None = None) -> None:
    """Run until SIGINT or SIGTERM; `on_ready` gets the API's URL once it answers (and the
    proxies of `config`, when given, listen)."""
    server = ToxiproxyServer(host, port)
    await server.start()
    if config is not None:
        try:
            await server.populate_from(config)
        except ProxyConfigError:
            await server.stop()
            raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    on_ready(server.url)
    try:
        await stop.wait()
    finally:
        await server.stop()


class ProxyServerThread:
    """A `ToxiproxyServer` on a free port (by default) in a daemon thread with its own loop."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = 0) -> None:
        self.server = ToxiproxyServer(host, port)
        self._loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="toxiproxy", daemon=True)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> ProxyServerThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(TimeoutError):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _shutdown(self) -> None:
        """Stop the server, then end what is left (idle keep-alive API connections, as
        asyncio.run does), so no task dies pending with the loop."""
        await self.server.stop()
        current = asyncio.current_task()
        left = [task for task in asyncio.all_tasks() if task is not current]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        await asyncio.sleep(0.05)  # the closed transports' handles finish closing (uvloop refuses
        # to close a loop that still holds one)

    def __enter__(self) -> ProxyServerThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
