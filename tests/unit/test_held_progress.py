"""A job's report of 100% is held back and folded into its completion (which writes progress 100
in the same statement), saving a round trip per job; every other outcome writes it first, so the
timeline of a job that fails, retries or waits after reporting 100% is what it was before.

Driven through `MessageProcessor.process` with fake jobs and a fake lifecycle that records every
database write in order.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg
import pytest
from aio_pika.abc import AbstractIncomingMessage

from service.config import Settings
from service.errors import RetryableJobError, WaitForEvent
from service.worker import processor as processor_module
from service.worker.context import TaskContext
from service.worker.lifecycle import Claim, ClaimResult, Failure, TaskLifecycle
from service.worker.processor import MessageProcessor
from tests.fakes import FakeMessage

pytestmark = pytest.mark.unit

TASK_ID = uuid.UUID("0b8f2a57-1d7e-4c1e-9f7a-3f7f3c2b9d11")


@dataclass
class RecordingLifecycle:
    """Claims the task and records each write as (operation, details)."""

    writes: list[tuple[str, Any]] = field(default_factory=list)

    async def claim(self, *_: Any) -> ClaimResult:
        task = {"task_id": TASK_ID, "type": "simulate", "payload": {}, "attempt": 1,
                "retry_count": 0, "resume_data": None}
        return ClaimResult(Claim.RUN, cast(asyncpg.Record, task))

    async def heartbeat(self, _: uuid.UUID) -> bool:
        return True

    async def report(self, _: uuid.UUID, progress: int | None, state: str | None) -> bool:
        self.writes.append(("progress", (progress, state)))
        return True

    async def complete(self, _: uuid.UUID, result: dict[str, Any], __: str | None) -> bool:
        self.writes.append(("complete", result))
        return True

    async def retry(self, _: uuid.UUID, failure: Failure, *__: Any) -> bool:
        self.writes.append(("retry", failure.code))
        return True

    async def wait_for_event(self, _: uuid.UUID, event_type: str, key: str, __: str | None) -> bool:
        self.writes.append(("wait", (event_type, key)))
        return True


async def run(job: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[list[tuple[str, Any]], FakeMessage]:
    async def dead_letter(*_: Any) -> None:
        raise AssertionError("not poison")

    monkeypatch.setattr(processor_module, "job_for", lambda *_: job)
    lifecycle = RecordingLifecycle()
    body = json.dumps({"taskId": str(TASK_ID), "type": "simulate", "payload": {}}).encode()
    message = FakeMessage(body)
    worker = MessageProcessor(cast(TaskLifecycle, lifecycle), Settings(), dead_letter)
    await asyncio.wait_for(worker.process(cast(AbstractIncomingMessage, message)), 30)
    return lifecycle.writes, message


async def test_a_completed_jobs_last_report_is_folded_into_its_completion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def job(ctx: TaskContext) -> dict[str, Any]:
        await ctx.update(progress=50, state="half")
        await ctx.update(progress=100, state="all")
        return {"ok": True}

    writes, message = await run(job, monkeypatch)
    assert writes == [("progress", (50, "half")), ("complete", {"ok": True})]
    assert message.settled == ["ack"]


async def test_a_report_after_the_held_one_writes_both_as_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Progress never goes back: a later report without progress keeps the held 100."""

    async def job(ctx: TaskContext) -> dict[str, Any]:
        await ctx.update(progress=100, state="parsed")
        await ctx.update(state="storing")
        await ctx.update(progress=20)
        return {"ok": True}

    writes, _ = await run(job, monkeypatch)
    assert writes == [("complete", {"ok": True})]


@pytest.mark.parametrize(
    ("raised", "outcome"),
    [(RetryableJobError("flaky", code="FLAKY"), ("retry", "FLAKY")),
     (WaitForEvent("approval", "k1"), ("wait", ("approval", "k1")))],
    ids=["retry", "wait for an event"],
)
async def test_any_other_outcome_writes_the_held_report_first(
    raised: BaseException, outcome: tuple[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def job(ctx: TaskContext) -> dict[str, Any]:
        await ctx.update(progress=100, state="step 1/1")
        raise raised

    writes, message = await run(job, monkeypatch)
    assert writes == [("progress", (100, "step 1/1")), outcome]
    assert message.settled == ["ack"]
