"""Printing a run (Rich tables) and writing it as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.runner import Results
from bench.stats import RowResult, ratio

GROUP_ORDER = ("api", "relay", "workers", "consumers", "celery", "driver", "bench", "postgres", "rabbitmq")


def cpu_text(cpu: dict[str, float]) -> str:
    names = sorted(cpu, key=lambda n: GROUP_ORDER.index(n) if n in GROUP_ORDER else len(GROUP_ORDER))
    return " ".join(f"{name} {cpu[name]:.0f}" for name in names)


def _row_cells(row: RowResult) -> list[str]:
    return [
        f"{row.completed}/{row.jobs}",
        f"{row.jobs_per_s:.0f}",
        f"{row.done_p50_ms:,.0f} / {row.done_p99_ms:,.0f}",
        f"{row.post_p50_ms:.1f} / {row.post_p99_ms:.1f}",
        f"{row.submit_per_s:.0f}",
        f"{row.cpu_ms_per_job:.1f}",
        cpu_text(row.cpu),
        f"{row.load_1min:.1f}",
    ]


def _table(title: str, first: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(first)
    table.add_column("completed", justify="right")
    table.add_column("jobs/s", justify="right")
    table.add_column("submit→done p50 / p99 ms", justify="right")
    table.add_column("submit p50 / p99 ms", justify="right")
    table.add_column("submits/s", justify="right")
    table.add_column("CPU ms/job", justify="right")
    table.add_column("CPU, % of a core per group", no_wrap=True)
    table.add_column("load", justify="right")
    return table


def _fmt_ratio(value: float | None) -> str:
    return f"{value:.2f}×" if value is not None else "-"


def print_results(results: Results, console: Console) -> None:
    machine = results.machine
    options = results.options
    load_start, load_end = _load(machine.get("loadavg_start")), _load(machine.get("loadavg_end"))
    console.print(
        f"\n{machine['cpus']} CPUs, Python {machine['python']}, Celery {machine.get('celery') or '-'}; "
        f"load average (1, 5, 15 min) at start {load_start}, at end {load_end}"
    )
    during = machine.get("load_1min_during")
    if during:
        console.print(
            f"1-minute load average during the run: min {during['min']:.1f}, mean {during['mean']:.1f}, "
            f"max {during['max']:.1f} (2 cores: above 2 means other work competed with the benchmark)"
        )
    console.print(
        f"{options['jobs']} jobs per row, {options['concurrency']} concurrent submitters, after a warm-up "
        f"of {options['warmup_jobs']} jobs per row (not counted); every job COMPLETED in PostgreSQL. "
        "Window: first submit to last completed_at."
        + (
            " Every row commits synchronously (synchronous_commit on)."
            if options.get("synchronous_commit", True)
            else " The bare and Celery rows commit with the server's default (--server-commit)."
        )
    )
    rounds = results.options.get("rounds", 1)
    title = "Side by side (one stack, one run)"
    if rounds > 1:
        title += f": the mean of {rounds} rounds, in order then reversed"
    side = _table(title, "system")
    side.add_column("jobs/s by round", justify="right")
    for row in results.rows:
        side.add_row(row.name, *_row_cells(row), " / ".join(f"{v:.0f}" for v in row.rounds_jobs_per_s))
    console.print(side)
    service = results.rows[0] if results.rows else None
    for other in results.rows[1:]:
        if service is not None:
            jobs = _fmt_ratio(ratio(service.jobs_per_s, other.jobs_per_s))
            done = _fmt_ratio(ratio(service.done_p50_ms, other.done_p50_ms))
            console.print(f"service ÷ {other.name.split(':')[0]}: jobs/s {jobs}, submit→done p50 {done}")
    if results.scaling:
        scaling = _table("The service: workers, WORKER_CONCURRENCY and RABBIT_PREFETCH", "configuration")
        for row in results.scaling:
            scaling.add_row(row.name, *_row_cells(row))
        console.print(scaling)
    if results.half_rate:
        _print_half_rate(results.half_rate, console)
    if results.growth:
        _print_growth(results.growth, console)
    if results.retention:
        _print_retention(results.retention, results.growth, console)
    for skipped in results.skipped:
        console.print(f"[yellow]skipped:[/yellow] {skipped}")


def _load(value: Any) -> str:
    return " ".join(f"{v:.2f}" for v in value) if value else "-"


def _print_half_rate(half: dict[str, Any], console: Console) -> None:
    row = half["row"]
    value = half["post_p99_over_p50"]
    verdict = "[green]met[/green]" if value is not None and value <= 5 else "[red]missed[/red]"
    table = Table(title="POST /tasks at half the maximum rate (open loop)", title_justify="left")
    for column in ("jobs", "offered/s", "jobs/s", "POST p50 ms", "POST p99 ms", "p99 / p50", "goal ≤ 5"):
        table.add_column(column, justify="right")
    table.add_row(
        str(row["jobs"]),
        f"{half['offered_per_s']:.0f}", f"{row['jobs_per_s']:.0f}", f"{row['post_p50_ms']:.1f}",
        f"{row['post_p99_ms']:.1f}", f"{value:.2f}" if value is not None else "-", verdict,
    )
    console.print(table)


def _print_growth(growth: dict[str, Any], console: Console) -> None:
    empty, loaded, after = growth["empty"], growth["loaded"], growth["empty_after"]
    title = (
        f"Cost as work grows: empty vs {growth['preload_tasks']:,} tasks + "
        f"{growth['preload_events']:,} events (loaded in {growth['preload_s']:.0f}s)"
    )
    table = Table(title=title, title_justify="left")
    columns = ("measure", "empty", "pre-loaded", "empty again", "pre-loaded ÷ mean of empties")
    for column in columns:
        table.add_column(column, justify="left" if column == "measure" else "right")
    lines = (
        ("submits/s (POST, 16 concurrent)", "row", "submit_per_s"),
        ("completions: jobs/s", "row", "jobs_per_s"),
        ("POST p50 ms", "row", "post_p50_ms"),
        ("POST p99 ms", "row", "post_p99_ms"),
        ("submit→done p50 ms", "row", "done_p50_ms"),
        ("CPU ms/job", "row", "cpu_ms_per_job"),
        ("machine load average (1 min)", "row", "load_1min"),
        ("GET /tasks first page p50 ms", "list_first", "p50_ms"),
        ("GET /tasks deep cursor page p50 ms", "list_deep", "p50_ms"),
        ("GET /tasks deep cursor page p99 ms", "list_deep", "p99_ms"),
    )
    for label, part, key in lines:
        a, b, c = empty[part][key], loaded[part][key], after[part][key]
        table.add_row(label, f"{a:,.1f}", f"{b:,.1f}", f"{c:,.1f}", _fmt_ratio(ratio(b, (a + c) / 2)))
    counts = (f"{point['tasks_in_db']:,}" for point in (empty, loaded, after))
    table.add_row("tasks in the database", *counts, "")
    console.print(table)


def _print_retention(retention: dict[str, Any], growth: dict[str, Any], console: Console) -> None:
    row = retention["row"]
    title = (
        f"Retention: {retention['old_tasks']:,} tasks finished {retention['age_days']} days ago, deleted"
        " by the relay (RETENTION_DAYS 30) while the service row runs"
    )
    table = Table(title=title, title_justify="left")
    columns = ("measure", "during retention", "empty database (mean of the two)", "÷ empty")
    for column in columns:
        table.add_column(column, justify="left" if column == "measure" else "right")
    empties = [growth[key]["row"] for key in ("empty", "empty_after") if key in growth]
    for label, key in (("completions: jobs/s", "jobs_per_s"), ("submits/s", "submit_per_s"),
                       ("POST p50 ms", "post_p50_ms"), ("POST p99 ms", "post_p99_ms")):
        base = sum(e[key] for e in empties) / len(empties) if empties else None
        table.add_row(label, f"{row[key]:,.1f}", f"{base:,.1f}" if base is not None else "-",
                      _fmt_ratio(ratio(row[key], base)))
    table.add_row("first batch seen after (s)", f"{retention['waited_for_first_batch_s']:.0f}", "", "")
    table.add_row("old tasks deleted during the row", f"{retention['deleted_during_row']:,}", "", "")
    drained = retention["drain_s"]
    drain = f"{drained:.0f} s" if drained is not None else f"not yet: {retention['left']:,} left"
    table.add_row("all deleted, from the first batch, after", drain, "", "")
    rate = retention["deleted_per_s"]
    table.add_row("deleted per second", f"{rate:,.0f}" if rate is not None else "-", "", "")
    console.print(table)


def write_json(results: Results, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results.to_json(), indent=2, default=str) + "\n")
