"""The service's own transactions are durable whatever the server's default: the embedded
PostgreSQL runs with `synchronous_commit = off`, and every pool of the service turns it back on
for its sessions, so a 202 is never answered for a task that a database crash can take back."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from harness.stack.base import StackEndpoints
from service.db.pool import create_pool

pytestmark = pytest.mark.integration


async def _server_default(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return str(await conn.fetchval("SHOW synchronous_commit"))
    finally:
        await conn.close()


async def _through_pool(dsn: str) -> list[str]:
    pool = await create_pool(dsn, min_size=2, max_size=2)
    try:
        async with pool.acquire() as first, pool.acquire() as second:
            seen = [str(await conn.fetchval("SHOW synchronous_commit")) for conn in (first, second)]
        async with pool.acquire() as reused:  # released sessions are RESET ALL: still on
            seen.append(str(await reused.fetchval("SHOW synchronous_commit")))
        return seen
    finally:
        await pool.close()


def test_the_embedded_server_defaults_to_off(endpoints: StackEndpoints) -> None:
    assert asyncio.run(_server_default(endpoints.postgres_dsn)) == "off"


def test_every_pooled_session_commits_synchronously(endpoints: StackEndpoints) -> None:
    assert asyncio.run(_through_pool(endpoints.postgres_dsn)) == ["on", "on", "on"]
