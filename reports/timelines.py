"""Each task's story: the service's events (from its test's snapshot) beside the client's requests
(from the histories), on one list ordered by wall time, plus what the latency chart and the status
bar are drawn from.

The history says when the client asked and what it was told; the events say what the service did
(from → to, attempt, worker, progress, message). A violation is usually understood by reading the
two side by side: the answer said COMPLETED, then an event moved the task again. Events carry
PostgreSQL's `created_at` and requests the harness's `wall_time`; both are epoch seconds here. On
one machine they share a clock; against a remote target they may be skewed by its clock.

A task's final status is its snapshot's. Without a snapshot only what a client last saw is known,
and it is called that, never "final".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from harness.history import FAULT, NEMESIS, History, Operation
from harness.record.records import SnapshotRecord
from harness.state import TERMINAL, EventRow, TaskRow

STATUS_ORDER = ("PENDING", "IN_PROGRESS", "RETRYING", "WAITING_FOR_EVENT", "COMPLETED", "FAILED", "CANCELLED")
MAX_TIMELINES = 400
_TASK_PATH = re.compile(r"^/tasks/([^/?]+)")


@dataclass(frozen=True)
class RequestView:
    """One completed request of a history, with the wall time of its invocation."""

    task_id: str | None
    f: str
    method: str
    path: str
    outcome: str
    invoked_at: float
    done_at: float
    status_code: int | None = None
    task_status: str | None = None
    error: str | None = None
    value: Any = None


@dataclass(frozen=True)
class TimelineEntry:
    """One row of a task's timeline: a service event or a client request (`source`)."""

    time: float | None
    source: Literal["event", "request"]
    what: str
    status: str | None = None
    from_status: str | None = None
    progress: int | None = None
    attempt: int | None = None
    worker: str | None = None
    detail: str = ""
    state: str | None = None
    failed: bool = False
    repeats: int = 1


@dataclass(frozen=True)
class FinalState:
    """The service's side of every task, joined from every check's snapshot. A test truncates the
    tables before it starts, so a task is in its own test's snapshot; were one in two, the later
    snapshot wins (it saw more)."""

    tasks: Mapping[str, TaskRow] = field(default_factory=dict)
    events: Mapping[str, tuple[EventRow, ...]] = field(default_factory=dict)
    tests: Mapping[str, str] = field(default_factory=dict)
    snapshots: int = 0

    @classmethod
    def of(cls, snapshots: Iterable[tuple[str, SnapshotRecord]]) -> FinalState:
        """`snapshots`: (test name, its snapshot), in the order the checks were made."""
        tasks: dict[str, TaskRow] = {}
        events: dict[str, tuple[EventRow, ...]] = {}
        tests: dict[str, str] = {}
        count = 0
        for test, snapshot in snapshots:
            count += 1
            by_task: dict[str, list[EventRow]] = {}
            for event in sorted(snapshot.events, key=lambda e: e.event_id):
                by_task.setdefault(event.task_id, []).append(event)
            for task_id, rows in by_task.items():
                events[task_id] = tuple(rows)
                tests[task_id] = test
            for task in snapshot.tasks:
                tasks[task.task_id] = task
                tests[task.task_id] = test
        return cls(tasks, events, tests, count)


@dataclass(frozen=True)
class TaskTimeline:
    task_id: str
    entries: tuple[TimelineEntry, ...]
    task: TaskRow | None = None
    type: str | None = None
    last_seen: str | None = None
    test: str | None = None
    broken: tuple[int, ...] = ()
    submitted_at: float | None = None
    terminal_at: float | None = None

    @property
    def final_status(self) -> str | None:
        """The snapshot's status; None when no snapshot held this task."""
        return self.task.status if self.task is not None else None

    @property
    def status(self) -> str | None:
        """The final status, else the last one a client saw (see `final_status`)."""
        return self.final_status or self.last_seen

    @property
    def anchor(self) -> str:
        return task_anchor(self.task_id)

    @property
    def latency_s(self) -> float | None:
        if self.submitted_at is None or self.terminal_at is None:
            return None
        return max(0.0, self.terminal_at - self.submitted_at)

    def count(self, source: str) -> int:
        return sum(e.repeats for e in self.entries if e.source == source)


