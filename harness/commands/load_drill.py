"""`harness load --drill NAME`: a drill's faults during a load run, so a team sees what a broker
restart does to its p99 under production-like traffic.

NAME is one of the built-in drills (chaos/drills/, the contract's 16) or a drill file. Its fault
schedule runs as `harness drill` runs it (chaos.drill.Schedule, through the nemesis and the
drill's fault catalog: process, network and workload faults), shifted so that the first fault
starts a third of the way into the load; Locust's users are the workload instead of the drill's.
The embedded stack is started as the drill needs it (proxy, cluster, durable storage) and with
the drill's service settings. Faults are recorded as operations in `histories/nemesis-*.jsonl`
(jobs a workload fault submits, in `histories/drill-client-*.jsonl`): the report draws their
windows on the run's time axis, and the run is judged by the invariants and the drill's own
expectations.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from chaos.drill import Schedule, Workload, expectations
from chaos.drill_faults import DrillFaults
from chaos.drill_model import Drill, DrillFileError, builtin_drills, load_drill
from chaos.nemesis import Nemesis, catalog_for
from harness.client import ServiceClient
from harness.commands.drill import DRILL_ENV
from harness.live_check import LiveCheck
from harness.record import RunWriter
from harness.stack.base import StackEndpoints, StackProvider

START_SHARE = 1 / 3


def resolve_drill(name: str) -> Drill:
    """A built-in drill by name, or a drill file (`*.toml`); a usage error of one line otherwise."""
    try:
        if name.endswith(".toml"):
            return load_drill(Path(name))
        known = builtin_drills()
    except DrillFileError as exc:
        raise typer.BadParameter(str(exc), param_hint="--drill") from None
    if name not in known:
        raise typer.BadParameter(
            f"unknown drill {name!r}: choose from {', '.join(known)}", param_hint="--drill"
        )
    return known[name]


def shifted(drill: Drill, duration_s: float) -> Drill:
    """The drill with its faults moved so the first starts a third of the way into the load."""
    first = drill.first_fault_s
    if first is None:
        return drill
    offset = duration_s * START_SHARE - first
    faults = tuple(step.model_copy(update={"at_s": max(0.0, step.at_s + offset)}) for step in drill.faults)
    return drill.model_copy(update={"faults": faults})


def drill_stack(drill: Drill, run_dir: Path, target: Path | None, env: dict[str, str]) -> StackProvider:
    """The embedded stack as the drill needs it, with the drill's service settings over `env`
    (a target is used as it is)."""
    from harness.stack.factory import make_embedded
    from harness.stack.target import TargetStack

    if target is not None:
        return TargetStack(target)
    needs = drill.stack
    stack = make_embedded(
        run_dir=run_dir,
        workers=needs.workers,
        env={**env, **DRILL_ENV},
        rabbit_nodes=needs.rabbit_nodes,
        durable=needs.durable,
    )
    stack.proxy_requested = needs.proxy or stack.proxy_requested
    return stack


class LoadDrill:
    """A drill's fault schedule beside Locust: `start` when the load starts, `finish` when it ends
    (heals whatever is still injected), `judge` after the check (the drill's own expectations)."""

    def __init__(
        self, drill: Drill, stack: StackProvider, endpoints: StackEndpoints, writer: RunWriter
    ) -> None:
        self.drill = drill
        self.nemesis_history = writer.history("nemesis")
        self.client_history = writer.history("drill-client")
        self.client = ServiceClient(
            endpoints.api_url, self.client_history, token=endpoints.api_token, timeout_s=5.0, process="drill"
        )
        catalog = DrillFaults(endpoints, catalog_for(stack), Workload(drill, self.client, 0).submit)
        self.schedule = Schedule(drill, Nemesis(self.nemesis_history, catalog))

    def start(self) -> LoadDrill:
        self.schedule.start(time.monotonic())
        return self

    def finish(self) -> list[str]:
        """Rolls back what is still injected; what went wrong with any fault, one line each."""
        try:
            self.schedule.heal_all()
        finally:
            self.client.close()
            self.nemesis_history.close()
            self.client_history.close()
        return [f"drill {run.error}" for run in self.schedule.runs if run.error]

    def judge(self, live: LiveCheck) -> list[str]:
        return [f"drill {self.drill.name}: {line}" for line in expectations(self.drill, self.schedule, live)]
