"""Rows, events and operations trimmed to what the invariants look at, as violation evidence."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.history import Operation
from harness.state import EventRow, QueueMessage, Snapshot, TaskRow


def event_json(e: EventRow) -> dict[str, Any]:
    return {
        "eventId": e.event_id,
        "kind": e.kind,
        "from": e.from_status,
        "status": e.status,
        "progress": e.progress,
        "attempt": e.attempt,
        "version": e.version,
    }


def task_json(t: TaskRow) -> dict[str, Any]:
    return {
        "taskId": t.task_id,
        "type": t.type,
        "status": t.status,
        "progress": t.progress,
        "retryCount": t.retry_count,
        "maxRetries": t.max_retries,
        "version": t.version,
        "error": t.error,
        "replayOf": t.replay_of,
    }


def op_json(op: Operation) -> dict[str, Any]:
    return {
        "index": op.index,
        "process": op.process,
        "type": op.type,
        "f": op.f,
        "statusCode": op.status_code,
        "taskId": op.task_id,
        "taskStatus": op.task_status,
        "idempotencyKey": op.idempotency_key,
        "invokeIndex": op.invoke_index,
        "wallTime": op.wall_time,
    }


def message_json(m: QueueMessage) -> dict[str, Any]:
    return {"queue": m.queue, "messageId": m.message_id, "body": m.body, "death": m.death_reason}


def status_events(events: Sequence[EventRow]) -> list[EventRow]:
    return [e for e in events if e.kind == "status"]


def pg_unknown(snapshot: Snapshot) -> str | None:
    return f"PostgreSQL was not read: {snapshot.postgres_error}" if snapshot.postgres_error else None
