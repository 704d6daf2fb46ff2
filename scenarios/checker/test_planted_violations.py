"""The checker catches what it claims: each invariant's violation is planted in a real PostgreSQL and
RabbitMQ by direct SQL/AMQP writes, and the checker must name exactly that invariant and task.

Each test starts from a clean state with one healthy COMPLETED task (so "held" is meaningful), adds
one fault, snapshots, and checks. The service may be running: planted rows send no NOTIFY and no
job message, so workers never see them, and the planted outbox row is unroutable, so the relay
can never send it. Invariant 12 is about what clients saw, so its faults are planted between real
reads through the API: the recording client saw the planted state, which is then put back.

Planted tasks never set the service's own `dead_lettered` or `replayed_by`: the checker must judge
dead letters from the error code and `replay_of` alone.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aio_pika
import asyncpg
import pytest

from harness.checker import Expectations, Verdict, check_all
from harness.client import ServiceClient
from harness.history import History, Operation
from harness.observe.rabbitmq import vhost_of
from harness.observe.settle import take_snapshot, wait_until_settled
from harness.stack.base import StackEndpoints
from harness.state import DLQ, Snapshot

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

_TASK_SQL = """INSERT INTO tasks (task_id, type, status, progress, retry_count, max_retries, payload,
    input_hash, idempotency_key, trace_id, attempt, version, result, error, replay_of)
    VALUES ($1, 'simulate', $2, $3, $4, 3, '{"durationMs": 1}'::jsonb, 'h', $5, 't', $6, $7, $8, $9, $10)"""
_EVENT_SQL = """INSERT INTO task_events (task_id, kind, from_status, status, progress, attempt, version)
    VALUES ($1, $2, $3, $4, $5, $6, $7)"""


@dataclass
class Plant:
    """Writes tasks with consistent timelines, and the faults, straight into the stores."""

    conn: asyncpg.Connection[Any]
    endpoints: StackEndpoints

    async def task(
        self,
        path: list[str],
        *,
        progress: int | None = None,
        retry_count: int = 0,
        key: str | None = None,
        error_code: str | None = None,
        replay_of: str | None = None,
        result: bool | None = None,
    ) -> str:
        """A task that walked `path` (statuses), one status event per step; COMPLETED gets a result row;
        `error_code` becomes its `error` ({code, message})."""
        task_id = str(uuid.uuid4())
        final = path[-1]
        final_progress = progress if progress is not None else (100 if final == "COMPLETED" else 0)
        attempt = path.count("IN_PROGRESS")
        has_result = final == "COMPLETED" if result is None else result
        await self.conn.execute(
            _TASK_SQL,
            uuid.UUID(task_id),
            final,
            final_progress,
            retry_count,
            key,
            attempt,
            len(path),
            json.dumps({"ok": True}) if has_result else None,
            json.dumps({"code": error_code, "message": "planted"}) if error_code else None,
            uuid.UUID(replay_of) if replay_of else None,
        )
        previous, attempt_no = None, 0
        for version, status in enumerate(path, start=1):
            attempt_no += status == "IN_PROGRESS"
            step_progress = final_progress if version == len(path) else 0
            await self.event(task_id, "status", previous, status, step_progress, attempt_no, version)
            previous = status
        if has_result:
            await self.result(task_id)
        return task_id

    async def event(
        self,
        task_id: str,
        kind: str,
        from_status: str | None,
        status: str,
        progress: int,
        attempt: int,
        version: int,
    ) -> None:
        await self.conn.execute(
            _EVENT_SQL, uuid.UUID(task_id), kind, from_status, status, progress, attempt, version
        )

    async def result(self, task_id: str) -> None:
        await self.conn.execute(
            "INSERT INTO task_results (task_id, result, worker_id) VALUES ($1, '{}'::jsonb, 'planted')",
            uuid.UUID(task_id),
        )

    async def dlq_message(self, task_id: str) -> None:
        body = {"taskId": task_id, "type": "simulate", "payload": {}, "traceId": "t", "retryCount": 3}
        await self.dlq_raw(json.dumps(body).encode())

    async def dlq_raw(self, body: bytes) -> None:
        connection = await aio_pika.connect(self.endpoints.amqp_url)
        async with connection:
            channel = await connection.channel()
            message = aio_pika.Message(body, message_id=str(uuid.uuid4()))
            await channel.default_exchange.publish(message, routing_key=DLQ)

    async def set_task(self, task_id: str, column: str, value: str) -> None:
        sql = f"UPDATE tasks SET {column} = $2 WHERE task_id = $1"
        await self.conn.execute(sql, uuid.UUID(task_id), value)

    async def verdict(
        self, history: History | None = None, expect: Expectations | None = None, *, settle: bool = False
    ) -> Verdict:
        """The checker's verdict on the stores as they are (or, with `settle`, once nothing moves)."""
        snapshot = await self._snapshot(settle)
        assert snapshot.postgres_error is None
        assert snapshot.rabbitmq_error is None
        return check_all(history or History(), snapshot, expect or Expectations())

    async def _snapshot(self, settle: bool) -> Snapshot:
        e = self.endpoints
        if not settle:
            return await take_snapshot(e.postgres_dsn, e.management_url, amqp_url=e.amqp_url)
        settled = await wait_until_settled(
            e.postgres_dsn, e.management_url, timeout_s=30, vhost=vhost_of(e.amqp_url), amqp_url=e.amqp_url
        )
        assert settled.settled, settled.reasons
        return settled.snapshot

    def client(self, history: History) -> ServiceClient:
        e = self.endpoints
        return ServiceClient(e.api_url, history, token=e.api_token, process="planted")


