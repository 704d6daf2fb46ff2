"""The contract's 11 invariants as pure functions of (history, snapshot), composable like Jepsen's.

Every checker has the same shape, `check_xxx(history, snapshot, expect) -> InvariantResult`, so
`check_all` can run any list of them and merge the verdicts: broken beats unknown beats held.
A checker answers `unknown` when a store it needs could not be read.

Each violation is reported once, under the most specific invariant: a move *out of* a terminal
status is invariant 3's (terminal is final), not 4's; a result on a CANCELLED task is 11's, not
2's. So a planted fault names exactly one invariant.

The status machine below is a copy of the contract's, not an import: the harness never imports
the service, and this table is part of the contract.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from harness.history import History, Operation, body_digest
from harness.state import (
    INITIAL_STATUS,
    LEGAL_MOVES,
    TERMINAL,
    UNSETTLED,
    EventRow,
    QueueMessage,
    Snapshot,
    TaskRow,
)

Status = Literal["held", "broken", "unknown"]



@dataclass(frozen=True)
class Violation:
    """The tasks involved and the concrete evidence (rows, events, messages), trimmed to the point."""

    task_ids: tuple[str, ...]
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InvariantResult:
    name: str
    number: int
    status: Status
    violations: tuple[Violation, ...] = ()
    note: str = ""

    @property
    def task_ids(self) -> frozenset[str]:
        return frozenset(t for v in self.violations for t in v.task_ids)


@dataclass(frozen=True)
class Expectations:
    """What the scenario meant to leave behind.

    `waiting`: tasks allowed to stay WAITING_FOR_EVENT; None allows any (what `harness check`
    uses, since it does not know the scenario). `still_running`: tasks allowed to stay unsettled
    (e.g. a hang the scenario is still waiting out).
    """

    waiting: frozenset[str] | None = None
    still_running: frozenset[str] = frozenset()


Checker = Callable[[History, Snapshot, Expectations], InvariantResult]
_DEFAULT = Expectations()


def _result(
    number: int, name: str, violations: Iterable[Violation], unknown: str | None = None
) -> InvariantResult:
    found = tuple(violations)
    if found:
        return InvariantResult(name, number, "broken", found)
    if unknown:
        return InvariantResult(name, number, "unknown", (), unknown)
    return InvariantResult(name, number, "held")


def _event(e: EventRow) -> dict[str, Any]:
    """An event trimmed to what the invariants look at."""
    return {
        "eventId": e.event_id,
        "kind": e.kind,
        "from": e.from_status,
        "status": e.status,
        "progress": e.progress,
        "attempt": e.attempt,
        "version": e.version,
    }


def _task(t: TaskRow) -> dict[str, Any]:
    return {
        "taskId": t.task_id,
        "status": t.status,
        "progress": t.progress,
        "retryCount": t.retry_count,
        "maxRetries": t.max_retries,
        "version": t.version,
        "deadLettered": t.dead_lettered,
        "replayedBy": t.replayed_by,
    }


def _op(op: Operation) -> dict[str, Any]:
    return {
        "index": op.index,
        "process": op.process,
        "type": op.type,
        "f": op.f,
        "statusCode": op.status_code,
        "taskId": op.task_id,
        "idempotencyKey": op.idempotency_key,
        "wallTime": op.wall_time,
    }


def _pg_unknown(snapshot: Snapshot) -> str | None:
    return f"PostgreSQL was not read: {snapshot.postgres_error}" if snapshot.postgres_error else None


def status_events(events: Sequence[EventRow]) -> list[EventRow]:
    return [e for e in events if e.kind == "status"]


# --- what the history says ----------------------------------------------------------------------


def accepted_submits(history: History) -> list[Operation]:
    """Submits the service definitely accepted: ok (202) with a taskId."""
    return [op for op in history.completions("submit") if op.type == "ok" and op.task_id]


def unknown_submits(history: History) -> list[Operation]:
    """Submits that may or may not have happened: info completions and invocations never completed."""
    infos = [op for op in history.completions("submit") if op.type == "info"]
    return infos + [op for op in history.pending() if op.f == "submit"]


# --- the invariants -----------------------------------------------------------------------------


def check_no_lost_task(
    history: History, snapshot: Snapshot, expect: Expectations = _DEFAULT
) -> InvariantResult:
    """1. Every 202 taskId exists and settles (terminal, or WAITING_FOR_EVENT where expected)."""
    if snapshot.postgres_error:
        return _result(1, "no lost task", (), _pg_unknown(snapshot))
    violations = []
    for op in accepted_submits(history):
        if op.task_id not in snapshot.tasks_by_id:
            violations.append(
                Violation(
                    (str(op.task_id),), "accepted (202) but not in the tasks table", {"submit": _op(op)}
                )
            )
    for task in snapshot.tasks:
        message = _unsettled_message(task, expect)
        if message:
            violations.append(Violation((task.task_id,), message, {"task": _task(task)}))
    return _result(1, "no lost task", _dedupe(violations), _pg_unknown(snapshot))


def _unsettled_message(task: TaskRow, expect: Expectations) -> str | None:
    if task.task_id in expect.still_running:
        return None
    if task.status in UNSETTLED:
        return f"still {task.status} after the system was given time to settle"
    if (
        task.status == "WAITING_FOR_EVENT"
        and expect.waiting is not None
        and task.task_id not in expect.waiting
    ):
        return "left WAITING_FOR_EVENT but the scenario did not leave it waiting"
    return None


def _dedupe(violations: list[Violation]) -> list[Violation]:
    seen: set[tuple[str, ...]] = set()
    out = []
    for v in violations:
        if v.task_ids not in seen:
            seen.add(v.task_ids)
            out.append(v)
    return out


def check_once_only(history: History, snapshot: Snapshot, expect: Expectations = _DEFAULT) -> InvariantResult:
    """2. A COMPLETED task has exactly one result row and one COMPLETED event; no task has two results."""
    violations = []
    for task in snapshot.tasks:
        if task.status == "CANCELLED":
            continue  # a result on a cancelled task is invariant 11's
        results = snapshot.results_by_task.get(task.task_id, ())
        completed = [
            e for e in status_events(snapshot.events_by_task.get(task.task_id, ())) if e.status == "COMPLETED"
        ]
        want = 1 if task.status == "COMPLETED" else None
        bad_results = len(results) != want if want else len(results) > 1
        if bad_results or len(completed) > 1 or (want and len(completed) != 1):
            violations.append(
                Violation(
                    (task.task_id,),
                    f"{task.status} task has {len(results)} result rows"
                    f" and {len(completed)} COMPLETED events",
                    {
                        "results": [asdict(r) for r in results],
                        "completedEvents": [_event(e) for e in completed],
                    },
                )
            )
    return _result(2, "once only", violations, _pg_unknown(snapshot))


def check_terminal_is_final(
    history: History, snapshot: Snapshot, expect: Expectations = _DEFAULT
) -> InvariantResult:
    """3. No event (status or progress) follows the first terminal status event."""
    violations = []
    for task_id, events in snapshot.events_by_task.items():
        first = next((i for i, e in enumerate(events) if e.kind == "status" and e.status in TERMINAL), None)
        if first is not None and first + 1 < len(events):
            after = events[first + 1 :]
            violations.append(
                Violation(
                    (task_id,),
                    f"{len(after)} event(s) after terminal {events[first].status}",
                    {"terminal": _event(events[first]), "after": [_event(e) for e in after[:5]]},
                )
            )
    return _result(3, "terminal is final", violations, _pg_unknown(snapshot))


def check_legal_moves(
    history: History, snapshot: Snapshot, expect: Expectations = _DEFAULT
) -> InvariantResult:
    """4. Status events start at PENDING, chain (from = previous status) and follow LEGAL_MOVES.

    A progress event must carry the current status: one that does not is a hidden move.
    """
    violations = []
    for task_id, events in snapshot.events_by_task.items():
        bad = _first_illegal(events)
        if bad is not None:
            previous, event = bad
            violations.append(
                Violation(
                    (task_id,),
                    f"illegal move {previous} -> {event.status} ({event.kind} event {event.event_id})",
                    {"previousStatus": previous, "event": _event(event)},
                )
            )
    return _result(4, "legal moves only", violations, _pg_unknown(snapshot))


def _first_illegal(events: Sequence[EventRow]) -> tuple[str | None, EventRow] | None:
    current: str | None = None
    for event in events:
        if current in TERMINAL:
            return None  # anything after a terminal event is invariant 3's
        if event.kind != "status":
            if event.status != current:
                return current, event
            continue
        legal = (
            event.status == INITIAL_STATUS
            if current is None
            else event.status in LEGAL_MOVES.get(current, frozenset())
        )
        if not legal or event.from_status != current:
            return current, event
        current = event.status
    return None


def check_events_match_status(
    history: History, snapshot: Snapshot, expect: Expectations = _DEFAULT
) -> InvariantResult:
    """5. The last event's status is the task's status; `version` strictly grows along the events."""
    violations = []
    for task in snapshot.tasks:
        events = snapshot.events_by_task.get(task.task_id, ())
        message, evidence = _status_mismatch(task, events)
        if message:
            violations.append(Violation((task.task_id,), message, evidence))
    return _result(5, "events match status", violations, _pg_unknown(snapshot))


def _status_mismatch(task: TaskRow, events: Sequence[EventRow]) -> tuple[str | None, dict[str, Any]]:
    if not events:
        return "task has no events", {"task": _task(task)}
    last = events[-1]
    if last.status != task.status:
        return f"last event says {last.status}, task says {task.status}", {
            "task": _task(task),
            "lastEvent": _event(last),
        }
    for before, after in zip(events, events[1:], strict=False):
        if after.version <= before.version:
            return (
                f"version went from {before.version} to {after.version}",
                {"before": _event(before), "after": _event(after)},
            )
    if task.version < last.version:
        return f"task version {task.version} is below its last event's {last.version}", {
            "task": _task(task),
            "lastEvent": _event(last),
        }
    return None, {}


def check_progress(history: History, snapshot: Snapshot, expect: Expectations = _DEFAULT) -> InvariantResult:
    """6. Within one attempt progress never goes back; a COMPLETED task's progress is 100."""
    violations = []
    for task in snapshot.tasks:
        events = snapshot.events_by_task.get(task.task_id, ())
        back = _progress_back(events)
        if back:
            before, after = back
            violations.append(
                Violation(
                    (task.task_id,),
                    f"progress went back from {before.progress} to {after.progress}"
                    f" in attempt {after.attempt}",
                    {"before": _event(before), "after": _event(after)},
                )
            )
        elif task.status == "COMPLETED" and task.progress != 100:
            violations.append(
                Violation((task.task_id,), f"COMPLETED with progress {task.progress}", {"task": _task(task)})
            )
    return _result(6, "progress never goes back", violations, _pg_unknown(snapshot))


