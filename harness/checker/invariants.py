"""Invariants 1 to 11 of the contract, judged over the history and the final stores.

Each violation is reported once, under the most specific invariant: a move *out of* a terminal
status is invariant 3's (terminal is final), not 4's; a result on a CANCELLED task is 11's, not
2's. So a planted fault names exactly one invariant. A judge answers `unknown` when a store it
needs could not be read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from harness.checker.counts import accepted_submits
from harness.checker.evidence import event_json, message_json, op_json, pg_unknown, status_events, task_json
from harness.checker.verdict import Expectations, Finding, Invariant, Violation
from harness.history import History, Operation
from harness.state import (
    DEAD_LETTER_CODES,
    INITIAL_STATUS,
    LEGAL_MOVES,
    TERMINAL,
    UNSETTLED,
    EventRow,
    QueueMessage,
    Snapshot,
    TaskRow,
)


def _no_lost_task(history: History, snapshot: Snapshot, expect: Expectations) -> Finding:
    """Every 202 taskId exists and settles (terminal, or WAITING_FOR_EVENT where expected)."""
    if snapshot.postgres_error:
        return Finding(unknown=pg_unknown(snapshot))
    violations = [
        Violation((str(op.task_id),), "accepted (202) but not in the tasks table", {"submit": op_json(op)})
        for op in accepted_submits(history)
        if op.task_id not in snapshot.tasks_by_id
    ]
    for task in snapshot.tasks:
        message = _unsettled_message(task, expect)
        if message:
            violations.append(Violation((task.task_id,), message, {"task": task_json(task)}))
    return Finding(tuple(_dedupe(violations)))


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


def _once_only(history: History, snapshot: Snapshot, expect: Expectations) -> Finding:
    """A COMPLETED task has exactly one result row and one COMPLETED event; no task has two results."""
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
                        "completedEvents": [event_json(e) for e in completed],
                    },
                )
            )
    return Finding(tuple(violations), pg_unknown(snapshot))


def _terminal_is_final(history: History, snapshot: Snapshot, expect: Expectations) -> Finding:
    """No event (status or progress) follows the first terminal status event."""
    violations = []
    for task_id, events in snapshot.events_by_task.items():
        first = next((i for i, e in enumerate(events) if e.kind == "status" and e.status in TERMINAL), None)
        if first is not None and first + 1 < len(events):
            after = events[first + 1 :]
            violations.append(
                Violation(
                    (task_id,),
                    f"{len(after)} event(s) after terminal {events[first].status}",
                    {"terminal": event_json(events[first]), "after": [event_json(e) for e in after[:5]]},
                )
            )
    return Finding(tuple(violations), pg_unknown(snapshot))


def _legal_moves(history: History, snapshot: Snapshot, expect: Expectations) -> Finding:
    """Status events start at PENDING, chain (from = previous status) and follow LEGAL_MOVES.

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
                    {"previousStatus": previous, "event": event_json(event)},
                )
            )
    return Finding(tuple(violations), pg_unknown(snapshot))


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


def _events_match_status(history: History, snapshot: Snapshot, expect: Expectations) -> Finding:
    """The last event's status is the task's status; `version` strictly grows along the events."""
    violations = []
    for task in snapshot.tasks:
        events = snapshot.events_by_task.get(task.task_id, ())
        message, evidence = _status_mismatch(task, events)
        if message:
            violations.append(Violation((task.task_id,), message, evidence))
    return Finding(tuple(violations), pg_unknown(snapshot))


def _status_mismatch(task: TaskRow, events: Sequence[EventRow]) -> tuple[str | None, dict[str, Any]]:
    if not events:
        return "task has no events", {"task": task_json(task)}
    last = events[-1]
    if last.status != task.status:
        return f"last event says {last.status}, task says {task.status}", {
            "task": task_json(task),
            "lastEvent": event_json(last),
        }
    for before, after in zip(events, events[1:], strict=False):
        if after.version <= before.version:
            return (
                f"version went from {before.version} to {after.version}",
                {"before": event_json(before), "after": event_json(after)},
            )
    if task.version < last.version:
        return f"task version {task.version} is below its last event's {last.version}", {
            "task": task_json(task),
            "lastEvent": event_json(last),
        }
    return None, {}


def _progress(history: History, snapshot: Snapshot, expect: Expectations) -> Finding:
    """Within one attempt progress never goes back; a COMPLETED task's progress is 100."""
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
                    {"before": event_json(before), "after": event_json(after)},
                )
            )
        elif task.status == "COMPLETED" and task.progress != 100:
            message = f"COMPLETED with progress {task.progress}"
            violations.append(Violation((task.task_id,), message, {"task": task_json(task)}))
    return Finding(tuple(violations), pg_unknown(snapshot))


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


def _retries_bounded(history: History, snapshot: Snapshot, expect: Expectations) -> Finding:
    """retryCount <= maxRetries."""
    violations = tuple(
        Violation(
            (t.task_id,), f"retryCount {t.retry_count} > maxRetries {t.max_retries}", {"task": task_json(t)}
        )
        for t in snapshot.tasks
        if t.retry_count > t.max_retries
    )
    return Finding(violations, pg_unknown(snapshot))


