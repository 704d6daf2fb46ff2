"""Submit, read, list, stream and cancel tasks (`POST /tasks` is added to the app by `add_submit_route`)."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, Query, Request, Response
from fastapi.telemetry import get_telemetry_data
from pydantic import ValidationError
from sse_starlette import EventSourceResponse

from service import tracing
from service.api import queries
from service.api.cursor import CURSOR_PATTERN, decode_cursor, encode_cursor
from service.api.deps import ACQUIRE_TIMEOUT_S, AppSettings, Metrics, PgPool, Pool, TaskId
from service.api.errors import ApiError, task_not_found, validation_details
from service.api.json_body import StrictJsonRequest, StrictJsonRoute
from service.api.metrics import ApiMetrics
from service.api.openapi import TASK_EVENT, errors
from service.api.schemas import Task, TaskAccepted, TaskEvent, TaskEvents, TaskPage, TaskSubmit
from service.api.stream import TaskStreams, too_many_streams
from service.api.stream_slots import StreamsExhausted
from service.config import Settings
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


async def submit_task(
    body: TaskSubmit, pool: Pool, settings: AppSettings, metrics: Metrics,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Writes the task, its first event and its job message in one transaction (202)."""
    return await _submit(body, pool, settings, metrics, idempotency_key)


async def _submit(
    body: TaskSubmit, pool: PgPool, settings: Settings, metrics: ApiMetrics, idempotency_key: str | None
) -> Response:
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
    task_id = str(row["task_id"])
    if created:
        metrics.task_submitted(body.type.value)
        tracing.accepted(row["task_id"], row["type"])
        log.info("task accepted",
                 extra={"taskId": task_id, "type": row["type"], "step": "submit", "traceId": row["trace_id"]})
    return TaskAcceptedResponse(task_id, Status(row["status"]))


class TaskAcceptedResponse(Response):
    """The 202 of `POST /tasks`, encoded once: what FastAPI would make of a `TaskAccepted` (same
    bytes, same headers in the same order: content-length, content-type, location) without
    validating the model it was just given and serializing it again."""

    media_type = "application/json"

    def __init__(self, task_id: str, status: Status) -> None:
        self.status_code = 202
        self.background = None
        self.body = b'{"taskId":"%s","status":"%s"}' % (task_id.encode(), status.value.encode())
        self.raw_headers = [
            (b"content-length", b"%d" % len(self.body)),
            (b"content-type", b"application/json"),
            (b"location", b"/tasks/" + task_id.encode()),
        ]


_JSON_TYPES = frozenset({"application/json", "application/json; charset=utf-8"})
_IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,200}")
"""What `IdempotencyKey` accepts (the fast path checks it; anything else goes FastAPI's way)."""


class SubmitRoute(StrictJsonRoute):
    """`POST /tasks` without FastAPI's per-request machinery when the request is plainly valid.

    A JSON body that `TaskSubmit` accepts and an absent or valid `Idempotency-Key` go straight to
    `_submit`; anything else (another content type, bad JSON, an invalid body or header, FastAPI's
    own tracing of the request) takes FastAPI's handler, which answers exactly as before. The route
    is declared as usual, so the OpenAPI document does not change."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def submit_handler(request: Request) -> Response:
            strict = StrictJsonRequest(request.scope, request.receive)
            submit = await _plainly_valid(strict)
            if submit is None:
                return await handler(strict)
            body, key = submit
            state = request.app.state
            return await _submit(body, state.pool, state.settings, state.metrics, key)

        return submit_handler


async def _plainly_valid(request: StrictJsonRequest) -> tuple[TaskSubmit, str | None] | None:
    if get_telemetry_data() is not None or request.headers.get("content-type") not in _JSON_TYPES:
        return None
    key = request.headers.get("idempotency-key")
    if key is not None and _IDEMPOTENCY_KEY.fullmatch(key) is None:
        return None
    try:
        return TaskSubmit.model_validate(await request.json()), key
    except Exception:  # noqa: BLE001 - FastAPI's handler reads the body again and answers the error
        return None


def add_submit_route(app: FastAPI) -> None:
    """Declares `POST /tasks` on the app itself, not through `router`: FastAPI matches a route of an
    included router through a per-inclusion context (scope keys set and restored around each
    candidate), several microseconds per request that the busiest route does without. Called
    before the routers are included, it stays first in the OpenAPI document as before."""
    app.router.add_api_route(
        "/tasks", submit_task, methods=["POST"], status_code=202, response_model=TaskAccepted, responses={
            202: {"headers": {"Location": {"description": "the task's URL", "schema": {"type": "string"}}}},
            **errors(409, 422, 503),
        }, tags=["tasks"], route_class_override=SubmitRoute,
    )


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
