"""The HTML report of a run: one self-contained file, readable offline.

`build_report(run_dir)` reads the run directory (reports/model.py), draws its charts as inline
SVG (reports/charts.py) and renders `templates/report.html.j2` into `<run_dir>/report.html`.
Nothing is fetched when the file is opened: CSS, SVG and the little JS are inline, so the report
can be attached to a CI job, mailed or opened years later and still read the same.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from harness.state import DLQ, queue_kind
from reports.charts import (
    PALETTE,
    Series,
    Shade,
    TimeAxis,
    bin_rate,
    bin_sum,
    binned_quantile,
    choose_bin,
    status_bar,
    time_chart,
)
from reports.model import RunReport, load_run
from reports.series import Point, job_of, queue_depths, task_counts, terminal_growth
from reports.timelines import RequestView, task_anchor

TEMPLATES = Path(__file__).parent / "templates"
STATUS_COLORS = {
    "PENDING": "#94a3b8",
    "IN_PROGRESS": "#2563eb",
    "RETRYING": "#d97706",
    "WAITING_FOR_EVENT": "#9333ea",
    "COMPLETED": "#16a34a",
    "FAILED": "#dc2626",
    "CANCELLED": "#475569",
}


@dataclass(frozen=True)
class ChartView:
    title: str
    caption: str
    svg: Markup


def build_report(run_dir: Path) -> Path:
    """Writes `<run_dir>/report.html` (atomically, so a reader never sees half a file)."""
    report = load_run(run_dir)
    target = run_dir / "report.html"
    tmp = run_dir / f".report.html.{os.getpid()}"
    tmp.write_text(render(report), encoding="utf-8")
    tmp.replace(target)
    return target


def render(report: RunReport) -> str:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        duration=fmt_duration,
        clock=fmt_clock,
        bytes=fmt_bytes,
        anchor=task_anchor,
        since=_since(report),
        short=fmt_short,
    )
    return env.get_template("report.html.j2").render(
        r=report,
        charts=build_charts(report),
        open_timelines=open_timelines(report),
        status_colors=STATUS_COLORS,
        status_bar=Markup(status_bar(report.status_counts, STATUS_COLORS)),
        generated_at=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    )


def open_timelines(report: RunReport) -> int:
    """How many timelines open unfolded: those of tasks a violation names (up to 5), else the
    first one, so a reader sees what a timeline holds without a click."""
    broken = sum(1 for t in report.timelines if t.broken)
    return min(broken, 5) if broken else min(1, len(report.timelines))


# --- charts -------------------------------------------------------------------------------------


def build_charts(report: RunReport) -> list[ChartView]:
    """Throughput, latency, queue depths and tasks by status on one time axis (one x position is
    one instant in every chart), fault windows shaded in each."""
    span = report.time_range
    if span is None:
        return []
    start, end = span
    axis = TimeAxis(start, max(end, start + 1.0))
    shades = [Shade(f.start, f.end, f.name) for f in report.faults]
    charts = [_throughput_chart(report, axis, shades), _latency_chart(report, axis, shades)]
    submits = [r for r in report.requests if r.f == "submit" and r.done_at > r.invoked_at]
    if submits:
        charts.append(_submit_latency_chart(submits, axis, shades))
    depths = queue_depths(report.samples)
    if depths:
        charts.append(_queue_chart(depths, axis, shades))
    counts = task_counts(report.samples)
    if counts:
        charts.append(_tasks_chart(counts, axis, shades))
    return charts


def _throughput_chart(report: RunReport, axis: TimeAxis, shades: Sequence[Shade]) -> ChartView:
    """Accepted submits from the histories; tasks reaching a terminal status from the samples (the
    growth of terminal tasks), else, with no samples, from the tasks' own terminal times."""
    bin_s = choose_bin(axis)
    submits = [r for r in report.requests if r.f == "submit"]
    accepted = bin_rate((r.done_at for r in submits if r.outcome == "ok"), axis, bin_s)
    series = [Series("accepted (202)", accepted, PALETTE[0])]
    if report.samples:
        terminal = bin_sum(terminal_growth(report.samples), axis, bin_s)
        source = "terminal: growth between samples"
    else:
        terminal = bin_rate((p.terminal_at for p in report.latencies), axis, bin_s)
        source = "terminal: each task's terminal time"
    series.append(Series("reached terminal", terminal, PALETTE[1]))
    refused = [r.done_at for r in submits if r.outcome != "ok"]
    if refused:
        series.append(Series("submit refused or unknown", bin_rate(refused, axis, bin_s), "#dc2626"))
    caption = f"tasks per second, in {fmt_duration(bin_s)} bins; {source}"
    svg = time_chart(axis, series, title="Throughput", unit="/s", shades=shades)
    return ChartView("Throughput", caption, Markup(svg))


