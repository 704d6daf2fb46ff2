"""`harness check`: the invariant check alone, against a running deployment.

It judges what is there now: it waits (bounded) for the deployment to settle, snapshots
PostgreSQL and RabbitMQ, and runs the 12 invariants over the snapshot and, when given, the
recorded history of the run that drove it. Without a history every task in the database is
judged, and any WAITING_FOR_EVENT task is allowed (no scenario says which were meant to wait).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from harness.live_check import LiveCheck
    from harness.stack.base import StackEndpoints

TARGET_ENV = "HARNESS_TARGET"
NO_TARGET = (
    "no deployment to check: no embedded stack of `harness up` answers; start one with `harness up`, "
    "or pass --target FILE"
)
RUNS_ROOT = Path("reports/out")


def running_embedded_target(root: Path = RUNS_ROOT) -> Path | None:
    """The target file of the newest `harness up` stack whose API still answers, if any."""
    import httpx

    from harness.stack.base import StackError, load_target

    for candidate in sorted(root.glob("*-up/target.toml"), reverse=True):
        try:
            if httpx.get(f"{load_target(candidate).api_url}/health", timeout=1.0).status_code == 200:
                return candidate
        except (StackError, httpx.HTTPError):
            continue
    return None


def resolve_target(target: Path | None) -> Path:
    """--target, else HARNESS_TARGET, else the embedded stack `harness up` is running here."""
    chosen = target or (Path(os.environ[TARGET_ENV]) if os.environ.get(TARGET_ENV) else None)
    chosen = chosen or running_embedded_target()
    if chosen is None:
        raise typer.BadParameter(NO_TARGET, param_hint="--target")
    if not chosen.is_file():
        raise typer.BadParameter(f"target file {chosen} does not exist", param_hint="--target")
    return chosen


TargetOption = Annotated[Path | None, typer.Option(help="Target TOML file (default: $HARNESS_TARGET).")]
HistoryOption = Annotated[
    Path | None, typer.Option(exists=True, dir_okay=False, help="history.jsonl of the run to judge.")
]
RunDirOption = Annotated[Path | None, typer.Option(help="Where results.json goes (default: a new run dir).")]
SettleOption = Annotated[float, typer.Option(min=0, help="Seconds to wait for the deployment to settle.")]


def check(
    target: TargetOption = None,
    history: HistoryOption = None,
    run_dir: RunDirOption = None,
    settle: SettleOption = 60.0,
) -> None:
    """Check the 12 invariants on a deployment; writes the run record; exit 0 iff every one held."""
    from harness.history import History, load_history
    from harness.live_check import check_deployment
    from harness.stack.readiness import run_sync

    endpoints = _endpoints(resolve_target(target))
    recorded = load_history(history) if history is not None else History()
    live = run_sync(check_deployment(endpoints, recorded, settle_timeout_s=settle))
    _report(live, run_dir, history)
    raise typer.Exit(0 if live.verdict.valid == "held" else 1)


def _endpoints(target_file: Path) -> StackEndpoints:
    from harness.stack.base import StackError, load_target

    try:
        return load_target(target_file)
    except StackError as exc:
        raise typer.BadParameter(str(exc), param_hint="--target") from exc


def _report(live: LiveCheck, run_dir: Path | None, history_file: Path | None) -> None:
    """The verdict table and counts on stdout, what did not settle, the evidence; the run record
    (the history judged, the snapshot, the check and results.json) in the run directory."""
    import shutil

    from harness.record import RunWriter, new_run_dir
    from harness.record.records import RunResults, SettleRecord, VerdictRecord
    from harness.verdict import print_verdict, violations_text

    writer = RunWriter.create(run_dir, "check") if run_dir else RunWriter(new_run_dir("check"))
    judged = writer.layout.history("check")
    if history_file is not None:
        judged.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(history_file, judged)
    writer.check(
        "harness check", "check", live.verdict, settled=live.settled, history=judged if history_file else None
    )
    results = RunResults(
        kind="check",
        passed=live.verdict.valid == "held",
        verdict=VerdictRecord.of(live.verdict),
        checked=1,
        settle=SettleRecord.of(live.settled),
    )
    path = writer.results(results)
    print_verdict(live.verdict)
    if not live.settled.settled:
        typer.echo(f"not settled after {live.settled.waited_s:.1f}s: {'; '.join(live.settled.reasons)}")
    if live.verdict.valid != "held":
        typer.echo(violations_text(live.verdict))
    typer.echo(f"results: {path}")
