"""Each task's story, joined from the history and the final snapshot: what the report's task
timelines, latency chart and status counts are drawn from.

The history says when the harness asked and what it was told; the snapshot's events say what the
service did. Both are shown on one list per task, ordered by wall time, because a violation is
usually understood by reading the two side by side (the answer said COMPLETED, then an event
moved it again).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from harness.history import History, Operation

TERMINAL: frozenset[str] = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
STATUS_ORDER = ("PENDING", "IN_PROGRESS", "RETRYING", "WAITING_FOR_EVENT", "COMPLETED", "FAILED", "CANCELLED")
MAX_TIMELINES = 400
_TASK_PATH = re.compile(r"^/tasks/([^/?]+)")


@dataclass(frozen=True)
class RequestView:
    """One completed request of the history, with the wall time of its invocation."""

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
    time: float | None
    source: Literal["event", "request"]
    what: str
    status: str | None = None
    progress: int | None = None
    attempt: int | None = None
    worker: str | None = None
    detail: str = ""
    repeats: int = 1


@dataclass(frozen=True)
class TaskTimeline:
    task_id: str
    type: str | None
    status: str | None
    entries: tuple[TimelineEntry, ...]
    broken: tuple[int, ...] = ()
    submitted_at: float | None = None
    terminal_at: float | None = None

    @property
    def anchor(self) -> str:
        return task_anchor(self.task_id)

    @property
    def latency_s(self) -> float | None:
        if self.submitted_at is None or self.terminal_at is None:
            return None
        return max(0.0, self.terminal_at - self.submitted_at)


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


def parse_time(value: Any) -> float | None:
    """Epoch seconds from a number or an ISO-8601 text (PostgreSQL's timestamptz as read back)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def field_of(row: Mapping[str, Any], *names: str) -> Any:
    """The first present field among `names`: rows come in snake_case or camelCase."""
    for name in names:
        if row.get(name) is not None:
            return row[name]
    return None


def _task_of(op: Operation) -> str | None:
    if op.task_id:
        return op.task_id
    match = _TASK_PATH.match(op.path)
    return match.group(1) if match and op.f != "list" else None


def requests_of(history: History) -> list[RequestView]:
    """Completions joined with their invocations (by `invoke_index`, within one history file)."""
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
        if op.type != "invoke"
    ]


def _event_entry(row: Mapping[str, Any]) -> TimelineEntry:
    moved = field_of(row, "from_status", "fromStatus", "from")
    status = field_of(row, "status")
    return TimelineEntry(
        time=parse_time(field_of(row, "created_at", "createdAt", "time")),
        source="event",
        what=f"event: {field_of(row, 'kind') or 'status'}",
        status=str(status) if status else None,
        progress=field_of(row, "progress"),
        attempt=field_of(row, "attempt"),
        worker=field_of(row, "worker_id", "workerId", "worker"),
        detail=" ".join(p for p in (f"from {moved}" if moved else "", str(row.get("message") or "")) if p),
    )


def _request_entry(request: RequestView) -> TimelineEntry:
    value = request.value if isinstance(request.value, Mapping) else {}
    answer = str(request.status_code) if request.status_code is not None else "no answer"
    return TimelineEntry(
        time=request.done_at,
        source="request",
        what=f"{request.method} {_short_path(request)} → {answer}",
        status=request.task_status,
        progress=field_of(value, "progress"),
        detail=request.error or "" if request.outcome != "ok" else "",
    )


def _short_path(request: RequestView) -> str:
    """The task's own id in its request paths says nothing inside its timeline; `{taskId}` reads better."""
    return request.path.replace(request.task_id, "{taskId}") if request.task_id else request.path


def _collapse(entries: Iterable[TimelineEntry]) -> list[TimelineEntry]:
    """Polling writes the same answer many times; consecutive equal answers become one line ×n."""
    out: list[TimelineEntry] = []
    for entry in entries:
        last = out[-1] if out else None
        same = (
            last is not None
            and entry.source == last.source == "request"
            and (
                (entry.what, entry.status, entry.progress, entry.detail)
                == (last.what, last.status, last.progress, last.detail)
            )
        )
        if same and last is not None:
            out[-1] = TimelineEntry(**{**last.__dict__, "repeats": last.repeats + 1})
        else:
            out.append(entry)
    return out


def _sort_key(entry: TimelineEntry) -> tuple[float, int]:
    return (entry.time if entry.time is not None else float("inf"), 0 if entry.source == "request" else 1)


