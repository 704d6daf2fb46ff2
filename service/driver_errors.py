"""The driver errors that mean "PostgreSQL or RabbitMQ cannot serve us right now", in one place.

Loops that must outlive an outage (relay, worker, processor) retry on these; anything else is a
bug, which they log with its traceback and also survive, because a dead relay or worker loses no
data but stops all progress silently.

A value PostgreSQL refuses (`REFUSED_VALUE_ERRORS`: SQLSTATE class 22, data exception, which
asyncpg also raises when it cannot encode an argument; class 54, a program limit) is no outage:
it is refused again on every retry, so it is left out of `DATABASE_ERRORS`, and whoever writes
the value settles the work that carried it (the worker fails that task terminally).
"""

from __future__ import annotations

import asyncio

import aio_pika
import aiormq
import asyncpg
from asyncpg.exceptions import _base as asyncpg_base

REFUSED_VALUE_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.ProgramLimitExceededError,
)


def _server_errors_but(refused: tuple[type[Exception], ...]) -> tuple[type[Exception], ...]:
    """asyncpg's error class of every SQLSTATE class (an unknown code maps to its class, or to
    UnknownPostgresError), except the refused ones and so their subclasses."""
    return tuple(kind for kind in asyncpg.PostgresError.__subclasses__() if not issubclass(kind, refused))


DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    asyncio.TimeoutError,
    *_server_errors_but(REFUSED_VALUE_ERRORS),
    asyncpg.InterfaceError,
    asyncpg_base.InternalClientError,
)

BROKER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    asyncio.TimeoutError,
    aiormq.exceptions.AMQPError,
    aio_pika.exceptions.AMQPException,
)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = DATABASE_ERRORS + BROKER_ERRORS
