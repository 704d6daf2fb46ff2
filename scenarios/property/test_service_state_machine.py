"""A Hypothesis state machine against the live API: random programs of submits, idempotent repeats,
cancels, events and DLQ replays, checked against a model of what each task must become.

Why a state machine: the e2e suite checks each behaviour alone; here they interleave (a cancel
racing a retry, a replay of a task whose twin is still running, a key reused with another body),
and Hypothesis shrinks a failing program to its few essential steps and prints it.

As it goes: every step ends with one read of all tasks, which must show only statuses of the
machine, never change a terminal status, and never reach a terminal status other than the
model's. At teardown: the system settles, each task's status and retry count match the model,
and the invariants (`check_all`) hold over the program's history and the final snapshot.
Each program starts from a clean state and records its own History under the run directory.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from harness.checker import Expectations, Verdict, check_all
from harness.client import CallResult, ServiceClient
from harness.observe.settle import wait_until_settled
from harness.pytest_plugin import suite_name
from harness.record import RunWriter
from harness.stack.base import StackEndpoints
from harness.stack.readiness import run_sync
from harness.stack.reset import reset_service_state
from harness.state import Settled, Snapshot
from scenarios.e2e.helpers import dlq_task_ids
from scenarios.property.limits import STATE_MACHINE_EXAMPLES, STATE_MACHINE_STEPS
from scenarios.property.model import (
    EVENT_TYPE,
    STATUSES,
    TERMINAL,
    JobSpec,
    ServiceModel,
    TrackedTask,
    predict,
)
from scenarios.property.stats import ExampleCounter

pytestmark = [pytest.mark.property, pytest.mark.timeout(900)]

EVENT_KEYS = ("pr-1", "pr-2")
WAIT_TIMEOUT_S = 30.0
SETTLE_TIMEOUT_S = 90.0
POLL_S = 0.1
WAITABLE = frozenset({"success", "retryable"})


# --- what the rules draw ------------------------------------------------------------------------


@st.composite
def job_specs(draw: st.DrawFn) -> JobSpec:
    """Simulate jobs that finish within seconds. `crash` is left to its e2e test: each crash costs a
    worker restart. A hang gets a short `timeoutMs`, and its good attempts stay well inside it."""
    outcome = draw(st.sampled_from(["success", "success", "retryable", "retryable", "terminal", "hang"]))
    hang = outcome == "hang"
    return JobSpec(
        outcome=outcome,
        steps=draw(st.integers(1, 4)),
        duration_ms=draw(st.integers(0, 100 if hang else 300)),
        fail_attempts=draw(st.none() | st.integers(0, 5)),
        timeout_ms=draw(st.sampled_from([300, 500])) if hang else None,
        wait_key=draw(st.none() | st.sampled_from(EVENT_KEYS)) if outcome in WAITABLE else None,
        priority=draw(st.none() | st.integers(0, 9)),
    )


event_payloads = st.none() | st.dictionaries(
    st.sampled_from(["approved", "by"]), st.booleans() | st.text(max_size=5)
)


# --- the machine --------------------------------------------------------------------------------


@dataclass
class MachineEnv:
    """What every program of one test shares: the stack, where histories go, the example count."""

    endpoints: StackEndpoints
    writer: RunWriter
    test_name: str
    counter: ExampleCounter
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    races: dict[str, int] = field(default_factory=dict)


class ServiceMachine(RuleBasedStateMachine):
    tasks = Bundle("tasks")
    keyed = Bundle("keyed")
    env: MachineEnv  # set by the test before Hypothesis builds any machine

    def __init__(self) -> None:
        super().__init__()
        self.env.counter.examples += 1
        number = next(self.env.numbers)
        run_sync(_clean(self.env.endpoints), own_thread=True)
        self.name = f"{self.env.test_name}[program-{number:03d}]"
        self.history = self.env.writer.history(self.name)
        endpoints = self.env.endpoints
        self.client = ServiceClient(
            endpoints.api_url, self.history, token=endpoints.api_token, process="machine"
        )
        self.model = ServiceModel(races=self.env.races)
        self._key_numbers = itertools.count(1)
        self._reads = 0  # the invariant runs once before the first rule, then after each

    # --- rules ----------------------------------------------------------------------------------

    @rule(target=tasks, spec=job_specs())
    def submit(self, spec: JobSpec) -> str:
        return self._submit(spec, key=None).task_id

    @rule(target=keyed, spec=job_specs())
    def submit_with_key(self, spec: JobSpec) -> str:
        """Keyed tasks live in their own bundle, so the repeat rules always draw a task with a key."""
        return self._submit(spec, key=f"prop-key-{next(self._key_numbers)}").task_id

    @rule(task_id=keyed)
    def repeat_key(self, task_id: str) -> None:
        """The same key and body again: 202 with the same taskId, and no second task."""
        task = self.model.tasks[task_id]
        result = self.client.submit("simulate", task.spec.payload(), task.spec.priority, task.key)
        assert result.status_code == 202, _show(result)
        assert result.task_id == task_id, f"same key and body gave another task: {_show(result)}"

    @rule(task_id=keyed, spec=job_specs())
    def reuse_key(self, task_id: str, spec: JobSpec) -> None:
        """The key with a drawn body: the same task when the body is the same, else 409."""
        task = self.model.tasks[task_id]
        result = self.client.submit("simulate", spec.payload(), spec.priority, task.key)
        if spec.same_request(task.spec):
            assert result.status_code == 202, _show(result)
            assert result.task_id == task_id, _show(result)
            return
        assert result.status_code == 409, f"key reused with another body: {_show(result)}"
        assert _error(result)["details"]["taskId"] == task_id, _show(result)

    @rule(task_id=tasks | keyed, delay_ms=st.sampled_from([0, 0, 100, 300]))
    def cancel(self, task_id: str, delay_ms: int) -> None:
        """202 and CANCELLED unless the task is terminal (409); a cancel may lose a race with the
        task's own end, and then the 409 must name the status the model predicted."""
        task = self.model.tasks[task_id]
        time.sleep(delay_ms / 1000)
        result = self.client.cancel(task_id)
        known_terminal = task.cancelled or task.seen_terminal is not None
        if result.status_code == 202 and not known_terminal:
            assert result.body["status"] == "CANCELLED", _show(result)
            task.cancelled = True
            self.model.note_race("cancel_won")
            return
        assert result.status_code == 409, f"cancel of {task_id} ({task.expected_status}): {_show(result)}"
        status = _error(result)["details"]["status"]
        assert status == task.expected_status, f"cancel found {status}, model says {task.expected_status}"
        task.seen_terminal = status
        self.model.note_race("cancel_409_known_terminal" if known_terminal else "cancel_lost_to_completion")

    @rule(wait_key=st.sampled_from(EVENT_KEYS), payload=event_payloads)
    def send_event(self, wait_key: str, payload: dict[str, Any] | None) -> None:
        """Waits until every task the model parks on the key is WAITING_FOR_EVENT (so the count is
        exact, not a race with a task still on its way there), then all of them resume."""
        parked = self.model.parked_on(wait_key)
        self._await([t.task_id for t in parked], lambda s: s == "WAITING_FOR_EVENT", "WAITING_FOR_EVENT")
        result = self.client.send_event(EVENT_TYPE, wait_key, payload)
        assert result.status_code == 202, _show(result)
        assert result.body == {"resumed": len(parked)}, f"{len(parked)} tasks were parked: {_show(result)}"
        for task in parked:
            task.resumed = True

    @rule(target=tasks, picks=st.lists(tasks | keyed, min_size=1, max_size=3, unique=True))
    def replay_some(self, picks: list[str]) -> Any:
        return multiple(*self._replay(picks))

    @rule(target=tasks)
    def replay_all(self) -> Any:
        return multiple(*self._replay(None))

    # --- checked as it goes ---------------------------------------------------------------------

    @invariant()
    def reads_agree_with_the_model(self) -> None:
        """One listing of every task: legal statuses only, terminal is final, and terminal means
        the model's terminal status."""
        self._reads += 1
        page = self.client.list(limit=500)
        assert page.status_code == 200, _show(page)
        assert page.body["nextCursor"] is None, "more than one page of tasks"
        for item in page.body["items"]:
            self._check_read(item)

    def _check_read(self, item: dict[str, Any]) -> None:
        task_id, status = item["taskId"], item["status"]
        assert status in STATUSES, f"{task_id} shows {status!r}, not a status of the machine"
        task = self.model.tasks.get(task_id)
        assert task is not None, f"{task_id} ({status}) was never accepted by this program"
        assert 0 <= item["progress"] <= 100, item
        assert item["retryCount"] <= item["maxRetries"], item
        if task.seen_terminal is not None:
            assert status == task.seen_terminal, f"{task_id}: terminal {task.seen_terminal}, now {status}"
        if status in TERMINAL:
            assert status == task.expected_status, f"{task_id} ended {status}, not {task.expected_status}"
            task.seen_terminal = status
        if task.cancelled:
            assert status == "CANCELLED", f"{task_id} was cancelled (202) but reads {status}"

    def teardown(self) -> None:
        self.env.counter.steps += max(0, self._reads - 1)
        try:
            settled = self._settle()
            self._check_invariants(settled)
            self._check_final_statuses(settled.snapshot)
        finally:
            self.client.close()
            self.history.close()

    # --- helpers --------------------------------------------------------------------------------

    def _submit(self, spec: JobSpec, key: str | None) -> TrackedTask:
        result = self.client.submit("simulate", spec.payload(), spec.priority, key)
        assert result.status_code == 202, _show(result)
        assert result.body["status"] == "PENDING", _show(result)
        assert result.task_id is not None, _show(result)
        assert result.task_id not in self.model.tasks, f"a new submit returned a known task: {_show(result)}"
        return self.model.accept(TrackedTask(result.task_id, spec, predict(spec), key=key))

    def _replay(self, picks: list[str] | None) -> list[str]:
        """Waits until the tasks the model sends to the DLQ are there, replays, and adopts the new
        tasks (same spec, fresh attempts). Only a dead-lettered, not yet replayed task counts."""
        chosen = self.model.tasks.values() if picks is None else [self.model.tasks[p] for p in picks]
        candidates = [t for t in chosen if t.replayable]
        self._await_dead_letters(candidates)
        result = self.client.replay_dlq(picks)
        assert result.status_code == 202, _show(result)
        new_ids = [str(i) for i in result.body["taskIds"]]
        assert result.body["replayed"] == len(candidates) == len(new_ids), (
            f"expected {[t.task_id for t in candidates]} replayed: {_show(result)}"
        )
        origins = replay_origins(self.env.endpoints.postgres_dsn, new_ids)
        for new_id in new_ids:
            old = self.model.tasks[origins[new_id]]
            old.replayed_as = new_id
            self.model.accept(TrackedTask(new_id, old.spec, predict(old.spec), replay_of=old.task_id))
        return new_ids

    def _await_dead_letters(self, tasks: list[TrackedTask]) -> None:
        ids = [t.task_id for t in tasks]
        self._await(ids, lambda s: s == "FAILED", "FAILED")
        deadline = time.monotonic() + WAIT_TIMEOUT_S
        while ids:
            missing = set(ids) - set(dlq_task_ids(self.env.endpoints.management_url))
            if not missing:
                return
            assert time.monotonic() < deadline, f"FAILED tasks never reached the DLQ: {sorted(missing)}"
            time.sleep(POLL_S)

    def _await(self, task_ids: list[str], done: Callable[[str], bool], what: str) -> None:
        """Polls each task until `done(status)`; a task that settles elsewhere fails at once."""
        deadline = time.monotonic() + WAIT_TIMEOUT_S
        for task_id in task_ids:
            while True:
                status = self.client.get(task_id).body["status"]
                if done(status):
                    break
                assert status not in TERMINAL, f"{task_id} ended {status} while the model awaited {what}"
                assert time.monotonic() < deadline, f"{task_id} still {status} after {WAIT_TIMEOUT_S}s"
                time.sleep(POLL_S)

    def _settle(self) -> Settled:
        endpoints = self.env.endpoints
        settled = run_sync(
            wait_until_settled(
                endpoints.postgres_dsn, endpoints.management_url, amqp_url=endpoints.amqp_url,
                timeout_s=SETTLE_TIMEOUT_S,
            ),
            own_thread=True,
        )
        assert settled.settled, f"not settled after {settled.waited_s:.0f}s: {settled.reasons}"
        return settled

    def _check_final_statuses(self, snapshot: Snapshot) -> None:
        rows = {row.task_id: row for row in snapshot.tasks}
        phantoms = sorted(set(rows) - set(self.model.tasks))
        assert not phantoms, f"tasks in PostgreSQL that no request created: {phantoms}"
        wrong = [_mismatch(task, rows.get(task.task_id), snapshot) for task in self.model.tasks.values()]
        wrong = [w for w in wrong if w]
        assert not wrong, "final states differ from the model:\n" + "\n".join(wrong)

    def _check_invariants(self, settled: Settled) -> None:
        """Judged like every other test: the program's verdict and snapshot join the run record."""
        verdict = check_all(self.history, settled.snapshot, Expectations(waiting=self.model.waiting_ids()))
        self.env.writer.check(self.name, suite_name(), verdict, settled=settled, history=self.history.path)
        assert verdict.valid == "held", _explain(verdict)


