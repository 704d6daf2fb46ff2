"""Submit, read, list, stream and cancel tasks."""

from __future__ import annotations

import hashlib
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import ValidationError
from sse_starlette import EventSourceResponse

from service import tracing
from service.api import queries
from service.api.cursor import CURSOR_PATTERN, decode_cursor, encode_cursor
from service.api.deps import ACQUIRE_TIMEOUT_S, AppSettings, Metrics, Pool, TaskId
from service.api.errors import ApiError, task_not_found, validation_details
from service.api.json_body import StrictJsonRoute
from service.api.openapi import TASK_EVENT, errors
from service.api.schemas import Task, TaskAccepted, TaskEvent, TaskEvents, TaskPage, TaskSubmit
from service.api.stream import TaskStreams, too_many_streams
from service.api.stream_slots import StreamsExhausted
from service.db.tasks import (
    IllegalMove,
    NewTask,
    change_status,
    dumps,
    enqueue_event,
    insert_task,
    lock_task,
)
from service.models import TERMINAL, Status, TaskType
from service.payloads import parse_payload

log = logging.getLogger("ast.api")
router = APIRouter(tags=["tasks"], route_class=StrictJsonRoute)

IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200, pattern=r"^[\x20-\x7e]+$")
]


def input_hash(body: TaskSubmit, payload: dict[str, Any]) -> str:
    """What "the same body" means for idempotency: type, stored payload and priority, canonically encoded.

    Hashing the stored (redacted) payload keeps secrets out of the hash input as well.
    """
    canonical = dumps({"type": body.type.value, "payload": payload, "priority": body.priority})
    return hashlib.sha256(canonical.encode()).hexdigest()


def _stored_payload(body: TaskSubmit, *, allow_local_repos: bool) -> dict[str, Any]:
    """The validated payload in the form it is stored: credentials in a repoUrl are redacted."""
    try:
        return parse_payload(body.type, body.payload, allow_local_repos=allow_local_repos).stored()
    except ValidationError as error:
        details = validation_details(error.errors())
        for item in details:
            item["loc"] = ["body", "payload", *item["loc"]]
        message = f"the payload is not valid for {body.type.value}"
        raise ApiError(422, "INVALID_PAYLOAD", message, details) from None
    except ValueError as error:
        raise ApiError(422, "INVALID_PAYLOAD", str(error)) from None


@router.post("/tasks", status_code=202, response_model=TaskAccepted, responses={
    202: {"headers": {"Location": {"description": "the task's URL", "schema": {"type": "string"}}}},
    **errors(409, 422, 503),
})
async def submit_task(
    body: TaskSubmit, response: Response, pool: Pool, settings: AppSettings, metrics: Metrics,
    idempotency_key: IdempotencyKey = None,
) -> TaskAccepted:
    """Writes the task, its first event and its job message in one transaction (202)."""
    payload = _stored_payload(body, allow_local_repos=settings.allow_local_repos)
    new = NewTask(body.type, payload, body.priority, settings.max_retries, input_hash(body, payload),
                  idempotency_key=idempotency_key, trace_id=tracing.new_trace_id())
    async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
        row = await insert_task(conn, new)  # one statement: atomic on its own
        created = row is not None
        if row is None:
            row = await conn.fetchrow(queries.TASK_BY_KEY, idempotency_key)
    _check_replay(row, new)
    assert row is not None
    if created:
        metrics.tasks_submitted.labels(body.type.value).inc()
        tracing.accepted(row["task_id"], row["type"])
        log.info("task accepted",
                 extra={"taskId": str(row["task_id"]), "type": row["type"], "step": "submit",
                        "traceId": row["trace_id"]})
    response.headers["Location"] = f"/tasks/{row['task_id']}"
    return TaskAccepted(task_id=row["task_id"], status=Status(row["status"]))