DONE = ["PENDING", "IN_PROGRESS", "COMPLETED"]


@pytest.fixture
async def plant(clean_state: StackEndpoints) -> AsyncIterator[Plant]:
    conn = await asyncpg.connect(clean_state.postgres_dsn)
    try:
        planter = Plant(conn, clean_state)
        await planter.task(DONE)
        yield planter
    finally:
        await conn.close()


def assert_only(verdict: Verdict, number: int, task_id: str | None) -> None:
    broken = {r.number: r.task_ids for r in verdict.broken}
    assert set(broken) == {number}, [(r.number, r.violations) for r in verdict.broken]
    if task_id is not None:
        assert task_id in broken[number]


def submit_ok(task_id: str, key: str | None = None, index: int = 1) -> Operation:
    return Operation(
        index=index,
        process="planted",
        type="ok",
        f="submit",
        method="POST",
        path="/tasks",
        idempotency_key=key,
        invoke_index=index - 1,
        status_code=202,
        task_id=task_id,
    )


async def test_healthy_baseline_holds(plant: Plant) -> None:
    verdict = await plant.verdict()
    assert verdict.valid == "held", [
        (r.number, r.violations, r.note) for r in verdict.results if r.status != "held"
    ]


async def test_1_a_202_task_deleted_from_the_tasks_table(plant: Plant) -> None:
    task_id = await plant.task(DONE)
    await plant.conn.execute("DELETE FROM tasks WHERE task_id = $1", uuid.UUID(task_id))
    assert_only(await plant.verdict(History.from_ops([submit_ok(task_id)])), 1, task_id)


async def test_1_a_task_stuck_in_progress(plant: Plant) -> None:
    task_id = await plant.task(["PENDING", "IN_PROGRESS"])
    assert_only(await plant.verdict(), 1, task_id)


async def test_2_a_second_result_row(plant: Plant) -> None:
    task_id = await plant.task(DONE)
    await plant.result(task_id)
    assert_only(await plant.verdict(), 2, task_id)


async def test_3_an_event_after_a_terminal_one(plant: Plant) -> None:
    task_id = await plant.task(DONE)
    await plant.event(task_id, "progress", "COMPLETED", "COMPLETED", 100, 1, 4)
    await plant.conn.execute("UPDATE tasks SET version = 4 WHERE task_id = $1", uuid.UUID(task_id))
    assert_only(await plant.verdict(), 3, task_id)