def _latency_chart(report: RunReport, axis: TimeAxis, shades: Sequence[Shade]) -> ChartView:
    """Each task is a dot at its submit time, its height the time to a terminal status; the line
    is the p95 per bin. A dot links to the task's timeline."""
    points = report.latencies
    scale, unit = (1000.0, "ms") if points and max(p.latency_s for p in points) < 1 else (1.0, "s")
    series = []
    for status in dict.fromkeys(p.status for p in points):
        chosen = [p for p in points if p.status == status]
        series.append(
            Series(
                status.lower(),
                [(p.submitted_at, p.latency_s * scale) for p in chosen],
                STATUS_COLORS.get(status, PALETTE[-1]),
                kind="dots",
                link_prefix="task-",
                labels=[f"{p.task_id} {status} {fmt_duration(p.latency_s)}" for p in chosen],
                radius=2.6 if status == "COMPLETED" else 4.0,
            )
        )
    series += _percentile_lines([(p.submitted_at, p.latency_s * scale) for p in points], axis)
    caption = f"submit → terminal per task ({len(points)} tasks), by submit time; p50/p95/p99 per bin"
    svg = time_chart(axis, series, title="Latency", unit=unit, shades=shades)
    return ChartView("Latency", caption, Markup(svg))


PERCENTILES = ((0.50, "p50", "#64748b"), (0.95, "p95", "#0f172a"), (0.99, "p99", "#7c3aed"))


def _percentile_lines(points: Sequence[tuple[float, float]], axis: TimeAxis) -> list[Series]:
    bin_s = choose_bin(axis, 30)
    lines = [(name, colour, binned_quantile(points, axis, bin_s, q)) for q, name, colour in PERCENTILES]
    return [Series(name, line, colour) for name, colour, line in lines if line]


def _submit_latency_chart(
    submits: Sequence[RequestView], axis: TimeAxis, shades: Sequence[Shade]
) -> ChartView:
    """How long `POST /tasks` took, by when it was sent: p50, p95 and p99 per bin."""
    points = [(r.invoked_at, (r.done_at - r.invoked_at) * 1000.0) for r in submits]
    svg = time_chart(axis, _percentile_lines(points, axis), title="Submit latency", unit="ms", shades=shades)
    caption = f"POST /tasks answer time ({len(points)} submits), by send time; p50/p95/p99 per bin"
    return ChartView("Submit latency", caption, Markup(svg))


def _queue_style(name: str, jobs: list[str]) -> tuple[str, str, float]:
    """(colour, dash, width): a job queue its own colour, its retry queues the same colour dashed,
    the DLQ red and heavier, anything else grey."""
    job = job_of(name) or name
    if job in jobs:
        return PALETTE[jobs.index(job) % len(PALETTE)], "5 3" if job != name else "", 1.8
    return ("#dc2626", "", 2.6) if name == DLQ else (PALETTE[-1], "2 2", 1.4)


def _queue_chart(depths: dict[str, list[Point]], axis: TimeAxis, shades: Sequence[Shade]) -> ChartView:
    """Every job queue and the DLQ, and each retry or other queue that ever held a message."""
    jobs = [n for n in depths if queue_kind(n) == "job"]
    shown = [n for n in depths if n in jobs or n == DLQ or any(v for _, v in depths[n])]
    series = []
    for name in shown:
        color, dash, width = _queue_style(name, jobs)
        series.append(Series(name, depths[name], color, kind="step", dash=dash, width=width))
    samples = len(next(iter(depths.values())))
    empty = len(depths) - len(shown)
    caption = f"messages ready + unacknowledged per queue, {samples} samples"
    caption += f"; {empty} queue(s) that never held a message not drawn" if empty else ""
    svg = time_chart(axis, series, title="Queue depths", unit="msgs", shades=shades)
    return ChartView("Queue depths", caption, Markup(svg))


def _tasks_chart(counts: dict[str, list[Point]], axis: TimeAxis, shades: Sequence[Shade]) -> ChartView:
    series = [
        Series(status, points, STATUS_COLORS.get(status, PALETTE[-1]), kind="step")
        for status, points in counts.items()
    ]
    caption = "tasks in the database by status, per sample (tables are emptied before each test)"
    svg = time_chart(axis, series, title="Tasks by status", unit="", shades=shades)
    return ChartView("Tasks by status", caption, Markup(svg))


# --- formatting filters -------------------------------------------------------------------------


def fmt_duration(seconds: float | None) -> str:
    """Human units: 850 ms, 12.3 s, 4 min 05 s."""
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s"


def fmt_clock(epoch_s: float | None) -> str:
    """Local wall-clock time with milliseconds, to join the report with process logs."""
    if epoch_s is None:
        return "–"
    return time.strftime("%H:%M:%S", time.localtime(epoch_s)) + f".{int(epoch_s % 1 * 1000):03d}"


def fmt_short(value: object, limit: int = 240) -> str:
    """Evidence as one short line: people scan it, they do not parse it."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, separators=(", ", ": "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fmt_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _since(report: RunReport) -> object:
    """A filter: seconds since the start of the run's time axis, e.g. +12.345 s."""
    span = report.time_range
    origin = span[0] if span else 0.0

    def since(epoch_s: float | None) -> str:
        return "–" if epoch_s is None else f"+{epoch_s - origin:.3f} s"

    return since
