"""Where a clone may connect: never into the worker's own machine or network, unless allowed.

A repository URL names a host, and git would connect to whatever address that host resolves to:
loopback (the API, the database), a private range, or the cloud metadata service at
169.254.169.254 (server-side request forgery). So the worker resolves the host itself, refuses
it when any address is not a public unicast one, and then pins git to exactly the addresses it
checked, so that git's own second lookup (which DNS rebinding could answer differently) never
happens: https through curl's resolve list (`http.curloptResolve`), ssh by connecting to the
address while host keys are still checked under the name (`HostKeyAlias`). Redirects are errors
(`http.followRedirects=false`, see `git_clone`), so no server can send git on elsewhere.

The operator's allow-list (`REPO_ALLOWED_HOSTS`, `Settings.repo_allowed_hosts`) names internal
git servers that are cloned as named. Local repositories (`ALLOW_LOCAL_REPOS`) are not fetched
over a network and are not judged here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

from service.errors import RetryableJobError, TerminalJobError
from service.repo_url import network_endpoint

Resolver = Callable[[str, int], Awaitable[list[str]]]
RESOLVE_TIMEOUT_S = 30.0

_NOT_ALLOWED = (
    "refused repository host: it resolves to a loopback, private, link-local or otherwise internal "
    "address (an internal git server must be listed in REPO_ALLOWED_HOSTS)"
)


@dataclass(frozen=True, slots=True)
class FetchTarget:
    """The endpoint a clone connects to; `addresses` empty means allow-listed, used as named."""

    host: str
    port: int
    addresses: tuple[str, ...] = ()


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host` (IP literals, numeric forms included)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public_address(address: str) -> bool:
    """A global unicast address; an IPv4-mapped IPv6 address is judged as the IPv4 one it maps."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def fetch_target(
    url: str, allowed_hosts: Collection[str], *, resolver: Resolver = system_resolver
) -> FetchTarget | None:
    """Where git may connect for `url` (None: a local repository); raises a classified JobError.

    A host that does not resolve (in `RESOLVE_TIMEOUT_S`) is retryable, as DNS trouble passes;
    an internal one is terminal.
    """
    try:
        endpoint = network_endpoint(url)
    except ValueError:
        raise TerminalJobError("refused repository: not a network URL", code="UNSAFE_URL") from None
    if endpoint is None:
        return None
    host, port = endpoint
    if host in allowed_hosts:
        return FetchTarget(host, port)
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            addresses = await resolver(host, port)
    except (OSError, UnicodeError, TimeoutError):
        raise RetryableJobError("could not resolve the repository host", code="NETWORK") from None
    if not addresses or not all(is_public_address(address) for address in addresses):
        raise TerminalJobError(_NOT_ALLOWED, code="HOST_NOT_ALLOWED")
    return FetchTarget(host, port, tuple(addresses))
