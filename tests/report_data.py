"""A made-up run directory for the report's tests: every input the report reads, no servers.

50 tasks submitted over 20 s, each polled until terminal; one FAILED, one CANCELLED; a
broker-kill fault window from 6 s to 10 s during which latency rises; queue depth samples every
second; results.json with invariant 3 broken for one named task; JUnit, checks and a log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.history import Operation

T0 = 1_764_000_000.0


def task_id(i: int) -> str:
    return f"{i * 2654435761 % 2**32:08x}-0000-4000-8000-{i:012d}"


TASKS = 50
BROKEN_TASK = task_id(7)
FAILED_TASK = task_id(11)
CANCELLED_TASK = task_id(23)
FAULT = ("broker-kill", T0 + 6.0, T0 + 10.0)


@dataclass(frozen=True)
class MadeUpRun:
    run_dir: Path
    broken_task: str = BROKEN_TASK


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def _final_status(tid: str) -> str:
    return {FAILED_TASK: "FAILED", CANCELLED_TASK: "CANCELLED"}.get(tid, "COMPLETED")


def _latency(i: int, submitted: float) -> float:
    slow = FAULT[1] <= submitted <= FAULT[2]
    return (4.0 if slow else 0.8) + (i % 5) * 0.15


class _Ops:
    """Writes history lines with chosen times (History stamps the clock, so it is not used)."""

    def __init__(self) -> None:
        self.ops: list[Operation] = []

    def call(self, f: str, method: str, path: str, at: float, took: float, **done: Any) -> None:
        invoke = Operation(
            len(self.ops), "p0", "invoke", f, method, path, time_ns=int(at * 1e9), wall_time=at
        )
        self.ops.append(invoke)
        kind = done.pop("type", "ok")
        end = at + took
        self.ops.append(
            Operation(
                len(self.ops),
                "p0",
                kind,
                f,
                method,
                path,
                time_ns=int(end * 1e9),
                wall_time=end,
                invoke_index=invoke.index,
                **done,
            )
        )

    def write(self, path: Path) -> None:
        path.write_text("".join(op.to_json() + "\n" for op in self.ops))


def _task_rows(ops: _Ops) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    tasks, events = [], []
    for i in range(TASKS):
        tid, submitted = task_id(i), T0 + i * 0.4
        status, done = _final_status(tid), submitted + _latency(i, submitted)
        ops.call(
            "submit", "POST", "/tasks", submitted, 0.01, status_code=202, task_id=tid, task_status="PENDING"
        )
        for k in range(3):
            ops.call(
                "get",
                "GET",
                f"/tasks/{tid}",
                submitted + 0.3 + k * 0.2,
                0.005,
                status_code=200,
                task_id=tid,
                task_status="IN_PROGRESS",
                value={"taskId": tid, "progress": 50},
            )
        ops.call(
            "get",
            "GET",
            f"/tasks/{tid}",
            done + 0.1,
            0.005,
            status_code=200,
            task_id=tid,
            task_status=status,
            value={"taskId": tid, "type": "simulate", "status": status},
        )
        tasks.append(
            {
                "task_id": tid,
                "type": "simulate",
                "status": status,
                "progress": 100,
                "created_at": _iso(submitted),
                "completed_at": _iso(done),
            }
        )
        moves = [
            ("PENDING", 0, submitted + 0.005),
            ("IN_PROGRESS", 0, submitted + 0.2),
            ("IN_PROGRESS", 50, submitted + 0.5),
            (status, 100, done),
        ]
        for n, (st, progress, at) in enumerate(moves):
            events.append(
                {
                    "event_id": i * 10 + n,
                    "task_id": tid,
                    "kind": "status" if n != 2 else "progress",
                    "status": st,
                    "progress": progress,
                    "attempt": 1,
                    "worker_id": f"w{i % 2}",
                    "created_at": _iso(at),
                }
            )
    ops.call("submit", "POST", "/tasks", T0 + 7.0, 5.0, type="info", error="ReadTimeout: timed out")
    return tasks, events


def _results() -> dict[str, Any]:
    held = [
        {
            "number": n,
            "name": f"invariant {n}",
            "status": "held",
            "note": "",
            "violationCount": 0,
            "violations": [],
        }
        for n in range(1, 12)
        if n != 3
    ]
    broken = {
        "number": 3,
        "name": "Terminal is final",
        "status": "broken",
        "note": "",
        "violationCount": 1,
        "violations": [
            {
                "taskIds": [BROKEN_TASK],
                "message": "an event follows the terminal COMPLETED event",
                "evidence": {"events": [{"eventId": 73, "status": "IN_PROGRESS"}]},
            }
        ],
    }
    return {
        "valid": "broken",
        "counts": {
            "accepted": TASKS,
            "completed": TASKS - 2,
            "failed": 1,
            "cancelled": 1,
            "lost": 0,
            "duplicated": 0,
            "unknown": 1,
        },
        "invariants": sorted([*held, broken], key=lambda i: i["number"]),
        "snapshot": {"tasks": TASKS, "events": TASKS * 4},
        "settle": {"settled": True, "waitedS": 1.5, "reasons": []},
        "timings": {"stack start": 3.2, "check": 0.8},
    }


_JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="e2e" tests="4" failures="1" time="12.5">
<testcase classname="scenarios.e2e.test_lifecycle" name="test_completes" time="1.0"/>
<testcase classname="scenarios.e2e.test_lifecycle" name="test_retries" time="2.0"/>
<testcase classname="scenarios.e2e.test_lifecycle" name="test_skip" time="0">
<skipped message="n/a"/></testcase>
<testcase classname="scenarios.e2e.test_cancel" name="test_terminal" time="3.0">
<failure message="assert 'IN_PROGRESS' == 'CANCELLED'">trace</failure></testcase>
</testsuite></testsuites>
"""