def _progress_back(events: Sequence[EventRow]) -> tuple[EventRow, EventRow] | None:
    last_by_attempt: dict[int, EventRow] = {}
    for event in events:
        if event.progress is None:
            continue
        before = last_by_attempt.get(event.attempt)
        if before is not None and before.progress is not None and event.progress < before.progress:
            return before, event
        last_by_attempt[event.attempt] = event
    return None


def check_retries_bounded(
    history: History, snapshot: Snapshot, expect: Expectations = _DEFAULT
) -> InvariantResult:
    """7. retryCount <= maxRetries."""
    violations = [
        Violation(
            (t.task_id,), f"retryCount {t.retry_count} > maxRetries {t.max_retries}", {"task": _task(t)}
        )
        for t in snapshot.tasks
        if t.retry_count > t.max_retries
    ]
    return _result(7, "retries are bounded", violations, _pg_unknown(snapshot))


def check_dead_letters(
    history: History, snapshot: Snapshot, expect: Expectations = _DEFAULT
) -> InvariantResult:
    """8. Every DLQ message is a FAILED task's; every dead-lettered FAILED task is in the DLQ or replayed.

    `dead_lettered` (set by the service when it dead-letters) decides which tasks must be there,
    not error codes. If the DLQ could not be read in full, a missing task is `unknown`, not broken.
    """
    violations = [v for m in snapshot.dlq_messages if (v := _dlq_message_violation(m, snapshot))]
    in_dlq = {m.task_id for m in snapshot.dlq_messages}
    missing = [
        t
        for t in snapshot.tasks
        if t.status == "FAILED" and t.dead_lettered and not t.replayed_by and t.task_id not in in_dlq
    ]
    unknown = _pg_unknown(snapshot) or (
        snapshot.rabbitmq_error and f"RabbitMQ was not read: {snapshot.rabbitmq_error}"
    )
    if missing and not snapshot.dlq_complete:
        unknown = unknown or f"{len(missing)} dead-lettered tasks not seen, but the DLQ was not read in full"
    elif not unknown:
        violations += [
            Violation(
                (t.task_id,),
                "dead-lettered FAILED task is neither in the DLQ nor replayed",
                {"task": _task(t)},
            )
            for t in missing
        ]
    return _result(8, "dead letters match", violations, unknown or None)