@dataclass(frozen=True)
class LatencyPoint:
    """One task's submit→terminal time, kept for every task even when its timeline is not shown."""

    task_id: str
    status: str
    submitted_at: float
    terminal_at: float

    @property
    def latency_s(self) -> float:
        return max(0.0, self.terminal_at - self.submitted_at)


def task_anchor(task_id: str) -> str:
    """The HTML id of a task's timeline; the verdict and the charts link to it."""
    return "task-" + re.sub(r"[^A-Za-z0-9_-]", "-", task_id)


def iso_time(value: str | None) -> float | None:
    """Epoch seconds from PostgreSQL's timestamptz as the snapshot holds it (ISO-8601 text)."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# --- the client's side --------------------------------------------------------------------------


def _task_of(op: Operation) -> str | None:
    if op.task_id:
        return op.task_id
    match = _TASK_PATH.match(op.path)
    return match.group(1) if match and op.f != "list" else None


def requests_of(history: History) -> list[RequestView]:
    """Completed client requests joined with their invocations (by `invoke_index`, within one
    history file); the nemesis's fault operations are not requests (see `RunReader.fault_windows`)."""
    invoked = {op.index: op.wall_time for op in history if op.type == "invoke"}
    return [
        RequestView(
            task_id=_task_of(op),
            f=op.f,
            method=op.method,
            path=op.path,
            outcome=op.type,
            invoked_at=invoked.get(op.invoke_index if op.invoke_index is not None else -1, op.wall_time),
            done_at=op.wall_time,
            status_code=op.status_code,
            task_status=op.task_status,
            error=op.error,
            value=op.value,
        )
        for op in history
        if op.type != "invoke" and op.process != NEMESIS and op.f != FAULT
    ]


def _request_entry(request: RequestView) -> TimelineEntry:
    value = request.value if isinstance(request.value, Mapping) else {}
    answer = str(request.status_code) if request.status_code is not None else "no answer"
    progress = value.get("progress")
    return TimelineEntry(
        time=request.invoked_at,
        source="request",
        what=f"{request.method} {_short_path(request)} → {answer}",
        status=request.task_status,
        progress=progress if isinstance(progress, int) else None,
        detail=(request.error or request.outcome) if request.outcome != "ok" else "",
        failed=request.outcome != "ok",
    )


def _short_path(request: RequestView) -> str:
    """The task's own id in its request paths says nothing inside its timeline; `{taskId}` reads better."""
    return request.path.replace(request.task_id, "{taskId}") if request.task_id else request.path


# --- the service's side -------------------------------------------------------------------------


def _event_entry(event: EventRow) -> TimelineEntry:
    moved = event.from_status is not None and event.from_status != event.status
    return TimelineEntry(
        time=iso_time(event.created_at),
        source="event",
        what=event.kind,
        status=event.status,
        from_status=event.from_status if moved else None,
        progress=event.progress,
        attempt=event.attempt,
        worker=event.worker_id,
        detail=event.message or "",
        state=event.state if event.state != event.message else None,
    )


# --- one task -----------------------------------------------------------------------------------


def _collapse(entries: Iterable[TimelineEntry]) -> list[TimelineEntry]:
    """Polling writes the same answer many times; consecutive equal answers become one line ×n."""
    out: list[TimelineEntry] = []
    for entry in entries:
        last = out[-1] if out else None
        if (
            last is not None
            and entry.source == last.source == "request"
            and (entry.what, entry.status, entry.progress, entry.detail)
            == (last.what, last.status, last.progress, last.detail)
        ):
            out[-1] = replace(last, repeats=last.repeats + 1)
        else:
            out.append(entry)
    return out


def _sort_key(entry: TimelineEntry) -> float:
    return entry.time if entry.time is not None else float("inf")