def _side_files(run_dir: Path) -> None:
    (run_dir / "faults.jsonl").write_text(
        json.dumps({"name": FAULT[0], "start": FAULT[1], "end": FAULT[2]}) + "\n"
    )
    samples = [
        {
            "t": T0 + s,
            "queues": {
                "ast.simulate.q": max(0, 12 - abs(s - 9) * 2) if 6 <= s <= 14 else s % 2,
                "ast.jobs.dlq": 1 if s > 15 else 0,
            },
        }
        for s in range(0, 26)
    ]
    (run_dir / "queue_depths.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (run_dir / "junit.xml").write_text(_JUNIT)
    held = {"nodeid": "scenarios/e2e/test_lifecycle.py::test_completes", "valid": "held", "broken": []}
    broken = {  # the shape of harness.verdict.check_record
        "nodeid": "scenarios/e2e/test_cancel.py::test_terminal",
        "valid": "broken",
        "invariants": {"1": "held", "3": "broken"},
        "broken": [
            {
                "number": 3,
                "name": "Terminal is final",
                "status": "broken",
                "note": "",
                "taskIds": [CANCELLED_TASK],
                "violations": 1,
            }
        ],
    }
    checks = [held, broken]
    (run_dir / "checks.jsonl").write_text("".join(json.dumps(c) + "\n" for c in checks))
    (run_dir / "logs").mkdir(exist_ok=True)
    (run_dir / "logs" / "api.log").write_text(
        "2025-11-24 15:00:00 INFO started\n2025-11-24 15:00:07 ERROR broker connection lost taskId=x\n"
    )


def make_run_dir(run_dir: Path) -> MadeUpRun:
    """Fills `run_dir` with a complete made-up run; returns what the tests assert on."""
    run_dir.mkdir(parents=True, exist_ok=True)
    ops = _Ops()
    tasks, events = _task_rows(ops)
    ops.write(run_dir / "history.jsonl")
    (run_dir / "snapshot.json").write_text(json.dumps({"tasks": tasks, "events": events}))
    (run_dir / "results.json").write_text(json.dumps(_results(), indent=2))
    _side_files(run_dir)
    return MadeUpRun(run_dir)
