"""What one dashboard refresh shows: plain values, built by `source` and drawn by the templates."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class QueueRow:
    name: str
    kind: str  # job | retry | dead-letter
    ready: int | None
    unacked: int | None
    consumers: int | None
    spark: tuple[int, ...] = ()

    @property
    def depth(self) -> int | None:
        if self.ready is None:
            return None
        return self.ready + (self.unacked or 0)


@dataclass(frozen=True)
class Rates:
    """Per second, over the last few refreshes; None until two refreshes are far enough apart."""

    accepted: float | None = None
    completed: float | None = None
    failed: float | None = None


@dataclass(frozen=True)
class Failure:
    task_id: uuid.UUID
    type: str
    code: str
    message: str
    at: datetime


@dataclass(frozen=True)
class DeadLetter:
    task_id: uuid.UUID | None
    type: str
    reason: str  # x-death: why and from which queue
    count: int  # x-death counts, summed
    ast_reason: str  # the worker's own reason header, when it set one
    task_status: str | None = None
    replayed: bool = False


@dataclass(frozen=True)
class Worker:
    worker_id: str
    current: int
    task_ids: tuple[uuid.UUID, ...]
    heartbeat: datetime | None  # the last lease renewal: lease end minus the lease length
    last_event: datetime | None


@dataclass(frozen=True)
class TaskCounts:
    by_status: dict[str, int]
    by_type: dict[str, dict[str, int]]

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


@dataclass
class Snapshot:
    taken_at: datetime
    counts: TaskCounts
    queues: list[QueueRow]
    failures: list[Failure]
    dead_letters: list[DeadLetter]
    dlq_depth: int | None
    workers: list[Worker]
    rates: Rates = field(default_factory=Rates)
    queries: int = 0
    build_ms: float = 0.0
    problems: list[str] = field(default_factory=list)
