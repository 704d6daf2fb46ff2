"""Runs one drill against a started stack: steady state, method, rollback, verdict.

- steady state: the workload (simulate jobs at a steady rate, through the one recording client)
  and the completion rate it reaches before the first fault;
- method: the faults on their schedule, each an operation of the nemesis's history;
- rollback: every fault still injected is healed in a `finally`, on failure or Ctrl-C alike;
- verdict: settle (bounded), the invariant check over client + nemesis histories, the drill's
  own expectations, and recovery measured from the sampler's series (`chaos.recovery`).

The workload runs at least `TAIL_S` past the last heal, so recovery is measured under load.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from chaos.drill_faults import DrillFaults
from chaos.drill_model import WORKLOAD_FAULTS, Drill, FaultStep
from chaos.nemesis import ActiveFault, FaultCatalog, Nemesis, catalog_for
from chaos.recovery import Point, first_completion_s, rate_between, recovery_s
from harness.checker import Expectations, Verdict
from harness.client import ServiceClient
from harness.history import History
from harness.live_check import LiveCheck, check_deployment
from harness.load.merge import merge_histories
from harness.observe.sampler import Sampler
from harness.record import RunWriter
from harness.record.records import DrillRecord, Sample
from harness.stack.base import StackEndpoints, StackProvider
from harness.stack.readiness import run_sync
from harness.stack.reset import reset_service_state

TAIL_S = 8.0
WARMUP_S = 1.0
SUBMITTERS = 4
EVENT_TYPE = "drill"


@dataclass
class FaultRun:
    step: FaultStep
    started_at: float | None = None
    healed_at: float | None = None
    task_ids: tuple[str, ...] = ()
    error: str | None = None


@dataclass
class DrillResult:
    """One drill's verdict row as the run record keeps it, and the live check behind it (for
    the evidence a failing test prints)."""

    record: DrillRecord
    verdict: Verdict | None = None
    live: LiveCheck | None = None

    @property
    def passed(self) -> bool:
        return self.record.passed


def broken_invariants(verdict: Verdict) -> tuple[str, ...]:
    return tuple(f"{r.number} {r.name}" for r in verdict.results if r.status != "held")


class Workload:
    """The generator: simulate jobs at a steady rate from a few submitter threads, one client."""

    def __init__(self, drill: Drill, client: ServiceClient, seed: int) -> None:
        self.spec = drill.workload
        self.client = client
        self.random = random.Random(seed)
        self.wait_keys: list[str] = []
        self.sent = 0
        self._lock = threading.Lock()
        self._keys = itertools.count()

    def payload(self) -> dict[str, Any]:
        with self._lock:
            outcomes, weights = zip(*self.spec.mix.items(), strict=True)
            outcome = self.random.choices(outcomes, weights)[0]
            low, high = self.spec.job_ms
            body: dict[str, Any] = {"durationMs": self.random.randint(low, high), "steps": self.spec.steps}
        if outcome == "wait":
            key = f"k{next(self._keys)}"
            self.wait_keys.append(key)
            body["waitForEvent"] = {"type": EVENT_TYPE, "key": key}
        else:
            body["outcome"] = outcome
            if outcome != "success":
                body["failAttempts"] = self.spec.fail_attempts
            if outcome == "hang":
                body["timeoutMs"] = 1000
        return body

    def submit(self, payload: dict[str, Any], count: int = 1) -> list[str]:
        ids = []
        for _ in range(count):
            with self._lock:
                self.sent += 1
            result = self.client.submit("simulate", payload)
            if result.ok and result.task_id:
                ids.append(result.task_id)
        return ids

    def run_until(self, deadline: Callable[[], float], stop: threading.Event) -> None:
        """Submits at `rate` until `deadline()` (it may move later: a slow heal) or `stop`."""
        interval = 1.0 / self.spec.rate
        next_at = time.monotonic()
        with ThreadPoolExecutor(SUBMITTERS, thread_name_prefix="drill-submit") as pool:
            while not stop.is_set() and time.monotonic() < deadline():
                pool.submit(self.submit, self.payload())
                next_at += interval
                stop.wait(max(0.0, next_at - time.monotonic()))

    def resume_waiting(self) -> None:
        for key in self.wait_keys:
            self.client.send_event(EVENT_TYPE, key)


class Schedule:
    """The method: each fault injected at its time and healed after its hold, in a thread; `heal_all`
    is the rollback, safe to call at any time."""

    def __init__(self, drill: Drill, nemesis: Nemesis) -> None:
        self.nemesis = nemesis
        self.runs = [FaultRun(step) for step in sorted(drill.faults, key=lambda f: f.at_s)]
        self.active: dict[int, ActiveFault] = {}
        self.done = threading.Event()
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="drill-schedule", daemon=True)
        self.t0 = 0.0

    def start(self, t0: float) -> None:
        self.t0 = t0
        self._thread.start()

    def last_heal(self) -> float:
        healed = [r.healed_at for r in self.runs if r.healed_at is not None]
        return max(healed, default=self.t0)

    def _run(self) -> None:
        try:
            timeline = sorted(
                [(r.step.at_s, 0, i) for i, r in enumerate(self.runs)]
                + [(r.step.heal_s, 1, i) for i, r in enumerate(self.runs)]
            )
            for at_s, heal, index in timeline:
                if self._cancel.wait(max(0.0, self.t0 + at_s - time.monotonic())):
                    return
                if heal:
                    self._heal(index)
                else:
                    self._inject(index)
        finally:
            self.done.set()

    def _inject(self, index: int) -> None:
        run = self.runs[index]
        run.started_at = time.time()  # a restart is done within start(): its window opens here
        try:
            params = {**run.step.params}
            if run.step.name in WORKLOAD_FAULTS:
                params["count"] = run.step.count
            active = self.nemesis.start(run.step.name, **params)
        except Exception as exc:  # noqa: BLE001  (a fault that failed to inject is the drill's finding)
            run.error = f"{run.step.name} failed to inject: {type(exc).__name__}: {exc}"
            return
        if active is None:
            run.error = f"{run.step.name} was skipped on this stack (see the nemesis history)"
            return
        run.task_ids = tuple(getattr(active.fault, "task_ids", ()))
        with self._lock:
            self.active[index] = active

    def _heal(self, index: int) -> None:
        with self._lock:
            active = self.active.pop(index, None)
        if active is None:
            return
        run = self.runs[index]
        try:
            self.nemesis.stop(active)
        except Exception as exc:  # noqa: BLE001
            run.error = f"{run.step.name} failed to heal: {type(exc).__name__}: {exc}"
        run.healed_at = time.time()

    def heal_all(self) -> None:
        """Rollback: stop the schedule, wait for a step in progress, heal whatever is still injected."""
        self._cancel.set()
        self._thread.join(timeout=180)
        for index in list(self.active):
            self._heal(index)


@dataclass
class DrillRunner:
    """Runs drills against one started stack, recording into one run directory."""

    endpoints: StackEndpoints
    processes: FaultCatalog
    writer: RunWriter
    seed: int = 0
    samples: list[Sample] = field(default_factory=list)

    def sink(self, sample: Sample) -> None:
        self.writer.sample(sample)
        self.samples.append(sample)

    def run(self, drill: Drill) -> DrillResult:
        """One drill from a clean state (where the deployment allows wiping it)."""
        if self.endpoints.reset_allowed:
            run_sync(reset_service_state(self.endpoints), own_thread=True)
        started = time.monotonic()
        client_history = self.writer.history(f"{drill.name}-client")
        nemesis_history = self.writer.history(f"{drill.name}-nemesis")
        client = ServiceClient(
            self.endpoints.api_url,
            client_history,
            token=self.endpoints.api_token,
            timeout_s=5.0,
            process="drill",
        )
        workload = Workload(drill, client, self.seed)
        catalog = DrillFaults(self.endpoints, self.processes, workload.submit)
        schedule = Schedule(drill, Nemesis(nemesis_history, catalog))
        wall0 = time.time()
        try:
            self._method(drill, workload, schedule)
            workload.resume_waiting()
            result = self._verdict(
                drill, workload, schedule, client, [client_history, nemesis_history], wall0
            )
        finally:
            schedule.heal_all()
            client.close()
            client_history.close()
            nemesis_history.close()
        duration_s = round(time.monotonic() - started, 1)
        result.record = result.record.model_copy(update={"duration_s": duration_s})
        return result

    def _method(self, drill: Drill, workload: Workload, schedule: Schedule) -> None:
        t0 = time.monotonic()
        stop = threading.Event()
        schedule.start(t0)

        def deadline() -> float:
            end = t0 + drill.workload.duration_s
            if not schedule.done.is_set():
                return max(end, time.monotonic() + 1.0)
            healed = schedule.last_heal()
            return max(end, time.monotonic() - (time.time() - healed) + TAIL_S) if drill.faults else end

        try:
            workload.run_until(deadline, stop)
        finally:
            stop.set()

    def _verdict(
        self,
        drill: Drill,
        workload: Workload,
        schedule: Schedule,
        client: ServiceClient,
        histories: list[History],
        wall0: float,
    ) -> DrillResult:
        reasons = [r.error for r in schedule.runs if r.error]
        live = self._check(histories, drill.expect.settle_s)
        reasons += expectations(drill, schedule, live)
        if drill.expect.replay and not reasons:
            reasons += replay(client, schedule)
            live = self._check(histories, drill.expect.settle_s)
        points = [(s.t, s.terminal) for s in self.samples if s.t >= wall0 and not s.postgres_error]
        result = measure(drill, schedule, live, points, wall0, workload.sent)
        row = result.record
        reasons += [f"invariant {item} broken" for item in row.broken]
        if drill.expect.max_recovery_s is not None and (
            row.recovery_s is None or row.recovery_s > drill.expect.max_recovery_s
        ):
            reasons.append(f"recovery {row.recovery_s}s beyond {drill.expect.max_recovery_s}s")
        result.record = row.model_copy(update={"passed": not reasons, "reasons": tuple(reasons)})
        self.writer.check(drill.name, "drill", live.verdict, settled=live.settled)
        return result

    def _check(self, histories: list[History], settle_s: float) -> LiveCheck:
        merged = merge_histories([History.from_ops(h.ops) for h in histories])
        check = check_deployment(
            self.endpoints, merged, Expectations(waiting=None), settle_timeout_s=settle_s
        )
        return run_sync(check, own_thread=True)


@contextmanager
def drill_session(stack: StackProvider, writer: RunWriter) -> Iterator[DrillRunner]:
    """Starts `stack` and samples it while drills run against it; the caller stops the stack."""
    endpoints = stack.start()
    runner = DrillRunner(endpoints, catalog_for(stack), writer)
    with Sampler(endpoints, runner.sink, suite="drill"):
        yield runner


def injected(schedule: Schedule, *names: str) -> set[str]:
    return {t for r in schedule.runs if r.step.name in names for t in r.task_ids}


def expectations(drill: Drill, schedule: Schedule, live: LiveCheck) -> list[str]:
    """The drill's own expectations over the settled snapshot; one line per one that failed."""
    reasons = []
    snapshot = live.settled.snapshot
    reason = drill.expect.dead_letter_reason
    if reason is not None:
        wanted = injected(schedule, "poison-message", "retry-exhaustion")
        in_dlq = {m.task_id for m in snapshot.dlq_messages if m.task_id}
        if in_dlq != wanted:
            reasons.append(f"DLQ holds {len(in_dlq)} tasks, not exactly the {len(wanted)} injected")
        bad = [m.death_reason for m in snapshot.dlq_messages if not (m.death_reason or "").startswith(reason)]
        if bad:
            reasons.append(f"DLQ messages with x-death reason {bad[:3]}, not {reason}")
    if drill.expect.runs_once:
        for task_id in sorted(injected(schedule, "duplicate-delivery")):
            task = snapshot.tasks_by_id.get(task_id)
            results = len(snapshot.results_by_task.get(task_id, ()))
            if task is None or task.status != "COMPLETED" or results != 1:
                status = task.status if task else "missing"
                reasons.append(f"duplicated task {task_id} is {status} with {results} results, not once")
    return reasons


