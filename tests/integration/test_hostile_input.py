"""Hostile input against the API in process, on real PostgreSQL and RabbitMQ (issue 9).

A client mistake is a 422 whatever the state of the data (a task waiting or not); only a database
that does not answer is a 503. And what is stored can never make a task unreadable.
Fixtures and helpers are those of `test_api.py`: the same servers, the same clean state.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from service.models import Status
from tests.integration import test_api
from tests.integration.test_api import assert_error, park_task, row_counts

# test_api.py's fixtures, under the names the tests ask for
backends, db, make_client, client = test_api.backends, test_api.db, test_api.make_client, test_api.client

pytestmark = pytest.mark.integration

WAITING = {"wait_event_type": "t", "wait_event_key": "k"}
NON_STANDARD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


async def raw_json(client: httpx.AsyncClient, path: str, content: str) -> httpx.Response:
    return await client.post(path, content=content, headers={"Content-Type": "application/json"})


async def status_of(db: asyncpg.Pool[Any], task_id: uuid.UUID) -> str:
    async with db.acquire() as conn:
        return str(await conn.fetchval("SELECT status FROM tasks WHERE task_id = $1", task_id))


# ---- defect 1: a deep payload makes the task list unreadable ---------------------------------------

async def test_deep_event_payload_is_422_and_the_waiting_task_stays_readable(
    client: httpx.AsyncClient, db: asyncpg.Pool[Any]
) -> None:
    task_id = await park_task(db, Status.WAITING_FOR_EVENT, **WAITING)
    before = await row_counts(db)
    response = await client.post("/events", json={"type": "t", "key": "k", "payload": nested(300)})
    assert_error(response, 422, "VALIDATION_ERROR")
    assert await status_of(db, task_id) == "WAITING_FOR_EVENT"
    assert await row_counts(db) == before
    assert (await client.get(f"/tasks/{task_id}")).status_code == 200
    assert (await client.get("/tasks")).status_code == 200


async def test_payload_at_the_depth_limit_is_accepted(
    client: httpx.AsyncClient, db: asyncpg.Pool[Any]
) -> None:
    task_id = await park_task(db, Status.WAITING_FOR_EVENT, **WAITING)
    body = {"type": "t", "key": "k", "payload": {"deep": nested(31)}}
    response = await client.post("/events", json=body)
    assert response.status_code == 202, response.text
    async with db.acquire() as conn:
        stored = await conn.fetchval("SELECT resume_data FROM tasks WHERE task_id = $1", task_id)
    assert stored == body
    too_deep = {"type": "t", "key": "k", "payload": {"deep": nested(32)}}
    assert_error(await client.post("/events", json=too_deep), 422, "VALIDATION_ERROR")


async def test_deep_task_payload_is_422(client: httpx.AsyncClient, db: asyncpg.Pool[Any]) -> None:
    before = await row_counts(db)
    body = {"type": "simulate", "payload": {"waitForEvent": nested(300)}}
    assert_error(await client.post("/tasks", json=body), 422)
    assert await row_counts(db) == before


async def test_a_task_whose_stored_result_is_too_deep_still_reads(
    client: httpx.AsyncClient, db: asyncpg.Pool[Any]
) -> None:
    """What is stored (by a worker, an older version, a hand edit) never makes a read fail."""
    deep = await park_task(db, Status.COMPLETED, result={"event": {"payload": nested(300)}},
                           error={"code": "X", "message": "m", "details": nested(300)})
    fine = await park_task(db, Status.COMPLETED, result={"event": {"payload": nested(60)}})
    task = (await client.get(f"/tasks/{deep}")).json()
    assert task["result"]["unreadable"] is True
    assert task["error"]["unreadable"] is True
    assert (await client.get(f"/tasks/{fine}")).json()["result"] == {"event": {"payload": nested(60)}}
    page = await client.get("/tasks", params={"limit": 10})
    assert page.status_code == 200
    assert {item["taskId"] for item in page.json()["items"]} == {str(deep), str(fine)}
    stream = await client.get(f"/tasks/{deep}/stream")
    assert stream.status_code == 200
    assert '"unreadable":true' in stream.text


# ---- defect 2: client mistakes answered 503 --------------------------------------------------------

def _cursor(created: str) -> str:
    raw = json.dumps([created, "00000000-0000-0000-0000-000000000000"]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "created",
    ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+00:00"],
)
async def test_cursor_out_of_range_is_422(client: httpx.AsyncClient, created: str) -> None:
    response = await client.get("/tasks", params={"cursor": _cursor(created)})
    if created.endswith("+00:00"):
        assert response.status_code == 200, response.text  # the earliest instant is a fine cursor
    else:
        assert_error(response, 422, "INVALID_CURSOR")


@pytest.mark.parametrize("number", NON_STANDARD_NUMBERS)
@pytest.mark.parametrize("waiting", [True, False], ids=["task-waiting", "none-waiting"])
async def test_non_standard_number_on_events_is_422_whatever_waits(
    client: httpx.AsyncClient, db: asyncpg.Pool[Any], number: str, waiting: bool
) -> None:
    task_id = await park_task(db, Status.WAITING_FOR_EVENT, **WAITING) if waiting else None
    before = await row_counts(db)
    content = '{"type": "t", "key": "k", "payload": {"n": [1, NUMBER]}}'.replace("NUMBER", number)
    error = assert_error(await raw_json(client, "/events", content), 422, "VALIDATION_ERROR")
    reason = error["details"][0]["msg"]
    assert "NaN, Infinity" in reason or "out of range for a JSON number" in reason, reason
    assert await row_counts(db) == before
    if task_id is not None:
        assert await status_of(db, task_id) == "WAITING_FOR_EVENT"


@pytest.mark.parametrize("number", NON_STANDARD_NUMBERS)
@pytest.mark.parametrize(
    "template",
    [
        '{"type": "simulate", "payload": {"durationMs": NUMBER}}',
        '{"type": "simulate", "payload": {"durationMs": 1}, "priority": NUMBER}',
        '{"type": "initialize_impact_analysis", "payload": {"changedFiles": ["a", NUMBER]}}',
        '{"type": "simulate", "payload": {"waitForEvent": {"type": "t", "key": [NUMBER]}}}',
        'NUMBER',
    ],
    ids=["payload-field", "priority", "impact-field", "nested-field", "whole-body"],
)
async def test_non_standard_number_on_tasks_is_422(
    client: httpx.AsyncClient, db: asyncpg.Pool[Any], number: str, template: str
) -> None:
    before = await row_counts(db)
    assert_error(await raw_json(client, "/tasks", template.replace("NUMBER", number)), 422)
    assert await row_counts(db) == before


@pytest.mark.parametrize("number", NON_STANDARD_NUMBERS)
async def test_non_standard_number_on_dlq_replay_is_422(client: httpx.AsyncClient, number: str) -> None:
    assert_error(await raw_json(client, "/dlq/replay", f'{{"taskIds": [{number}]}}'), 422)


async def test_oversized_event_payload_is_422(client: httpx.AsyncClient, db: asyncpg.Pool[Any]) -> None:
    """An event payload is copied into every task it resumes and into each one's result: bounded."""
    task_id = await park_task(db, Status.WAITING_FOR_EVENT, **WAITING)
    many = {"type": "t", "key": "k", "payload": list(range(20_000))}
    assert_error(await client.post("/events", json=many), 422, "VALIDATION_ERROR")
    big = {"type": "t", "key": "k", "payload": {"text": "x" * 100_000}}
    assert_error(await client.post("/events", json=big), 422, "VALIDATION_ERROR")
    assert await status_of(db, task_id) == "WAITING_FOR_EVENT"
