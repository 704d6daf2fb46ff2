"""`ast-migrate`: applies the numbered SQL migrations once each, under an advisory lock."""

from __future__ import annotations

import asyncio
import logging
import sys
from importlib import resources

import asyncpg

from service.config import settings_or_exit
from service.db.pool import DURABLE_SESSION
from service.logs import configure_logging

MIGRATIONS_PACKAGE = "service.db.migrations"
_LOCK_ID = 7_311_003
log = logging.getLogger("ast.migrate")


def migration_files() -> list[tuple[str, str]]:
    """(name, sql) of every migration, in the order of their number."""
    folder = resources.files(MIGRATIONS_PACKAGE)
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))
    return [(name, folder.joinpath(name).read_text(encoding="utf-8")) for name in names]


async def apply_migrations(dsn: str) -> list[str]:
    """Applies the missing migrations; returns the names it applied. Safe to run concurrently."""
    conn = await asyncpg.connect(dsn, server_settings=DURABLE_SESSION)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["name"] for row in await conn.fetch("SELECT name FROM schema_migrations")}
        applied = []
        for name, sql in migration_files():
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
            applied.append(name)
        return applied
    finally:
        await conn.close()


def main() -> None:
    settings = settings_or_exit()
    configure_logging(settings.log_level, process="migrate")
    try:
        applied = asyncio.run(apply_migrations(settings.postgres_url))
    except (OSError, asyncpg.PostgresError) as error:
        print(f"ast-migrate: cannot migrate the database: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    log.info("migrations applied", extra={"step": "migrate", "applied": applied})
