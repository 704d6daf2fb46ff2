"""Every write to a task goes through here, so each status change writes its event in the same
transaction, bumps `version`, and is checked against the status machine."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg

from service.broker.topology import EVENTS_EXCHANGE, JOB_QUEUES, JOBS_EXCHANGE
from service.models import TERMINAL, Status, TaskType, is_legal
from service.tracing import traceparent_for

if TYPE_CHECKING:
    Conn = asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]
else:
    Conn = Any
Row = asyncpg.Record


class IllegalMove(Exception):
    """A transition the status machine forbids; callers treat the task as not theirs to change."""


@dataclass(frozen=True)
class NewTask:
    task_type: TaskType
    payload: dict[str, Any]
    priority: int
    max_retries: int
    input_hash: str
    idempotency_key: str | None = None
    replay_of: uuid.UUID | None = None
    trace_id: str | None = None  # the submitting request's trace, when tracing (else a new id)


async def lock_task(conn: Conn, task_id: uuid.UUID) -> Row | None:
    row: Row | None = await conn.fetchrow("SELECT * FROM tasks WHERE task_id = $1 FOR UPDATE", task_id)
    return row


async def insert_task(conn: Conn, new: NewTask) -> Row | None:
    """Inserts the task, its first event and its job message; None when the idempotency key is taken."""
    task_id = uuid.uuid4()
    row: Row | None = await conn.fetchrow(
        """INSERT INTO tasks (task_id, type, status, priority, max_retries, payload, input_hash,
                              idempotency_key, trace_id, replay_of)
           VALUES ($1, $2, 'PENDING', $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (idempotency_key) DO NOTHING
           RETURNING *""",
        task_id,
        new.task_type.value,
        new.priority,
        new.max_retries,
        new.payload,
        new.input_hash,
        new.idempotency_key,
        new.trace_id or uuid.uuid4().hex,
        new.replay_of,
    )
    if row is None:
        return None
    await _insert_event(conn, row, kind="status", from_status=None, message="accepted")
    await enqueue_job(conn, row)
    return row


def job_body(task: Row) -> dict[str, Any]:
    """The contract's job message: what the worker needs, and nothing of the task's state."""
    return {
        "taskId": str(task["task_id"]),
        "type": task["type"],
        "payload": task["payload"],
        "traceId": task["trace_id"],
        "traceparent": traceparent_for(task["trace_id"], task["task_id"]),
        "retryCount": task["retry_count"],
    }


async def enqueue_job(conn: Conn, task: Row) -> None:
    """Writes the job message to the outbox; the relay publishes it after this transaction commits."""
    queue = JOB_QUEUES[TaskType(task["type"])]
    await _insert_outbox(
        conn, JOBS_EXCHANGE, queue.routing_key, job_body(task), task, priority=task["priority"]
    )


async def enqueue_retry(conn: Conn, task: Row, retry_queue: str) -> None:
    """The retry waits in `retry_queue` (default exchange), whose TTL dead-letters it back to work."""
    await _insert_outbox(conn, "", retry_queue, job_body(task), task, priority=task["priority"])


async def enqueue_event(conn: Conn, task: Row, name: str) -> None:
    body = {
        "taskId": str(task["task_id"]),
        "type": task["type"],
        "status": task["status"],
        "traceId": task["trace_id"],
        "retryCount": task["retry_count"],
        "error": task["error"],
    }
    await _insert_outbox(conn, EVENTS_EXCHANGE, name, body, task, priority=0)


async def _insert_outbox(
    conn: Conn, exchange: str, routing_key: str, body: dict[str, Any], task: Row, *, priority: int
) -> None:
    await conn.execute(
        """INSERT INTO outbox (message_id, exchange, routing_key, body, priority, task_id)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        uuid.uuid4(),
        exchange,
        routing_key,
        body,
        max(0, min(priority, 255)),
        task["task_id"],
    )
    await conn.execute("SELECT pg_notify('ast_outbox', '')")


