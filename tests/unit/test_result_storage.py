"""A job's result that cannot be stored fails its task terminally (RESULT_UNSTORABLE, rejected to
the DLQ); only an unavailable database hands the message back.

Before the fix the worker wrote any result, and `DATABASE_ERRORS` held every `PostgresError`: a
value PostgreSQL refuses (SQLSTATE 22 or 54) counted as "database down", so the message went back
to the queue and the job ran again, forever. Driven here through `MessageProcessor.process` with a
fake job and a fake lifecycle; `tests/integration/test_result_storage.py` does it on PostgreSQL.
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
from service.driver_errors import DATABASE_ERRORS
from service.payloads import text_problem
from service.worker import processor as processor_module
from service.worker.context import TaskContext
from service.worker.lifecycle import Claim, ClaimResult, Failure, TaskLifecycle
from service.worker.processor import MessageProcessor
from tests.fakes import FakeMessage

pytestmark = pytest.mark.unit

TASK_ID = uuid.UUID("0b5e3cf4-52a4-4c0b-9f0c-2f7f1c0a9d11")
MARKER = "s3cret-result-text"


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": MARKER}
    for _ in range(depth):
        value = {"a": value}
    return value


UNSTORABLE_RESULTS: dict[str, Any] = {
    "NaN": {"x": float("nan"), "m": MARKER},
    "Infinity": {"x": float("-inf"), "m": MARKER},
    "NUL in a value": {"x": f"{MARKER}\x00"},
    "NUL in a key": {f"{MARKER}\x00": 1},
    "a lone surrogate (a non-UTF-8 file name)": {"skippedFiles": [{"path": f"{MARKER}\udcff.py"}]},
    "nested past what a reader can serialize": _nested(200),
    "nested past the encoder's recursion limit": _nested(5000),
    "not JSON (a set)": {"x": {MARKER}},
    "an integer past Python's digit limit": {"n": 10**5000, "m": MARKER},
    "not an object": [MARKER],
    "None": None,
}

REFUSALS: dict[str, Exception] = {
    "asyncpg cannot encode it (22000)": asyncpg.exceptions.DataError(
        f"invalid input for query argument $2: {{'x': '{MARKER}'}}"
    ),
    "NUL in jsonb (22P05)": asyncpg.exceptions.UntranslatableCharacterError(
        f"unsupported Unicode escape sequence {MARKER}"
    ),
    "invalid json (22P02)": asyncpg.exceptions.InvalidTextRepresentationError(f"Token {MARKER}"),
    "jsonb too large (54000)": asyncpg.exceptions.ProgramLimitExceededError(
        f"total size of jsonb object elements exceeds the maximum {MARKER}"
    ),
}

OUTAGES: dict[str, BaseException] = {
    "CannotConnectNow": asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    "AdminShutdown": asyncpg.exceptions.AdminShutdownError("terminating connection"),
    "TooManyConnections": asyncpg.exceptions.TooManyConnectionsError("too many clients already"),
    "connection lost": asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
    "connection refused": ConnectionRefusedError(111, "Connect call failed"),
    "timeout": TimeoutError(),
    "serialization failure": asyncpg.exceptions.SerializationError("could not serialize access"),
}




def job_message() -> FakeMessage:
    return FakeMessage(json.dumps({"taskId": str(TASK_ID), "type": "simulate", "payload": {}}).encode())


@dataclass
class FakeLifecycle:
    """Claims the task for this worker; `complete` raises each of `complete_errors` in turn."""

    complete_errors: list[BaseException] = field(default_factory=list)
    completed: list[Any] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    complete_calls: int = 0

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

    async def complete(self, _: uuid.UUID, result: Any, __: str | None) -> bool:
        self.complete_calls += 1
        if self.complete_errors:
            raise self.complete_errors.pop(0)
        self.completed.append(result)
        return True

    async def fail(self, _: uuid.UUID, failure: Failure, __: str | None) -> bool:
        self.failures.append(failure)
        return True


async def run_job_returning(
    result: Any, lifecycle: FakeLifecycle, monkeypatch: pytest.MonkeyPatch
) -> FakeMessage:
    async def job(_: TaskContext) -> Any:
        return result

    async def dead_letter(*_: Any) -> None:
        raise AssertionError("a job message is never poison here")

    monkeypatch.setattr(processor_module, "job_for", lambda *_: job)
    message = job_message()
    worker = MessageProcessor(cast(TaskLifecycle, lifecycle), Settings(), dead_letter)
    await asyncio.wait_for(worker.process(cast(AbstractIncomingMessage, message)), 60)
    return message


def assert_failed_unstorable(lifecycle: FakeLifecycle, message: FakeMessage) -> None:
    assert message.settled == ["reject requeue=False"]
    assert lifecycle.completed == []
    assert len(lifecycle.failures) == 1
    failure = lifecycle.failures[0]
    assert failure.code == "RESULT_UNSTORABLE"
    assert failure.dead_letter
    assert "result" in failure.message
    assert MARKER not in failure.message  # the result's content stays out of the task's error
    assert text_problem(failure.message) is None


@pytest.mark.parametrize("result", UNSTORABLE_RESULTS.values(), ids=UNSTORABLE_RESULTS.keys())
async def test_an_unstorable_result_fails_the_task_terminally_without_writing_it(
    result: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    lifecycle = FakeLifecycle()
    message = await run_job_returning(result, lifecycle, monkeypatch)
    assert_failed_unstorable(lifecycle, message)
    assert lifecycle.complete_calls == 0


@pytest.mark.parametrize("refusal", REFUSALS.values(), ids=REFUSALS.keys())
async def test_a_result_postgresql_refuses_fails_the_task_at_once(
    refusal: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    lifecycle = FakeLifecycle(complete_errors=[refusal])
    message = await run_job_returning({"ok": MARKER}, lifecycle, monkeypatch)
    assert_failed_unstorable(lifecycle, message)
    assert lifecycle.complete_calls == 1  # refused once is refused always: no retry
    assert f"SQLSTATE {refusal.sqlstate}" in lifecycle.failures[0].message  # type: ignore[attr-defined]


@pytest.mark.parametrize("outage", OUTAGES.values(), ids=OUTAGES.keys())
async def test_an_unavailable_database_is_ridden_out_and_the_result_stored(
    outage: BaseException, monkeypatch: pytest.MonkeyPatch
) -> None:
    lifecycle = FakeLifecycle(complete_errors=[outage])
    message = await run_job_returning({"ok": True}, lifecycle, monkeypatch)
    assert message.settled == ["ack"]
    assert lifecycle.completed == [{"ok": True}]
    assert lifecycle.complete_calls == 2
    assert lifecycle.failures == []


@pytest.mark.parametrize("outage", OUTAGES.values(), ids=OUTAGES.keys())
def test_unavailability_is_a_database_error(outage: BaseException) -> None:
    assert isinstance(outage, DATABASE_ERRORS)


@pytest.mark.parametrize("refusal", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_refused_value_is_not_a_database_error(refusal: Exception) -> None:
    assert not isinstance(refusal, DATABASE_ERRORS)


@pytest.mark.parametrize("text", ["a\x00b", "file \udcff.py", "\ud83d\ude00", "\x00\udc80"])
def test_a_failure_message_is_always_storable(text: str) -> None:
    """A job's error quoting a NUL or a non-UTF-8 file name would make the failure itself refused."""
    failure = Failure(f"CODE{text}", f"failed on {text}", dead_letter=False)
    assert text_problem(failure.message) is None
    assert text_problem(failure.code) is None
    assert failure.message.startswith("failed on ")
