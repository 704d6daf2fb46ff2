"""How every service process reaches RabbitMQ: the nodes of `RABBIT_URL`, on `RABBIT_VHOST`.

`RABBIT_URL` names one node or several (comma-separated, the nodes of a cluster); they are tried
in turn and the first that answers is used. A non-empty `RABBIT_VHOST` replaces the virtual host
of every one of those URLs; empty leaves each URL's own (its path, `/` when it has none).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractRobustConnection

from service.config import Settings
from service.driver_errors import BROKER_ERRORS

log = logging.getLogger("ast.broker")

CONNECT_TIMEOUT_S = 10.0

_Connection = TypeVar("_Connection", bound=AbstractConnection)


def node_urls(rabbit_url: str, vhost: str = "") -> list[str]:
    """Each URL of `rabbit_url`, on `vhost` when one is given (quoted: `/` is `%2F`)."""
    urls = [part.strip() for part in rabbit_url.split(",") if part.strip()]
    if not vhost:
        return urls
    path = "/" + quote(vhost, safe="")
    return [urlunsplit(urlsplit(url)._replace(path=path)) for url in urls]


async def connect(settings: Settings) -> AbstractConnection:
    """A plain connection to the first node that answers; the caller reconnects on loss."""
    return await _first_answering(settings, lambda url: aio_pika.connect(url, timeout=CONNECT_TIMEOUT_S))


async def connect_robust(settings: Settings) -> AbstractRobustConnection:
    """aio-pika's self-healing connection to the first node that answers.

    It reconnects to that same node; a caller that must survive the loss of that node for good
    closes it and calls this again.
    """
    return await _first_answering(
        settings, lambda url: aio_pika.connect_robust(url, timeout=CONNECT_TIMEOUT_S)
    )


async def _first_answering(
    settings: Settings, open_connection: Callable[[str], Awaitable[_Connection]]
) -> _Connection:
    """Tries each node in turn; when none answers, raises the last node's driver error."""
    urls = node_urls(settings.rabbit_url, settings.rabbit_vhost)
    for url in urls[:-1]:
        try:
            return await open_connection(url)
        except BROKER_ERRORS as error:
            log.warning("RabbitMQ node %s did not answer: %s; trying the next",
                        _where(url), type(error).__name__, extra={"step": "amqp"})
    return await open_connection(urls[-1])


def _where(url: str) -> str:
    """host:port/vhost of a node, without its credentials, for logs."""
    parsed = urlsplit(url)
    return f"{parsed.hostname}:{parsed.port}{parsed.path or '/'}"