def _dead_letters(history: History, snapshot: Snapshot, expect: Expectations) -> Finding:
    """Every DLQ message that names a known task is a FAILED task's; every FAILED task whose
    `error.code` says it ran out of retries (RETRIES_EXHAUSTED) or deliveries (DELIVERY_LIMIT) is
    in the DLQ or was replayed (another task's `replay_of` names it).

    A message that names no known task (not a job message, or a taskId the tasks table lacks) is
    poison: counted and listed in the note, not a violation. The service's own `dead_lettered`
    flag is not read: the error code is the contract's evidence. If the DLQ was not read in full,
    a task missing from it is `unknown`, not broken.
    """
    unknown = pg_unknown(snapshot) or (
        f"RabbitMQ was not read: {snapshot.rabbitmq_error}" if snapshot.rabbitmq_error else None
    )
    if snapshot.postgres_error:
        return Finding(unknown=unknown)
    poison = [m for m in snapshot.dlq_messages if m.task_id not in snapshot.tasks_by_id]
    violations = [v for m in snapshot.dlq_messages if (v := _dlq_message_violation(m, snapshot))]
    missing = _missing_dead_letters(snapshot)
    if missing and not snapshot.dlq_complete:
        unknown = unknown or (
            f"{len(missing)} tasks out of retries or deliveries not seen, but the DLQ was not read in full"
        )
    elif not unknown:
        violations += [
            Violation(
                (t.task_id,),
                f"FAILED with {t.error_code} but neither in the DLQ nor replayed",
                {"task": task_json(t), "failedEvent": _last_status_event(snapshot, t)},
            )
            for t in missing
        ]
    return Finding(tuple(violations), unknown, _poison_note(poison))


def _missing_dead_letters(snapshot: Snapshot) -> list[TaskRow]:
    in_dlq = {m.task_id for m in snapshot.dlq_messages}
    return [
        t
        for t in snapshot.tasks
        if t.status == "FAILED"
        and t.error_code in DEAD_LETTER_CODES
        and t.task_id not in in_dlq
        and t.task_id not in snapshot.replays_of
    ]


def _last_status_event(snapshot: Snapshot, task: TaskRow) -> dict[str, Any] | None:
    events = status_events(snapshot.events_by_task.get(task.task_id, ()))
    return event_json(events[-1]) if events else None


def _dlq_message_violation(message: QueueMessage, snapshot: Snapshot) -> Violation | None:
    task = snapshot.tasks_by_id.get(message.task_id) if message.task_id is not None else None
    if task is None or task.status == "FAILED":
        return None
    evidence = {"message": message_json(message), "task": task_json(task)}
    return Violation((task.task_id,), f"DLQ message of a {task.status} task", evidence)


def _poison_note(poison: Sequence[QueueMessage]) -> str:
    if not poison:
        return ""
    named = [m.task_id or m.message_id or repr(m.body)[:40] for m in poison[:5]]
    more = f" and {len(poison) - 5} more" if len(poison) > 5 else ""
    return f"{len(poison)} DLQ message(s) name no known task (poison): {', '.join(named)}{more}"


def _nothing_in_transit(history: History, snapshot: Snapshot, expect: Expectations) -> Finding:
    """The outbox is drained; job and retry queues are empty."""
    violations = [
        Violation(
            (o.task_id,) if o.task_id else (),
            f"outbox row {o.outbox_id if o.outbox_id is not None else '(no id)'} never sent",
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
    return Finding(tuple(violations), f"{', '.join(missing)} not read" if missing else None)


def _one_key_one_task(history: History, snapshot: Snapshot, expect: Expectations) -> Finding:
    """All accepted submits with one Idempotency-Key got one taskId, the one the database holds."""
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
                    {"submits": [op_json(op) for op in ops[:10]], "storedTaskId": stored.get(key)},
                )
            )
    return Finding(tuple(violations))


def _cancelled_no_result(history: History, snapshot: Snapshot, expect: Expectations) -> Finding:
    """A CANCELLED task has no result row and no result."""
    violations = []
    for task in snapshot.tasks:
        results = snapshot.results_by_task.get(task.task_id, ())
        if task.status == "CANCELLED" and (results or task.result is not None):
            violations.append(
                Violation(
                    (task.task_id,),
                    f"CANCELLED task has {len(results)} result rows",
                    {"task": task_json(task), "results": [asdict(r) for r in results], "result": task.result},
                )
            )
    return Finding(tuple(violations), pg_unknown(snapshot))


check_no_lost_task = Invariant(1, "no lost task", _no_lost_task)
check_once_only = Invariant(2, "once only", _once_only)
check_terminal_is_final = Invariant(3, "terminal is final", _terminal_is_final)
check_legal_moves = Invariant(4, "legal moves only", _legal_moves)
check_events_match_status = Invariant(5, "events match status", _events_match_status)
check_progress = Invariant(6, "progress never goes back", _progress)
check_retries_bounded = Invariant(7, "retries are bounded", _retries_bounded)
check_dead_letters = Invariant(8, "dead letters match", _dead_letters)
check_nothing_in_transit = Invariant(9, "nothing stuck in transit", _nothing_in_transit)
check_one_key_one_task = Invariant(10, "one key, one task", _one_key_one_task)
check_cancelled_no_result = Invariant(11, "a cancelled task never gets a result", _cancelled_no_result)
