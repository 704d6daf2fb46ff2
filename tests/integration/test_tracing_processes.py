"""Tracing through the real processes: `ast-api`, `ast-relay`, RabbitMQ and `ast-worker`, each with
OTEL_TRACES_EXPORTER=console, on a stack of their own (the session's stack runs untraced).

One job's spans, read back from each process's log, form one trace: the API's `POST /tasks` →
`task.accepted` → the worker's `job simulate` → its steps; the task resource's traceId is that
trace's id, and every line the worker logs for the job carries it. This is what the in-process
test (test_tracing.py) cannot show: the traceparent surviving the outbox, the relay and the broker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.stack.servers import LocalServers
from harness.stack.services import ServiceStack

pytestmark = pytest.mark.integration
STEPS = 2
SETTLE_S = 60.0


@pytest.fixture(scope="module")
def traced_stack(stack_run_dir: Path) -> Iterator[ServiceStack]:
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    stack = ServiceStack(
        stack_run_dir / "traced", LocalServers(), workers=1, env=env, show_progress=False, own_thread=True
    )
    with stack:
        yield stack


def json_objects(text: str) -> Iterator[dict[str, Any]]:
    """Every JSON object in a log: one-line log records and the console exporter's indented spans."""
    decoder = json.JSONDecoder()
    position = 0
    while (start := text.find("{", position)) != -1:
        try:
            found, position = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            position = start + 1
            continue
        if isinstance(found, dict):
            yield found


def spans_of(log: Path, trace_id: str) -> dict[str, dict[str, Any]]:
    objects = json_objects(log.read_text(encoding="utf-8", errors="replace"))
    return {obj["name"]: obj for obj in objects if obj.get("context", {}).get("trace_id") == f"0x{trace_id}"}


def run_job(api_url: str) -> dict[str, Any]:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        body = {"type": "simulate", "payload": {"durationMs": 50, "steps": STEPS}}
        task_id = client.post("/tasks", json=body).json()["taskId"]
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            task: dict[str, Any] = client.get(f"/tasks/{task_id}").json()
            if task["status"] == "COMPLETED":
                return task
            time.sleep(0.2)
    raise AssertionError(f"task {task_id} did not complete within {SETTLE_S} s")


def wait_for_spans(log: Path, trace_id: str, names: set[str]) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + 15
    while True:
        spans = spans_of(log, trace_id)
        if names <= set(spans) or time.monotonic() > deadline:
            return spans
        time.sleep(0.2)


def test_one_trace_from_the_api_process_to_the_workers_last_step(traced_stack: ServiceStack) -> None:
    task = run_job(traced_stack.endpoints.api_url)
    trace_id = task["traceId"]
    logs = traced_stack.log_dir
    steps = {f"step {n}/{STEPS}" for n in range(1, STEPS + 1)}
    api = wait_for_spans(logs / "api.log", trace_id, {"POST /tasks", "task.accepted"})
    worker = wait_for_spans(logs / "worker-0.log", trace_id, {"job simulate", *steps})

    assert api["task.accepted"]["parent_id"] == api["POST /tasks"]["context"]["span_id"]
    assert worker["job simulate"]["parent_id"] == api["task.accepted"]["context"]["span_id"]
    assert {worker[step]["parent_id"] for step in steps} == {worker["job simulate"]["context"]["span_id"]}

    lines = json_objects((logs / "worker-0.log").read_text(encoding="utf-8", errors="replace"))
    job_lines = [line for line in lines if line.get("taskId") == task["taskId"]]
    assert job_lines
    assert {line.get("traceId") for line in job_lines} == {trace_id}
