"""What the fault tests share: a stream of jobs submitted from a thread, and bounded waits on it.

The stream records every request in the test's History (the recording client), so the invariant
check afterwards judges exactly what a client saw while the fault was on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import asyncpg

from chaos.nemesis import Nemesis
from harness.client import ServiceClient
from harness.history import FAULT, NEMESIS, History, Operation
from harness.live_check import check_deployment
from harness.record import RunWriter
from harness.stack.base import StackEndpoints
from harness.stack.local import LocalStack
from harness.stack.readiness import run_sync
from harness.verdict import verdict_text

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
T = TypeVar("T")


class JobStream:
    """Submits `count` simulate jobs one after another, `interval_s` apart (the load's pace)."""

    def __init__(
        self,
        endpoints: StackEndpoints,
        history: History,
        *,
        count: int,
        payload: dict[str, Any] | None = None,
        interval_s: float = 0.05,
    ) -> None:
        self.client = ServiceClient(endpoints.api_url, history, token=endpoints.api_token, timeout_s=5.0)
        self.count = count
        self.payload = payload or {"durationMs": 200, "steps": 2}
        self.interval_s = interval_s
        self.accepted: list[str] = []
        self.attempts = 0
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-stream", daemon=True)

    def start(self) -> JobStream:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for _ in range(self.count):
                if self._stop.is_set():
                    return
                result = self.client.submit("simulate", self.payload)
                with self._changed:
                    self.attempts += 1
                    if result.ok and result.task_id:
                        self.accepted.append(result.task_id)
                    self._changed.notify_all()
                self._stop.wait(self.interval_s)
        finally:
            with self._changed:
                self._changed.notify_all()

    def wait(self, what: str, until: Callable[[], bool], timeout_s: float = 60.0) -> None:
        """Block until `until()` holds (checked after every submission), bounded."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not until():
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive() and not until():
                    raise AssertionError(f"job stream: never {what} (attempts {self.attempts})")
                self._changed.wait(min(left, 1.0))

    def wait_more_attempts(self, n: int, timeout_s: float = 60.0) -> None:
        target = self.attempts + n
        self.wait(f"{target} attempts", lambda: self.attempts >= target, timeout_s)

    def wait_more_accepted(self, n: int, timeout_s: float = 60.0) -> None:
        target = len(self.accepted) + n
        self.wait(f"{target} jobs accepted", lambda: len(self.accepted) >= target, timeout_s)

    def join(self, timeout_s: float = 120.0) -> list[str]:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the job stream did not finish"
        self.client.close()
        return list(self.accepted)

    def stop(self) -> None:
        self._stop.set()


def poll(what: str, probe: Callable[[], T | None], timeout_s: float = 90.0, interval_s: float = 0.1) -> T:
    """Call `probe` until it returns something other than None, bounded; that value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(interval_s)
    raise AssertionError(f"never {what} within {timeout_s:.0f}s")


async def _statuses(dsn: str, task_ids: list[str]) -> dict[str, str]:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await connection.fetch(
            "SELECT task_id::text AS id, status FROM tasks WHERE task_id = ANY($1::uuid[])", task_ids
        )
    finally:
        await connection.close()
    return {row["id"]: row["status"] for row in rows}


def wait_all_terminal(dsn: str, task_ids: list[str], timeout_s: float = 120.0) -> dict[str, str]:
    """Poll PostgreSQL until every task is terminal; their statuses. Fails with the stragglers."""
    deadline = time.monotonic() + timeout_s
    statuses: dict[str, str] = {}
    while time.monotonic() < deadline:
        try:
            statuses = run_sync(_statuses(dsn, task_ids), own_thread=True)
        except (OSError, asyncpg.PostgresError):
            statuses = {}
        if len(statuses) == len(task_ids) and all(s in TERMINAL for s in statuses.values()):
            return statuses
        time.sleep(0.25)
    stuck = {t: statuses.get(t, "missing") for t in task_ids if statuses.get(t) not in TERMINAL}
    raise AssertionError(f"{len(stuck)} of {len(task_ids)} tasks never settled: {list(stuck.items())[:10]}")


def check_invariants(
    endpoints: StackEndpoints, history: History, writer: RunWriter, name: str, suite: str = "integration"
) -> None:
    """The invariant check over this test's history and the settled stores; recorded, and fails
    the test with the verdict table when any invariant broke."""
    live = run_sync(check_deployment(endpoints, history, settle_timeout_s=60), own_thread=True)
    writer.check(name, suite, live.verdict, settled=live.settled, history=history.path)
    assert live.verdict.valid == "held", verdict_text(live.verdict)


def fault_ops(history: History) -> list[Operation]:
    return [op for op in history if op.process == NEMESIS and op.f == FAULT]


def run_fault_with_jobs(
    stack: LocalStack, nemesis: Nemesis, name: str, writer: RunWriter, node_id: str, **params: Any
) -> Operation:
    """Jobs flowing, the fault on until the stream made 3 more requests, healed, and 5 more jobs
    accepted after the heal; then every accepted job must complete."""
    stream = JobStream(stack.endpoints, nemesis.history, count=400, interval_s=0.2).start()
    try:
        stream.wait("5 jobs accepted", lambda: len(stream.accepted) >= 5)
        with nemesis.fault(name, **params) as active:
            assert active is not None, f"{name} was skipped"
            stream.wait_more_attempts(3)
        stream.wait_more_accepted(5)
    finally:
        stream.stop()
        accepted = stream.join()
    statuses = wait_all_terminal(stack.endpoints.postgres_dsn, accepted)
    assert set(statuses.values()) == {"COMPLETED"}, statuses
    check_invariants(stack.endpoints, nemesis.history, writer, node_id)
    start, end = fault_ops(nemesis.history)
    assert start.type == "invoke"
    assert end.type == "ok"
    assert end.invoke_index == start.index
    return end


