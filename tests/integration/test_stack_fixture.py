"""The pytest plugin's session `stack` and `clean_state` fixtures, with the service running."""

from __future__ import annotations

import time

import asyncpg
import httpx
import pytest

from harness.stack.base import StackEndpoints, StackProvider
from harness.stack.local import LocalStack

pytestmark = pytest.mark.integration

SIMULATE = {"type": "simulate", "payload": {"durationMs": 50, "steps": 2, "outcome": "success"}}


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


async def test_clean_state_empties_tables_and_queues(clean_state: StackEndpoints) -> None:
    connection = await asyncpg.connect(clean_state.postgres_dsn)
    try:
        assert await connection.fetchval("select count(*) from tasks") == 0
    finally:
        await connection.close()
    async with httpx.AsyncClient(auth=("guest", "guest")) as client:
        base = clean_state.management_url.replace("guest:guest@", "").rstrip("/")
        queues = (await client.get(f"{base}/api/queues")).json()
    assert all(q.get("messages", 0) == 0 for q in queues if q["name"].startswith("ast."))


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
