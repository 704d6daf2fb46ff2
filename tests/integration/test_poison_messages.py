"""Messages a worker cannot read, published straight to the job exchange while real jobs flow.

Each must end in `ast.jobs.dlq` with its reason (the `x-ast-reason` header) and one worker log
line naming its message id, and must never hold a prefetch slot: every job submitted through the
API still completes. (Before the fix, 100 KB of `[` made `json.loads` raise RecursionError, which
escaped the parser and left the message unacked for good: two of them stalled both workers.)
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest

from harness.client import RecordingTransport
from harness.history import History
from harness.observe.rabbitmq import Management, vhost_of
from harness.stack.base import StackEndpoints, StackProvider
from harness.stack.local import LocalStack
from harness.state import DLQ

pytestmark = pytest.mark.integration

JOBS_EXCHANGE = "ast.jobs.x"
ROUTING_KEYS = ("job.simulate", "job.initialize_repository", "job.initialize_impact_analysis")
NORMAL_JOB = {"type": "simulate", "payload": {"durationMs": 50, "steps": 2, "outcome": "success"}}
SETTLE_S = 45.0


@dataclass(frozen=True)
class Poison:
    name: str
    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    message_id: str = field(default_factory=lambda: f"poison-{uuid.uuid4()}")


def _job(**fields: Any) -> bytes:
    message = {"type": "simulate", "payload": {}, "traceId": "poison", "retryCount": 0}
    return json.dumps(message | fields).encode()


def poison_messages() -> list[Poison]:
    """Twenty-odd kinds of unreadable message; the deep ones raise RecursionError in `json.loads`."""
    overflowing = _job(taskId=str(uuid.uuid4())).replace(b'"retryCount": 0', b'"retryCount": 1e999')
    return [
        *(Poison("100 KB of [", b"[" * 100_000) for _ in range(6)),
        Poison("100 KB of { in an object", b'{"taskId": ' + b'{"a": ' * 20_000),
        Poison("invalid UTF-8", b"\xff\xfe\xfd"),
        Poison("invalid UTF-8 in a string", b'{"taskId": "\xff\xfe"}'),
        Poison("JSON array", b"[1, 2, 3]"),
        Poison("JSON string", b'"taskId"'),
        Poison("JSON number", b"42"),
        Poison("JSON null", b"null"),
        Poison("empty body", b""),
        Poison("no taskId", _job()),
        Poison("taskId not a UUID", _job(taskId="not-a-uuid")),
        Poison("taskId an object", _job(taskId={"$ne": None})),
        Poison("unknown type", _job(taskId=str(uuid.uuid4()), type="nope")),
        Poison("retryCount overflows int", overflowing),
        Poison("delivery count not a number", _job(taskId=str(uuid.uuid4())), {"x-delivery-count": "\u00b2"}),
        *(Poison("unknown taskId", _job(taskId=str(uuid.uuid4()))) for _ in range(3)),
    ]


@pytest.fixture
def api(clean_state: StackEndpoints, history: History, invariants: None) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {clean_state.api_token}"} if clean_state.api_token else {}
    transport = RecordingTransport(httpx.HTTPTransport(), history, process="api")
    with httpx.Client(
        base_url=clean_state.api_url, headers=headers, timeout=30, transport=transport
    ) as client:
        yield client


@pytest.fixture
def worker_logs(stack: StackProvider) -> list[Path]:
    if not isinstance(stack, LocalStack):
        pytest.skip("reads the workers' logs, which only the embedded stack keeps")
    return [service.process.log_path for service in stack.workers.values()]


async def publish(amqp_url: str, messages: list[Poison]) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(JOBS_EXCHANGE)
        for n, poison in enumerate(messages):
            message = aio_pika.Message(
                poison.body,
                headers=poison.headers,
                message_id=poison.message_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            await exchange.publish(message, routing_key=ROUTING_KEYS[n % len(ROUTING_KEYS)], mandatory=True)


async def dlq_reasons(endpoints: StackEndpoints, count: int) -> dict[str, str]:
    """message id -> `x-ast-reason` of the DLQ's messages, none consumed."""
    async with Management(endpoints.management_url, vhost=vhost_of(endpoints.amqp_url)) as management:
        peeked = await management.peek(DLQ, count)
    return {m.message_id: m.reason or "" for m in peeked if m.message_id}


def logged_poison(logs: list[Path]) -> dict[str, str]:
    """message id -> the worker's log line that sent it to the DLQ."""
    found: dict[str, str] = {}
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("messageId") and "DLQ" in str(entry.get("msg")):
                found[str(entry["messageId"])] = str(entry["msg"])
    return found


def wait_for_all(wanted: dict[str, str], read: Callable[[], dict[str, str]], what: str) -> dict[str, str]:
    """Polls `read` until it holds every key of `wanted`; fails naming the ones still missing."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        found = read()
        missing = [name for key, name in wanted.items() if key not in found]
        if not missing:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: missing after {SETTLE_S}s: {missing}")
        time.sleep(0.2)


def test_poison_messages_go_to_the_dlq_while_jobs_complete(
    api: httpx.Client, endpoints: StackEndpoints, worker_logs: list[Path]
) -> None:
    poisons = poison_messages()
    assert len(poisons) >= 20
    submitted = [api.post("/tasks", json=NORMAL_JOB).json()["taskId"] for _ in range(5)]
    asyncio.run(publish(endpoints.amqp_url, poisons))
    submitted += [api.post("/tasks", json=NORMAL_JOB).json()["taskId"] for _ in range(15)]

    def completed() -> dict[str, str]:
        tasks = [api.get(f"/tasks/{task_id}").json() for task_id in submitted]
        return {task["taskId"]: task["status"] for task in tasks if task["status"] == "COMPLETED"}

    wait_for_all({task_id: task_id for task_id in submitted}, completed, "jobs COMPLETED with poison queued")

    ids = {poison.message_id: poison.name for poison in poisons}
    reasons = wait_for_all(ids, lambda: asyncio.run(dlq_reasons(endpoints, 2 * len(poisons))), "in the DLQ")
    without_reason = [name for key, name in ids.items() if not reasons[key]]
    assert without_reason == [], f"dead-lettered without an x-ast-reason header: {without_reason}"
    wait_for_all(ids, lambda: logged_poison(worker_logs), "a worker log line per poison message")