def _dlq_message_violation(message: QueueMessage, snapshot: Snapshot) -> Violation | None:
    evidence = {
        "message": {
            "queue": message.queue,
            "messageId": message.message_id,
            "body": message.body,
            "death": message.death_reason,
        }
    }
    if message.task_id is None:
        return Violation((), "DLQ message is not a job message", evidence)
    task = snapshot.tasks_by_id.get(message.task_id)
    if task is None:
        return Violation((message.task_id,), "DLQ message of a task that does not exist", evidence)
    if task.status != "FAILED":
        return Violation(
            (message.task_id,), f"DLQ message of a {task.status} task", evidence | {"task": _task(task)}
        )
    return None


def check_nothing_in_transit(
    history: History, snapshot: Snapshot, expect: Expectations = _DEFAULT
) -> InvariantResult:
    """9. The outbox is drained; job and retry queues are empty."""
    violations = [
        Violation(
            (o.task_id,) if o.task_id else (),
            f"outbox row {o.outbox_id} never sent",
            {"outbox": {k: v for k, v in asdict(o).items() if v is not None}},
        )
        for o in snapshot.outbox
        if o.sent_at is None and o.task_id not in expect.still_running
    ]
    violations += [
        Violation((), f"{q.kind} queue {q.name} holds {q.messages} messages", {"queue": asdict(q)})
        for q in snapshot.queues
        if q.kind in {"job", "retry"} and q.messages > 0 and not expect.still_running
    ]
    missing = [
        s for s, e in (("PostgreSQL", snapshot.postgres_error), ("RabbitMQ", snapshot.rabbitmq_error)) if e
    ]
    return _result(
        9, "nothing stuck in transit", violations, f"{', '.join(missing)} not read" if missing else None
    )


