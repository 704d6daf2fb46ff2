"""The driver errors that mean "PostgreSQL or RabbitMQ is unreachable right now", in one place.

Loops that must outlive an outage (relay, worker, processor) retry on these; anything else is a
bug, which they log with its traceback and also survive, because a dead relay or worker loses no
data but stops all progress silently.
"""

from __future__ import annotations

import asyncio

import aio_pika
import aiormq
import asyncpg
from asyncpg.exceptions import _base as asyncpg_base

DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    asyncio.TimeoutError,
    asyncpg.PostgresError,
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
