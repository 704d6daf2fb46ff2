"""What the checker may look at, as plain frozen values: the rows of the contract's tables, the
queues' depths and the DLQ's messages, the snapshot that holds them, and the status machine.

The rows hold what the contract's "What the checker may read" names, and nothing the checker could
come to rely on besides: no `dead_lettered` or `replayed_by` (the service's own bookkeeping; a
replay is read off the new task's `replay_of`), no inbox. A few columns outside that list are
kept as optional fields, filled only when the deployment has them, for the report and for
evidence; no invariant may depend on them (each says so where it is declared).

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
RETRIES_EXHAUSTED = "RETRIES_EXHAUSTED"
DELIVERY_LIMIT = "DELIVERY_LIMIT"
DEAD_LETTER_CODES: frozenset[str] = frozenset({RETRIES_EXHAUSTED, DELIVERY_LIMIT})


def reachable_statuses(moves: Mapping[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    """Every status reachable from each status by any path of moves, itself included."""
    reach: dict[str, frozenset[str]] = {}
    for start in moves:
        found, frontier = {start}, [start]
        while frontier:
            for after in moves.get(frontier.pop(), frozenset()):
                if after not in found:
                    found.add(after)
                    frontier.append(after)
        reach[start] = frozenset(found)
    return reach


REACHABLE: dict[str, frozenset[str]] = reachable_statuses(LEGAL_MOVES)


def can_follow(before: str, after: str, reachable: Mapping[str, frozenset[str]] = REACHABLE) -> bool:
    """Whether a task seen in `before` may later be seen in `after`: a terminal status only in
    itself; any other status in whatever the machine can reach from it. (With the contract's
    machine every non-terminal status reaches every status, so only terminal ones can be left
    "backwards".) A status the machine does not know is not judged here: invariant 4 judges moves."""
    if before in TERMINAL:
        return after == before
    if before not in reachable or after not in reachable:
        return True
    return after in reachable[before]


@dataclass(frozen=True)
class TaskRow:
    """A `tasks` row: the task fields, `version`, `idempotency_key`, `attempt`, `replay_of`.

    `payload` is not a task field the contract names: it is read when the column exists, and only
    the counts use it (to match a submit whose outcome was unknown with the task it created).
    """

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
    replay_of: str | None = None
    created_at: str | None = None
    updated_at: str | None = None

    @property
    def error_code(self) -> str | None:
        """`error.code`, the contract's word for why a task failed; None without one."""
        if isinstance(self.error, Mapping) and isinstance(self.error.get("code"), str):
            return str(self.error["code"])
        return None


@dataclass(frozen=True)
class EventRow:
    """A `task_events` row. `state`, `worker_id` and `message` are outside the contract's list:
    read when the deployment has them, for the report's timelines; no invariant uses them."""

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
    """A `task_results` row: `task_id`, `created_at`; `result_id` and `worker_id` when present."""

    task_id: str
    created_at: str | None = None
    result_id: int | None = None
    worker_id: str | None = None


@dataclass(frozen=True)
class OutboxRow:
    """An `outbox` row: `sent_at` (None: not sent yet); `outbox_id` and `task_id` when present,
    as evidence only."""

    sent_at: str | None
    outbox_id: int | None = None
    task_id: str | None = None


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
    """A message read without consuming it; `task_id` is None when the body is not a job message.
    `death_reason` comes from the broker's `x-death`; `reason` is the service's own `x-ast-reason`
    header, where a deployment sets one (the checker never needs it)."""

    queue: str
    task_id: str | None
    body: Any
    message_id: str | None = None
    redelivered: bool = False
    death_reason: str | None = None
    death_count: int = 0
    reason: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """Everything the checker may look at. A store that could not be read leaves an error here."""

    tasks: tuple[TaskRow, ...] = ()
    events: tuple[EventRow, ...] = ()
    results: tuple[ResultRow, ...] = ()
    outbox: tuple[OutboxRow, ...] = ()
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
    def replays_of(self) -> Mapping[str, tuple[str, ...]]:
        """Each replayed task's replays (the tasks whose `replay_of` names it)."""
        grouped: dict[str, list[str]] = defaultdict(list)
        for task in self.tasks:
            if task.replay_of is not None:
                grouped[task.replay_of].append(task.task_id)
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