def check_one_key_one_task(
    history: History, snapshot: Snapshot, expect: Expectations = _DEFAULT
) -> InvariantResult:
    """10. All accepted submits with one Idempotency-Key got one taskId, the one the database holds."""
    by_key: dict[str, list[Operation]] = defaultdict(list)
    for op in accepted_submits(history):
        if op.idempotency_key is not None:
            by_key[op.idempotency_key].append(op)
    stored = {t.idempotency_key: t.task_id for t in snapshot.tasks if t.idempotency_key is not None}
    violations = []
    for key, ops in by_key.items():
        ids = sorted({str(op.task_id) for op in ops} | ({stored[key]} if key in stored else set()))
        if len(ids) > 1:
            violations.append(
                Violation(
                    tuple(ids),
                    f"Idempotency-Key {key!r} maps to {len(ids)} taskIds",
                    {"submits": [_op(op) for op in ops[:10]], "storedTaskId": stored.get(key)},
                )
            )
    return _result(10, "one key, one task", violations)


def check_cancelled_no_result(
    history: History, snapshot: Snapshot, expect: Expectations = _DEFAULT
) -> InvariantResult:
    """11. A CANCELLED task has no result row and no result."""
    violations = []
    for task in snapshot.tasks:
        results = snapshot.results_by_task.get(task.task_id, ())
        if task.status == "CANCELLED" and (results or task.result is not None):
            violations.append(
                Violation(
                    (task.task_id,),
                    f"CANCELLED task has {len(results)} result rows",
                    {"task": _task(task), "results": [asdict(r) for r in results], "result": task.result},
                )
            )
    return _result(11, "a cancelled task never gets a result", violations, _pg_unknown(snapshot))


ALL_CHECKERS: tuple[Checker, ...] = (
    check_no_lost_task,
    check_once_only,
    check_terminal_is_final,
    check_legal_moves,
    check_events_match_status,
    check_progress,
    check_retries_bounded,
    check_dead_letters,
    check_nothing_in_transit,
    check_one_key_one_task,
    check_cancelled_no_result,
)


