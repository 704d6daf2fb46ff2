"""The asyncpg pool, with JSON codecs so jsonb columns read and write Python values.

Every session commits synchronously (`synchronous_commit = on`, a per-session setting), whatever
the server's default: a task is answered 202, and a message acknowledged, only once its commit is
on disk, so a database crash cannot take back what the service already promised.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


DURABLE_SESSION: dict[str, str] = {"synchronous_commit": "on"}


async def _keep_session(conn: asyncpg.Connection[Any]) -> None:
    """Nothing to reset on release: asyncpg's default runs one more query (UNLISTEN, RESET ALL,
    advisory unlock) each time, a round trip per acquire, and the service keeps no session state
    on pooled connections (LISTEN has its own connection; advisory locks are transaction-scoped).
    The pool still rolls back an open transaction and drops listeners before calling this."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool[Any]:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        command_timeout=30,
        server_settings=DURABLE_SESSION,
        reset=_keep_session,
    )
    assert pool is not None
    return pool
