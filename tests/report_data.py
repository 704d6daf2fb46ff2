"""A made-up run directory for the report's tests, written through the run record's own writer
(`RunWriter`): every record file the report reads, and no servers.

50 tasks over 20 s in two tests, each polled until terminal: `test_many` (tasks 0-24, one FAILED,
and invariant 3 broken by one task) and `test_terminal` (tasks 25-49, one CANCELLED). A broker-kill
fault from 6 s to 10 s, during which latency rises and one submit times out; a sample every second
(the database does not answer one of them); each test's snapshot; results.json as a gate writes it;
JUnit and a log beside them.

History stamps operations with the clock, so the clock History reads is set to each chosen instant
(`_Clock`): the files are the writer's, only the times are made up.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import harness.history
from harness.checker import Counts, InvariantResult, Verdict, Violation, invariant_names
from harness.history import History
from harness.record import RunWriter
from harness.record.records import (
    CheckRecord,
    QueueLevel,
    RunResults,
    Sample,
    SettleRecord,
    SuiteResult,
    TestTotals,
    merge_checks,
)
from harness.state import EventRow, Settled, Snapshot, TaskRow

T0 = 1_764_000_000.0
SUITE = "e2e"
TEST_MANY = "scenarios/e2e/test_lifecycle.py::test_many"
TEST_TERMINAL = "scenarios/e2e/test_cancel.py::test_terminal"


def task_id(i: int) -> str:
    return f"{i * 2654435761 % 2**32:08x}-0000-4000-8000-{i:012d}"


TASKS = 50
SPLIT = 25
BROKEN_TASK = task_id(7)
FAILED_TASK = task_id(11)
CANCELLED_TASK = task_id(31)
FAULT = ("broker-kill", T0 + 6.0, T0 + 10.0)
SAMPLES = 27
SAMPLE_DOWN = 8


@dataclass(frozen=True)
class MadeUpRun:
    run_dir: Path
    broken_task: str = BROKEN_TASK


class _Clock:
    """What History reads as `time`: `now` is the instant the next operation is stamped with."""

    def __init__(self) -> None:
        self.now = T0

    def time(self) -> float:
        return self.now

    def monotonic_ns(self) -> int:
        return int(self.now * 1e9)


Request = tuple[str, str, str]
SUBMIT: Request = ("submit", "POST", "/tasks")


def get(tid: str) -> Request:
    return ("get", "GET", f"/tasks/{tid}")


@dataclass
class _Recorder:
    """Records requests into a real History at chosen instants."""

    history: History
    clock: _Clock

    def call(self, at: float, took: float, request: Request, **done: Any) -> None:
        f, method, path = request
        self.clock.now = at
        body = {"type": "simulate"} if f == "submit" else None
        invocation = self.history.invoke("p0", f, method, path, body=body)
        self.clock.now = at + took
        self.history.complete(invocation, done.pop("type", "ok"), **done)


@contextlib.contextmanager
def _recording(writer: RunWriter, name: str) -> Iterator[_Recorder]:
    clock = _Clock()
    with mock.patch.object(harness.history, "time", clock), writer.history(name) as history:
        yield _Recorder(history, clock)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def final_status(i: int) -> str:
    return {FAILED_TASK: "FAILED", CANCELLED_TASK: "CANCELLED"}.get(task_id(i), "COMPLETED")


def submitted_at(i: int) -> float:
    return T0 + i * 0.4


def done_at(i: int) -> float:
    slow = FAULT[1] <= submitted_at(i) <= FAULT[2]
    return submitted_at(i) + (4.0 if slow else 0.8) + (i % 5) * 0.15


# --- the client's side --------------------------------------------------------------------------


def _client(recorder: _Recorder, i: int) -> None:
    tid, status, at = task_id(i), final_status(i), submitted_at(i)
    recorder.call(at, 0.01, SUBMIT, status_code=202, task_id=tid, task_status="PENDING")
    polling = {"status_code": 200, "task_id": tid, "task_status": "IN_PROGRESS"}
    for k in range(3):
        recorder.call(at + 0.3 + k * 0.2, 0.005, get(tid), **polling, value={"taskId": tid, "progress": 50})
    answer = {"taskId": tid, "type": "simulate", "status": status}
    recorder.call(done_at(i) + 0.1, 0.005, get(tid), **(polling | {"task_status": status}), value=answer)


# --- the service's side -------------------------------------------------------------------------


def _task(i: int) -> TaskRow:
    status = final_status(i)
    return TaskRow(
        task_id=task_id(i),
        type="simulate",
        status=status,
        progress=100,
        retry_count=0,
        max_retries=3,
        version=4,
        attempt=1,
        error={"code": "SIMULATED_TERMINAL"} if status == "FAILED" else None,
        created_at=_iso(submitted_at(i)),
        updated_at=_iso(done_at(i)),
    )


def _events(i: int) -> list[EventRow]:
    tid, status, at = task_id(i), final_status(i), submitted_at(i)
    moves = [
        ("status", None, "PENDING", 0, 0, None, "accepted", at + 0.005),
        ("status", "PENDING", "IN_PROGRESS", 0, 1, f"worker-{i % 2}", "started", at + 0.2),
        ("progress", "IN_PROGRESS", "IN_PROGRESS", 50, 1, f"worker-{i % 2}", None, at + 0.5),
        ("status", "IN_PROGRESS", status, 100, 1, f"worker-{i % 2}", status.lower(), done_at(i)),
    ]
    if tid == BROKEN_TASK:
        moves.append(("status", status, "IN_PROGRESS", 100, 2, "worker-1", "started again", done_at(i) + 0.3))
    return [
        EventRow(
            i * 10 + n,
            tid,
            kind,
            to,
            n + 1,
            from_status=before,
            progress=progress,
            attempt=attempt,
            worker_id=worker,
            message=message,
            created_at=_iso(t),
        )
        for n, (kind, before, to, progress, attempt, worker, message, t) in enumerate(moves)
    ]


def _snapshot(tasks: range) -> Settled:
    rows = tuple(_task(i) for i in tasks)
    events = tuple(e for i in tasks for e in _events(i))
    snapshot = Snapshot(tasks=rows, events=events, taken_at=done_at(tasks[-1]) + 1.0)
    return Settled(snapshot=snapshot, settled=True, waited_s=1.5)


def _verdict(tasks: range, broken: bool) -> Verdict:
    results = []
    for number, name in sorted(invariant_names().items()):
        violations: tuple[Violation, ...] = ()
        if broken and number == 3:
            evidence = {"events": [{"eventId": 74, "status": "IN_PROGRESS"}]}
            violations = (
                Violation((BROKEN_TASK,), "an event follows the terminal COMPLETED event", evidence),
            )
        results.append(InvariantResult(name, number, "broken" if violations else "held", violations))
    statuses = [final_status(i) for i in tasks]
    counts = Counts(
        accepted=len(tasks),
        completed=statuses.count("COMPLETED"),
        failed=statuses.count("FAILED"),
        cancelled=statuses.count("CANCELLED"),
        unknown=1 if 0 in tasks else 0,
    )
    return Verdict("broken" if broken else "held", tuple(results), counts)


# --- time series, results, side files -----------------------------------------------------------


def _sample(s: int) -> Sample:
    t = T0 + s
    if s == SAMPLE_DOWN:
        level = QueueLevel(ready=12, unacked=0, consumers=0)
        return Sample(
            t=t, suite=SUITE, queues={"ast.simulate.q": level}, postgres_error="ConnectionRefusedError"
        )
    depth = max(0, 12 - abs(s - 9) * 2) if 6 <= s <= 14 else s % 2
    queues = {
        "ast.simulate.q": QueueLevel(ready=depth, unacked=min(depth, 2), consumers=2),
        "ast.simulate.retry.200ms.q": QueueLevel(ready=1 if s in (11, 12) else 0, unacked=0),
        "ast.simulate.retry.400ms.q": QueueLevel(ready=0, unacked=0),
        "ast.jobs.dlq": QueueLevel(ready=1 if s > 15 else 0, unacked=0),
    }
    own = range(SPLIT) if t < submitted_at(SPLIT) else range(SPLIT, TASKS)  # tables truncated per test
    tasks: dict[str, int] = {}
    for i in own:
        if submitted_at(i) <= t:
            status = final_status(i) if done_at(i) <= t else "IN_PROGRESS"
            tasks[status] = tasks.get(status, 0) + 1
    return Sample(t=t, suite=SUITE, queues=queues, tasks=tasks)


_JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="e2e" tests="4" failures="{failures}" time="12.5">
<testcase classname="scenarios.e2e.test_lifecycle" name="test_many" time="1.0"/>
<testcase classname="scenarios.e2e.test_lifecycle" name="test_retries" time="2.0"/>
<testcase classname="scenarios.e2e.test_lifecycle" name="test_skip" time="0">
<skipped message="n/a"/></testcase>
<testcase classname="scenarios.e2e.test_cancel" name="test_terminal" time="3.0">{failure}</testcase>
</testsuite></testsuites>
"""
_FAILURE = """<failure message="assert 'IN_PROGRESS' == 'CANCELLED'">trace</failure>"""


