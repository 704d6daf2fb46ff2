"""The numbers a load run is judged by, from its run record alone (pure: no servers, no Locust).

Submit latency and errors come from the merged history (every POST /tasks, its invocation and
completion); submit-to-terminal time from the final snapshot's tasks (`created_at` to
`updated_at`, which a terminal task never moves again); queue depth from the samples taken
during the run. Locust's own statistics say the same from the client's side, beside it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from harness.history import History, Operation
from harness.record.records import Sample
from harness.state import TaskRow

TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
DLQ = "ast.jobs.dlq"


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Window:
    """The load phase in wall-clock seconds: from the first to the last Locust request."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 1e-9)

    @classmethod
    def of(cls, ops: Sequence[Operation]) -> Window | None:
        times = [op.wall_time for op in ops]
        return cls(min(times), max(times)) if times else None


@dataclass(frozen=True)
class Submits:
    """The run's POST /tasks: latencies (ms) of answered ones, how many completed, how many got a 2xx,
    and how many were still in flight when Locust stopped its users (their outcome is unknown)."""

    latencies_ms: list[float]
    completed: int
    accepted: int
    in_flight: int

    @property
    def error_rate(self) -> float | None:
        return (self.completed - self.accepted) / self.completed if self.completed else None

    @classmethod
    def of(cls, history: History) -> Submits:
        invocations = {op.index: op for op in history.ops if op.f == "submit" and op.type == "invoke"}
        latencies, accepted, answered = [], 0, set()
        for op in history.completions("submit"):
            start = invocations.get(op.invoke_index) if op.invoke_index is not None else None
            if start is not None:
                latencies.append((op.time_ns - start.time_ns) / 1e6)
                answered.add(start.index)
            accepted += op.type == "ok"
        completed = len(history.completions("submit"))
        return cls(latencies, completed, accepted, len(invocations.keys() - answered))


def accepted_task_ids(history: History) -> set[str]:
    return {op.task_id for op in history.completions("submit") if op.type == "ok" and op.task_id}


def _seconds(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def completion_times(tasks: Iterable[TaskRow], task_ids: set[str]) -> list[float]:
    """Submit-to-terminal seconds of every terminal task of `task_ids`."""
    out = []
    for task in tasks:
        if task.task_id in task_ids and task.status in TERMINAL:
            created, updated = _seconds(task.created_at), _seconds(task.updated_at)
            if created is not None and updated is not None:
                out.append(updated - created)
    return out


def queue_depth_max(samples: Iterable[Sample], window: Window | None = None) -> float | None:
    """The most messages in the job and retry queues (not the DLQ) in any sample of `window`."""
    depths = [
        sum(level.depth for name, level in sample.queues.items() if name != DLQ)
        for sample in samples
        if sample.queues and (window is None or window.start <= sample.t <= window.end)
    ]
    return float(max(depths)) if depths else None


def measure(
    history: History, tasks: Sequence[TaskRow], samples: Sequence[Sample], rss_growth_mb: float | None = None
) -> dict[str, float | None]:
    """Every metric an SLO can name (see `harness.load.slo.METRICS`); None where nothing was measured."""
    submits = Submits.of(history)
    window = Window.of([op for op in history.ops if op.process != "nemesis"])
    complete = completion_times(tasks, accepted_task_ids(history))
    return {
        "submit_p50_ms": percentile(submits.latencies_ms, 50),
        "submit_p95_ms": percentile(submits.latencies_ms, 95),
        "submit_p99_ms": percentile(submits.latencies_ms, 99),
        "submit_error_rate": submits.error_rate,
        "complete_p95_s": percentile(complete, 95),
        "throughput_min_per_s": submits.accepted / window.seconds if window else None,
        "queue_depth_max": queue_depth_max(samples, window),
        "worker_rss_growth_mb": rss_growth_mb,
        "submitted": float(submits.completed + submits.in_flight),
        "accepted": float(submits.accepted),
        "in_flight_at_stop": float(submits.in_flight),
        "completed": float(len(complete)),
        "window_s": window.seconds if window else None,
    }
