"""What the checker may look at, as plain frozen values: the rows of the contract's tables, the
queues' depths and the DLQ's messages, the snapshot that holds them, and the status machine.

Pure: no driver is imported here (the unit test of imports checks it), so the checker and the
report can read these types without PostgreSQL or RabbitMQ. `harness.observe` fills them in.

The status machine is a copy of the contract's, not an import: the harness never imports the
service, and this table is part of the contract.
"""


from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

DLQ = "ast.jobs.dlq"
JOB_QUEUES: frozenset[str] = frozenset({"ast.initialize.repo.q", "ast.initialize.impact.q", "ast.simulate.q"})
RETRY_QUEUE = re.compile(r"^(?P<job>.+)\.retry\.(?P<delay>\d+)ms\.q$")
UNSETTLED: frozenset[str] = frozenset({"PENDING", "IN_PROGRESS", "RETRYING"})
DLQ_PEEK_MARGIN = 100

TERMINAL: frozenset[str] = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
LEGAL_MOVES: dict[str, frozenset[str]] = {
    "PENDING": frozenset({"IN_PROGRESS", "CANCELLED", "FAILED"}),
    "IN_PROGRESS": frozenset(
        {"IN_PROGRESS", "PENDING", "RETRYING", "WAITING_FOR_EVENT", "COMPLETED", "FAILED", "CANCELLED"}
    ),
    "RETRYING": frozenset({"IN_PROGRESS", "CANCELLED", "FAILED"}),
    "WAITING_FOR_EVENT": frozenset({"PENDING", "CANCELLED"}),
    "COMPLETED": frozenset(),
    "FAILED": frozenset(),
    "CANCELLED": frozenset(),
}
INITIAL_STATUS = "PENDING"


@dataclass(frozen=True)
class TaskRow:
    task_id: str
    type: str
    status: str
    progress: int
    retry_count: int
    max_retries: int
    version: int
    attempt: int = 0
    priority: int = 0
    payload: Any = None
    result: Any = None
    error: Any = None
    idempotency_key: str | None = None
    dead_lettered: bool = False
    replay_of: str | None = None
    replayed_by: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


@dataclass(frozen=True)
class EventRow:
    event_id: int
    task_id: str
    kind: str
    status: str
    version: int
    from_status: str | None = None
    progress: int | None = None
    attempt: int = 0
    state: str | None = None
    worker_id: str | None = None
    message: str | None = None
    created_at: str | None = None


@dataclass(frozen=True)
class ResultRow:
    result_id: int
    task_id: str
    worker_id: str | None = None
    created_at: str | None = None


@dataclass(frozen=True)
class OutboxRow:
    outbox_id: int
    message_id: str
    exchange: str
    routing_key: str
    task_id: str | None = None
    created_at: str | None = None
    sent_at: str | None = None
    attempts: int = 0
    last_error: str | None = None


@dataclass(frozen=True)
class InboxRow:
    message_id: str
    outcome: str
    task_id: str | None = None
    worker_id: str | None = None


@dataclass(frozen=True)
class QueueDepth:
    """`kind` is job, retry, dlq or other; `messages` is ready plus unacknowledged."""

    name: str
    kind: str
    messages: int
    ready: int = 0
    unacked: int = 0
    consumers: int = 0


@dataclass(frozen=True)
class QueueMessage:
    """A message read without consuming it; `task_id` is None when the body is not a job message."""

    queue: str
    task_id: str | None
    body: Any
    message_id: str | None = None
    redelivered: bool = False
    death_reason: str | None = None
    death_count: int = 0


@dataclass(frozen=True)
class Snapshot:
    """Everything the checker may look at. A store that could not be read leaves an error here."""

    tasks: tuple[TaskRow, ...] = ()
    events: tuple[EventRow, ...] = ()
    results: tuple[ResultRow, ...] = ()
    outbox: tuple[OutboxRow, ...] = ()
    inbox: tuple[InboxRow, ...] = ()
    queues: tuple[QueueDepth, ...] = ()
    dlq_messages: tuple[QueueMessage, ...] = ()
    dlq_complete: bool = True
    postgres_error: str | None = None
    rabbitmq_error: str | None = None
    taken_at: float = field(default_factory=time.time)

    @cached_property
    def tasks_by_id(self) -> Mapping[str, TaskRow]:
        return {t.task_id: t for t in self.tasks}

    @cached_property
    def events_by_task(self) -> Mapping[str, tuple[EventRow, ...]]:
        """Each task's events, oldest first (by event_id, the order they were committed)."""
        grouped: dict[str, list[EventRow]] = defaultdict(list)
        for event in sorted(self.events, key=lambda e: e.event_id):
            grouped[event.task_id].append(event)
        return {k: tuple(v) for k, v in grouped.items()}

    @cached_property
    def results_by_task(self) -> Mapping[str, tuple[ResultRow, ...]]:
        grouped: dict[str, list[ResultRow]] = defaultdict(list)
        for result in self.results:
            grouped[result.task_id].append(result)
        return {k: tuple(v) for k, v in grouped.items()}

    def queue(self, name: str) -> QueueDepth | None:
        return next((q for q in self.queues if q.name == name), None)

    def summary(self) -> dict[str, Any]:
        """Sizes only, for results.json."""
        return {
            "takenAt": self.taken_at,
            "tasks": len(self.tasks),
            "events": len(self.events),
            "results": len(self.results),
            "outboxUnsent": sum(1 for o in self.outbox if o.sent_at is None),
            "queues": {q.name: q.messages for q in self.queues},
            "dlqMessages": len(self.dlq_messages),
            "dlqComplete": self.dlq_complete,
            "postgresError": self.postgres_error,
            "rabbitmqError": self.rabbitmq_error,
        }


def queue_kind(name: str) -> str:
    if name == DLQ:
        return "dlq"
    if name in JOB_QUEUES:
        return "job"
    if RETRY_QUEUE.match(name):
        return "retry"
    return "other"


def unsettled_reasons(snapshot: Snapshot, *, still_running: frozenset[str] = frozenset()) -> list[str]:
    """Why the system is not settled yet; empty when it is. `still_running` tasks may stay unsettled."""
    reasons = [
        f"{s} unreadable: {e}"
        for s, e in (("postgres", snapshot.postgres_error), ("rabbitmq", snapshot.rabbitmq_error))
        if e
    ]
    busy = [t.task_id for t in snapshot.tasks if t.status in UNSETTLED and t.task_id not in still_running]
    if busy:
        reasons.append(f"{len(busy)} tasks PENDING/IN_PROGRESS/RETRYING (e.g. {busy[0]})")
    unsent = sum(1 for o in snapshot.outbox if o.sent_at is None)
    if unsent:
        reasons.append(f"{unsent} outbox rows unsent")
    reasons.extend(
        f"queue {q.name} holds {q.messages}"
        for q in snapshot.queues
        if q.kind in {"job", "retry"} and q.messages
    )
    return reasons


@dataclass(frozen=True)
class Settled:
    """The last snapshot taken, whether the system settled, and what was still moving if not."""

    snapshot: Snapshot
    settled: bool
    waited_s: float
    reasons: tuple[str, ...] = ()
