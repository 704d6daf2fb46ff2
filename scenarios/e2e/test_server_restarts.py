"""The service rides out a restart of RabbitMQ or PostgreSQL: consumers come back, the outbox drains."""

from __future__ import annotations

import time

import httpx
import pytest

from harness.observe.rabbitmq import Management
from harness.stack.local import LocalStack
from harness.stack.readiness import run_sync
from scenarios.e2e.helpers import sql, submit, wait_terminal

pytestmark = pytest.mark.e2e
WORK_QUEUES = ("ast.initialize.repo.q", "ast.initialize.impact.q", "ast.simulate.q")


async def _consumers(management_url: str) -> dict[str, int]:
    async with Management(management_url) as management:
        counts = await management.consumers()
    return {name: n for name, n in counts.items() if name in WORK_QUEUES}


def _wait_consumers(local_stack: LocalStack, expected: int | None = None, timeout: float = 60) -> int:
    """Polls the job queues' consumers (the management statistics lag a few seconds) until every
    queue has `expected`, or, with None, until every queue has the same count and at least one
    per worker; returns that count."""
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = run_sync(_consumers(local_stack.endpoints.management_url), own_thread=True)
        seen = set(counts.values())
        if len(counts) == len(WORK_QUEUES) and len(seen) == 1:
            count = min(seen)
            if count == expected or (expected is None and count >= len(local_stack.workers)):
                return count
        time.sleep(0.5)
    raise AssertionError(f"consumers per queue never came to {expected or 'one count'}: {counts}")


def _wait_ready(api: httpx.Client, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if api.get("/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError("the API never became ready again")


def test_workers_consume_again_after_a_broker_restart(api: httpx.Client, local_stack: LocalStack) -> None:
    before = submit(api, {"steps": 1})
    wait_terminal(api, before)
    # Each worker holds WORKER_CONCURRENCY consumers on every queue: as many must come back.
    consumers = _wait_consumers(local_stack, timeout=30)

    assert local_stack.rabbit is not None
    local_stack.rabbit.restart()
    run_sync(local_stack.rabbit.wait_ready(), own_thread=True)
    _wait_ready(api)

    assert _wait_consumers(local_stack, consumers) == consumers
    after = submit(api, {"steps": 2, "durationMs": 200})
    assert wait_terminal(api, after)["status"] == "COMPLETED"


def test_tasks_accepted_while_the_broker_is_down_run_once_it_is_back(
    api: httpx.Client, local_stack: LocalStack, dsn: str
) -> None:
    assert local_stack.rabbit is not None
    local_stack.rabbit.stop()
    try:
        accepted = [submit(api, {"steps": 1}) for _ in range(5)]
        unsent = sql(dsn, "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")[0]["n"]
        assert unsent >= 5, "jobs wait in the outbox while the broker is away"
    finally:
        local_stack.rabbit.start()
        run_sync(local_stack.rabbit.wait_ready(), own_thread=True)

    for task_id in accepted:
        assert wait_terminal(api, task_id, timeout=90)["status"] == "COMPLETED"
    assert sql(dsn, "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")[0]["n"] == 0


def test_work_goes_on_after_a_database_restart(api: httpx.Client, local_stack: LocalStack) -> None:
    running = submit(api, {"steps": 10, "durationMs": 3000})
    assert local_stack.postgres is not None

    local_stack.postgres.restart()
    run_sync(local_stack.postgres.wait_ready(), own_thread=True)
    _wait_ready(api)

    assert wait_terminal(api, running, timeout=90)["status"] == "COMPLETED"
    after = submit(api, {"steps": 1})
    assert wait_terminal(api, after)["status"] == "COMPLETED"