def _terminal_time(
    task: Mapping[str, Any], events: Sequence[TimelineEntry], requests: Sequence[RequestView]
) -> float | None:
    """When the task reached a terminal status: its completedAt, else its first terminal event,
    else the first answer that showed it terminal (an upper bound, from polling)."""
    stamped = parse_time(field_of(task, "completed_at", "completedAt"))
    if stamped is not None:
        return stamped
    for event in events:
        if event.status in TERMINAL and event.time is not None:
            return event.time
    for request in requests:
        value = request.value if isinstance(request.value, Mapping) else {}
        if request.task_status in TERMINAL:
            return parse_time(value.get("completedAt")) or request.done_at
    return None


def _timeline(
    task_id: str,
    task: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    requests: Sequence[RequestView],
    broken: Sequence[int],
) -> TaskTimeline:
    event_entries = sorted((_event_entry(e) for e in events), key=_sort_key)
    entries = _collapse(sorted([*event_entries, *(_request_entry(r) for r in requests)], key=_sort_key))
    submits = [r.invoked_at for r in requests if r.f == "submit" and r.outcome == "ok"]
    last_seen = next((e.status for e in reversed(event_entries) if e.status), None)
    last_seen = last_seen or next((r.task_status for r in reversed(requests) if r.task_status), None)
    return TaskTimeline(
        task_id=task_id,
        type=field_of(task, "type") or _type_from_requests(requests),
        status=field_of(task, "status") or last_seen,
        entries=tuple(entries),
        broken=tuple(broken),
        submitted_at=min(submits) if submits else None,
        terminal_at=_terminal_time(task, event_entries, requests),
    )


def _type_from_requests(requests: Sequence[RequestView]) -> str | None:
    for r in requests:
        if isinstance(r.value, Mapping) and r.value.get("type"):
            return str(r.value["type"])
    return None


def _group(items: Iterable[Any], key: Any) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    for item in items:
        grouped.setdefault(str(key(item)), []).append(item)
    return grouped


def build_timelines(
    tasks: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    requests: Sequence[RequestView],
    named: Iterable[tuple[str, int]],
) -> list[TaskTimeline]:
    """One timeline per task seen anywhere, including tasks only named by a violation (a lost
    task has no rows), so every link from the verdict lands somewhere. `named` pairs a taskId
    with the number of an invariant that named it. An id only ever refused
    (a 404 for a made-up id, a bad request) is not a task and gets none."""
    by_task = {str(field_of(t, "task_id", "taskId")): t for t in tasks}
    events_of = _group(events, lambda e: field_of(e, "task_id", "taskId"))
    requests_of_task = _group((r for r in requests if r.task_id), lambda r: r.task_id)
    broken_of = _group(named, lambda pair: pair[0])
    seen = [i for i, rs in requests_of_task.items() if any(r.outcome == "ok" for r in rs)]
    ids = [i for i in dict.fromkeys([*broken_of, *seen, *by_task, *events_of]) if i != "None"]
    return [
        _timeline(
            i,
            by_task.get(i, {}),
            events_of.get(i, []),
            requests_of_task.get(i, []),
            sorted({n for _, n in broken_of.get(i, [])}),
        )
        for i in ids
    ]


def order_and_cap(timelines: list[TaskTimeline]) -> tuple[list[TaskTimeline], int]:
    """Tasks named by a violation first, then by submit time; at most MAX_TIMELINES are kept,
    and never fewer than all the broken ones."""
    ordered = sorted(timelines, key=lambda t: (not t.broken, t.submitted_at or float("inf"), t.task_id))
    keep = max(MAX_TIMELINES, sum(1 for t in ordered if t.broken))
    return ordered[:keep], max(0, len(ordered) - keep)


def status_counts(timelines: Sequence[TaskTimeline], tasks: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Final statuses: the snapshot's when there is one, else the last status each task showed."""
    raw = [field_of(t, "status") for t in tasks] if tasks else [t.status for t in timelines]
    statuses = [str(s) if s else "UNKNOWN" for s in raw]
    counts = {s: statuses.count(s) for s in STATUS_ORDER if s in statuses}
    counts.update({s: statuses.count(s) for s in statuses if s not in counts})
    return counts


def latencies(timelines: Iterable[TaskTimeline]) -> list[LatencyPoint]:
    points = [
        LatencyPoint(t.task_id, t.status or "?", t.submitted_at, t.terminal_at)
        for t in timelines
        if t.submitted_at is not None and t.terminal_at is not None
    ]
    return sorted(points, key=lambda p: p.submitted_at)
