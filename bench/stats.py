"""The pure arithmetic of the benchmark: percentiles, rates, ratios and one row's summary."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


class BenchError(Exception):
    """Root of every error the benchmark raises: a row that cannot be measured honestly."""


@dataclass(frozen=True)
class Submit:
    """One submitted job: its id and when the submit call started and returned (epoch seconds)."""

    job_id: str
    start: float
    end: float


@dataclass
class RowResult:
    """One measured configuration: N jobs submitted by C concurrent submitters, all COMPLETED."""

    name: str
    jobs: int
    completed: int
    wall_s: float
    jobs_per_s: float
    done_p50_ms: float
    done_p99_ms: float
    post_p50_ms: float
    post_p99_ms: float
    submit_per_s: float
    cpu: dict[str, float] = field(default_factory=dict)
    """Per process group: CPU used over the measured window, in % of one core."""
    cpu_ms_per_job: float = 0.0
    """Every group's CPU together, per job: the cost of a job, less sensitive to a loaded machine."""
    note: str = ""
    load_1min: float = 0.0
    """The machine's 1-minute load average when the row ended (other work on a shared machine)."""
    rounds_jobs_per_s: list[float] = field(default_factory=list)
    """jobs/s of each round when the row is the mean of several (`mean_row`)."""


def mean_row(rows: Sequence[RowResult]) -> RowResult:
    """One row from the same configuration measured in several rounds: jobs summed, every rate,
    latency and CPU figure the mean of the rounds' (each round's own value is kept in the JSON)."""
    if not rows:
        raise BenchError("no rounds to average")

    def mean(values: Sequence[float]) -> float:
        return sum(values) / len(values)

    groups = sorted({name for row in rows for name in row.cpu})
    return RowResult(
        name=rows[0].name,
        jobs=sum(row.jobs for row in rows),
        completed=sum(row.completed for row in rows),
        wall_s=sum(row.wall_s for row in rows),
        jobs_per_s=mean([row.jobs_per_s for row in rows]),
        done_p50_ms=mean([row.done_p50_ms for row in rows]),
        done_p99_ms=mean([row.done_p99_ms for row in rows]),
        post_p50_ms=mean([row.post_p50_ms for row in rows]),
        post_p99_ms=mean([row.post_p99_ms for row in rows]),
        submit_per_s=mean([row.submit_per_s for row in rows]),
        cpu={name: round(mean([row.cpu.get(name, 0.0) for row in rows]), 1) for name in groups},
        cpu_ms_per_job=mean([row.cpu_ms_per_job for row in rows]),
        note=rows[0].note,
        load_1min=mean([row.load_1min for row in rows]),
        rounds_jobs_per_s=[row.jobs_per_s for row in rows],
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise BenchError("percentile of no values")
    if not 0 <= q <= 100:
        raise BenchError(f"percentile {q} is outside 0-100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def summarize(
    name: str,
    submits: Sequence[Submit],
    done_at: Mapping[str, float],
    cpu: Mapping[str, float] | None = None,
    note: str = "",
    cpu_s: float = 0.0,
) -> RowResult:
    """A row from every submit and the completion time of each job (epoch s, from the database).

    Every submitted job must be COMPLETED: a row that lost or failed a job is an error, not a
    faster number. The window runs from the first submit's start to the last completion.
    """
    if not submits:
        raise BenchError(f"{name}: no jobs submitted")
    missing = [s.job_id for s in submits if s.job_id not in done_at]
    if missing:
        raise BenchError(f"{name}: {len(missing)} of {len(submits)} jobs not COMPLETED (e.g. {missing[0]})")
    first = min(s.start for s in submits)
    last_done = max(done_at[s.job_id] for s in submits)
    last_submit = max(s.end for s in submits)
    wall = max(last_done - first, 1e-9)
    done_ms = [(done_at[s.job_id] - s.start) * 1000 for s in submits]
    post_ms = [(s.end - s.start) * 1000 for s in submits]
    return RowResult(
        name=name,
        jobs=len(submits),
        completed=len(submits) - len(missing),
        wall_s=wall,
        jobs_per_s=len(submits) / wall,
        done_p50_ms=percentile(done_ms, 50),
        done_p99_ms=percentile(done_ms, 99),
        post_p50_ms=percentile(post_ms, 50),
        post_p99_ms=percentile(post_ms, 99),
        submit_per_s=len(submits) / max(last_submit - first, 1e-9),
        cpu=dict(cpu or {}),
        cpu_ms_per_job=1000 * cpu_s / len(submits),
        note=note,
    )


def cpu_percent(before: Mapping[int, float], after: Mapping[int, float], wall_s: float) -> float:
    """CPU seconds used by a process group between two snapshots (pid -> cumulative CPU s), as %
    of one core over `wall_s`. A pid new in `after` counts from 0; one gone from `after` is lost
    (its last CPU time is unknown), which undercounts short-lived processes only."""
    used = sum(max(cpu - before.get(pid, 0.0), 0.0) for pid, cpu in after.items())
    return 100 * used / wall_s if wall_s > 0 else 0.0
