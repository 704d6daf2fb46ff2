"""`harness drill [NAME ...] [--file F] [--random --seed S --duration D] [--target FILE]`.

Chaos drills (chaos/drill.py) on the embedded stack or a target. Drills that need the same kind
of stack share one (the proxy and durable PostgreSQL are switched on for a group when any of its
drills needs them; a RabbitMQ cluster is its own group), with the service state wiped between
drills. One run record: `reports/out/<ts>-drill/` with each drill's client and nemesis
histories, one CheckRecord per drill, the samples, results.json (kind "drill") and the report.
A FAIL prints the command that replays it; a random run prints its seed, and when it fails,
tries smaller schedules and prints the smallest that still fails.
"""

from __future__ import annotations

import shlex
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from chaos.drill import DrillResult
    from chaos.drill_model import Drill
    from harness.record import RunWriter
    from harness.record.records import DrillRecord
    from harness.stack.base import StackProvider

DRILL_ENV = {
    "RETRY_BASE_MS": "200",
    "MAX_RETRIES": "2",
    "JOB_TIMEOUT_MS": "5000",
    "SHUTDOWN_GRACE_MS": "3000",
    "RABBIT_DELIVERY_LIMIT": "3",
    "WORKER_LEASE_MS": "2000",
}
MAX_SHRINK_RUNS = 4

NamesArgument = Annotated[list[str] | None, typer.Argument(help="Drills to run (default: all 16).")]
FileOption = Annotated[Path | None, typer.Option("--file", help="A drill file (TOML) to run.")]
RandomOption = Annotated[bool, typer.Option("--random", help="A random fault schedule from --seed.")]
SeedOption = Annotated[int | None, typer.Option(help="Seed of the random schedule (default: time).")]
DurationOption = Annotated[float, typer.Option(min=10, help="Seconds of the random schedule.")]
TargetOption = Annotated[
    Path | None, typer.Option(exists=True, dir_okay=False, help="Target TOML file (default: embedded stack).")
]
RunDirOption = Annotated[Path | None, typer.Option(help="Run directory (default reports/out/<ts>-drill).")]
ShrinkOption = Annotated[bool, typer.Option(help="Shrink a failing random schedule.")]


def drill(
    names: NamesArgument = None,
    file: FileOption = None,
    random: RandomOption = False,
    seed: SeedOption = None,
    duration: DurationOption = 60.0,
    target: TargetOption = None,
    run_dir: RunDirOption = None,
    shrink: ShrinkOption = True,
) -> None:
    """Chaos drills with a verdict each; exit 1 when any FAILs."""
    from harness.record import RunWriter, new_run_dir

    chosen = choose_drills(names or [], file, random, seed, duration)
    if random:
        replay = replay_command(chosen[0].name, None, seed, duration, target)
        typer.echo(f"random schedule: seed {chosen[0].name.removeprefix('random-')}; replay: {replay}")
    out = run_dir.resolve() if run_dir else new_run_dir("drill").resolve()
    writer = RunWriter.create(out, "drill")
    started = time.monotonic()
    with _interrupts_raise():
        results = run_drills(chosen, writer, target)
        if random and shrink and results and not results[0].passed:
            shrink_failure(chosen[0], writer, target, duration)
    total_s = time.monotonic() - started
    passed = finish(results, writer, target, total_s)
    for result in results:
        if not result.passed:
            name = result.record.name
            typer.echo(f"replay {name}: {replay_command(name, file, seed, duration, target)}")
    raise typer.Exit(0 if passed else 1)


