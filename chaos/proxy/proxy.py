"""Named proxies and the collection the HTTP API manages.

A `Proxy` listens while enabled, joins each accepted client to a new connection to its
upstream, and owns the toxic list its connections read. Disabling it stops the listener (new
connections are refused) and closes every live connection, as Toxiproxy does.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import replace
from typing import Any

from chaos.proxy.connection import Connection, Side
from chaos.proxy.model import (
    PROXY_EXISTS,
    PROXY_NOT_FOUND,
    STREAMS,
    TOXIC_EXISTS,
    TOXIC_NOT_FOUND,
    ApiError,
    ProxyConfig,
    Stream,
    Toxic,
    split_host_port,
)

UPSTREAM_CONNECT_TIMEOUT_S = 5.0


class Proxy:
    """One named proxy: listener, toxics and live connections."""

    def __init__(self, config: ProxyConfig, rng: random.Random) -> None:
        self.config = config
        self._rng = rng
        self._toxics: dict[str, Toxic] = {}
        self._by_stream: dict[Stream, tuple[Toxic, ...]] = {stream: () for stream in STREAMS}
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._joining: set[asyncio.Task[None]] = set()

    # -- toxics ---------------------------------------------------------------------------

    def toxics(self, stream: Stream) -> tuple[Toxic, ...]:
        return self._by_stream[stream]

    def toxic_list(self) -> list[Toxic]:
        return [*self._by_stream["upstream"], *self._by_stream["downstream"]]

    def get_toxic(self, name: str) -> Toxic:
        if name not in self._toxics:
            raise TOXIC_NOT_FOUND
        return self._toxics[name]

    def add_toxic(self, toxic: Toxic) -> None:
        if toxic.name in self._toxics:
            raise TOXIC_EXISTS
        self._toxics[toxic.name] = toxic
        self._toxics_changed()

    def replace_toxic(self, toxic: Toxic) -> None:
        self.get_toxic(toxic.name)
        self._toxics[toxic.name] = toxic
        self._toxics_changed()

    def remove_toxic(self, name: str) -> None:
        self.get_toxic(name)
        del self._toxics[name]
        self._toxics_changed()

    def reset_toxics(self) -> None:
        self._toxics.clear()
        self._toxics_changed()

    def _toxics_changed(self) -> None:
        for stream in STREAMS:
            self._by_stream[stream] = tuple(t for t in self._toxics.values() if t.stream == stream)
        for conn in list(self._connections):
            conn.refresh()

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Listen (when enabled); a listen port 0 becomes the port the system chose."""
        if not self.config.enabled or self._server is not None:
            return
        host, port = split_host_port(self.config.listen)
        try:
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(
                lambda: Side(on_made=self._accepted), host, port, reuse_address=True
            )
        except OSError as exc:
            raise ApiError(f"listen {self.config.listen}: {exc.strerror or exc}", 500) from exc
        if port == 0:
            bound_port = self._server.sockets[0].getsockname()[1]
            self.config = replace(self.config, listen=f"{self.config.listen.rpartition(':')[0]}:{bound_port}")

    async def stop(self) -> None:
        """Stop listening and close every live connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        for task in list(self._joining):
            task.cancel()
        for conn in list(self._connections):
            conn.close()

    async def update(self, new: ProxyConfig) -> None:
        """Apply an update: a new listen or upstream restarts it, `enabled` starts or stops it."""
        restart = (new.listen, new.upstream) != (self.config.listen, self.config.upstream)
        if restart or not new.enabled:
            await self.stop()
        self.config = new
        if new.enabled:
            await self.start()

    def _accepted(self, client: Side) -> None:
        task = asyncio.create_task(self._join(client))
        self._joining.add(task)
        task.add_done_callback(self._joining.discard)

    async def _join(self, client: Side) -> None:
        """Connect the accepted client to the upstream; a failed connect closes the client."""
        assert client.transport is not None
        host, port = split_host_port(self.config.upstream)
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await asyncio.wait_for(
                loop.create_connection(Side, host, port), UPSTREAM_CONNECT_TIMEOUT_S
            )
        except (TimeoutError, OSError, asyncio.CancelledError):
            client.transport.close()
            return
        assert upstream.transport is not None
        if self._server is None or client.transport.is_closing():
            client.transport.close()
            upstream.transport.close()
            return
        conn = Connection(self, client, upstream, self._connections.discard, self._rng)
        self._connections.add(conn)
        conn.start()

    def to_json(self) -> dict[str, Any]:
        return self.config.to_json(self.toxic_list())


class ProxyCollection:
    """Every proxy by name; what the HTTP API reads and changes."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._proxies: dict[str, Proxy] = {}
        self._rng = rng or random.Random()
        self._lock = asyncio.Lock()

    def get(self, name: str) -> Proxy:
        if name not in self._proxies:
            raise PROXY_NOT_FOUND
        return self._proxies[name]

    def all(self) -> list[Proxy]:
        return list(self._proxies.values())

    async def add(self, config: ProxyConfig) -> Proxy:
        async with self._lock:
            return await self._add(config)

    async def _add(self, config: ProxyConfig) -> Proxy:
        if config.name in self._proxies:
            raise PROXY_EXISTS
        proxy = Proxy(config, self._rng)
        await proxy.start()
        self._proxies[config.name] = proxy
        return proxy

    async def remove(self, name: str) -> None:
        async with self._lock:
            proxy = self.get(name)
            del self._proxies[name]
            await proxy.stop()

    async def update(self, name: str, config: ProxyConfig) -> Proxy:
        async with self._lock:
            proxy = self.get(name)
            await proxy.update(config)
            return proxy

    async def populate(self, configs: list[ProxyConfig]) -> list[Proxy]:
        """Create or replace: a proxy of the same name stays untouched (enabled or not, with its
        toxics) unless its listen or upstream differ.

        On a failure the proxies handled so far are returned with the error (Toxiproxy's shape).
        """
        done: list[Proxy] = []
        async with self._lock:
            for config in configs:
                try:
                    done.append(await self._populate_one(config))
                except ApiError as exc:
                    raise PopulateError(exc, done) from exc
        return done

    async def _populate_one(self, config: ProxyConfig) -> Proxy:
        existing = self._proxies.get(config.name)
        if existing is not None:
            if (existing.config.listen, existing.config.upstream) == (config.listen, config.upstream):
                return existing
            del self._proxies[config.name]
            await existing.stop()
        return await self._add(config)

    async def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        async with self._lock:
            for proxy in self._proxies.values():
                proxy.reset_toxics()
                if not proxy.config.enabled:
                    await proxy.update(replace(proxy.config, enabled=True))

    async def close(self) -> None:
        async with self._lock:
            for proxy in self._proxies.values():
                await proxy.stop()
            self._proxies.clear()


class PopulateError(Exception):
    """POST /populate failed part way: the error, and the proxies handled before it."""

    def __init__(self, error: ApiError, done: list[Proxy]) -> None:
        super().__init__(error.message)
        self.error = error
        self.done = done
