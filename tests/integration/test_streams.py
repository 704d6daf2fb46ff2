"""What a client can hold with `GET /tasks/{taskId}/stream` is bounded (issue 9, defect 8).

Before the fix every open stream polled its own task five times a second, forever: 500 streams on
waiting tasks cost 2,500 PostgreSQL transactions a second for as long as clients kept them. Now the
streams of a process share one poll, a stream ends at `STREAM_MAX_SECONDS` with a `retry:` field
(an EventSource reconnects), and a client holds at most `STREAM_MAX_PER_CLIENT` streams (a 429 in
the error shape, with Retry-After, beyond that).

The app runs on a real uvicorn (ASGITransport buffers whole bodies, so a live stream needs a real
server) against the session stack's PostgreSQL and RabbitMQ; tasks are written straight to SQL with
no job message, so no worker moves them unless a test does.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from harness.stack.base import StackEndpoints
from service.api.app import create_app
from service.config import Settings, describe_error
from service.db import tasks as db_tasks
from service.db.pool import create_pool
from service.models import Status
from tests.integration.test_api import assert_error, park_task

pytestmark = pytest.mark.integration

SERVER_START_S = 10.0
STREAMS = 30
WINDOW_S = 4.0
# Before the fix 29 more streams cost about 145 more transactions a second; the shared poll adds
# none. The bound leaves room for the stack's own background traffic (workers, relay) to vary.
MAX_EXTRA_XACT_PER_S = 20.0


@pytest.fixture
async def db(clean_state: StackEndpoints) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await create_pool(clean_state.postgres_dsn, min_size=1, max_size=4)
    yield pool
    await pool.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def served(
    endpoints: StackEndpoints, **overrides: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app on a real uvicorn with `overrides` as settings, and a client once it accepts."""
    values: dict[str, Any] = {"postgres_url": endpoints.postgres_dsn, "rabbit_url": endpoints.amqp_url,
                              "relay_in_api": False, "api_tokens": []}
    settings = Settings(**(values | overrides))
    app = create_app(settings)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(SERVER_START_S):
            while not server.started:
                assert not serving.done(), "uvicorn stopped before it started"
                await asyncio.sleep(0.05)
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30, limits=limits) as http:
            yield app, http
    finally:
        server.should_exit = True
        await serving


class OpenStream:
    """One live stream: its SSE blocks as they arrive, each a dict of field -> value."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next_block(self) -> dict[str, str] | None:
        """The next blank-line-terminated block; None when the server ended the stream."""
        fields: dict[str, str] = {}
        async for line in self._lines:
            if not line:
                if fields:
                    return fields
                continue
            name, _, value = line.partition(":")
            fields[name or "comment"] = value.removeprefix(" ")
        return fields or None

    async def close(self) -> None:
        await self._lines.aclose()

    async def all_blocks(self) -> list[dict[str, str]]:
        blocks = []
        while (block := await self.next_block()) is not None:
            blocks.append(block)
        return blocks


async def open_stream(stack: AsyncExitStack, http: httpx.AsyncClient, task_id: uuid.UUID,
                      headers: dict[str, str] | None = None) -> OpenStream:
    """A stream that has delivered its first event (so the server holds it), closed with `stack`."""
    response = await stack.enter_async_context(
        http.stream("GET", f"/tasks/{task_id}/stream", headers=headers)
    )
    assert response.status_code == 200, (await response.aread()).decode()
    stream = OpenStream(response)
    # The stack keeps the stream alive: a collected line iterator would close the connection.
    stack.push_async_callback(stream.close)
    first = await asyncio.wait_for(stream.next_block(), 10)
    assert first is not None
    assert first["event"] == "status"
    return stream


async def refusal(http: httpx.AsyncClient, task_id: uuid.UUID,
                  headers: dict[str, str] | None = None) -> httpx.Response:
    """The answer to a stream that must be refused; an accepted one fails at once (never ends)."""
    async with http.stream("GET", f"/tasks/{task_id}/stream", headers=headers) as response:
        if response.status_code == 200:
            pytest.fail("the stream was accepted")
        await response.aread()
    return response


async def xact_commits(pool: asyncpg.Pool[Any]) -> int:
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_stat_force_next_flush()")
        return int(await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ))


async def xact_rate(pool: asyncpg.Pool[Any]) -> float:
    """Committed transactions a second in this database over WINDOW_S, every connection counted.

    Other backends flush their counts about once a second, so the window starts and ends after a
    settling second each, the same for every measurement."""
    await asyncio.sleep(1.5)
    before, started = await xact_commits(pool), time.monotonic()
    await asyncio.sleep(WINDOW_S)
    await asyncio.sleep(1.5)
    return (await xact_commits(pool) - before) / (time.monotonic() - started)


async def test_open_streams_cost_one_poll_whatever_their_number(
    clean_state: StackEndpoints, db: asyncpg.Pool[Any]
) -> None:
    """(a) 1 stream and 30 streams on waiting tasks cost the same transactions a second."""
    waiting = [await park_task(db, Status.WAITING_FOR_EVENT) for _ in range(STREAMS)]
    async with served(clean_state, stream_max_per_client=STREAMS + 5) as (app, http):
        async with AsyncExitStack() as one:
            await open_stream(one, http, waiting[0])
            rate_one = await xact_rate(db)
        async with AsyncExitStack() as many:
            for task_id in waiting:
                await open_stream(many, http, task_id)
            polls_before = app.state.task_streams.watcher.polls
            rate_many = await xact_rate(db)
            polls = app.state.task_streams.watcher.polls - polls_before
    assert rate_many - rate_one < MAX_EXTRA_XACT_PER_S, (rate_one, rate_many)
    assert polls <= (WINDOW_S + 3) / 0.2 + 2, f"one poll a tick for all {STREAMS} streams, got {polls}"


async def test_a_stream_ends_at_its_lifetime_with_retry(
    clean_state: StackEndpoints, db: asyncpg.Pool[Any]
) -> None:
    """(b) A stream on a task that never changes ends at STREAM_MAX_SECONDS; `retry:` says when
    to reconnect, and the reconnected stream starts again with the task's status."""
    task_id = await park_task(db, Status.WAITING_FOR_EVENT)
    async with served(clean_state, stream_max_seconds=1) as (_, http), AsyncExitStack() as streams:
        started = time.monotonic()
        stream = await open_stream(streams, http, task_id)
        rest = await asyncio.wait_for(stream.all_blocks(), 10)
        lasted = time.monotonic() - started
        again = await open_stream(streams, http, task_id)
    assert 0.5 <= lasted < 5, lasted
    assert rest, "a last block before the end"
    assert int(rest[-1]["retry"]) > 0
    assert "data" not in rest[-1], "the farewell is not an event a client would dispatch"
    assert again.response.status_code == 200