def _check_replay(existing: Any, new: NewTask) -> None:
    """The same key with another body is a conflict; with the same body it is a harmless replay."""
    if existing is None:
        raise ApiError(409, "IDEMPOTENCY_CONFLICT", "the idempotency key was just released; retry")
    if existing["input_hash"] != new.input_hash:
        raise ApiError(
            409, "IDEMPOTENCY_CONFLICT", "this Idempotency-Key was used with another request body",
            {"taskId": str(existing["task_id"])},
        )


@router.get("/tasks", response_model=TaskPage, responses=errors(422, 503))
async def list_tasks(
    pool: Pool,
    status: Annotated[Status | None, Query()] = None,
    task_type: Annotated[TaskType | None, Query(alias="type")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=1000, json_schema_extra={"pattern": CURSOR_PATTERN})
    ] = None,
) -> TaskPage:
    """Keyset pagination on (createdAt, taskId); `nextCursor` is null on the last page."""
    after = decode_cursor(cursor) if cursor else None
    async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
        rows = await queries.list_tasks(
            conn, status=status.value if status else None, task_type=task_type.value if task_type else None,
            after=after, limit=limit + 1,
        )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["task_id"]) if more else None
    return TaskPage(items=[Task.from_row(row) for row in rows], next_cursor=next_cursor)


@router.get("/tasks/{task_id}", response_model=Task, responses=errors(404, 422, 503))
async def get_task(task_id: TaskId, pool: Pool) -> Task:
    async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
        row = await queries.fetch_task(conn, task_id)
    if row is None:
        raise task_not_found(task_id)
    return Task.from_row(row)


@router.get("/tasks/{task_id}/events", response_model=TaskEvents, responses=errors(404, 422, 503))
async def get_task_events(task_id: TaskId, pool: Pool) -> TaskEvents:
    """The task's timeline, oldest first."""
    async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
        if await conn.fetchval(queries.TASK_EXISTS, task_id) is None:
            raise task_not_found(task_id)
        rows = await conn.fetch(queries.EVENTS_OF_TASK, task_id)
    return TaskEvents(items=[TaskEvent.from_row(row) for row in rows])


@router.get("/tasks/{task_id}/stream", response_class=EventSourceResponse, responses={
    200: {"description": "Server-Sent Events", "content": {"text/event-stream": {"schema": TASK_EVENT}}},
    **errors(404, 422, 429, 503),
})
async def stream_task(task_id: TaskId, request: Request, pool: Pool) -> Response:
    """Server-Sent Events: `status` or `progress` with the task as data, until a terminal status or
    the stream's lifetime (then `retry:`, and the client reconnects); 429 over the client's streams."""
    streams = TaskStreams.of(request)
    try:
        slot = streams.take_slot(request)
    except StreamsExhausted as full:
        return too_many_streams(full)
    try:
        async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
            row = await queries.fetch_task(conn, task_id)
        if row is None:
            raise task_not_found(task_id)
    except BaseException:
        slot.release()
        raise
    return streams.respond(row, slot)


@router.post("/tasks/{task_id}/cancel", status_code=202, response_model=Task,
             responses=errors(404, 409, 422, 503))
async def cancel_task(task_id: TaskId, pool: Pool) -> Task:
    """CANCELLED at once; a running worker sees it at its next progress report and stops."""
    async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn, conn.transaction():
        row = await lock_task(conn, task_id)
        if row is None:
            raise task_not_found(task_id)
        if Status(row["status"]) in TERMINAL:
            raise _already_terminal(row)
        try:
            row = await change_status(conn, row, Status.CANCELLED, message="cancelled by request")
        except IllegalMove:
            raise _already_terminal(row) from None
        await enqueue_event(conn, row, "task.cancelled")
    log.info("task cancelled", extra={"taskId": str(task_id), "type": row["type"], "step": "cancel"})
    return Task.from_row(row)


def _already_terminal(row: Any) -> ApiError:
    return ApiError(409, "ALREADY_TERMINAL", f"task {row['task_id']} is already {row['status']}",
                    {"status": row["status"]})