def _terminal_time(
    task: TaskRow | None, events: Sequence[TimelineEntry], requests: Sequence[RequestView]
) -> float | None:
    """When the task reached a terminal status: its first terminal event; else, for a terminal
    task, its `updated_at`; else the first answer that showed it terminal (an upper bound)."""
    for event in events:
        if event.status in TERMINAL and event.time is not None:
            return event.time
    if task is not None and task.status in TERMINAL and (stamped := iso_time(task.updated_at)):
        return stamped
    for request in requests:
        if request.task_status in TERMINAL:
            value = request.value if isinstance(request.value, Mapping) else {}
            completed = value.get("completedAt")
            return iso_time(completed if isinstance(completed, str) else None) or request.done_at
    return None


def _timeline(
    task_id: str, final: FinalState, requests: Sequence[RequestView], broken: Sequence[int]
) -> TaskTimeline:
    task = final.tasks.get(task_id)
    events = [_event_entry(e) for e in final.events.get(task_id, ())]
    merged = sorted([*events, *(_request_entry(r) for r in requests)], key=_sort_key)
    submits = [r.invoked_at for r in requests if r.f == "submit" and r.outcome == "ok"]
    return TaskTimeline(
        task_id=task_id,
        entries=tuple(_collapse(merged)),
        task=task,
        type=task.type if task is not None else _type_from_requests(requests),
        last_seen=next((r.task_status for r in reversed(requests) if r.task_status), None),
        test=final.tests.get(task_id),
        broken=tuple(broken),
        submitted_at=min(submits) if submits else None,
        terminal_at=_terminal_time(task, events, requests),
    )


def _type_from_requests(requests: Sequence[RequestView]) -> str | None:
    for r in requests:
        if isinstance(r.value, Mapping) and isinstance(r.value.get("type"), str):
            return str(r.value["type"])
    return None


def build_timelines(
    final: FinalState, requests: Sequence[RequestView], named: Iterable[tuple[str, int]]
) -> list[TaskTimeline]:
    """One timeline per task seen anywhere, including tasks only named by a violation (a lost
    task has no rows), so every link from the verdict lands somewhere. `named` pairs a taskId
    with the number of an invariant that named it. An id only ever refused (a 404 for a made-up
    id, a bad request) is not a task and gets none."""
    by_task: dict[str, list[RequestView]] = {}
    for request in sorted(requests, key=lambda r: r.invoked_at):
        if request.task_id:
            by_task.setdefault(request.task_id, []).append(request)
    broken: dict[str, set[int]] = {}
    for task_id, number in named:
        broken.setdefault(task_id, set()).add(number)
    answered = [i for i, rs in by_task.items() if any(r.outcome == "ok" for r in rs)]
    ids = dict.fromkeys([*broken, *answered, *final.tasks, *final.events])
    return [_timeline(i, final, by_task.get(i, []), sorted(broken.get(i, ()))) for i in ids]


def order_and_cap(timelines: list[TaskTimeline]) -> tuple[list[TaskTimeline], int]:
    """Tasks named by a violation first, then by submit time; at most MAX_TIMELINES are kept,
    and never fewer than all the broken ones."""
    ordered = sorted(timelines, key=lambda t: (not t.broken, t.submitted_at or float("inf"), t.task_id))
    keep = max(MAX_TIMELINES, sum(1 for t in ordered if t.broken))
    return ordered[:keep], max(0, len(ordered) - keep)


def status_counts(statuses: Iterable[str | None]) -> dict[str, int]:
    """How many of each status, in the status machine's order, unknown ones last."""
    found = [s or "UNKNOWN" for s in statuses]
    counts = {s: found.count(s) for s in STATUS_ORDER if s in found}
    counts.update({s: found.count(s) for s in found if s not in counts})
    return counts


def latencies(timelines: Iterable[TaskTimeline]) -> list[LatencyPoint]:
    points = [
        LatencyPoint(t.task_id, t.status or "?", t.submitted_at, t.terminal_at)
        for t in timelines
        if t.submitted_at is not None and t.terminal_at is not None
    ]
    return sorted(points, key=lambda p: p.submitted_at)
