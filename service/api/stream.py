"""The SSE feed of one task: its current state, then each change, until the task is terminal.

What a client can hold is bounded: a stream lives at most `STREAM_MAX_SECONDS` and then ends with a
`retry:` field, so an EventSource reconnects (and reads the task afresh); a client holds at most
`STREAM_MAX_PER_CLIENT` streams at once (a 429 with Retry-After beyond that); and every stream of the
process reads its changes from one shared `TaskWatcher`, so open streams cost one query per tick in
all instead of one each.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from fastapi import Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse
from starlette.types import Receive, Scope, Send

from service.api.errors import error_response
from service.api.schemas import Task
from service.api.stream_slots import StreamsExhausted, StreamSlot, StreamSlots, client_of
from service.api.task_watcher import Subscription, TaskWatcher
from service.config import Settings
from service.models import TERMINAL, Status

PING_S = 15
RECONNECT_MS = 2000


class TaskStreams:
    """The event streams of one API process: one watcher and one set of per-client slots."""

    def __init__(self, pool: asyncpg.Pool[Any], settings: Settings) -> None:
        self.pool = pool
        self.watcher = TaskWatcher(pool)
        self.slots = StreamSlots(settings.stream_max_per_client, settings.stream_max_seconds)
        self._by_token = bool(settings.api_tokens)

    @classmethod
    def of(cls, request: Request) -> TaskStreams:
        """The app's streams, made on first use (and again if the lifespan opened a new pool)."""
        state = request.app.state
        streams: TaskStreams | None = getattr(state, "task_streams", None)
        if streams is None or streams.pool is not state.pool:
            streams = state.task_streams = cls(state.pool, state.settings)
        return streams

    def take_slot(self, request: Request) -> StreamSlot:
        """A slot for the requesting client; raises StreamsExhausted when it holds its maximum."""
        return self.slots.take(client_of(request, by_token=self._by_token))

    def respond(self, first: asyncpg.Record, slot: StreamSlot) -> EventSourceResponse:
        return TaskStreamResponse(task_updates(self.watcher, first, slot), slot, ping=PING_S)


class TaskStreamResponse(EventSourceResponse):
    """Frees the client's slot however the response ends, even if its body never started (a HEAD
    request, a client gone before the first event)."""

    def __init__(self, content: AsyncIterator[dict[str, Any]], slot: StreamSlot, *, ping: int) -> None:
        super().__init__(content, ping=ping)
        self._slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._slot.release()


def too_many_streams(full: StreamsExhausted) -> JSONResponse:
    return error_response(
        429, "TOO_MANY_STREAMS", str(full), {"limit": full.limit},
        headers={"Retry-After": str(full.retry_after_s)},
    )


async def task_updates(
    watcher: TaskWatcher, first: asyncpg.Record, slot: StreamSlot
) -> AsyncIterator[dict[str, Any]]:
    """sse-starlette event dicts: the task as read, then every version change; at the slot's
    deadline a last `retry:` and the end."""
    yield _event("status", first) | {"retry": RECONNECT_MS}
    if Status(first["status"]) in TERMINAL:
        return
    deadline = asyncio.get_running_loop().time() + slot.remaining_s
    async with watcher.watch(first) as updates:
        last = first
        while Status(last["status"]) not in TERMINAL:
            try:
                row = await _next_change(updates, last, deadline)
            except TimeoutError:
                yield {"comment": "stream lifetime reached; reconnect", "retry": RECONNECT_MS}
                return
            if row is None:
                return
            yield _event("status" if row["status"] != last["status"] else "progress", row)
            last = row


async def _next_change(updates: Subscription, last: asyncpg.Record, deadline: float) -> asyncpg.Record | None:
    """The next row newer than `last`, or None if the task disappeared; TimeoutError at the deadline."""
    async with asyncio.timeout_at(deadline):
        while (row := await updates.next()) is not None and row["version"] <= last["version"]:
            pass
    return row


def _event(kind: str, row: asyncpg.Record) -> dict[str, Any]:
    task = Task.from_row(row)
    return {"event": kind, "id": str(row["version"]), "data": task.model_dump_json(by_alias=True)}