# --- plain functions ----------------------------------------------------------------------------


async def _clean(endpoints: StackEndpoints) -> None:
    await reset_service_state(endpoints)


def replay_origins(dsn: str, new_ids: list[str]) -> dict[str, str]:
    """new taskId -> the FAILED task it replays, read from `tasks.replay_of` (the API does not show it)."""
    if not new_ids:
        return {}

    async def read() -> dict[str, str]:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            rows = await conn.fetch(
                "SELECT task_id::text, replay_of::text FROM tasks WHERE task_id = ANY($1::uuid[])", new_ids
            )
        finally:
            await conn.close()
        return {r["task_id"]: r["replay_of"] for r in rows}

    origins = run_sync(read(), own_thread=True)
    assert set(origins) == set(new_ids), f"replayed tasks missing from PostgreSQL: {origins}"
    assert all(origins.values()), f"replays without replay_of: {origins}"
    return origins


def _mismatch(task: TrackedTask, row: Any, snapshot: Snapshot) -> str | None:
    """Why the task's final row is not what the model predicts, with its timeline; None if it is."""
    if row is None:
        return f"{task.task_id}: accepted but missing ({task.spec})"
    expected_retries = None if task.cancelled else task.prediction.retry_count
    if row.status == task.expected_status and expected_retries in (None, row.retry_count):
        return None
    timeline = [e.status for e in snapshot.events if e.task_id == task.task_id and e.kind == "status"]
    return (
        f"{task.task_id}: {row.status} retryCount={row.retry_count}, expected {task.expected_status} "
        f"retryCount={expected_retries} ({task.spec}, cancelled={task.cancelled}, resumed={task.resumed}); "
        f"timeline {timeline}"
    )