def choose_drills(
    names: Sequence[str], file: Path | None, random: bool, seed: int | None, duration: float
) -> list[Drill]:
    """The drills to run; an unknown name or a bad file is a usage error of one line."""
    from chaos.drill_model import DrillFileError, builtin_drills, load_drill
    from chaos.schedule import random_drill

    if random:
        return [random_drill(seed if seed is not None else int(time.time()) % 100_000, duration)]
    if file is not None:
        try:
            return [load_drill(file)]
        except DrillFileError as exc:
            raise typer.BadParameter(str(exc), param_hint="--file") from None
    known = builtin_drills()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise typer.BadParameter(
            f"unknown drill {unknown[0]!r}: choose from {', '.join(known)}", param_hint="NAME"
        )
    return [known[name] for name in names] if names else list(known.values())


@contextmanager
def _interrupts_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, as Ctrl-C does: the drill's `finally` heals."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def stack_groups(drills: Sequence[Drill]) -> list[tuple[tuple[int, bool, bool, int], list[Drill]]]:
    """Drills by the stack they can share: a cluster apart; proxy and durable when any needs them."""
    groups: dict[int, list[Drill]] = {}
    for one in drills:
        groups.setdefault(one.stack.rabbit_nodes, []).append(one)
    out = []
    for nodes, members in sorted(groups.items()):
        proxy = any(d.stack.proxy for d in members)
        durable = any(d.stack.durable for d in members)
        workers = max(d.stack.workers for d in members)
        out.append(((nodes, proxy, durable, workers), members))
    return out


def run_drills(drills: Sequence[Drill], writer: RunWriter, target: Path | None) -> list[DrillResult]:
    from harness.stack.base import StackError
    from harness.stack.local import install_cleanup_handlers

    install_cleanup_handlers()
    results: list[DrillResult] = []
    for index, (needs, members) in enumerate(stack_groups(drills)):
        stack = make_stack(needs, writer.root / "stacks" / f"group-{index}", target)
        try:
            results += run_group(stack, members, writer)
        except StackError as exc:
            typer.echo(f"the stack failed: {exc}", err=True)
            results += [
                _not_run(d, f"the stack failed: {exc}") for d in members if d.name not in _names(results)
            ]
        finally:
            stack.stop()
    return results


def _names(results: Sequence[DrillResult]) -> set[str]:
    return {r.record.name for r in results}


def make_stack(needs: tuple[int, bool, bool, int], run_dir: Path, target: Path | None) -> StackProvider:
    from harness.stack.factory import make_embedded
    from harness.stack.target import TargetStack

    if target is not None:
        return TargetStack(target)
    nodes, proxy, durable, workers = needs
    stack = make_embedded(
        run_dir=run_dir, workers=workers, env=DRILL_ENV, rabbit_nodes=nodes, durable=durable
    )
    stack.proxy_requested = proxy or stack.proxy_requested
    return stack


def run_group(stack: StackProvider, drills: Sequence[Drill], writer: RunWriter) -> list[DrillResult]:
    from chaos.drill import drill_session

    results = []
    with drill_session(stack, writer) as runner:
        for one in drills:
            typer.echo(f"drill {one.name}: {one.description}", err=True)
            results.append(runner.run(one))
            typer.echo(f"drill {one.name}: {'PASS' if results[-1].passed else 'FAIL'}", err=True)
    return results


def _not_run(one: Drill, reason: str) -> DrillResult:
    from chaos.drill import DrillResult
    from harness.record.records import DrillRecord

    return DrillResult(
        DrillRecord(
            name=one.name, passed=False, fault_window="-", sent=0, accepted=0, completed=0,
            failed=0, lost=0, duplicated=0, reasons=(reason,),
        )
    )


def shrink_failure(original: Drill, writer: RunWriter, target: Path | None, duration: float) -> None:
    """Tries smaller schedules (bounded runs) and prints the smallest that still fails."""
    from chaos.schedule import shrink_candidates

    smallest, runs = original, 0
    progress = True
    while progress and runs < MAX_SHRINK_RUNS:
        progress = False
        for candidate in shrink_candidates(smallest):
            if runs >= MAX_SHRINK_RUNS:
                break
            runs += 1
            shrunk = candidate.model_copy(update={"name": f"{original.name}-shrunk-{runs}"})
            if not run_drills([shrunk], writer, target)[0].passed:
                smallest, progress = candidate, True
                break
    if smallest is not original:
        path = writer.root / f"{original.name}-shrunk.toml"
        path.write_text(drill_toml(smallest))
        typer.echo(f"smallest failing schedule ({len(smallest.faults)} faults): harness drill --file {path}")


