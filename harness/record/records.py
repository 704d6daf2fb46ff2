"""The record types of a run directory: what each file holds, as one typed, versioned schema.

Every file of `reports/out/<run>/` is written and read through these types (writer.py and
reader.py), so the harness that writes a run and the report that reads it cannot disagree on a
shape. JSON keys are camelCase (results.json is read by CI and people); Python names snake_case.

A verdict is serialised once: `VerdictRecord.of(verdict)` turns the checker's Verdict into the
record, and every file that holds a verdict (checks.jsonl, results.json) holds that record.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from harness.checker import InvariantResult, Status, Verdict, invariant_names, merge_valid
from harness.state import EventRow, QueueDepth, QueueMessage, ResultRow, Settled, Snapshot, TaskRow

SCHEMA_VERSION = 1
MAX_VIOLATIONS = 200
RunKind = Literal["gate", "pytest", "check", "up", "drill", "load"]
SuiteStatus = Literal["passed", "failed", "timeout", "skipped"]


class Record(BaseModel):
    """Frozen, camelCase on disk, and strict about unknown keys: a shape it does not know is an
    error to report, not a key to guess."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )

    def to_json(self, indent: int | None = None) -> str:
        return self.model_dump_json(by_alias=True, indent=indent)


class RunManifest(Record):
    """`run.json`: which schema the directory was written with, and what kind of run it is."""

    schema_version: int = SCHEMA_VERSION
    kind: RunKind
    created_at: float
    argv: tuple[str, ...] = ()


# --- verdicts -----------------------------------------------------------------------------------


class ViolationRecord(Record):
    task_ids: tuple[str, ...]
    message: str
    evidence: dict[str, Any] = Field(default_factory=dict)


class InvariantRecord(Record):
    number: int
    name: str
    status: Status
    note: str = ""
    violation_count: int = 0
    violations: tuple[ViolationRecord, ...] = ()

    @classmethod
    def of(cls, result: InvariantResult) -> InvariantRecord:
        return cls(
            number=result.number,
            name=result.name,
            status=result.status,
            note=result.note,
            violation_count=len(result.violations),
            violations=tuple(
                ViolationRecord(task_ids=v.task_ids, message=v.message, evidence=v.evidence)
                for v in result.violations[:MAX_VIOLATIONS]
            ),
        )

    @property
    def task_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t for v in self.violations for t in v.task_ids))


class VerdictRecord(Record):
    """The checker's verdict: valid (held, broken, unknown), counts, and every invariant's result."""

    valid: Status
    counts: dict[str, int] = Field(default_factory=dict)
    invariants: tuple[InvariantRecord, ...] = ()

    @classmethod
    def of(cls, verdict: Verdict) -> VerdictRecord:
        return cls(
            valid=verdict.valid,
            counts=asdict(verdict.counts),
            invariants=tuple(InvariantRecord.of(r) for r in verdict.results),
        )

    @property
    def not_held(self) -> tuple[InvariantRecord, ...]:
        return tuple(i for i in self.invariants if i.status != "held")


class SettleRecord(Record):
    settled: bool
    waited_s: float
    reasons: tuple[str, ...] = ()

    @classmethod
    def of(cls, settled: Settled) -> SettleRecord:
        return cls(settled=settled.settled, waited_s=round(settled.waited_s, 3), reasons=settled.reasons)


class CheckRecord(Record):
    """One line of `checks.jsonl`: the verdict after one checked test (or drill, or load run), with
    the run-relative paths of the history and snapshot it was judged on."""

    name: str
    suite: str
    verdict: VerdictRecord
    settle: SettleRecord | None = None
    history: str | None = None
    snapshot: str | None = None
    checked_at: float = 0.0


def _merged_violations(number: int, checks: Sequence[CheckRecord]) -> list[ViolationRecord]:
    out = []
    for check in checks:
        for inv in check.verdict.invariants:
            if inv.number == number and inv.status != "held":
                out += [
                    v.model_copy(update={"evidence": {"test": check.name, **v.evidence}})
                    for v in inv.violations
                ]
                if not inv.violations:
                    message = f"{inv.status} in {check.name}: {inv.note}"
                    out.append(ViolationRecord(task_ids=(), message=message))
    return out