async def test_4_an_illegal_move(plant: Plant) -> None:
    task_id = await plant.task(["PENDING", "WAITING_FOR_EVENT", "CANCELLED"])
    assert_only(await plant.verdict(), 4, task_id)


async def test_5_version_going_backwards(plant: Plant) -> None:
    task_id = await plant.task(["PENDING", "IN_PROGRESS"], progress=10)
    await plant.event(task_id, "progress", "IN_PROGRESS", "IN_PROGRESS", 20, 1, 1)
    await plant.event(task_id, "status", "IN_PROGRESS", "COMPLETED", 100, 1, 4)
    await plant.conn.execute(
        "UPDATE tasks SET status = 'COMPLETED', progress = 100, version = 4 WHERE task_id = $1",
        uuid.UUID(task_id),
    )
    await plant.result(task_id)
    assert_only(await plant.verdict(), 5, task_id)


async def test_6_progress_going_back_within_an_attempt(plant: Plant) -> None:
    task_id = await plant.task(["PENDING", "IN_PROGRESS"])
    await plant.event(task_id, "progress", "IN_PROGRESS", "IN_PROGRESS", 70, 1, 3)
    await plant.event(task_id, "progress", "IN_PROGRESS", "IN_PROGRESS", 30, 1, 4)
    await plant.event(task_id, "status", "IN_PROGRESS", "COMPLETED", 100, 1, 5)
    await plant.conn.execute(
        "UPDATE tasks SET status = 'COMPLETED', progress = 100, version = 5 WHERE task_id = $1",
        uuid.UUID(task_id),
    )
    await plant.result(task_id)
    assert_only(await plant.verdict(), 6, task_id)


async def test_7_retry_count_above_max_retries(plant: Plant) -> None:
    path = ["PENDING", "IN_PROGRESS", "RETRYING", "IN_PROGRESS", "COMPLETED"]
    task_id = await plant.task(path, retry_count=4)
    assert_only(await plant.verdict(), 7, task_id)


FAILED = ["PENDING", "IN_PROGRESS", "FAILED"]


@pytest.mark.parametrize("code", ["RETRIES_EXHAUSTED", "DELIVERY_LIMIT"])
async def test_8_a_task_out_of_retries_or_deliveries_missing_from_the_dlq(plant: Plant, code: str) -> None:
    task_id = await plant.task(FAILED, error_code=code)
    verdict = await plant.verdict()
    assert_only(verdict, 8, task_id)
    assert verdict.result(8).violations[0].evidence["task"]["error"]["code"] == code


async def test_8_a_dlq_message_of_a_completed_task(plant: Plant) -> None:
    task_id = await plant.task(DONE)
    await plant.dlq_message(task_id)
    verdict = await plant.verdict()
    assert_only(verdict, 8, task_id)
    assert verdict.result(8).violations[0].evidence["message"]["body"]["taskId"] == task_id
    again = await plant.verdict()
    assert again.result(8).task_ids == {task_id}, "reading the DLQ must not consume it"


async def test_8_holds_for_a_task_out_of_retries_in_the_dlq(plant: Plant) -> None:
    task_id = await plant.task(FAILED, error_code="RETRIES_EXHAUSTED")
    await plant.dlq_message(task_id)
    assert (await plant.verdict()).valid == "held"


async def test_8_holds_for_a_task_out_of_retries_that_was_replayed(plant: Plant) -> None:
    """Replayed is read off the replay's `replay_of`; the old task's `replayed_by` stays empty."""
    failed = await plant.task(FAILED, error_code="DELIVERY_LIMIT")
    await plant.task(DONE, replay_of=failed)
    verdict = await plant.verdict()
    assert verdict.valid == "held", [(r.number, r.violations) for r in verdict.broken]
    assert verdict.counts.replayed == 1


async def test_8_poison_in_the_dlq_is_counted_and_listed_not_broken(plant: Plant) -> None:
    stranger = str(uuid.uuid4())
    await plant.dlq_raw(b"not a job message")
    await plant.dlq_message(stranger)
    verdict = await plant.verdict()
    assert verdict.valid == "held", [(r.number, r.violations) for r in verdict.broken]
    assert verdict.counts.poison == 2
    assert verdict.result(8).note.startswith("2 DLQ message(s) name no known task")
    assert stranger in verdict.result(8).note


