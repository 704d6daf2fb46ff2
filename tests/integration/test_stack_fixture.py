"""The pytest plugin's session `stack` and `clean_state` fixtures, with the service running."""

from __future__ import annotations

import time
import uuid

import aio_pika
import asyncpg
import httpx
import pytest

from harness.observe.rabbitmq import exact_ready_counts
from harness.stack.base import StackEndpoints, StackProvider
from harness.stack.local import LocalStack
from harness.stack.reset import SERVICE_TABLES, reset_service_state
from harness.state import DLQ

pytestmark = pytest.mark.integration

SIMULATE = {"type": "simulate", "payload": {"durationMs": 50, "steps": 2, "outcome": "success"}}
TABLES = [table.strip() for table in SERVICE_TABLES.split(",")]


def _settle(api_url: str, task_id: str, timeout: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task: dict[str, object] = httpx.get(f"{api_url}/tasks/{task_id}", timeout=5).json()
        if task["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return task
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} did not settle in {timeout}s")


def test_session_stack_runs_a_job(clean_state: StackEndpoints) -> None:
    answer = httpx.post(f"{clean_state.api_url}/tasks", json=SIMULATE, timeout=5)
    assert answer.status_code == 202
    assert _settle(clean_state.api_url, answer.json()["taskId"])["status"] == "COMPLETED"


async def _dirty(endpoints: StackEndpoints) -> None:
    """A task row no worker will touch (no job message), and a message in the DLQ, which nothing consumes."""
    connection = await asyncpg.connect(endpoints.postgres_dsn)
    try:
        await connection.execute(
            "INSERT INTO tasks (task_id, type, status, max_retries, payload, input_hash, trace_id)"
            " VALUES ($1, 'simulate', 'PENDING', 3, '{}'::jsonb, 'h', 't')",
            uuid.uuid4(),
        )
    finally:
        await connection.close()
    broker = await aio_pika.connect(endpoints.amqp_url)
    async with broker:
        channel = await broker.channel(publisher_confirms=True)
        await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=DLQ)


async def _rows_and_dlq(endpoints: StackEndpoints) -> tuple[dict[str, int], dict[str, int]]:
    """Row counts of the service tables, and the DLQ's depth by passive declare (statistics lag)."""
    connection = await asyncpg.connect(endpoints.postgres_dsn)
    try:
        rows = {table: await connection.fetchval(f"SELECT count(*) FROM {table}") for table in TABLES}
    finally:
        await connection.close()
    return rows, await exact_ready_counts(endpoints.amqp_url, [DLQ])


async def test_clean_state_empties_tables_and_queues(clean_state: StackEndpoints) -> None:
    """What `clean_state` runs before each test, run again on a state dirtied on purpose."""
    await _dirty(clean_state)
    assert await _rows_and_dlq(clean_state) == (dict.fromkeys(TABLES, 0) | {"tasks": 1}, {DLQ: 1})

    await reset_service_state(clean_state)

    assert await _rows_and_dlq(clean_state) == (dict.fromkeys(TABLES, 0), {DLQ: 0})


def test_killed_worker_comes_back(stack: StackProvider, clean_state: StackEndpoints) -> None:
    if not isinstance(stack, LocalStack):
        pytest.skip("a HARNESS_TARGET deployment has no process handles")
    worker = stack.workers["worker-0"].process
    old_pid = worker.pid
    stack.kill_worker("worker-0")
    assert stack.wait_worker_ready("worker-0") < 30
    assert worker.pid != old_pid
    assert worker.restart_count >= 1
    test_session_stack_runs_a_job(clean_state)