def merge_checks(checks: Sequence[CheckRecord]) -> VerdictRecord:
    """The run's verdict from every check's: per invariant the worst status and every violation
    (with the test it came from); counts summed. No check at all is `unknown`, never held."""
    names = invariant_names()
    statuses: dict[int, list[Status]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    for check in checks:
        for inv in check.verdict.invariants:
            statuses[inv.number].append(inv.status)
        for key, value in check.verdict.counts.items():
            counts[key] += value
    invariants = []
    for number, name in sorted(names.items()):
        found = _merged_violations(number, checks)
        status: Status = merge_valid(statuses[number]) if statuses[number] else "unknown"
        invariants.append(
            InvariantRecord(
                number=number,
                name=name,
                status=status,
                note="" if statuses[number] else "no check judged it",
                violation_count=len(found),
                violations=tuple(found[:MAX_VIOLATIONS]),
            )
        )
    valid: Status = merge_valid(i.status for i in invariants) if checks else "unknown"
    return VerdictRecord(valid=valid, counts=dict(counts), invariants=tuple(invariants))


# --- the final state ----------------------------------------------------------------------------


class SnapshotRecord(Record):
    """`snapshots/<name>.json`: the stores as the checker saw them when it judged one test or run."""

    taken_at: float
    tasks: tuple[TaskRow, ...] = ()
    events: tuple[EventRow, ...] = ()
    results: tuple[ResultRow, ...] = ()
    queues: tuple[QueueDepth, ...] = ()
    dlq_messages: tuple[QueueMessage, ...] = ()
    dlq_complete: bool = True
    postgres_error: str | None = None
    rabbitmq_error: str | None = None

    @classmethod
    def of(cls, snapshot: Snapshot) -> SnapshotRecord:
        return cls(
            taken_at=snapshot.taken_at,
            tasks=snapshot.tasks,
            events=snapshot.events,
            results=snapshot.results,
            queues=snapshot.queues,
            dlq_messages=snapshot.dlq_messages,
            dlq_complete=snapshot.dlq_complete,
            postgres_error=snapshot.postgres_error,
            rabbitmq_error=snapshot.rabbitmq_error,
        )


# --- time series --------------------------------------------------------------------------------


class QueueLevel(Record):
    ready: int
    unacked: int
    consumers: int = 0

    @property
    def depth(self) -> int:
        return self.ready + self.unacked


class Sample(Record):
    """One line of `samples.jsonl`, taken every second while a stack runs: queue levels, tasks by
    status. A store that did not answer leaves its part empty and says why in its error field."""

    t: float
    suite: str = ""
    queues: dict[str, QueueLevel] = Field(default_factory=dict)
    tasks: dict[str, int] = Field(default_factory=dict)
    rabbitmq_error: str | None = None
    postgres_error: str | None = None

    @property
    def error(self) -> str | None:
        return "; ".join(e for e in (self.rabbitmq_error, self.postgres_error) if e) or None

    @property
    def terminal(self) -> int:
        return sum(self.tasks.get(s, 0) for s in ("COMPLETED", "FAILED", "CANCELLED"))


class FaultWindow(Record):
    """A fault from its start to its heal (`end` None: never healed), read off the history."""

    name: str
    start: float
    end: float | None
    healed: bool | None = None
    details: dict[str, Any] = Field(default_factory=dict)


# --- suites and the run's results ---------------------------------------------------------------


class TestTotals(Record):
    total: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0


class SuiteResult(Record):
    """How one suite of a gate went."""

    name: str
    status: SuiteStatus
    exit_code: int | None = None
    allowance_s: float = 0.0
    duration_s: float = 0.0
    tests: TestTotals = Field(default_factory=TestTotals)
    junit: str | None = None
    log: str | None = None
    note: str = ""


class SloRecord(Record):
    """One judged service-level objective of a load run (k6 threshold style): `metric op limit`."""

    metric: str
    op: str
    limit: float
    value: float | None
    status: Literal["passed", "failed"]


class DrillRecord(Record):
    """One drill's verdict row (the contract's): what was sent and how it settled, the fault
    window, recovery (from the heal to throughput back at 90% of steady state) and the first
    completion after the fault began, and why it failed if it did."""

    name: str
    passed: bool
    fault_window: str
    sent: int
    accepted: int
    completed: int
    failed: int
    lost: int
    duplicated: int
    steady_rate: float | None = None
    recovery_s: float | None = None
    first_completion_s: float | None = None
    duration_s: float = 0.0
    broken: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()


class RunResults(Record):
    """`results.json`: the run's verdict and how it was reached. `passed` is the exit code's truth:
    for a gate, every suite passed and the verdict held; for a check, the verdict held."""

    schema_version: int = SCHEMA_VERSION
    kind: RunKind
    passed: bool
    reasons: tuple[str, ...] = ()
    verdict: VerdictRecord
    checked: int = 0
    settle: SettleRecord | None = None
    suites: tuple[SuiteResult, ...] = ()
    tests: TestTotals | None = None
    budget_s: float | None = None
    target: str | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    slos: tuple[SloRecord, ...] = ()
    metrics: dict[str, float | None] = Field(default_factory=dict)
    drills: tuple[DrillRecord, ...] = ()
    report: str | None = None

    def slo(self, metric: str) -> SloRecord:
        return next(row for row in self.slos if row.metric == metric)
