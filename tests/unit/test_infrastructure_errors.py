"""A job interrupted by an outage of PostgreSQL or RabbitMQ is handed back (PENDING again, a fresh
job message), not retried: the outage is no fault of the job, so it must not spend one of the
task's `MAX_RETRIES`. A job's own failure, and a value PostgreSQL refuses, still count as retries.

Driven through `MessageProcessor.process` with a fake job and a fake lifecycle;
`scenarios/e2e/test_server_restarts.py` restarts PostgreSQL under a running job.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import aiormq
import asyncpg
import pytest
from aio_pika.abc import AbstractIncomingMessage

from service.config import Settings
from service.driver_errors import DATABASE_ERRORS, REFUSED_VALUE_ERRORS
from service.worker import processor as processor_module
from service.worker.context import TaskContext
from service.worker.lifecycle import Claim, ClaimResult, Failure, TaskLifecycle
from service.worker.processor import MessageProcessor
from tests.fakes import FakeMessage

pytestmark = pytest.mark.unit

TASK_ID = uuid.UUID("5a0c1f1e-7a53-4b55-9a34-0c8d2e1d3b77")

OUTAGES: dict[str, BaseException] = {
    "the server is starting up": asyncpg.exceptions.CannotConnectNowError("starting up"),
    "the server shut down": asyncpg.exceptions.AdminShutdownError("terminating connection"),
    "the connection was lost": asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
    "the broker connection closed": aiormq.exceptions.ConnectionClosed(320, "CONNECTION_FORCED"),
}

JOB_FAILURES: dict[str, BaseException] = {
    "a bug in the job": RuntimeError("bug"),
    "the job's own disk is full": OSError(28, "No space left on device"),
    "a value PostgreSQL refuses": asyncpg.exceptions.DataError("invalid input"),
}




def job_message() -> FakeMessage:
    return FakeMessage(json.dumps({"taskId": str(TASK_ID), "type": "simulate", "payload": {}}).encode())


@dataclass
class FakeLifecycle:
    """Claims the task; `report` raises `report_error`; `hand_back` fails `hand_back_failures` times."""

    report_error: BaseException | None = None
    hand_back_failures: int = 0
    handed_back: list[str] = field(default_factory=list)
    retried: list[Failure] = field(default_factory=list)

    async def claim(self, *_: Any) -> ClaimResult:
        task = {
            "task_id": TASK_ID,
            "type": "simulate",
            "payload": {},
            "attempt": 1,
            "retry_count": 0,
            "resume_data": None,
        }
        return ClaimResult(Claim.RUN, cast(asyncpg.Record, task))

    async def heartbeat(self, _: uuid.UUID) -> bool:
        return True

    async def report(self, *_: Any) -> bool:
        if self.report_error is not None:
            raise self.report_error
        return True

    async def retry(self, _: uuid.UUID, failure: Failure, *__: Any) -> bool:
        self.retried.append(failure)
        return True

    async def hand_back(self, _: uuid.UUID, __: str | None, reason: str = "") -> bool:
        if self.hand_back_failures:
            self.hand_back_failures -= 1
            raise ConnectionRefusedError(111, "Connect call failed")
        self.handed_back.append(reason)
        return True


async def run_job(job: Any, lifecycle: FakeLifecycle, monkeypatch: pytest.MonkeyPatch) -> FakeMessage:
    async def dead_letter(*_: Any) -> None:
        raise AssertionError("a job message is never poison here")

    monkeypatch.setattr(processor_module, "job_for", lambda *_: job)
    message = job_message()
    worker = MessageProcessor(cast(TaskLifecycle, lifecycle), Settings(), dead_letter)
    await asyncio.wait_for(worker.process(cast(AbstractIncomingMessage, message)), 60)
    return message


def raising(error: BaseException) -> Any:
    async def job(_: TaskContext) -> Any:
        raise error

    return job


@pytest.mark.parametrize("outage", OUTAGES.values(), ids=OUTAGES.keys())
async def test_an_outage_hands_the_job_back_without_spending_a_retry(
    outage: BaseException, monkeypatch: pytest.MonkeyPatch
) -> None:
    lifecycle = FakeLifecycle()
    message = await run_job(raising(outage), lifecycle, monkeypatch)
    assert lifecycle.retried == []
    assert len(lifecycle.handed_back) == 1
    assert type(outage).__name__ in lifecycle.handed_back[0]
    assert message.settled == ["ack"]


def test_the_database_outages_are_database_errors() -> None:
    for outage in list(OUTAGES.values())[:3]:
        assert isinstance(outage, DATABASE_ERRORS)


async def test_a_progress_report_the_database_cannot_take_hands_the_job_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The job's own `ctx.update` meets the outage (a refused connection: a plain OSError)."""

    async def reporting(ctx: TaskContext) -> Any:
        await ctx.update(progress=50)
        return {"ok": True}

    lifecycle = FakeLifecycle(report_error=ConnectionRefusedError(111, "Connect call failed"))
    message = await run_job(reporting, lifecycle, monkeypatch)
    assert lifecycle.retried == []
    assert len(lifecycle.handed_back) == 1
    assert message.settled == ["ack"]


async def test_the_hand_back_rides_out_the_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    lifecycle = FakeLifecycle(hand_back_failures=2)
    message = await run_job(raising(OUTAGES["the server shut down"]), lifecycle, monkeypatch)
    assert len(lifecycle.handed_back) == 1
    assert lifecycle.retried == []
    assert message.settled == ["ack"]


@pytest.mark.parametrize("failure", JOB_FAILURES.values(), ids=JOB_FAILURES.keys())
async def test_a_failure_of_the_job_itself_still_counts_as_a_retry(
    failure: BaseException, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain OSError raised by the job (its own disk or network) is no outage of ours: handing
    it back would run it again forever, since hand-backs are not bounded by MAX_RETRIES."""
    lifecycle = FakeLifecycle()
    message = await run_job(raising(failure), lifecycle, monkeypatch)
    assert lifecycle.handed_back == []
    assert [f.code for f in lifecycle.retried] == ["INTERNAL_ERROR"]
    assert message.settled == ["ack"]


def test_a_refused_value_is_no_outage() -> None:
    assert isinstance(JOB_FAILURES["a value PostgreSQL refuses"], REFUSED_VALUE_ERRORS)
