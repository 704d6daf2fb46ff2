"""A job result PostgreSQL cannot store, on real PostgreSQL (issue 9, same class as defects 1/2).

The worker's own MessageProcessor and TaskLifecycle run one job message (a fake delivery: no
broker needed) for a task written straight to SQL, with a job that returns a bad result. The task
must end FAILED with `RESULT_UNSTORABLE`, the message rejected to the DLQ, no result row, and a
timeline that follows the status machine. Before the fix the result was written as is: PostgreSQL
refused it (SQLSTATE 22), the worker counted that as "database down", retried for half a minute,
returned the message to the queue, and the next delivery ran the job again, forever.
Fixtures are those of `test_api.py`: the same servers, the same clean state.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, cast

import asyncpg
import pytest
from aio_pika.abc import AbstractIncomingMessage

from service.config import Settings
from service.models import Status
from service.worker import processor as processor_module
from service.worker.context import TaskContext
from service.worker.lifecycle import TaskLifecycle
from service.worker.processor import MessageProcessor
from tests.fakes import FakeMessage
from tests.integration import test_api
from tests.integration.test_api import park_task

backends, db = test_api.backends, test_api.db

pytestmark = pytest.mark.integration

MARKER = "s3cret-result-text"
PROCESS_S = 90.0


async def run_job_returning(
    result: Any, db: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch
) -> tuple[uuid.UUID, FakeMessage]:
    async def job(_: TaskContext) -> Any:
        return result

    async def dead_letter(*_: Any) -> None:
        raise AssertionError("a job message is never poison here")

    monkeypatch.setattr(processor_module, "job_for", lambda *_: job)
    task_id = await park_task(db, Status.PENDING)
    body = json.dumps({"taskId": str(task_id), "type": "simulate", "payload": {}, "retryCount": 0})
    delivery = FakeMessage(body.encode(), message_id=f"m-{uuid.uuid4()}")
    lifecycle = TaskLifecycle(db, "result-storage-test", lease_ms=30_000)
    worker = MessageProcessor(lifecycle, Settings(), dead_letter)
    await asyncio.wait_for(worker.process(cast(AbstractIncomingMessage, delivery)), PROCESS_S)
    return task_id, delivery


async def assert_failed_unstorable(db: asyncpg.Pool[Any], task_id: uuid.UUID, delivery: FakeMessage) -> str:
    async with db.acquire() as conn:
        task = await conn.fetchrow("SELECT * FROM tasks WHERE task_id = $1", task_id)
        events = await conn.fetch(
            "SELECT from_status, status FROM task_events WHERE task_id = $1 AND kind = 'status' "
            "ORDER BY event_id",
            task_id,
        )
        results = await conn.fetchval("SELECT count(*) FROM task_results WHERE task_id = $1", task_id)
        inbox = await conn.fetchval("SELECT outcome FROM inbox WHERE message_id = $1", delivery.message_id)
    assert task is not None
    assert (task["status"], delivery.settled) == ("FAILED", ["reject requeue=False"]), task["error"]
    assert task["error"]["code"] == "RESULT_UNSTORABLE"
    assert MARKER not in task["error"]["message"]
    assert task["result"] is None
    assert task["dead_lettered"]
    assert results == 0
    assert inbox == "failed"
    assert [(e["from_status"], e["status"]) for e in events] == [
        (None, "PENDING"),
        ("PENDING", "IN_PROGRESS"),
        ("IN_PROGRESS", "FAILED"),
    ]
    return str(task["error"]["message"])


@pytest.mark.parametrize(
    "result",
    [
        {"skippedFiles": [{"path": f"{MARKER}\udcff.py", "reason": "a non-UTF-8 file name"}]},
        {"x": f"{MARKER}\x00"},
        {"x": float("nan"), "m": MARKER},
        {"n": 10**5000, "m": MARKER},
    ],
    ids=["lone surrogate", "NUL", "NaN", "integer past the digit limit"],
)
async def test_an_unstorable_result_fails_the_task_into_the_dlq(
    result: Any, db: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id, delivery = await run_job_returning(result, db, monkeypatch)
    await assert_failed_unstorable(db, task_id, delivery)


@pytest.mark.parametrize(
    ("result", "sqlstate"),
    [({"x": f"{MARKER}\x00"}, "22P05"), ({"path": f"{MARKER}\udcff.py"}, "22P02")],
    ids=["NUL", "lone surrogate"],
)
async def test_a_result_postgresql_refuses_fails_the_task_and_writes_nothing(
    result: Any, sqlstate: str, db: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second line of defence: with the worker's check out of the way, PostgreSQL itself
    refuses the result; that refusal is terminal for the task, never "database down"."""
    monkeypatch.setattr(processor_module, "result_problem", lambda _: None, raising=False)
    task_id, delivery = await run_job_returning(result, db, monkeypatch)
    message = await assert_failed_unstorable(db, task_id, delivery)
    assert f"SQLSTATE {sqlstate}" in message
