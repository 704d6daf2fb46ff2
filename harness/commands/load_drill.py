"""`harness load --drill NAME`: one nemesis fault (chaos/) during a load run, so a team sees what a
broker restart does to its p99 under production-like traffic.

The fault is injected a third of the way into the load and healed `hold_s` later, by the nemesis,
which records both as a fault operation pair in `histories/nemesis-*.jsonl`: the report draws the
window on the run's time axis, and the checker judges the run with the fault in its history.
Faults are the nemesis catalog's (`chaos.nemesis.catalog_for`): on the embedded stack its
processes (broker-kill, broker-restart, db-kill, db-restart, worker-kill, worker-rolling-restart,
relay-kill, api-kill, ...); on a target, the commands its file gives.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from chaos.faults import Action
from chaos.nemesis import KINDS, SPECIAL, FaultCatalog, FaultSkipped, Nemesis, catalog_for
from harness.record import RunWriter
from harness.stack.base import StackProvider

START_SHARE = 1 / 3
MAX_HOLD_S = 10.0


@dataclass(frozen=True)
class DrillPlan:
    name: str
    start_s: float
    hold_s: float

    @classmethod
    def over(cls, name: str, duration_s: float) -> DrillPlan:
        """Injected a third of the way in, healed after a third of the run (at most MAX_HOLD_S)."""
        return cls(name, duration_s * START_SHARE, min(duration_s * START_SHARE, MAX_HOLD_S))


def embedded_fault_names() -> frozenset[str]:
    """Every fault name the nemesis knows on the embedded stack (`<kind>-<action>` and the special ones)."""
    return frozenset({f"{kind}-{action.value}" for kind in KINDS for action in Action} | set(SPECIAL))


def check_drill(stack: StackProvider, name: str) -> str | None:
    """Why `name` cannot run on this stack, or None when the nemesis can build it."""
    try:
        catalog_for(stack).build(name)
    except FaultSkipped as skipped:
        return str(skipped)
    return None


class LoadDrill:
    """Runs one DrillPlan in a thread beside Locust; `error` says what went wrong, if anything."""

    def __init__(self, plan: DrillPlan, catalog: FaultCatalog, writer: RunWriter) -> None:
        self.plan = plan
        self.history = writer.history("nemesis")
        self.nemesis = Nemesis(self.history, catalog)
        self.error: str | None = None
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"drill-{plan.name}", daemon=True)

    def start(self) -> LoadDrill:
        self._thread.start()
        return self

    def finish(self, timeout_s: float = 120.0) -> None:
        """Waits for the fault to be healed (a run that ended early heals it at once)."""
        self._cancel.set()
        self._thread.join(timeout=timeout_s)
        if self._thread.is_alive():
            self.error = f"{self.plan.name} was not healed within {timeout_s:.0f}s of the load's end"
        self.history.close()

    def _run(self) -> None:
        if self._cancel.wait(self.plan.start_s):
            self.error = f"{self.plan.name} never ran: the load ended before {self.plan.start_s:.0f}s"
            return
        try:
            active = self.nemesis.start(self.plan.name)
            if active is None:
                self.error = f"{self.plan.name} was skipped on this stack (see the nemesis history)"
                return
            self._cancel.wait(self.plan.hold_s)
            self.nemesis.stop(active)
        except Exception as exc:  # noqa: BLE001  (a fault that failed is the run's finding, reported)
            self.error = f"{self.plan.name} failed: {type(exc).__name__}: {exc}"