async def _insert_event(
    conn: Conn,
    task: Row,
    *,
    kind: str,
    from_status: str | None,
    message: str | None,
    worker_id: str | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO task_events (task_id, kind, from_status, status, state, progress, attempt,
                                    version, worker_id, message)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        task["task_id"],
        kind,
        from_status,
        task["status"],
        task["state"],
        task["progress"],
        task["attempt"],
        task["version"],
        worker_id,
        message,
    )


_SETTABLE = frozenset(
    {
        "state",
        "progress",
        "retry_count",
        "error",
        "result",
        "started_at",
        "completed_at",
        "attempt",
        "locked_by",
        "lease_until",
        "wait_event_type",
        "wait_event_key",
        "resume_data",
        "dead_lettered",
        "replayed_by",
    }
)


async def change_status(
    conn: Conn,
    task: Row,
    new: Status,
    *,
    message: str | None = None,
    worker_id: str | None = None,
    **columns: Any,
) -> Row:
    """Moves a locked task to `new`, writes its event, bumps version. Raises IllegalMove."""
    old = Status(task["status"])
    if not is_legal(old, new):
        raise IllegalMove(f"{old} -> {new} is not a legal move for task {task['task_id']}")
    if new in TERMINAL:
        columns.setdefault("completed_at", _NOW)
        columns.setdefault("locked_by", None)
        columns.setdefault("lease_until", None)
    row = await _update(conn, task["task_id"], status=new.value, **columns)
    await _insert_event(conn, row, kind="status", from_status=old.value, message=message, worker_id=worker_id)
    return row


async def report_progress(
    conn: Conn, task: Row, *, progress: int | None, state: str | None, worker_id: str | None
) -> Row:
    """Records progress/state as an event of kind 'progress'; progress never goes back in an attempt."""
    new_progress = task["progress"] if progress is None else max(task["progress"], min(100, progress))
    new_state = task["state"] if state is None else state
    if new_progress == task["progress"] and new_state == task["state"]:
        return task
    row = await _update(conn, task["task_id"], progress=new_progress, state=new_state)
    await _insert_event(
        conn, row, kind="progress", from_status=row["status"], message=None, worker_id=worker_id
    )
    return row


async def note(conn: Conn, task: Row, *, state: str, message: str) -> Row:
    """Records why something happened to a task that keeps its status (a re-published message): an
    event of kind 'progress' with the current status and progress, so the status machine holds."""
    row = await _update(conn, task["task_id"], state=state)
    await _insert_event(conn, row, kind="progress", from_status=row["status"], message=message)
    return row


class _Now:
    """Marks a column to be set to now() in SQL."""


_NOW = _Now()


async def _update(conn: Conn, task_id: uuid.UUID, **columns: Any) -> Row:
    sets = ["version = version + 1", "updated_at = clock_timestamp()"]
    args: list[Any] = [task_id]
    for name, value in columns.items():
        if name != "status" and name not in _SETTABLE:
            raise ValueError(f"column {name} cannot be set")
        if isinstance(value, _Now):
            sets.append(f"{name} = clock_timestamp()")
            continue
        args.append(value)
        sets.append(f"{name} = ${len(args)}")
    row: Row | None = await conn.fetchrow(
        f"UPDATE tasks SET {', '.join(sets)} WHERE task_id = $1 RETURNING *",
        *args,  # noqa: S608
    )
    assert row is not None
    return row


async def insert_result(conn: Conn, task: Row, result: dict[str, Any], worker_id: str | None) -> None:
    await conn.execute(
        "INSERT INTO task_results (task_id, result, worker_id) VALUES ($1, $2, $3)",
        task["task_id"],
        result,
        worker_id,
    )


async def mark_message_done(
    conn: Conn, message_id: str | None, task_id: uuid.UUID, worker_id: str, outcome: str
) -> None:
    if message_id:
        await conn.execute(
            """INSERT INTO inbox (message_id, task_id, worker_id, outcome) VALUES ($1, $2, $3, $4)
               ON CONFLICT (message_id) DO NOTHING""",
            message_id,
            task_id,
            worker_id,
            outcome,
        )


async def message_seen(conn: Conn, message_id: str | None) -> bool:
    if not message_id:
        return False
    return bool(await conn.fetchval("SELECT 1 FROM inbox WHERE message_id = $1", message_id))


def now() -> _Now:
    return _NOW


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
