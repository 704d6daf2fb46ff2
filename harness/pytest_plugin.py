"""pytest fixtures for suites that need the stack: `stack`, `endpoints`, `clean_state`.

Loaded for every run (`-p harness.pytest_plugin`), so nothing here may start a server unless
a test asks for one of these fixtures: unit tests run with no servers at all.
With HARNESS_TARGET set to a target TOML file, the suites drive that deployment instead.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import asyncpg
import httpx
import pytest

from harness.stack.base import StackEndpoints, StackProvider
from harness.stack.local import LocalStack, install_cleanup_handlers
from harness.stack.readiness import run_sync
from harness.stack.rundir import new_run_dir
from harness.stack.target import TargetStack

SESSION_ENV = {
    "RETRY_BASE_MS": "200",
    "JOB_TIMEOUT_MS": "30000",
    "SHUTDOWN_GRACE_MS": "5000",
    "ALLOW_LOCAL_REPOS": "1",
    "MAX_RETRIES": "3",
}
SERVICE_TABLES = "tasks, task_events, task_results, outbox, inbox"
QUEUE_PREFIX = "ast."


@pytest.fixture(scope="session")
def stack_run_dir(pytestconfig: pytest.Config) -> Path:
    """reports/out/<timestamp>-pytest, with `latest` pointing at it."""
    return new_run_dir("pytest", pytestconfig.rootpath / "reports" / "out")


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[StackProvider]:
    """One deployment for the whole session: HARNESS_TARGET's, or an embedded LocalStack.

    A LocalStack is a `LocalStack` (with process handles for fault injection); a target is a
    `TargetStack` (endpoints only). The embedded stack is stopped at session end.
    """
    target = os.environ.get("HARNESS_TARGET")
    provider: StackProvider
    if target:
        provider = TargetStack(Path(target))
    else:
        install_cleanup_handlers()
        run_dir: Path = request.getfixturevalue("stack_run_dir")
        provider = LocalStack(run_dir, workers=2, env=SESSION_ENV, show_progress=False, own_thread=True)
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture(scope="session")
def endpoints(stack: StackProvider) -> StackEndpoints:
    return stack.endpoints


@pytest.fixture
def clean_state(endpoints: StackEndpoints) -> StackEndpoints:
    """Start a test from an empty service state: tables truncated, `ast.*` queues purged."""
    run_sync(_clean(endpoints), own_thread=True)
    return endpoints


async def _clean(endpoints: StackEndpoints) -> None:
    await asyncio.gather(
        truncate_service_tables(endpoints.postgres_dsn), purge_ast_queues(endpoints.management_url)
    )


async def truncate_service_tables(dsn: str) -> None:
    """TRUNCATE the service tables; a schema not migrated yet is nothing to clean."""
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        await connection.execute(f"TRUNCATE {SERVICE_TABLES} RESTART IDENTITY CASCADE")
    except asyncpg.UndefinedTableError:
        pass
    finally:
        await connection.close()


def management_client(management_url: str) -> httpx.AsyncClient:
    """An HTTP client for the management API, with the URL's credentials as basic auth."""
    parts = urlsplit(management_url)
    auth = (parts.username or "guest", parts.password or "guest")
    base = f"{parts.scheme}://{parts.hostname}:{parts.port}{parts.path.rstrip('/')}/api"
    return httpx.AsyncClient(base_url=base, auth=auth, timeout=10)


async def purge_ast_queues(management_url: str) -> list[str]:
    """Purge every queue whose name starts with `ast.`; returns the names purged."""
    async with management_client(management_url) as client:
        response = await client.get("/queues", params={"columns": "name,vhost"})
        response.raise_for_status()
        purged = []
        for queue in response.json():
            if queue["name"].startswith(QUEUE_PREFIX):
                path = f"/queues/{quote(queue['vhost'], safe='')}/{quote(queue['name'], safe='')}/contents"
                (await client.delete(path)).raise_for_status()
                purged.append(queue["name"])
        return purged