def drill_toml(one: Drill) -> str:
    """The drill as a drill file, so a shrunk schedule replays with `--file`."""
    lines = [f'name = "{one.name}"', f'description = "{one.description}"', "", "[stack]"]
    lines += [f"proxy = {str(one.stack.proxy).lower()}", f"durable = {str(one.stack.durable).lower()}"]
    lines += ["", "[workload]", f"duration_s = {one.workload.duration_s}", f"rate = {one.workload.rate}"]
    lines += ["[workload.mix]", *(f"{k} = {v}" for k, v in one.workload.mix.items())]
    for step in one.faults:
        lines += ["", "[[faults]]", f'name = "{step.name}"', f"at_s = {step.at_s}", f"hold_s = {step.hold_s}"]
        lines.append(f"ride_through = {str(step.ride_through).lower()}")
    return "\n".join(lines) + "\n"


def replay_command(
    name: str, file: Path | None, seed: int | None, duration: float, target: Path | None
) -> str:
    args = ["harness", "drill"]
    if name.startswith("random-"):
        args += ["--random", "--seed", name.removeprefix("random-"), "--duration", f"{duration:g}"]
    elif file is not None:
        args += ["--file", str(file)]
    else:
        args.append(name)
    if target is not None:
        args += ["--target", str(target)]
    return shlex.join(args)


def finish(results: Sequence[DrillResult], writer: RunWriter, target: Path | None, total_s: float) -> bool:
    """results.json (kind drill), the report, and the verdict table."""
    from harness.commands.gate import build_report
    from harness.record import RunReader
    from harness.record.records import RunResults, merge_checks

    reasons = tuple(f"{r.record.name}: {reason}" for r in results for reason in r.record.reasons)
    checks = [c for c in RunReader(writer.root).checks() if c.suite == "drill"]
    record = RunResults(
        kind="drill",
        passed=bool(results) and not reasons,
        reasons=reasons or (() if results else ("no drill ran",)),
        verdict=merge_checks(checks),
        checked=len(checks),
        target=str(target) if target else None,
        timings={"total_s": round(total_s, 1)},
        drills=tuple(r.record for r in results),
    )
    writer.results(record)
    from rich.console import Console

    report = build_report(writer.root, Console(stderr=True))
    writer.results(record.model_copy(update={"report": report}))
    print_table(record.drills, total_s)
    typer.echo(f"record {writer.root}  report {report or '(none)'}")
    return record.passed


def print_table(results: Sequence[DrillRecord], total_s: float) -> None:
    """The contract's verdict rows, printed from the run record they were written to."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"drills: {sum(r.passed for r in results)}/{len(results)} PASS in {total_s:.0f}s")
    columns = ("drill", "fault window", "sent", "accepted", "completed", "failed", "lost", "duplicated")
    for column in (*columns, "recovery", "verdict"):
        table.add_column(column)
    for r in results:
        recovery = "-" if r.recovery_s is None else f"{r.recovery_s:.1f}s"
        if r.first_completion_s is not None:
            recovery += f" (first done {r.first_completion_s:.1f}s)"
        verdict = (
            "[green]PASS[/]" if r.passed else "[bold red]FAIL[/] " + "; ".join(r.broken or r.reasons[:2])
        )
        row = (r.name, r.fault_window, r.sent, r.accepted, r.completed, r.failed, r.lost, r.duplicated)
        table.add_row(*(str(v) for v in row), recovery, verdict)
    Console(width=200).print(table)
