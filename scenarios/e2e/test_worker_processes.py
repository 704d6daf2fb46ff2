"""Worker processes as an operator sees them: SIGTERM during a job, and configuration refused at start."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from harness.stack.local import LocalStack
from scenarios.e2e.helpers import statuses, submit, wait_for, wait_terminal

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def _running_on(api: httpx.Client, task_id: str) -> str:
    wait_for(api, task_id, lambda t: t["status"] == "IN_PROGRESS" and t["progress"] > 0, what="running")
    events = api.get(f"/tasks/{task_id}/events").json()["items"]
    return str(next(e["workerId"] for e in reversed(events) if e["workerId"]))


def test_sigterm_mid_job_hands_it_back_and_another_worker_finishes(
    api: httpx.Client, local_stack: LocalStack
) -> None:
    task_id = submit(api, {"durationMs": 8000, "steps": 16})
    worker = _running_on(api, task_id)

    exit_code = local_stack.remove_worker(worker)
    local_stack.add_worker()

    assert exit_code == 0
    task = wait_terminal(api, task_id)
    assert task["status"] == "COMPLETED"
    events = api.get(f"/tasks/{task_id}/events").json()["items"]
    handed_back = [e for e in events if e["status"] == "PENDING" and e["kind"] == "status"][1:]
    assert handed_back
    assert "handed back" in handed_back[0]["message"]
    finisher = next(e["workerId"] for e in reversed(events) if e["status"] == "COMPLETED")
    assert finisher != worker


def test_sigterm_lets_a_short_job_finish_on_the_same_worker(
    api: httpx.Client, local_stack: LocalStack
) -> None:
    task_id = submit(api, {"durationMs": 1200, "steps": 6})
    worker = _running_on(api, task_id)

    exit_code = local_stack.remove_worker(worker)
    local_stack.add_worker()

    assert exit_code == 0
    assert wait_terminal(api, task_id)["status"] == "COMPLETED"
    assert statuses(api, task_id) == ["PENDING", "IN_PROGRESS", "COMPLETED"]


@pytest.mark.parametrize(
    ("command", "variable", "value"),
    [
        ("ast-worker", "RABBIT_PREFETCH", "0"),
        ("ast-worker", "WORKER_CONCURRENCY", "many"),
        ("ast-worker", "MAX_RETRIES", "-1"),
        ("ast-api", "API_PORT", "70000"),
        ("ast-api", "LOG_LEVEL", "chatty"),
        ("ast-relay", "POSTGRES_URL", "mysql://db/ast"),
        ("ast-migrate", "RABBIT_URL", "http://broker"),
        ("ast-worker", "JOB_TIMEOUT_MS", "soon"),
    ],
)
def test_a_bad_setting_stops_the_process_with_one_line_naming_it(
    command: str, variable: str, value: str
) -> None:
    result = subprocess.run(
        [str(BIN / command)],
        env={"PATH": "/usr/bin:/bin", variable: value},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr


@contextmanager
def _only_worker(local_stack: LocalStack, env: dict[str, str]) -> Iterator[str]:
    """The stack's workers replaced by one with `env` for the block; its name. They come back after."""
    regular = list(local_stack.workers)
    for name in regular:
        assert local_stack.remove_worker(name) == 0
    worker = local_stack.add_worker(env)
    try:
        yield worker
    finally:
        assert local_stack.remove_worker(worker) == 0
        for _ in regular:
            local_stack.add_worker()


def test_one_worker_runs_worker_concurrency_jobs_at_once(api: httpx.Client, local_stack: LocalStack) -> None:
    # The contract's default RABBIT_PREFETCH of 1 (per consumer): concurrency alone must be enough.
    with _only_worker(local_stack, {"WORKER_CONCURRENCY": "3"}) as wide:
        task_ids = [submit(api, {"durationMs": 1500, "steps": 3}) for _ in range(3)]
        for task_id in task_ids:
            wait_terminal(api, task_id)

    runs = []
    for task_id in task_ids:
        task = api.get(f"/tasks/{task_id}").json()
        runs.append((task["startedAt"], task["completedAt"]))
        events = api.get(f"/tasks/{task_id}/events").json()["items"]
        assert {e["workerId"] for e in events if e["workerId"]} == {wide}
    latest_start = max(start for start, _ in runs)
    earliest_end = min(end for _, end in runs)
    assert latest_start < earliest_end, f"the three jobs ran one after another: {runs}"


def test_a_job_that_crashes_its_worker_takes_no_healthy_job_with_it_to_the_dlq(
    api: httpx.Client, local_stack: LocalStack
) -> None:
    """Three healthy jobs run beside one that kills its worker every time, on one worker running
    4 at once. Each healthy job loses the run it shared with the crasher's first delivery; from
    then on every redelivered job runs alone, so only the crasher keeps dying and reaches the
    delivery limit."""
    with _only_worker(local_stack, {"WORKER_CONCURRENCY": "4"}):
        healthy = [submit(api, {"durationMs": 1500, "steps": 3}) for _ in range(3)]
        crasher = submit(api, {"outcome": "crash", "steps": 1, "durationMs": 500})
        crashed = wait_terminal(api, crasher, timeout=180)
        finished = [wait_terminal(api, task_id, timeout=60) for task_id in healthy]

    assert (crashed["status"], crashed["error"]["code"]) == ("FAILED", "DELIVERY_LIMIT")
    assert [task["status"] for task in finished] == ["COMPLETED"] * 3
    for task_id in healthy:
        events = api.get(f"/tasks/{task_id}/events").json()["items"]
        takeovers = [e for e in events if e["message"] == "taken over after a lost worker"]
        assert len(takeovers) <= 1, events