# --- counts and the overall verdict -------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """Jepsen total-queue style. `lost`: a 202 never seen; `unknown`: an unknown submit never seen
    (not lost); `recovered`: an unknown submit that turned up anyway; `duplicated`: a task
    completed more than once. Status counts cover the run's own tasks and their replays."""

    accepted: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    waiting: int = 0
    unsettled: int = 0
    lost: int = 0
    duplicated: int = 0
    recovered: int = 0
    unknown: int = 0
    replayed: int = 0


def _candidate_digests(task: TaskRow) -> set[str | None]:
    """The body digests a submit that created `task` could have had (priority sent or defaulted)."""
    digests = {body_digest({"type": task.type, "payload": task.payload, "priority": task.priority})}
    if task.priority == 0:
        digests.add(body_digest({"type": task.type, "payload": task.payload}))
    return digests


def recovered_task_ids(history: History, snapshot: Snapshot) -> set[str]:
    """Tasks that exist although their submit's outcome was unknown: matched by key, else by body."""
    accepted = {str(op.task_id) for op in accepted_submits(history)}
    orphans = [t for t in snapshot.tasks if t.task_id not in accepted and t.replay_of is None]
    found: set[str] = set()
    for op in unknown_submits(history):
        match = next((t for t in orphans if t.task_id not in found and _matches(op, t)), None)
        if match is not None:
            found.add(match.task_id)
    return found


def _matches(op: Operation, task: TaskRow) -> bool:
    if op.idempotency_key is not None:
        return task.idempotency_key == op.idempotency_key
    return task.idempotency_key is None and op.body_digest in _candidate_digests(task)


def _with_replays(ids: set[str], snapshot: Snapshot) -> set[str]:
    """`ids` plus every task a DLQ replay created from them, transitively (either link suffices)."""
    out = set(ids)
    while True:
        more = {t.task_id for t in snapshot.tasks if t.replay_of in out}
        more |= {t.replayed_by for t in snapshot.tasks if t.task_id in out and t.replayed_by}
        if more <= out:
            return out
        out |= more


def count(history: History, snapshot: Snapshot) -> Counts:
    accepted = {str(op.task_id) for op in accepted_submits(history)}
    recovered = recovered_task_ids(history, snapshot)
    own = (
        _with_replays(accepted | recovered, snapshot)
        if accepted or recovered or unknown_submits(history)
        else {t.task_id for t in snapshot.tasks}
    )
    tasks = [snapshot.tasks_by_id[i] for i in own if i in snapshot.tasks_by_id]
    by_status: dict[str, int] = defaultdict(int)
    for task in tasks:
        by_status[task.status] += 1
    duplicated = sum(1 for t in tasks if len(snapshot.results_by_task.get(t.task_id, ())) > 1)
    return Counts(
        accepted=len(accepted),
        completed=by_status["COMPLETED"],
        failed=by_status["FAILED"],
        cancelled=by_status["CANCELLED"],
        waiting=by_status["WAITING_FOR_EVENT"],
        unsettled=sum(by_status[s] for s in UNSETTLED),
        lost=len(accepted - set(snapshot.tasks_by_id)),
        duplicated=duplicated,
        recovered=len(recovered),
        unknown=len(unknown_submits(history)) - len(recovered),
        replayed=sum(1 for t in tasks if t.replay_of),
    )


@dataclass(frozen=True)
class Verdict:
    valid: Status
    results: tuple[InvariantResult, ...]
    counts: Counts

    @property
    def broken(self) -> tuple[InvariantResult, ...]:
        return tuple(r for r in self.results if r.status == "broken")

    def result(self, number: int) -> InvariantResult:
        return next(r for r in self.results if r.number == number)


def merge_valid(statuses: Iterable[Status]) -> Status:
    """Jepsen's merge-valid: any broken makes the whole broken; else any unknown makes it unknown."""
    found = set(statuses)
    if "broken" in found:
        return "broken"
    return "unknown" if "unknown" in found else "held"


def check_all(
    history: History,
    snapshot: Snapshot,
    expect: Expectations = _DEFAULT,
    checkers: Sequence[Checker] = ALL_CHECKERS,
) -> Verdict:
    results = tuple(checker(history, snapshot, expect) for checker in checkers)
    return Verdict(merge_valid(r.status for r in results), results, count(history, snapshot))