def _results(checks: list[CheckRecord], broken: bool) -> RunResults:
    """results.json as a gate writes it: the checks merged, the suite's outcome, the reasons."""
    verdict = merge_checks(checks)
    suite = SuiteResult(
        name=SUITE,
        status="failed" if broken else "passed",
        exit_code=1 if broken else 0,
        duration_s=12.5,
        tests=TestTotals(total=4, passed=2 if broken else 3, failed=1 if broken else 0, skipped=1),
        junit="junit.xml",
    )
    reasons = ("invariant 3 terminal is final: broken", "suite e2e failed") if broken else ()
    return RunResults(
        kind="gate",
        passed=not broken,
        reasons=reasons,
        verdict=verdict,
        checked=len(checks),
        settle=SettleRecord(settled=True, waited_s=1.5),
        suites=(suite,),
        tests=suite.tests,
        timings={"stack_start_s": 3.2, "e2e_s": 12.5, "total_s": 18.0},
    )


def make_run_dir(run_dir: Path, *, broken: bool = True, snapshots: bool = True) -> MadeUpRun:
    """Fills `run_dir` with a complete made-up run; returns what the tests assert on.

    `broken`: invariant 3 broken in `test_many` and a failed JUnit test, else all held and passed.
    `snapshots`: each check saves its snapshot, else checks hold verdicts only (no service side).
    """
    writer = RunWriter.create(run_dir, "gate")
    checks = []
    for name, tasks in ((TEST_MANY, range(SPLIT)), (TEST_TERMINAL, range(SPLIT, TASKS))):
        with _recording(writer, name) as recorder:
            for i in tasks:
                _client(recorder, i)
            if name == TEST_MANY:
                recorder.call(T0 + 7.0, 5.0, SUBMIT, type="info", error="ReadTimeout: timed out")
        settled = _snapshot(tasks) if snapshots else None
        verdict = _verdict(tasks, broken and name == TEST_MANY)
        checks.append(writer.check(name, SUITE, verdict, settled=settled, history=recorder.history.path))
    with _recording(writer, "nemesis") as nemesis:
        nemesis.clock.now = FAULT[1]
        start = nemesis.history.fault_start(FAULT[0], target="rabbitmq")
        nemesis.clock.now = FAULT[2]
        nemesis.history.fault_end(start)
    for s in range(SAMPLES):
        writer.sample(_sample(s))
    writer.results(_results(checks, broken))
    (run_dir / "junit.xml").write_text(
        _JUNIT.format(failures=int(broken), failure=_FAILURE if broken else "")
    )
    (run_dir / "logs").mkdir(exist_ok=True)
    (run_dir / "logs" / "api.log").write_text(
        "2025-11-24 15:00:00 INFO started\n2025-11-24 15:00:07 ERROR broker connection lost taskId=x\n"
    )
    return MadeUpRun(run_dir)
