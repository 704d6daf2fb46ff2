"""Service level objectives of a load run, in the style of k6 thresholds: `metric op limit`.

A TOML file holds per-profile tables (and `[all]` for every profile), each key a metric and each
value its threshold expression:

    [all]
    submit_error_rate = "< 0.01"
    [steady]
    submit_p95_ms = "< 500"
    complete_p95_s = "< 10"

The file's thresholds replace the defaults of the same metric; the rest of the defaults stay.
A metric that was not measured fails its threshold: an objective nobody could check never passes.
"""

from __future__ import annotations

import operator
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.load.profiles import PROFILES
from harness.record.records import SloRecord

METRICS: dict[str, str] = {
    "submit_p50_ms": "POST /tasks latency, median (ms)",
    "submit_p95_ms": "POST /tasks latency, 95th percentile (ms)",
    "submit_p99_ms": "POST /tasks latency, 99th percentile (ms)",
    "submit_error_rate": "share of answered submits not 2xx (4xx, 5xx, timeout)",
    "complete_p95_s": "submit to terminal status, 95th percentile (s)",
    "throughput_min_per_s": "tasks accepted per second over the load window",
    "queue_depth_max": "most messages in the job and retry queues at once (ready + unacked)",
    "worker_rss_growth_mb": "growth of the workers' resident memory over the run (MB)",
}
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_EXPRESSION = re.compile(r"^\s*(<=|>=|<|>)\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$")
ALL = "all"
SloStatus = Literal["passed", "failed"]


class SloError(ValueError):
    """An SLO file or expression that cannot be read: one line naming the key and why."""


@dataclass(frozen=True)
class Threshold:
    metric: str
    op: str
    limit: float

    def holds(self, value: float) -> bool:
        return _OPS[self.op](value, self.limit)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.limit:g}"


@dataclass(frozen=True)
class SloResult:
    threshold: Threshold
    value: float | None
    status: SloStatus

    @property
    def line(self) -> str:
        measured = "not measured" if self.value is None else f"{self.value:.4g}"
        return f"SLO {self.threshold} {self.status.upper()} (measured {measured})"


def parse_threshold(metric: str, expression: str) -> Threshold:
    if metric not in METRICS:
        raise SloError(f"unknown SLO metric {metric!r}: known are {', '.join(METRICS)}")
    found = _EXPRESSION.match(str(expression))
    if found is None:
        raise SloError(f"SLO {metric} = {expression!r}: expected '<', '<=', '>' or '>=' and a number")
    return Threshold(metric, found.group(1), float(found.group(2)))


DEFAULTS: dict[str, dict[str, str]] = {
    ALL: {"submit_error_rate": "< 0.01", "submit_p95_ms": "< 1000", "submit_p99_ms": "< 2000"},
    "steady": {"complete_p95_s": "< 10", "throughput_min_per_s": "> 2", "queue_depth_max": "< 100"},
    "spike": {"complete_p95_s": "< 30", "throughput_min_per_s": "> 2", "queue_depth_max": "< 1000"},
    "soak": {
        "complete_p95_s": "< 10",
        "throughput_min_per_s": "> 2",
        "queue_depth_max": "< 100",
        "worker_rss_growth_mb": "< 100",
    },
}


def _table(tables: Mapping[str, object], name: str) -> dict[str, str]:
    table = tables.get(name, {})
    if not isinstance(table, dict):
        raise SloError(f'SLO table [{name}] must be a table of metric = "op limit"')
    return {str(k): str(v) for k, v in table.items()}


def thresholds_for(profile: str, overrides: Mapping[str, object] | None = None) -> tuple[Threshold, ...]:
    """The defaults of `profile` with the `[all]` and `[profile]` tables of `overrides` on top."""
    merged = {**DEFAULTS[ALL], **DEFAULTS.get(profile, {})}
    if overrides:
        merged |= _table(overrides, ALL) | _table(overrides, profile)
    return tuple(parse_threshold(metric, expression) for metric, expression in merged.items())


def load_slo_file(path: Path) -> dict[str, object]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SloError(f"SLO file {path}: {exc}") from exc
    for name in data:
        if name != ALL and name not in PROFILES:
            raise SloError(
                f"SLO file {path}: [{name}] is neither [{ALL}] nor a profile ({', '.join(PROFILES)})"
            )
        for metric, expression in _table(data, name).items():
            parse_threshold(metric, expression)
    return data


def evaluate(thresholds: tuple[Threshold, ...], metrics: Mapping[str, float | None]) -> tuple[SloResult, ...]:
    results = []
    for threshold in thresholds:
        value = metrics.get(threshold.metric)
        held = value is not None and threshold.holds(value)
        results.append(SloResult(threshold, value, "passed" if held else "failed"))
    return tuple(results)


def slo_records(results: Sequence[SloResult]) -> tuple[SloRecord, ...]:
    """The judged SLOs as the run record keeps them (results.json's `slos`)."""
    return tuple(
        SloRecord(
            metric=r.threshold.metric,
            op=r.threshold.op,
            limit=r.threshold.limit,
            value=r.value,
            status=r.status,
        )
        for r in results
    )
