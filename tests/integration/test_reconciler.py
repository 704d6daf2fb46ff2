"""The reconciler re-drives tasks that nothing would move any more, through the real stack.

Planted straight into PostgreSQL, as a lost commit or a lost message leaves them: a task PENDING
for an hour with no unsent outbox row, one IN_PROGRESS whose worker (`dead-worker`) stopped renewing
its lease an hour ago, and one RETRYING whose retry message never came back. The stack runs with
short reconcile times; each task must reach COMPLETED with the reason in its timeline, and every
invariant must hold. A task whose lease is alive is left alone.

Then the crash the reconciler is for: PostgreSQL stopped immediately (no checkpoint, crash
recovery at start) while jobs run. Every task answered 202 before the crash must complete.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import asyncpg
import httpx
import pytest

from harness.client import RecordingTransport
from harness.history import History
from harness.live_check import check_deployment
from harness.pytest_plugin import SESSION_ENV
from harness.stack.readiness import run_sync
from harness.stack.servers import LocalServers
from harness.stack.services import ServiceStack
from harness.verdict import verdict_text

pytestmark = pytest.mark.integration

RECONCILE_ENV = {
    "RECONCILE_INTERVAL_MS": "300",
    "RECONCILE_PENDING_AFTER_MS": "2000",
    "RECONCILE_LEASE_GRACE_MS": "1000",
}
PAYLOAD = {"durationMs": 200, "steps": 2, "outcome": "success"}
SETTLE_S = 60.0
CRASH_TASKS = 20


@pytest.fixture(scope="module")
def reconciling_stack(stack_run_dir: Path) -> Iterator[ServiceStack]:
    stack = ServiceStack(
        stack_run_dir / "reconciler",
        LocalServers(),
        workers=1,
        env=SESSION_ENV | RECONCILE_ENV,
        show_progress=False,
        own_thread=True,
    )
    with stack:
        yield stack


_TASK = """INSERT INTO tasks (task_id, type, status, max_retries, payload, input_hash, trace_id,
    created_at, updated_at, version, attempt, retry_count, locked_by, lease_until, started_at, error)
    VALUES ($1, 'simulate', $2, 3, $3::jsonb, 'planted', 'planted', now() - interval '1 hour',
            now() - interval '1 hour', $4, $5, $6, $7, $8, $9, $10::jsonb)"""
_EVENT = """INSERT INTO task_events (task_id, kind, from_status, status, attempt, version, progress,
    message, created_at) VALUES ($1, 'status', $2, $3, $4, $5, 0, 'planted', now() - interval '1 hour')"""
_SENT = """INSERT INTO outbox (message_id, exchange, routing_key, body, task_id, sent_at)
    VALUES ($1, 'ast.jobs.x', 'job.simulate', '{}'::jsonb, $2, now() - interval '1 hour')"""


async def _plant(conn: asyncpg.Connection[Any], status: str, lease: str | None = None) -> uuid.UUID:
    """A task in `status`, its legal timeline of events, and its first job message long sent."""
    path = [None, "PENDING", "IN_PROGRESS", "RETRYING"]
    path = path[: path.index(status) + 1]
    task_id = uuid.uuid4()
    running = status == "IN_PROGRESS"
    retrying = status == "RETRYING"
    await conn.execute(
        _TASK,
        task_id,
        status,
        json.dumps(PAYLOAD),
        len(path) - 1,
        0 if status == "PENDING" else 1,
        1 if retrying else 0,
        "dead-worker" if running else None,
        await conn.fetchval(f"SELECT now() + interval '{lease}'") if lease else None,
        await conn.fetchval("SELECT now() - interval '1 hour'") if status != "PENDING" else None,
        json.dumps({"code": "SIMULATED_RETRYABLE", "message": "planted"}) if retrying else None,
    )
    for version, (before, after) in enumerate(zip(path, path[1:], strict=False), start=1):
        await conn.execute(_EVENT, task_id, before, after, 0 if after == "PENDING" else 1, version)
    await conn.execute(_SENT, uuid.uuid4(), task_id)
    return task_id


async def _plant_all(dsn: str) -> dict[str, uuid.UUID]:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            return {
                "lost pending": await _plant(conn, "PENDING"),
                "dead worker": await _plant(conn, "IN_PROGRESS", lease="-1 hour"),
                "lost retry": await _plant(conn, "RETRYING"),
                "live lease": await _plant(conn, "IN_PROGRESS", lease="1 hour"),
            }
    finally:
        await conn.close()


async def _timeline(dsn: str, task_id: uuid.UUID) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(
            await conn.fetch(
                "SELECT kind, from_status, status, message FROM task_events WHERE task_id = $1"
                " ORDER BY event_id",
                task_id,
            )
        )
    finally:
        await conn.close()


def _wait_status(api: httpx.Client, task_id: uuid.UUID, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + SETTLE_S
    while True:
        task: dict[str, Any] = api.get(f"/tasks/{task_id}").raise_for_status().json()
        if task["status"] == status or time.monotonic() > deadline:
            return task
        time.sleep(0.2)


def _messages(dsn: str, task_id: uuid.UUID) -> list[str]:
    return [str(event["message"]) for event in asyncio.run(_timeline(dsn, task_id))]


def test_stuck_tasks_are_re_driven_to_completion(reconciling_stack: ServiceStack) -> None:
    endpoints = reconciling_stack.endpoints
    planted = asyncio.run(_plant_all(endpoints.postgres_dsn))
    with httpx.Client(base_url=endpoints.api_url, timeout=10) as api:
        dsn = endpoints.postgres_dsn
        stuck = [name for name in planted if name != "live lease"]
        done = {name: _wait_status(api, planted[name], "COMPLETED") for name in stuck}
        for name, task in done.items():
            assert task["status"] == "COMPLETED", (name, task, _messages(dsn, planted[name]))

        assert done["lost retry"]["retryCount"] == 1, "a lost retry message costs no extra retry"
        assert any(m.startswith("re-published: PENDING") for m in _messages(dsn, planted["lost pending"]))
        assert any(m.startswith("re-published: RETRYING") for m in _messages(dsn, planted["lost retry"]))
        handed = [e for e in asyncio.run(_timeline(dsn, planted["dead worker"])) if e["status"] == "PENDING"]
        assert handed[-1]["from_status"] == "IN_PROGRESS"
        assert handed[-1]["message"].startswith("re-driven: the lease of dead-worker expired")

        live = api.get(f"/tasks/{planted['live lease']}").raise_for_status().json()
        assert live["status"] == "IN_PROGRESS", "a task whose lease is alive is someone's work"
        assert _messages(dsn, planted["live lease"]) == ["planted", "planted"]
        assert api.post(f"/tasks/{planted['live lease']}/cancel").status_code == 202

    live_check = asyncio.run(check_deployment(endpoints, History.from_ops([]), settle_timeout_s=SETTLE_S))
    assert live_check.verdict.valid == "held", verdict_text(live_check.verdict)


def test_a_database_crash_mid_flow_loses_no_accepted_task(reconciling_stack: ServiceStack) -> None:
    endpoints = reconciling_stack.endpoints
    postgres = cast(LocalServers, reconciling_stack.servers).postgres
    assert postgres is not None
    history = History.from_ops([])
    transport = RecordingTransport(httpx.HTTPTransport(), history, process="api")
    with httpx.Client(base_url=endpoints.api_url, timeout=10, transport=transport) as api:
        job = {"type": "simulate", "payload": {"durationMs": 600, "steps": 3, "outcome": "success"}}
        accepted = [api.post("/tasks", json=job) for _ in range(CRASH_TASKS)]
        assert all(response.status_code == 202 for response in accepted)

        postgres.kill()  # immediate stop: what was not flushed at commit is gone
        postgres.start()
        run_sync(postgres.wait_ready(), own_thread=True)

        for response in accepted:
            task = _wait_status(api, uuid.UUID(response.json()["taskId"]), "COMPLETED")
            assert task["status"] == "COMPLETED", task

    live_check = asyncio.run(check_deployment(endpoints, history, settle_timeout_s=SETTLE_S))
    assert live_check.verdict.valid == "held", verdict_text(live_check.verdict)
