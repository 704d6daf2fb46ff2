"""What the run did, counted Jepsen's total-queue way: accepted, lost, recovered, duplicated..."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from harness.history import History, Operation, body_digest
from harness.state import UNSETTLED, Snapshot, TaskRow


@dataclass(frozen=True)
class Counts:
    """Jepsen total-queue style. `lost`: a 202 never seen; `unknown`: an unknown submit never seen
    (not lost); `recovered`: an unknown submit that turned up anyway; `duplicated`: a task
    completed more than once; `poison`: DLQ messages that name no known task (invariant 8 counts
    them, they break nothing). Status counts cover the run's own tasks and their replays."""

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
    poison: int = 0


def accepted_submits(history: History) -> list[Operation]:
    """Submits the service definitely accepted: ok (202) with a taskId."""
    return [op for op in history.completions("submit") if op.type == "ok" and op.task_id]


def unknown_submits(history: History) -> list[Operation]:
    """Submits that may or may not have happened: info completions and invocations never completed."""
    infos = [op for op in history.completions("submit") if op.type == "info"]
    return infos + [op for op in history.pending() if op.f == "submit"]


def _candidate_digests(task: TaskRow) -> set[str | None]:
    """The body digests a submit that created `task` could have had (priority sent or defaulted)."""
    digests = {body_digest({"type": task.type, "payload": task.payload, "priority": task.priority})}
    if task.priority == 0:
        digests.add(body_digest({"type": task.type, "payload": task.payload}))
    return digests


def recovered_task_ids(history: History, snapshot: Snapshot) -> set[str]:
    """Tasks that exist although their submit's outcome was unknown: matched by key, else by body
    (the body only where the deployment let the payload be read)."""
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


def with_replays(ids: set[str], snapshot: Snapshot) -> set[str]:
    """`ids` plus every task a DLQ replay created from them, transitively (read off `replay_of`)."""
    out = set(ids)
    frontier = list(ids)
    while frontier:
        for replay in snapshot.replays_of.get(frontier.pop(), ()):
            if replay not in out:
                out.add(replay)
                frontier.append(replay)
    return out


def poison_messages(snapshot: Snapshot) -> int:
    """DLQ messages naming no task the tasks table holds; 0 when the table could not be read."""
    if snapshot.postgres_error:
        return 0
    return sum(1 for m in snapshot.dlq_messages if m.task_id not in snapshot.tasks_by_id)


def count(history: History, snapshot: Snapshot) -> Counts:
    accepted = {str(op.task_id) for op in accepted_submits(history)}
    recovered = recovered_task_ids(history, snapshot)
    own = (
        with_replays(accepted | recovered, snapshot)
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
        poison=poison_messages(snapshot),
    )
