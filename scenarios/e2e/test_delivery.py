"""At-least-once delivery made exactly-once in effect: duplicates, dead workers, and the events out."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest

from harness.stack.base import StackEndpoints
from harness.stack.local import LocalStack
from scenarios.e2e.helpers import sql, submit, wait_for, wait_terminal

pytestmark = pytest.mark.e2e


def _publish_copy(amqp_url: str, task: dict[str, Any], message_id: str, copies: int) -> None:
    """Publishes the job message of `task` again, as a relay that crashed before commit would."""

    async def run() -> None:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange("ast.jobs.x")
            body = {
                "taskId": task["taskId"],
                "type": "simulate",
                "payload": {"steps": 1},
                "traceId": "dup",
                "retryCount": 0,
            }
            for _ in range(copies):
                message = aio_pika.Message(
                    json.dumps(body).encode(),
                    message_id=message_id,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                )
                await exchange.publish(message, routing_key="job.simulate", mandatory=True)

    asyncio.run(run())


def test_duplicate_job_messages_complete_the_task_once(api: httpx.Client, endpoints: StackEndpoints) -> None:
    task_id = submit(api, {"steps": 4, "durationMs": 800})
    message_id = str(
        sql(
            endpoints.postgres_dsn,
            "SELECT message_id FROM outbox WHERE task_id = $1::uuid AND exchange = 'ast.jobs.x'",
            task_id,
        )[0]["message_id"]
    )
    wait_for(api, task_id, lambda t: t["status"] == "IN_PROGRESS", what="running")
    fresh_id = str(uuid.uuid4())

    _publish_copy(endpoints.amqp_url, {"taskId": task_id}, message_id, copies=2)
    _publish_copy(endpoints.amqp_url, {"taskId": task_id}, fresh_id, copies=1)

    assert wait_terminal(api, task_id)["status"] == "COMPLETED"

    def duplicates_settled(_: dict[str, Any]) -> bool:
        """The copy with a new id, queued behind the other two, leaves an inbox row when settled."""
        return bool(sql(endpoints.postgres_dsn, "SELECT 1 FROM inbox WHERE message_id = $1", fresh_id))

    wait_for(api, task_id, duplicates_settled, what="the duplicate messages settled")
    results = sql(endpoints.postgres_dsn, "SELECT 1 FROM task_results WHERE task_id = $1::uuid", task_id)
    completions = sql(
        endpoints.postgres_dsn,
        "SELECT 1 FROM task_events WHERE task_id = $1::uuid AND status = 'COMPLETED'",
        task_id,
    )
    assert len(results) == 1
    assert len(completions) == 1
    depth = api.get("/queues").json()
    assert [q["messages"] for q in depth["queues"] if q["name"] == "ast.simulate.q"] == [0]


def test_a_killed_worker_s_task_is_taken_over_and_completes_once(
    api: httpx.Client, local_stack: LocalStack, dsn: str
) -> None:
    task_id = submit(api, {"steps": 8, "durationMs": 4000})
    wait_for(api, task_id, lambda t: t["status"] == "IN_PROGRESS" and t["progress"] > 0, what="running")
    events = api.get(f"/tasks/{task_id}/events").json()["items"]
    victim = next(e["workerId"] for e in reversed(events) if e["workerId"])

    local_stack.kill_worker(victim)

    task = wait_terminal(api, task_id, timeout=90)
    assert task["status"] == "COMPLETED"
    statuses = [e for e in api.get(f"/tasks/{task_id}/events").json()["items"] if e["kind"] == "status"]
    assert [e["status"] for e in statuses].count("IN_PROGRESS") == 2, "a second attempt took over"
    assert statuses[2]["message"] == "taken over after a lost worker"
    assert len(sql(dsn, "SELECT 1 FROM task_results WHERE task_id = $1::uuid", task_id)) == 1


def test_terminal_tasks_announce_themselves_on_the_events_exchange(
    api: httpx.Client, endpoints: StackEndpoints
) -> None:
    async def collect(task_ids: list[str]) -> list[dict[str, Any]]:
        connection = await aio_pika.connect(endpoints.amqp_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            await queue.bind("ast.events.x", routing_key="task.*")
            task_ids.append(submit(api, {"steps": 1}))
            task_ids.append(submit(api, {"outcome": "terminal"}))
            seen: list[dict[str, Any]] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len({(e["taskId"], e["status"]) for e in seen}) < 2:
                message = await queue.get(fail=False, timeout=5)
                if message is None:
                    await asyncio.sleep(0.2)
                    continue
                await message.ack()
                event = json.loads(message.body) | {"routingKey": message.routing_key}
                if event["status"] in ("COMPLETED", "FAILED"):
                    seen.append(event)
            return seen

    task_ids: list[str] = []
    seen = asyncio.run(collect(task_ids))

    by_task = {e["taskId"]: e for e in seen}
    assert by_task[task_ids[0]]["routingKey"] == "task.completed"
    assert by_task[task_ids[1]]["routingKey"] == "task.failed"
    assert by_task[task_ids[1]]["error"]["code"] == "SIMULATED_TERMINAL"


def test_logs_are_json_and_never_carry_payload_contents_or_credentials(
    api: httpx.Client, local_stack: LocalStack
) -> None:
    marker = f"payload-marker-{uuid.uuid4().hex[:8]}"
    task_id = submit(api, {"waitForEvent": {"type": "deploy", "key": marker}})
    wait_for(api, task_id, lambda t: t["status"] == "WAITING_FOR_EVENT", what="waiting")
    api.post("/events", json={"type": "deploy", "key": marker})
    wait_terminal(api, task_id)

    logs = sorted(Path(local_stack.log_dir).glob("*.log"))
    service_logs = [p for p in logs if p.name.startswith(("api", "worker", "relay"))]
    assert service_logs
    task_lines = []
    for path in service_logs:
        text = path.read_text(errors="replace")
        assert marker not in text, f"{path.name} logs payload contents"
        assert "guest:guest@" not in text, f"{path.name} logs credentials"
        for line in text.splitlines():
            if task_id in line and line.startswith("{"):
                task_lines.append(json.loads(line))
    assert task_lines, "the worker's log lines carry the taskId"
    assert {"taskId", "type", "step"} <= set().union(*(line.keys() for line in task_lines))
