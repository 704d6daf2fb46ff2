"""A clean service state between tests: the service's tables truncated, its `ast.*` queues purged."""

from __future__ import annotations

import asyncio

import asyncpg

from harness.observe.rabbitmq import Management, vhost_of
from harness.stack.base import StackEndpoints

SERVICE_TABLES = "tasks, task_events, task_results, outbox, inbox"


async def truncate_service_tables(dsn: str) -> None:
    """TRUNCATE the service tables; a schema not migrated yet is nothing to clean."""
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        await connection.execute(f"TRUNCATE {SERVICE_TABLES} RESTART IDENTITY CASCADE")
    except asyncpg.UndefinedTableError:
        pass
    finally:
        await connection.close()


async def purge_ast_queues(endpoints: StackEndpoints) -> list[str]:
    async with Management(endpoints.management_url, vhost=vhost_of(endpoints.amqp_url)) as management:
        return await management.purge_ast_queues()


async def reset_service_state(endpoints: StackEndpoints) -> None:
    await asyncio.gather(truncate_service_tables(endpoints.postgres_dsn), purge_ast_queues(endpoints))
