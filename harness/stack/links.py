"""Every link of an embedded stack through the Toxiproxy-compatible proxy (`harness up --proxy`).

One proxy per client process and server, named `<client>-<server>` (`api-postgres`,
`worker-0-rabbitmq`), so a drill can slow or cut one worker's broker link and leave the others.
A RabbitMQ cluster (RABBIT_URL lists its nodes) gets one per node: `worker-0-rabbitmq-0`, ...
The proxy runs as a supervised child (`harness proxy --config`): the config file lists every
link, so a restarted proxy listens on the same ports again (its toxics are gone, as after
/reset). The harness itself (checker, sampler, recording client) keeps the direct URLs.
The stack speaks to the proxy only through its HTTP API (chaos builds on the harness, not the
reverse; drills use `chaos.toxiproxy_client`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from harness.stack.base import StackError
from harness.stack.ports import free_port
from harness.stack.processes import ManagedProcess
from harness.stack.readiness import poll_until_ready

PROXY_ENV = "HARNESS_PROXY"
"""Set to 1 to route the links of every embedded stack through the proxy (the pytest plugin)."""

SERVER_URL_VARS = {"postgres": "POSTGRES_URL", "rabbitmq": "RABBIT_URL"}


def proxy_requested(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(PROXY_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def host_port_of(url: str) -> str:
    """`host:port` of a server URL (postgresql://..., amqp://...)."""
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise StackError(f"cannot proxy {url!r}: it names no host and port")
    return f"{parts.hostname}:{parts.port}"


def node_urls(url: str) -> list[str]:
    """The URLs of a server's nodes: one, or the comma-separated nodes of a cluster."""
    return [part.strip() for part in url.split(",") if part.strip()]


def link_servers(server: str, nodes: int) -> list[str]:
    """The server part of each node's link name: `rabbitmq`, or `rabbitmq-0`... for a cluster."""
    return [server] if nodes == 1 else [f"{server}-{index}" for index in range(nodes)]


def via_proxy(url: str, port: int) -> str:
    """The same URL (user, password, path, query) with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}127.0.0.1:{port}"))


@dataclass(frozen=True)
class Link:
    client: str
    server: str
    upstream: str
    listen_port: int

    @property
    def name(self) -> str:
        return f"{self.client}-{self.server}"

    def to_json(self) -> dict[str, str | bool]:
        """The proxy as Toxiproxy's API and config file write it."""
        return {
            "name": self.name,
            "upstream": self.upstream,
            "listen": f"127.0.0.1:{self.listen_port}",
            "enabled": True,
        }


class LinkProxy:
    """The proxy in front of one stack's servers, and the links it carries."""

    def __init__(self, server_urls: Mapping[str, str], config_file: Path, log_dir: Path) -> None:
        self.server_urls = dict(server_urls)
        self.config_file = config_file
        self.log_dir = log_dir
        self.port = free_port()
        self.links: dict[str, Link] = {}
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.links)

    def client_env(self, client: str) -> dict[str, str]:
        """POSTGRES_URL and RABBIT_URL for `client`, through its own links (made on first ask).

        Once the proxy runs, new links are created in it at once (a worker added by a drill).
        """
        env: dict[str, str] = {}
        fresh: list[Link] = []
        for server, url in self.server_urls.items():
            urls = node_urls(url)
            proxied = []
            for node_url, link_server in zip(urls, link_servers(server, len(urls)), strict=True):
                link = self.links.get(f"{client}-{link_server}")
                if link is None:
                    link = Link(client, link_server, host_port_of(node_url), free_port())
                    self.links[link.name] = link
                    fresh.append(link)
                proxied.append(via_proxy(node_url, link.listen_port))
            env[SERVER_URL_VARS[server]] = ",".join(proxied)
        if fresh and self.process is not None:
            self._write_config()
            answer = httpx.post(f"{self.url}/populate", json=[link.to_json() for link in fresh], timeout=10)
            if answer.status_code != 201:
                raise StackError(f"toxiproxy refused new links: {answer.status_code} {answer.text}")
        return env

    def _write_config(self) -> None:
        self.config_file.write_text(json.dumps([link.to_json() for link in self.links.values()], indent=2))

    async def start(self, timeout: float) -> float:
        """Start the proxy with every link planned so far; ready once each link's proxy is listed."""
        self._write_config()
        argv = [sys.executable, "-m", "harness.cli", "proxy", "--port", str(self.port)]
        self.process = ManagedProcess(
            "toxiproxy", [*argv, "--config", str(self.config_file)], log_dir=self.log_dir, supervise=True
        )
        self.process.start()
        process = self.process
        return await poll_until_ready(
            f"toxiproxy ({self.url})",
            self._all_links_listed,
            timeout=timeout,
            interval=0.1,
            alive=lambda: process.expected_running,
            explain=process.log_tail,
        )

    async def _all_links_listed(self) -> None:
        async with httpx.AsyncClient(timeout=2.0) as client:
            listed = (await client.get(f"{self.url}/proxies")).json()
        missing = set(self.links) - set(listed)
        if missing:
            raise RuntimeError(f"proxies not created yet: {sorted(missing)}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None:
            self.process.stop(timeout=timeout)
