"""`JobMessage.parse` turns every message it cannot read into a PoisonMessage, and raises nothing else."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from aio_pika.abc import AbstractIncomingMessage

from service.models import TaskType
from service.worker.processor import JobMessage, PoisonMessage

pytestmark = pytest.mark.unit

TASK_ID = "6e00fbba-7c54-44d6-8aa0-77ce4267fd19"


@dataclass
class FakeMessage:
    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    message_id: str | None = "m-1"


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