async def test_streams_over_the_clients_cap_are_429_until_one_closes(
    clean_state: StackEndpoints, db: asyncpg.Pool[Any]
) -> None:
    """(c) The (cap+1)-th concurrent stream of one client is a 429 in the error shape with
    Retry-After, costing no stream; once one closes, a new one is accepted."""
    cap = 3
    waiting = [await park_task(db, Status.WAITING_FOR_EVENT) for _ in range(cap + 1)]
    async with served(clean_state, stream_max_per_client=cap) as (_, http), AsyncExitStack() as kept:
        first = AsyncExitStack()
        await open_stream(first, http, waiting[0])
        for task_id in waiting[1:cap]:
            await open_stream(kept, http, task_id)
        refused = await refusal(http, waiting[cap])
        error = assert_error(refused, 429, "TOO_MANY_STREAMS")
        assert error["details"] == {"limit": cap}
        assert 1 <= int(refused.headers["retry-after"]) <= 300
        await first.aclose()
        await _accepted_soon(kept, http, waiting[cap])


async def _accepted_soon(stack: AsyncExitStack, http: httpx.AsyncClient, task_id: uuid.UUID) -> None:
    """The server frees a closed stream's slot once it sees the disconnect: a bounded retry."""
    async with asyncio.timeout(10):
        while (await http.get(f"/tasks/{uuid.uuid4()}/stream")).status_code == 429:
            await asyncio.sleep(0.1)
    await open_stream(stack, http, task_id)


async def test_the_cap_is_per_token_when_auth_is_on(
    clean_state: StackEndpoints, db: asyncpg.Pool[Any]
) -> None:
    """With API_TOKENS each token has its own allowance; without auth a made-up token opens none."""
    task_id = await park_task(db, Status.WAITING_FOR_EVENT)
    alice, bob = {"Authorization": "Bearer alice"}, {"Authorization": "Bearer bob"}
    async with (
        served(clean_state, stream_max_per_client=1, api_tokens=["alice", "bob"]) as (_, http),
        AsyncExitStack() as streams,
    ):
        await open_stream(streams, http, task_id, alice)
        assert_error(await refusal(http, task_id, alice), 429, "TOO_MANY_STREAMS")
        await open_stream(streams, http, task_id, bob)
    async with served(clean_state, stream_max_per_client=1) as (_, http), AsyncExitStack() as streams:
        await open_stream(streams, http, task_id)
        made_up = {"Authorization": f"Bearer {uuid.uuid4()}"}
        assert_error(await refusal(http, task_id, made_up), 429, "TOO_MANY_STREAMS")


async def _complete(pool: asyncpg.Pool[Any], task_id: uuid.UUID) -> None:
    async with pool.acquire() as conn, conn.transaction():
        row = await db_tasks.lock_task(conn, task_id)
        assert row is not None
        row = await db_tasks.change_status(conn, row, Status.IN_PROGRESS)
        await db_tasks.change_status(conn, row, Status.COMPLETED, progress=100, result={"ok": 1})


async def test_streams_sharing_the_poll_still_end_at_the_terminal_event(
    clean_state: StackEndpoints, db: asyncpg.Pool[Any]
) -> None:
    """(d) Two streams of one task both end at its terminal event; a stream of another task goes
    on, and the shared poll stops once no stream is open."""
    done, waiting = await park_task(db, Status.PENDING), await park_task(db, Status.PENDING)
    async with served(clean_state) as (app, http):
        async with AsyncExitStack() as streams:
            both = [await open_stream(streams, http, done) for _ in range(2)]
            other = await open_stream(streams, http, waiting)
            await _complete(db, done)
            for stream in both:
                blocks = await asyncio.wait_for(stream.all_blocks(), 10)
                assert [block.get("event") for block in blocks if "data" in block][-1] == "status"
                assert '"status":"COMPLETED"' in blocks[-1]["data"]
            await _complete(db, waiting)
            tail = await asyncio.wait_for(other.all_blocks(), 10)
            assert '"status":"COMPLETED"' in tail[-1]["data"]
        watcher = app.state.task_streams.watcher
        async with asyncio.timeout(5):
            while watcher.watched:
                await asyncio.sleep(0.05)
        polls = watcher.polls
        await asyncio.sleep(1)
        assert watcher.polls == polls, "no poll while no stream is open"


@pytest.mark.parametrize(("name", "value"), [("STREAM_MAX_SECONDS", "0"), ("STREAM_MAX_PER_CLIENT", "0"),
                                             ("STREAM_MAX_SECONDS", "soon")])
def test_a_bad_stream_limit_stops_the_process_with_one_line(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert describe_error(caught.value).startswith(f"invalid configuration: {name}:")
