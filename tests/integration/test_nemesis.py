"""Every process fault of the nemesis on every target of the embedded stack, with jobs flowing.

One stack for the module (PostgreSQL durable: the crash faults must not blame the service for
the database's settings). Each test starts a job stream, injects one fault while jobs run,
keeps it on until the stream has made more requests, heals it, and then requires that the
service recovered by itself (every accepted job settles COMPLETED, nobody restarted it) and that
the invariants hold over the test's history, which also holds the fault's operation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from chaos.nemesis import LocalFaults, Nemesis
from harness.history import History
from harness.record import RunWriter
from harness.stack.local import LocalStack
from harness.stack.readiness import run_sync
from harness.stack.reset import reset_service_state
from tests.integration.job_stream import (
    JobStream,
    check_invariants,
    fault_ops,
    run_fault_with_jobs,
    wait_all_terminal,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
ENV = {"RETRY_BASE_MS": "200", "JOB_TIMEOUT_MS": "30000", "SHUTDOWN_GRACE_MS": "5000", "MAX_RETRIES": "3"}


@pytest.fixture(scope="module")
def stack(run_dir: Path) -> Iterator[LocalStack]:
    stack_dir = run_dir / "stacks" / f"nemesis-{os.getpid()}"
    local = LocalStack(stack_dir, workers=2, env=ENV, show_progress=False, own_thread=True, durable=True)
    local.start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def nemesis(stack: LocalStack, history: History) -> Nemesis:
    run_sync(reset_service_state(stack.endpoints), own_thread=True)
    return Nemesis(history, LocalFaults(stack))


ACTIONS = ("kill", "stop", "pause", "restart")
SERVER_FAULTS = [f"{kind}-{action}" for kind in ("broker", "db") for action in ACTIONS]
SERVICE_FAULTS = [f"{kind}-{action}" for kind in ("api", "relay") for action in ACTIONS]


@pytest.mark.parametrize("name", SERVER_FAULTS)
def test_server_fault_with_jobs_flowing(
    stack: LocalStack, nemesis: Nemesis, run_writer: RunWriter, request: pytest.FixtureRequest, name: str
) -> None:
    end = run_fault_with_jobs(stack, nemesis, name, run_writer, request.node.nodeid)
    assert end.value["target"] in {"postgres", *(n.nodename for n in stack.rabbit_nodes)}
    if not name.endswith("pause"):
        assert end.value["came_back_by_itself"] is False
        assert end.value["new_pid"] != end.value["pid"]


@pytest.mark.parametrize("name", SERVICE_FAULTS)
def test_service_fault_with_jobs_flowing(
    stack: LocalStack, nemesis: Nemesis, run_writer: RunWriter, request: pytest.FixtureRequest, name: str
) -> None:
    end = run_fault_with_jobs(stack, nemesis, name, run_writer, request.node.nodeid)
    assert end.value["target"] == name.split("-")[0]
    if name.endswith(("kill", "stop")):
        assert end.value["came_back_by_itself"] is True
        assert end.value["new_pid"] != end.value["pid"]
        assert end.wall_time >= end.value["back_at"] > 0


async def _busy_task(dsn: str) -> str | None:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        found: str | None = await connection.fetchval(
            "SELECT task_id::text FROM tasks WHERE status = 'IN_PROGRESS' AND locked_by IS NOT NULL LIMIT 1"
        )
        return found
    finally:
        await connection.close()


def test_kill_the_worker_running_a_task(
    stack: LocalStack, nemesis: Nemesis, run_writer: RunWriter, request: pytest.FixtureRequest
) -> None:
    stream = JobStream(stack.endpoints, nemesis.history, count=30, payload={"durationMs": 600, "steps": 3})
    stream.start()
    try:
        busy: list[str] = []

        def a_task_runs() -> bool:
            found = run_sync(_busy_task(stack.endpoints.postgres_dsn), own_thread=True)
            busy[:] = [found] if found else []
            return bool(busy)

        stream.wait("a task IN_PROGRESS", a_task_runs)
        worker = run_sync(_worker_of(stack.endpoints.postgres_dsn, busy[0]), own_thread=True)
        op = nemesis.run("worker-kill", task_id=busy[0])
    finally:
        accepted = stream.join()
    assert op is not None
    assert op.value["target"] == worker
    assert op.value["came_back_by_itself"]
    assert set(wait_all_terminal(stack.endpoints.postgres_dsn, accepted).values()) == {"COMPLETED"}
    check_invariants(stack.endpoints, nemesis.history, run_writer, request.node.nodeid)


async def _worker_of(dsn: str, task_id: str) -> str:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        return str(await connection.fetchval("SELECT locked_by FROM tasks WHERE task_id = $1::uuid", task_id))
    finally:
        await connection.close()


@pytest.mark.parametrize("action", ["kill", "stop", "pause", "restart"])
def test_one_worker_fault_by_index(
    stack: LocalStack, nemesis: Nemesis, run_writer: RunWriter, request: pytest.FixtureRequest, action: str
) -> None:
    end = run_fault_with_jobs(stack, nemesis, f"worker-{action}", run_writer, request.node.nodeid, worker=1)
    assert end.value["target"] == sorted(stack.workers)[1]


def test_rolling_restart_of_every_worker(
    stack: LocalStack, nemesis: Nemesis, run_writer: RunWriter, request: pytest.FixtureRequest
) -> None:
    stream = JobStream(stack.endpoints, nemesis.history, count=400, interval_s=0.2).start()
    try:
        stream.wait("5 jobs accepted", lambda: len(stream.accepted) >= 5)
        op = nemesis.run("worker-rolling-restart")
        stream.wait_more_accepted(5)
    finally:
        stream.stop()
        accepted = stream.join()
    assert op is not None
    steps = op.value["steps"]
    assert [s["worker"] for s in steps] == sorted(stack.workers)
    assert all(s["new_pid"] != s["pid"] and s["exit_code"] == 0 for s in steps), steps
    assert set(wait_all_terminal(stack.endpoints.postgres_dsn, accepted).values()) == {"COMPLETED"}
    check_invariants(stack.endpoints, nemesis.history, run_writer, request.node.nodeid)


def test_unknown_fault_is_skipped_and_recorded(nemesis: Nemesis) -> None:
    assert nemesis.start("broker-node-loss") is None
    _, end = fault_ops(nemesis.history)
    assert end.type == "fail"
    assert "cluster" in (end.error or "")


async def _setting(dsn: str, name: str) -> str:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        return str(await connection.fetchval(f"SHOW {name}"))
    finally:
        await connection.close()


def test_the_durable_stack_runs_postgresql_crash_safe(stack: LocalStack) -> None:
    settings = ("fsync", "synchronous_commit", "full_page_writes")
    dsn = stack.endpoints.postgres_dsn
    assert [run_sync(_setting(dsn, name), own_thread=True) for name in settings] == ["on", "on", "on"]
