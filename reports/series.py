"""Time series read off the run's samples (one every second while a stack ran): queue depths,
tasks by status, and throughput as the growth of terminal tasks.

A sample whose store did not answer leaves that part empty and says why in `error`; such a part is
a gap here, never a zero. Tables are truncated between tests, so the count of terminal tasks drops
at each new test: only growth between two samples of one suite counts as throughput.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.record.records import Sample
from harness.state import DLQ, RETRY_QUEUE, queue_kind

Point = tuple[float, float]


def _queues_answered(sample: Sample) -> bool:
    return sample.rabbitmq_error is None


def _tasks_answered(sample: Sample) -> bool:
    return sample.postgres_error is None


def queue_depths(samples: Sequence[Sample]) -> dict[str, list[Point]]:
    """Each queue's depth (ready + unacknowledged) at every sample the broker answered."""
    answered = [s for s in samples if _queues_answered(s)]
    names = sorted({name for s in answered for name in s.queues}, key=queue_order)
    return {
        name: [(s.t, float(s.queues[name].depth if name in s.queues else 0)) for s in answered]
        for name in names
    }


def queue_order(name: str) -> tuple[str, int, str]:
    """Job queues, each followed by its retry queues, then the DLQ, then anything else."""
    retry = RETRY_QUEUE.match(name)
    if retry:
        return (retry.group("job") + ".q", 1, f"{int(retry.group('delay')):09d}")
    kind = queue_kind(name)
    if kind == "job":
        return (name, 0, "")
    return ("~" if name == DLQ else "~~", 0, name)


def job_of(name: str) -> str | None:
    """The job queue a retry queue feeds back into (`ast.simulate.retry.200ms.q` → `ast.simulate.q`)."""
    retry = RETRY_QUEUE.match(name)
    return retry.group("job") + ".q" if retry else None


def task_counts(samples: Sequence[Sample]) -> dict[str, list[Point]]:
    """Tasks in each status at every sample the database answered (0 where a status had none)."""
    answered = [s for s in samples if _tasks_answered(s)]
    statuses = dict.fromkeys(status for s in answered for status in s.tasks)
    return {status: [(s.t, float(s.tasks.get(status, 0))) for s in answered] for status in statuses}


def terminal_growth(samples: Sequence[Sample]) -> list[Point]:
    """(time, tasks that became terminal since the previous answered sample of the same suite);
    a drop (tables truncated for the next test) counts as nothing, not as negative throughput."""
    out: list[Point] = []
    last: dict[str, int] = {}
    for sample in samples:
        if not _tasks_answered(sample):
            continue
        previous = last.get(sample.suite)
        if previous is not None and sample.terminal > previous:
            out.append((sample.t, float(sample.terminal - previous)))
        last[sample.suite] = sample.terminal
    return out
