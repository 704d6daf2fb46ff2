"""`JobMessage.parse` turns every message it cannot read into a PoisonMessage, and raises nothing
else; `MessageProcessor.process` settles every message, whatever fails on the way."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, cast

import pytest
from aio_pika.abc import AbstractIncomingMessage

from service.config import Settings
from service.models import TaskType
from service.worker.lifecycle import TaskLifecycle
from service.worker.processor import JobMessage, MessageProcessor, PoisonMessage
from tests.fakes import FakeMessage

pytestmark = pytest.mark.unit

TASK_ID = "6e00fbba-7c54-44d6-8aa0-77ce4267fd19"




def parse(body: bytes, **fields: Any) -> JobMessage:
    return JobMessage.parse(cast(AbstractIncomingMessage, FakeMessage(body, **fields)))


def job(**fields: Any) -> bytes:
    message = {"taskId": TASK_ID, "type": "simulate", "payload": {}, "retryCount": 0}
    return json.dumps(message | fields).encode()


UNREADABLE = {
    "deep nesting (RecursionError)": b"[" * 100_000,
    "deep nesting in an object": b'{"taskId": ' + b'{"a": ' * 20_000,
    "invalid UTF-8": b"\xff\xfe\xfd",
    "empty": b"",
    "a list": b"[1, 2]",
    "a string": b'"taskId"',
    "null": b"null",
    "no taskId": json.dumps({"type": "simulate"}).encode(),
    "taskId an object": job(taskId={"a": 1}),
    "taskId not a UUID": job(taskId="nope"),
    "no type": json.dumps({"taskId": TASK_ID}).encode(),
    "unknown type": job(type="nope"),
    "type a list": job(type=["simulate"]),
}


@pytest.mark.parametrize("body", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_an_unreadable_message_is_poison_with_a_short_reason(body: bytes) -> None:
    with pytest.raises(PoisonMessage) as raised:
        parse(body)
    assert 0 < len(raised.value.reason) <= 300


def test_poison_that_names_a_task_keeps_its_id() -> None:
    with pytest.raises(PoisonMessage) as raised:
        parse(job(type="nope"))
    assert raised.value.task_id == uuid.UUID(TASK_ID)
    with pytest.raises(PoisonMessage, match="NUL"):
        parse(job(), message_id="m\x00")


def test_a_job_message_is_read_and_a_bad_delivery_count_header_counts_zero() -> None:
    parsed = parse(job(retryCount=1e999), headers={"x-delivery-count": 2})
    assert parsed == JobMessage(uuid.UUID(TASK_ID), TaskType.SIMULATE, "m-1", 2)
    for header in ("\u00b2", "9" * 5000, True, -3, 1.5, None):
        assert parse(job(), headers={"x-delivery-count": header}).delivery_count == 0


def test_a_message_delivered_before_or_with_lost_runs_is_a_suspect() -> None:
    assert not parse(job()).is_suspect
    assert parse(job(), headers={"x-delivery-count": 1}).is_suspect
    republished = parse(job(), headers={"x-ast-lost-runs": 2})
    assert (republished.lost_runs, republished.is_suspect) == (2, True)
    assert not parse(job(), headers={"x-ast-lost-runs": "many"}).is_suspect


class ClaimThat:
    """A TaskLifecycle whose claim raises `error`, or never answers when there is none."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error

    async def claim(self, *_: Any) -> Any:
        if self.error is not None:
            raise self.error
        await asyncio.Event().wait()


def processor(lifecycle: ClaimThat, dead_letters: list[str], broken_dlx: bool = False) -> MessageProcessor:
    async def dead_letter(message: AbstractIncomingMessage, reason: str) -> None:
        if broken_dlx:
            raise AssertionError("no DLX channel")
        dead_letters.append(reason)
        await message.ack()

    return MessageProcessor(cast(TaskLifecycle, lifecycle), Settings(), dead_letter)


async def test_poison_goes_to_the_dead_letter_hook_with_its_reason() -> None:
    message, reasons = FakeMessage(b"[" * 100_000), list[str]()
    await processor(ClaimThat(), reasons).process(cast(AbstractIncomingMessage, message))
    assert message.settled == ["ack"]
    assert len(reasons) == 1
    assert "RecursionError" in reasons[0]


async def test_a_failure_in_the_dead_letter_hook_still_rejects_the_message() -> None:
    message = FakeMessage(b"null")
    await processor(ClaimThat(), [], broken_dlx=True).process(cast(AbstractIncomingMessage, message))
    assert message.settled == ["reject requeue=False"]


async def test_an_unexpected_claim_error_returns_the_message() -> None:
    message = FakeMessage(job())
    await processor(ClaimThat(RuntimeError("bug")), []).process(cast(AbstractIncomingMessage, message))
    assert message.settled == ["nack requeue=True"]


async def test_a_cancelled_job_message_is_handed_back() -> None:
    message = FakeMessage(job())
    stuck = processor(ClaimThat(), [])
    running = asyncio.ensure_future(stuck.process(cast(AbstractIncomingMessage, message)))
    await asyncio.sleep(0.05)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert message.settled == ["nack requeue=True"]