def replay(client: ServiceClient, schedule: Schedule) -> list[str]:
    """A DLQ replay of the injected jobs must bring every one of them back."""
    wanted = sorted(injected(schedule, "poison-message", "retry-exhaustion"))
    answer = client.replay_dlq(wanted)
    replayed = answer.body.get("replayed") if isinstance(answer.body, dict) else None
    if not answer.ok or replayed != len(wanted):
        return [f"DLQ replay brought back {replayed} of {len(wanted)} ({answer.status_code})"]
    return []


def measure(
    drill: Drill, schedule: Schedule, live: LiveCheck, points: list[Point], wall0: float, sent: int
) -> DrillResult:
    counts = live.verdict.counts
    first = drill.first_fault_s if drill.first_fault_s is not None else drill.workload.duration_s
    steady = rate_between(points, wall0 + WARMUP_S, wall0 + first)
    starts = [r.started_at for r in schedule.runs if r.started_at is not None]
    heals = [r.healed_at for r in schedule.runs if r.healed_at is not None]
    recovery = recovery_s(points, max(heals), steady) if heals and steady else None
    ride = [r.started_at for r in schedule.runs if r.step.ride_through and r.started_at is not None]
    first_done = first_completion_s(points, min(ride)) if ride else None
    window = "-"
    if starts:
        end = f"{max(heals) - wall0:.1f}s" if heals else "never healed"
        window = f"{min(starts) - wall0:.1f}s-{end}"
    lost = max(counts.lost, len(live.verdict.result(1).task_ids))
    record = DrillRecord(
        name=drill.name,
        passed=True,
        fault_window=window,
        sent=sent,
        accepted=counts.accepted,
        completed=counts.completed,
        failed=counts.failed,
        lost=lost,
        duplicated=counts.duplicated,
        steady_rate=None if steady is None else round(steady, 2),
        recovery_s=None if recovery is None else round(recovery, 1),
        first_completion_s=None if first_done is None else round(first_done, 1),
        broken=broken_invariants(live.verdict),
    )
    return DrillResult(record, verdict=live.verdict, live=live)
