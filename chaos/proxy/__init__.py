"""A TCP proxy that speaks Toxiproxy 2.x's HTTP API, for network faults where no toxiproxy-server
can be installed. `harness proxy` runs it alone; drills drive it (or a real Toxiproxy) through
`chaos.toxiproxy_client`."""

from chaos.proxy.server import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    ProxyConfigError,
    ProxyServerThread,
    ToxiproxyServer,
    serve,
)

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "ProxyConfigError",
    "ProxyServerThread",
    "ToxiproxyServer",
    "serve",
]
