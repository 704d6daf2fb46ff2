"""The database role split of the compose stack (deploy/postgres/), on real PostgreSQL.

`ast_migrate` owns the schema and runs the migrations; `ast_app`, what the API and the workers
connect as, accepts, runs and completes a job, and can change no table's shape. The scripts are
the ones the compose stack's PostgreSQL runs at first start, run the way its image runs them.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from harness.stack.base import StackEndpoints, StackProvider
from harness.stack.local import LocalStack
from service.config import Settings
from service.db.migrate import apply_migrations
from tests.integration.test_tracing import submit_and_run

pytestmark = pytest.mark.integration
INITDB = Path(__file__).resolve().parents[2] / "deploy" / "postgres"
ROLES = ("ast_app", "ast_migrate")


def run_initdb_scripts(superuser_dsn: str, database: str) -> None:
    """deploy/postgres/ as the postgres image runs it at first start: each .sh executed, each
    .sql through psql, in name order, as the superuser in the service's database."""
    parts = urlsplit(superuser_dsn)
    env = {
        "PATH": "/usr/bin:/bin", "PGHOST": str(parts.hostname), "PGPORT": str(parts.port),
        "POSTGRES_USER": str(parts.username), "POSTGRES_DB": database,
        "AST_MIGRATE_PASSWORD": "ast_migrate-pw", "AST_APP_PASSWORD": "ast_app-pw",
    }
    for script in sorted(INITDB.iterdir()):
        if script.suffix == ".sh":
            argv = [str(script)]
        else:
            argv = ["psql", "-v", "ON_ERROR_STOP=1", "--no-psqlrc", "--no-password",
                    "--username", env["POSTGRES_USER"], "--dbname", database, "-f", str(script)]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (script.name, done.stderr)


def as_role(dsn: str, role: str, database: str) -> str:
    parts = urlsplit(dsn)
    netloc = f"{role}:{role}-pw@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc, path=f"/{database}"))


@pytest.fixture
async def split_database(stack: StackProvider, endpoints: StackEndpoints) -> AsyncIterator[dict[str, str]]:
    """A database set up as the compose stack sets up its own: roles, grants, then migrations as
    ast_migrate. Roles are cluster-wide, so only on the embedded stack's throwaway server."""
    if not isinstance(stack, LocalStack):
        pytest.skip("creates cluster-wide roles: only on the embedded stack")
    name = f"roles_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(endpoints.postgres_dsn)
    try:
        for role in ROLES:
            await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.execute(f'CREATE DATABASE "{name}"')
        await asyncio.to_thread(run_initdb_scripts, endpoints.postgres_dsn, name)
        dsns = {role: as_role(endpoints.postgres_dsn, role, name) for role in ROLES}
        await apply_migrations(dsns["ast_migrate"])
        yield dsns
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for role in ROLES:
            await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


async def test_the_runtime_role_runs_a_job(split_database: dict[str, str], endpoints: StackEndpoints) -> None:
    runtime = split_database["ast_app"]
    settings = Settings(postgres_url=runtime, rabbit_url=endpoints.amqp_url, relay_in_api=False)
    task, _, delivery = await submit_and_run(settings)
    assert (task["status"], delivery.settled) == ("COMPLETED", ["ack"])


@pytest.mark.parametrize(
    "statement",
    ["CREATE TABLE intruder (x int)", "DROP TABLE tasks", "TRUNCATE tasks", "ALTER TABLE tasks ADD x int"],
)
async def test_the_runtime_role_cannot_change_the_schema(
    split_database: dict[str, str], statement: str
) -> None:
    conn = await asyncpg.connect(split_database["ast_app"])
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_the_migration_role_owns_every_table(split_database: dict[str, str]) -> None:
    conn = await asyncpg.connect(split_database["ast_migrate"])
    try:
        owners = await conn.fetch("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    assert [row["tableowner"] for row in owners] == ["ast_migrate"]
