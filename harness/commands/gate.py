"""`harness gate`: the CI acceptance gate (suites in `harness.gate.SUITES`), with a Rich display.

Files of a gate run, all under `reports/out/<ts>-gate/` (and `reports/out/latest`):
`junit/<suite>.xml` and the merged `junit.xml`, `allure-results/`, `histories/`, `checks.jsonl`,
`logs/pytest-<suite>.log`, `stacks/<suite>/logs/` (the embedded stacks' process logs),
`snapshots/`, `samples.jsonl`, `results.json` and `report.html` (see `harness.record.layout`).

The report is built by its own process (`python -m reports RUN_DIR`), as the suites run in
theirs: the harness writes the record and never imports the report that reads it, and a report
bug cannot hide the verdict.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from harness.gate import GateContext, LiveCounts, Suite, SuiteRun
    from harness.record.records import RunResults

DEFAULT_BUDGET_S = 600.0
SuitesOption = Annotated[
    list[str] | None, typer.Option("--suites", help="Only these suites (repeat, or comma-separated).")
]
TargetOption = Annotated[
    Path | None, typer.Option(exists=True, dir_okay=False, help="Target TOML file (default: embedded).")
]
BudgetOption = Annotated[float, typer.Option(min=30, help="Time budget of the whole gate, in seconds.")]
RunDirOption = Annotated[Path | None, typer.Option(help="Run directory (default reports/out/<ts>-gate).")]


def project_root() -> Path:
    """The checkout the harness runs from: where pyproject.toml and the suites are."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def gate(
    suites: SuitesOption = None,
    target: TargetOption = None,
    budget: BudgetOption = DEFAULT_BUDGET_S,
    run_dir: RunDirOption = None,
) -> None:
    """Run every suite within the budget: JUnit, Allure, results.json, HTML report; exit 0 iff all passed."""
    from rich.console import Console

    from harness.gate import GateContext, select_suites
    from harness.record import RunWriter, new_run_dir

    names = [n.strip() for part in suites or [] for n in part.split(",") if n.strip()]
    try:
        chosen = select_suites(names, project_root())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--suites") from exc
    root = project_root()
    out = run_dir.resolve() if run_dir else new_run_dir("gate", root / "reports" / "out").resolve()
    RunWriter.create(out, "gate")
    ctx = GateContext(root, out, target.resolve() if target else None)
    console = Console()
    console.print(f"gate run {out}  budget {budget:.0f}s  target {ctx.target or 'embedded'}")
    passed = _run_and_report(ctx, chosen, budget, console)
    raise typer.Exit(0 if passed else 1)


def _run_and_report(ctx: GateContext, suites: list[Suite], budget: float, console: Console) -> bool:
    from harness.gate import gate_results, merge_junit, run_gate
    from harness.record import RunReader, RunWriter, point_latest

    started = time.monotonic()
    with GateDisplay(console) as tick:
        runs = run_gate(ctx, suites, budget, tick)
    junit = {r.suite.name: r.junit for r in runs if r.junit is not None}
    merge_junit(junit).write(ctx.run_dir / "junit.xml", encoding="utf-8", xml_declaration=True)
    elapsed = time.monotonic() - started
    reader = RunReader(ctx.run_dir)
    results = gate_results(runs, reader.checks(), budget_s=budget, elapsed_s=elapsed, target=ctx.target)
    writer = RunWriter(ctx.run_dir)
    writer.results(results)
    results = results.model_copy(update={"report": build_report(ctx.run_dir, console)})
    writer.results(results)
    if ctx.run_dir.parent == ctx.root / "reports" / "out":
        point_latest(ctx.run_dir)
    _print_summary(console, runs, results)
    return results.passed


REPORT_TIMEOUT_S = 180.0


def build_report(run_dir: Path, console: Console) -> str | None:
    """`python -m reports RUN_DIR` in its own process; a failed report is a warning, not a failed gate."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "reports", str(run_dir)],
            capture_output=True,
            text=True,
            timeout=REPORT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        console.print(f"[yellow]warning: the HTML report took over {REPORT_TIMEOUT_S:.0f}s; none built[/]")
        return None
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        console.print(f"[yellow]warning: the HTML report failed: {why}[/]")
        return None
    return done.stdout.strip() or None


class GateDisplay:
    """A Rich progress display with one line per suite: state, elapsed/allowance, live counts."""

    def __init__(self, console: Console) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn
        from rich.table import Column

        self.progress: Progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}", table_column=Column(width=10, no_wrap=True)),
            TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True, overflow="ellipsis")),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> GateDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, suite: Suite, done: SuiteRun | None, elapsed: float, live: LiveCounts) -> None:
        if suite.name not in self.tasks:
            self.tasks[suite.name] = self.progress.add_task(suite.name, total=1, info="")
        task = self.tasks[suite.name]
        if done is None:
            info = f"running {elapsed:5.0f}s  passed {live.passed}  failed {live.failed}  skip {live.skipped}"
            self.progress.update(task, info=info)
            return
        self.progress.update(task, completed=1, info=_done_line(done))


def _done_line(run: SuiteRun) -> str:
    colour = {"passed": "green", "skipped": "dim", "failed": "bold red", "timeout": "bold red"}[run.status]
    counts = run.counts
    line = f"[{colour}]{run.status}[/] {run.elapsed_s:5.0f}s of {run.allowance_s:.0f}s"
    if run.status != "skipped":
        line += f"  passed {counts.passed}  failed {counts.failed + counts.errors}  skipped {counts.skipped}"
    return line + (f"  ({run.note})" if run.note else "")


def _print_summary(console: Console, runs: list[SuiteRun], results: RunResults) -> None:
    from rich.table import Table

    table = Table(title=f"gate: {'PASS' if results.passed else 'FAIL'}")
    for column in ("suite", "status", "seconds", "passed", "failed", "skipped", "note"):
        table.add_column(column)
    for r in runs:
        failed = r.counts.failed + r.counts.errors
        row = (r.status, f"{r.elapsed_s:.0f}", str(r.counts.passed), str(failed), str(r.counts.skipped))
        table.add_row(r.suite.name, *row, r.note)
    console.print(table)
    console.print(f"invariants over {results.checked} checked tests: {results.verdict.valid}")
    for reason in results.reasons:
        console.print(f"[red]- {reason}[/]")
    console.print(f"gate took {results.timings['total_s']:.0f}s; report: {results.report or '(none)'}")
