"""What e2e tests share: polling the API until a task settles, and reading PostgreSQL and the DLQ."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx

from harness.observe.rabbitmq import Management
from harness.state import DLQ, QueueMessage

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}


def submit(
    api: httpx.Client,
    payload: dict[str, Any],
    *,
    task_type: str = "simulate",
    key: str | None = None,
    priority: int | None = None,
) -> str:
    body: dict[str, Any] = {"type": task_type, "payload": payload}
    if priority is not None:
        body["priority"] = priority
    headers = {"Idempotency-Key": key} if key else {}
    response = api.post("/tasks", json=body, headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["taskId"])


def wait_for(
    api: httpx.Client,
    task_id: str,
    until: Callable[[dict[str, Any]], bool],
    timeout: float = 60.0,
    what: str = "condition",
) -> dict[str, Any]:
    """Polls GET /tasks/{id} until `until(task)`; fails with the task's timeline when it never holds."""
    deadline = time.monotonic() + timeout
    task: dict[str, Any] = {}
    while time.monotonic() < deadline:
        task = api.get(f"/tasks/{task_id}").json()
        if until(task):
            return task
        time.sleep(0.1)
    events = api.get(f"/tasks/{task_id}/events").json()
    raise AssertionError(f"task {task_id} never reached {what}: {task}\ntimeline: {events}")


def wait_status(api: httpx.Client, task_id: str, *statuses: str, timeout: float = 60.0) -> dict[str, Any]:
    return wait_for(api, task_id, lambda t: t.get("status") in statuses, timeout, what="/".join(statuses))


def wait_terminal(api: httpx.Client, task_id: str, timeout: float = 60.0) -> dict[str, Any]:
    return wait_status(api, task_id, *TERMINAL, timeout=timeout)


def statuses(api: httpx.Client, task_id: str) -> list[str]:
    """The status changes of the timeline, oldest first."""
    items = api.get(f"/tasks/{task_id}/events").json()["items"]
    return [item["status"] for item in items if item["kind"] == "status"]


def sql(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def dlq_task_ids(management_url: str) -> list[str]:
    """TaskIds of the messages in ast.jobs.dlq, read without consuming them."""

    async def peek() -> tuple[QueueMessage, ...]:
        async with Management(management_url) as management:
            return await management.peek(DLQ, 1000)

    return [m.task_id for m in asyncio.run(peek()) if m.task_id]