async def test_9_an_undrained_outbox_row(plant: Plant) -> None:
    task_id = await plant.task(DONE)
    await plant.conn.execute(
        """INSERT INTO outbox (message_id, exchange, routing_key, body, task_id)
           VALUES ($1, 'ast.jobs.x', 'job.planted.nowhere', '{}'::jsonb, $2)""",
        uuid.uuid4(),
        uuid.UUID(task_id),
    )
    assert_only(await plant.verdict(), 9, task_id)


async def test_10_two_task_ids_for_one_key(plant: Plant) -> None:
    first = await plant.task(DONE, key="planted-key")
    second = await plant.task(DONE)
    history = History.from_ops([submit_ok(first, "planted-key", 1), submit_ok(second, "planted-key", 3)])
    verdict = await plant.verdict(history)
    assert_only(verdict, 10, first)
    assert verdict.result(10).task_ids == {first, second}


async def test_11_a_result_on_a_cancelled_task(plant: Plant) -> None:
    task_id = await plant.task(["PENDING", "IN_PROGRESS", "CANCELLED"], result=True)
    assert_only(await plant.verdict(), 11, task_id)


async def test_12_a_client_saw_a_completed_task_later_in_progress(plant: Plant) -> None:
    """The stores are healthy again when checked: only what the client saw tells."""
    task_id = await plant.task(DONE)
    history = History()
    with plant.client(history) as client:
        assert client.get(task_id).op.task_status == "COMPLETED"
        await plant.set_task(task_id, "status", "IN_PROGRESS")
        assert client.get(task_id).op.task_status == "IN_PROGRESS"
        await plant.set_task(task_id, "status", "COMPLETED")
    verdict = await plant.verdict(history)
    assert_only(verdict, 12, task_id)
    assert verdict.result(12).violations[0].message == "a client saw terminal COMPLETED, later IN_PROGRESS"


async def test_12_a_completed_task_a_client_saw_rewritten_as_failed(plant: Plant) -> None:
    """Rows and events agree with each other after the rewrite; only the client's read disagrees."""
    task_id = await plant.task(DONE)
    history = History()
    with plant.client(history) as client:
        assert client.get(task_id).op.task_status == "COMPLETED"
    key = uuid.UUID(task_id)
    await plant.conn.execute(
        "UPDATE task_events SET status = 'FAILED' WHERE task_id = $1 AND status = 'COMPLETED'", key
    )
    await plant.conn.execute("DELETE FROM task_results WHERE task_id = $1", key)
    await plant.conn.execute("UPDATE tasks SET status = 'FAILED', result = NULL WHERE task_id = $1", key)
    verdict = await plant.verdict(history)
    assert_only(verdict, 12, task_id)
    assert verdict.result(12).violations[0].evidence["final"]["status"] == "FAILED"


async def test_12_a_client_read_another_type_than_it_submitted(plant: Plant) -> None:
    """A real submit (simulate) run to completion; a read while the stored type was another."""
    history = History()
    with plant.client(history) as client:
        task_id = client.submit("simulate", {"durationMs": 1, "steps": 1, "outcome": "success"}).task_id
        assert task_id is not None
        await _wait_completed(client, task_id)
        await plant.set_task(task_id, "type", "initialize_repository")
        assert client.get(task_id).body["type"] == "initialize_repository"
        await plant.set_task(task_id, "type", "simulate")
    verdict = await plant.verdict(history, settle=True)
    assert_only(verdict, 12, task_id)
    assert verdict.result(12).violations[0].evidence["read"]["taskType"] == "initialize_repository"


async def _wait_completed(client: ServiceClient, task_id: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while client.get(task_id).op.task_status != "COMPLETED":
        assert time.monotonic() < deadline, f"task {task_id} did not complete within {timeout_s:g}s"
        await asyncio.sleep(0.1)