def _explain(verdict: Verdict) -> str:
    lines = [f"invariants {verdict.valid}:"]
    for result in verdict.results:
        if result.status != "held":
            lines.append(f"  {result.number} {result.name}: {result.status} {result.note}")
            lines.extend(f"    {v.task_ids}: {v.message}" for v in result.violations[:5])
    return "\n".join(lines)


def _error(result: CallResult) -> dict[str, Any]:
    error: dict[str, Any] = result.body["error"]
    return error


def _show(result: CallResult) -> str:
    return f"{result.op.method} {result.op.path} -> {result.status_code} {result.body}"


# --- the test -----------------------------------------------------------------------------------


def test_random_programs_end_as_the_model_predicts(
    request: pytest.FixtureRequest,
    clean_state: StackEndpoints,
    run_writer: RunWriter,
    example_counter: ExampleCounter,
) -> None:
    ServiceMachine.env = MachineEnv(clean_state, run_writer, request.node.nodeid, example_counter)
    try:
        run_state_machine_as_test(
            ServiceMachine,
            settings=settings(
                max_examples=STATE_MACHINE_EXAMPLES,
                stateful_step_count=STATE_MACHINE_STEPS,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
                report_multiple_bugs=False,
                print_blob=True,
            ),
        )
    finally:
        example_counter.extra.update(races=ServiceMachine.env.races)
