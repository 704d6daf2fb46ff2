"""Every write to a task goes through here, so each status change writes its event in the same
transaction, bumps `version`, and is checked against the status machine."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
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


_INSERT_TASK = """
WITH ins AS (
    INSERT INTO tasks (task_id, type, status, priority, max_retries, payload, input_hash,
                       idempotency_key, trace_id, replay_of)
    VALUES ($1, $2, 'PENDING', $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING *
), event AS (
    INSERT INTO task_events (task_id, kind, from_status, status, state, progress, attempt, version, message)
    SELECT task_id, 'status', NULL, status, state, progress, attempt, version, 'accepted' FROM ins
), message AS (
    INSERT INTO outbox (message_id, exchange, routing_key, body, headers, priority, task_id)
    SELECT $10::uuid, $11::text, $12::text, $13::jsonb, $14::jsonb, $15::integer, task_id FROM ins
)
SELECT * FROM ins"""


async def insert_task(conn: Conn, new: NewTask) -> Row | None:
    """Inserts the task, its first event and its job message in one statement (atomic without a
    transaction around it); None when the idempotency key is taken."""
    task_id = uuid.uuid4()
    trace_id = new.trace_id or uuid.uuid4().hex
    message = job_message(
        {
            "task_id": task_id,
            "type": new.task_type.value,
            "payload": new.payload,
            "trace_id": trace_id,
            "retry_count": 0,
            "priority": new.priority,
        }
    )
    row: Row | None = await conn.fetchrow(
        _INSERT_TASK,
        task_id,
        new.task_type.value,
        new.priority,
        new.max_retries,
        new.payload,
        new.input_hash,
        new.idempotency_key,
        trace_id,
        new.replay_of,
        *message.params(),
    )
    return row


def job_body(task: Mapping[str, Any] | Row) -> dict[str, Any]:
    """The contract's job message: what the worker needs, and nothing of the task's state."""
    return {
        "taskId": str(task["task_id"]),
        "type": task["type"],
        "payload": task["payload"],
        "traceId": task["trace_id"],
        "traceparent": traceparent_for(task["trace_id"], task["task_id"]),
        "retryCount": task["retry_count"],
    }


@dataclass(frozen=True)
class OutboxMessage:
    """A message for the relay to publish, as one outbox row."""

    exchange: str
    routing_key: str
    body: dict[str, Any]
    priority: int
    headers: dict[str, Any] = field(default_factory=dict)

    def params(self) -> tuple[Any, ...]:
        """message_id, exchange, routing_key, body, headers, priority: the row's own columns."""
        return (
            uuid.uuid4(),
            self.exchange,
            self.routing_key,
            self.body,
            self.headers,
            max(0, min(self.priority, 255)),
        )


def job_message(task: Mapping[str, Any] | Row) -> OutboxMessage:
    """The job message of `task` (a row, or the values of a task about to be inserted)."""
    queue = JOB_QUEUES[TaskType(task["type"])]
    return OutboxMessage(JOBS_EXCHANGE, queue.routing_key, job_body(task), task["priority"])


async def enqueue_job(conn: Conn, task: Row, headers: Mapping[str, Any] | None = None) -> None:
    """Writes the job message to the outbox; the relay publishes it after this transaction commits."""
    queue = JOB_QUEUES[TaskType(task["type"])]
    body = job_body(task)
    await _insert_outbox(
        conn, JOBS_EXCHANGE, queue.routing_key, body, task, priority=task["priority"], headers=headers
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
    conn: Conn,
    exchange: str,
    routing_key: str,
    body: dict[str, Any],
    task: Row,
    *,
    priority: int,
    headers: Mapping[str, Any] | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO outbox (message_id, exchange, routing_key, body, priority, task_id, headers)
           VALUES ($1, $2, $3, $4, $5, $6, coalesce($7::jsonb, '{}'::jsonb))""",
        uuid.uuid4(),
        exchange,
        routing_key,
        body,
        max(0, min(priority, 255)),
        task["task_id"],
        None if headers is None else dict(headers),
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
        "lost_runs",
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
    event = _Event("status", old.value, message, worker_id)
    return await _update(conn, task["task_id"], event, status=new.value, **columns)


async def report_progress(
    conn: Conn, task: Row, *, progress: int | None, state: str | None, worker_id: str | None
) -> Row:
    """Records progress/state as an event of kind 'progress'; progress never goes back in an attempt."""
    new_progress = task["progress"] if progress is None else max(task["progress"], min(100, progress))
    new_state = task["state"] if state is None else state
    if new_progress == task["progress"] and new_state == task["state"]:
        return task
    event = _Event("progress", task["status"], None, worker_id)
    return await _update(conn, task["task_id"], event, progress=new_progress, state=new_state)


async def note(conn: Conn, task: Row, *, state: str, message: str) -> Row:
    """Records why something happened to a task that keeps its status (a re-published message): an
    event of kind 'progress' with the current status and progress, so the status machine holds."""
    return await _update(conn, task["task_id"], _Event("progress", task["status"], message), state=state)


class _Now:
    """Marks a column to be set to now() in SQL."""


_NOW = _Now()


@dataclass(frozen=True)
class _Event:
    """The task_events row an update writes (its status, state, progress, attempt and version are
    the updated row's)."""

    kind: str
    from_status: str | None
    message: str | None
    worker_id: str | None = None


class LeaseFor:
    """Marks `lease_until` to be set to now() + `interval` in SQL."""

    def __init__(self, interval: timedelta) -> None:
        self.interval = interval


_UPDATE_WITH_EVENT = """
WITH updated AS (UPDATE tasks SET {sets} WHERE task_id = $1 RETURNING *),
event AS (
    INSERT INTO task_events (task_id, kind, from_status, status, state, progress, attempt, version,
                             worker_id, message)
    SELECT task_id, $2::text, $3::text, status, state, progress, attempt, version, $4::text, $5::text
    FROM updated
)
SELECT * FROM updated"""


async def _update(conn: Conn, task_id: uuid.UUID, event: _Event, **columns: Any) -> Row:
    """Updates the task and writes its event in one statement; version and updated_at move too."""
    sets = ["version = version + 1", "updated_at = clock_timestamp()"]
    args: list[Any] = [task_id, event.kind, event.from_status, event.worker_id, event.message]
    for name, value in columns.items():
        if name != "status" and name not in _SETTABLE:
            raise ValueError(f"column {name} cannot be set")
        if isinstance(value, _Now):
            sets.append(f"{name} = clock_timestamp()")
            continue
        if isinstance(value, LeaseFor):
            args.append(value.interval)
            sets.append(f"{name} = clock_timestamp() + ${len(args)}::interval")
            continue
        args.append(value)
        sets.append(f"{name} = ${len(args)}")
    row: Row | None = await conn.fetchrow(_UPDATE_WITH_EVENT.format(sets=", ".join(sets)), *args)
    assert row is not None
    return row


_LOCK_FOR_CLAIM = """
SELECT t.*, EXISTS (SELECT 1 FROM inbox WHERE message_id = $2) AS message_seen,
       coalesce(t.lease_until > clock_timestamp(), false) AS lease_alive
FROM tasks t WHERE task_id = $1 FOR UPDATE"""


async def lock_for_claim(conn: Conn, task_id: uuid.UUID, message_id: str | None) -> Row | None:
    """The locked task, with whether `message_id` was handled already and whether its lease is live."""
    row: Row | None = await conn.fetchrow(_LOCK_FOR_CLAIM, task_id, message_id)
    return row


async def claim_ready(
    conn: Conn, task_id: uuid.UUID, message_id: str | None, worker_id: str, lease: timedelta
) -> Row | None:
    """PENDING/RETRYING -> IN_PROGRESS for `worker_id`, with its event, in one call (migration 004);
    None when the task is not simply ready to run (the caller then decides with the row locked)."""
    row: Row | None = await conn.fetchrow(
        "SELECT * FROM ast_claim_ready($1, $2, $3, $4)", task_id, message_id, worker_id, lease
    )
    return row


_REPORT_PROGRESS = """
WITH updated AS (
    UPDATE tasks SET version = version + 1, updated_at = clock_timestamp(),
                     progress = greatest(progress, least(100, coalesce($3, progress))),
                     state = coalesce($4, state)
    WHERE task_id = $1 AND status = 'IN_PROGRESS' AND locked_by = $2
      AND (greatest(progress, least(100, coalesce($3, progress))) <> progress
           OR coalesce($4, state) IS DISTINCT FROM state)
    RETURNING *
), event AS (
    INSERT INTO task_events (task_id, kind, from_status, status, state, progress, attempt, version,
                             worker_id)
    SELECT task_id, 'progress', status, status, state, progress, attempt, version, $2 FROM updated
)
SELECT count(*) FROM updated"""
_OWNED = "SELECT 1 FROM tasks WHERE task_id = $1 AND status = 'IN_PROGRESS' AND locked_by = $2"


async def report_owned_progress(
    conn: Conn, task_id: uuid.UUID, worker_id: str, progress: int | None, state: str | None
) -> bool:
    """`report_progress` for the worker that runs the task, in one statement (the row lock of the
    UPDATE is the check that the task is still its own); False when it is not."""
    if await conn.fetchval(_REPORT_PROGRESS, task_id, worker_id, progress, state):
        return True
    return bool(await conn.fetchval(_OWNED, task_id, worker_id))


_COMPLETE = """
WITH updated AS (
    UPDATE tasks SET version = version + 1, updated_at = clock_timestamp(), status = 'COMPLETED',
                     progress = 100, result = $3, state = 'completed', error = NULL,
                     completed_at = clock_timestamp(), locked_by = NULL, lease_until = NULL
    WHERE task_id = $1 AND status = 'IN_PROGRESS' AND locked_by = $2
    RETURNING *
), result AS (
    INSERT INTO task_results (task_id, result, worker_id) SELECT task_id, $3, $2 FROM updated
), event AS (
    INSERT INTO task_events (task_id, kind, from_status, status, state, progress, attempt, version,
                             worker_id, message)
    SELECT task_id, 'status', 'IN_PROGRESS', status, state, progress, attempt, version, $2, 'completed'
    FROM updated
), message AS (
    INSERT INTO outbox (message_id, exchange, routing_key, body, priority, task_id)
    SELECT $5::uuid, $6::text, 'task.completed',
           jsonb_build_object('taskId', task_id::text, 'type', type, 'status', status,
                              'traceId', trace_id, 'retryCount', retry_count, 'error', error),
           0, task_id
    FROM updated
), inbox_row AS (
    INSERT INTO inbox (message_id, task_id, worker_id, outcome)
    SELECT $4::text, $1::uuid, $2::text,
           CASE WHEN EXISTS (SELECT 1 FROM updated) THEN 'completed' ELSE 'lost' END
    WHERE $4::text IS NOT NULL
    ON CONFLICT (message_id) DO NOTHING
)
SELECT count(*) FROM updated"""


async def complete_owned(
    conn: Conn, task_id: uuid.UUID, worker_id: str, result: dict[str, Any], message_id: str | None
) -> bool:
    """COMPLETED with its result, event, `task.completed` message and inbox row, in one statement,
    when the task is still `worker_id`'s and running; else only the inbox row ('lost'). True if done."""
    done = await conn.fetchval(
        _COMPLETE, task_id, worker_id, result, message_id or None, uuid.uuid4(), EVENTS_EXCHANGE
    )
    return bool(done)


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


def now() -> _Now:
    return _NOW


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
