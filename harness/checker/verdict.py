"""The shapes every invariant shares: a violation, one invariant's result, the run's verdict.

An `Invariant` is the one place an invariant's number and name are written: it is called like the
checker it wraps (`check_xxx(history, snapshot, expect) -> InvariantResult`) and builds the
result from what its judge found, so no function repeats its own number or name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.checker.counts import Counts
from harness.history import History
from harness.state import Snapshot

Status = Literal["held", "broken", "unknown"]


@dataclass(frozen=True)
class Violation:
    """The tasks involved and the concrete evidence (rows, events, messages), trimmed to the point."""

    task_ids: tuple[str, ...]
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InvariantResult:
    """`note` says why a result is unknown, or what was counted without being a violation."""

    name: str
    number: int
    status: Status
    violations: tuple[Violation, ...] = ()
    note: str = ""

    @property
    def task_ids(self) -> frozenset[str]:
        return frozenset(t for v in self.violations for t in v.task_ids)


@dataclass(frozen=True)
class Expectations:
    """What the scenario meant to leave behind.

    `waiting`: tasks allowed to stay WAITING_FOR_EVENT; None allows any (what `harness check`
    uses, since it does not know the scenario). `still_running`: tasks allowed to stay unsettled
    (e.g. a hang the scenario is still waiting out).
    """

    waiting: frozenset[str] | None = None
    still_running: frozenset[str] = frozenset()


DEFAULT_EXPECTATIONS = Expectations()
Checker = Callable[[History, Snapshot, Expectations], InvariantResult]


@dataclass(frozen=True)
class Finding:
    """What a judge found: violations; why it could not judge (`unknown`); what it counted (`note`)."""

    violations: tuple[Violation, ...] = ()
    unknown: str | None = None
    note: str = ""


Judge = Callable[[History, Snapshot, Expectations], Finding]


@dataclass(frozen=True)
class Invariant:
    """One row of the checker's table: the contract's number and name, and the judge of it.

    Broken beats unknown beats held; an unknown's reason and a note are joined in the result's note.
    """

    number: int
    name: str
    judge: Judge

    @property
    def doc(self) -> str:
        return (self.judge.__doc__ or "").strip()

    def __call__(
        self, history: History, snapshot: Snapshot, expect: Expectations = DEFAULT_EXPECTATIONS
    ) -> InvariantResult:
        found = self.judge(history, snapshot, expect)
        if found.violations:
            return InvariantResult(self.name, self.number, "broken", found.violations, found.note)
        if found.unknown:
            note = "; ".join(n for n in (found.unknown, found.note) if n)
            return InvariantResult(self.name, self.number, "unknown", (), note)
        return InvariantResult(self.name, self.number, "held", (), found.note)


@dataclass(frozen=True)
class Verdict:
    valid: Status
    results: tuple[InvariantResult, ...]
    counts: Counts

    @property
    def broken(self) -> tuple[InvariantResult, ...]:
        return tuple(r for r in self.results if r.status == "broken")

    def result(self, number: int) -> InvariantResult:
        return next(r for r in self.results if r.number == number)


def merge_valid(statuses: Iterable[Status]) -> Status:
    """Jepsen's merge-valid: any broken makes the whole broken; else any unknown makes it unknown."""
    found = set(statuses)
    if "broken" in found:
        return "broken"
    return "unknown" if "unknown" in found else "held"
