"""RABBIT_VHOST: the API, the relay and the workers all work in that virtual host, not the URL's.

The stack's RabbitMQ gets a second virtual host before any service process starts (the servers'
readiness step creates it), and the service runs with RABBIT_VHOST naming it while RABBIT_URL
still names the default one. A name with a slash checks that it is quoted on the way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.observe.rabbitmq import Management
from harness.stack.servers import LocalServers
from harness.stack.services import ServiceStack
from service.config import Settings

pytestmark = pytest.mark.integration

VHOST = "ast/second"
DEFAULT_VHOST = "/"
JOB_QUEUES = ("ast.initialize.repo.q", "ast.initialize.impact.q", "ast.simulate.q")
TOPOLOGY_QUEUES = (*JOB_QUEUES, "ast.jobs.dlq")
SETTLE_S = 60.0


def create_vhost(management_url: str, vhost: str) -> None:
    """`vhost`, with every right for the management user (the service connects as the same one)."""

    async def create() -> None:
        async with Management(management_url, vhost=vhost) as management:
            await management.create_vhost(httpx.URL(management_url).username)

    asyncio.run(create())


class ServersWithVhost(LocalServers):
    """Local RabbitMQ and PostgreSQL; RabbitMQ is ready only once it has VHOST."""

    async def wait_rabbit(self, timeout: float) -> float:
        waited = await super().wait_rabbit(timeout)
        await asyncio.to_thread(create_vhost, self.management_url, VHOST)
        return waited


@pytest.fixture(scope="module")
def vhost_stack(stack_run_dir: Path) -> Iterator[ServiceStack]:
    stack = ServiceStack(
        stack_run_dir / "vhost",
        ServersWithVhost(),
        workers=1,
        env={"RABBIT_VHOST": VHOST, "SHUTDOWN_GRACE_MS": "5000"},
        show_progress=False,
        own_thread=True,
    )
    with stack:
        yield stack


def _queues(management_url: str, vhost: str) -> dict[str, dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        async with Management(management_url, vhost=vhost) as management:
            return await management.queue_rows("name,consumers,message_stats")

    return {queue["name"]: queue for queue in asyncio.run(read())}


def _exchanges(management_url: str, vhost: str) -> list[str]:
    async def read() -> list[str]:
        async with Management(management_url, vhost=vhost) as management:
            return await management.exchange_names()

    return asyncio.run(read())


def _ours(names: Iterable[str]) -> list[str]:
    return sorted(name for name in names if name.startswith("ast."))


def _wait_for_status(api: httpx.Client, task_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + SETTLE_S
    while True:
        task: dict[str, Any] = api.get(f"/tasks/{task_id}").raise_for_status().json()
        if task["status"] == status or time.monotonic() > deadline:
            return task
        time.sleep(0.2)


def _statistic(management_url: str, queue: str, read: Callable[[dict[str, Any]], int]) -> int:
    """A statistic of `queue` in VHOST once it is non-zero (the management API's statistics
    trail by up to 500 ms and are absent at first); 0 when it stays so for 10 s."""
    deadline = time.monotonic() + 10
    while True:
        value = read(_queues(management_url, VHOST)[queue])
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.25)


def _acks(queue: dict[str, Any]) -> int:
    return int(queue.get("message_stats", {}).get("ack", 0))


def _consumers(queue: dict[str, Any]) -> int:
    return int(queue.get("consumers", 0))


def test_a_job_runs_through_the_configured_vhost(vhost_stack: ServiceStack) -> None:
    endpoints = vhost_stack.endpoints
    with httpx.Client(base_url=endpoints.api_url, timeout=10) as api:
        job = {"type": "simulate", "payload": {"durationMs": 100, "steps": 2, "outcome": "success"}}
        accepted = api.post("/tasks", json=job)
        assert accepted.status_code == 202, accepted.text
        task = _wait_for_status(api, accepted.json()["taskId"], "COMPLETED")
    assert task["status"] == "COMPLETED", task
    assert _statistic(endpoints.management_url, "ast.simulate.q", _acks) >= 1
    assert set(TOPOLOGY_QUEUES) <= set(_queues(endpoints.management_url, VHOST))
    in_default = _ours(_queues(endpoints.management_url, DEFAULT_VHOST))
    in_default += _ours(_exchanges(endpoints.management_url, DEFAULT_VHOST))
    assert in_default == [], "the service declared its topology in the default vhost"


def test_queues_endpoint_reads_the_configured_vhost(vhost_stack: ServiceStack) -> None:
    with httpx.Client(base_url=vhost_stack.endpoints.api_url, timeout=10) as api:
        report = api.get("/queues").raise_for_status().json()
    depths = {queue["name"]: queue for queue in report["queues"]}
    for name in TOPOLOGY_QUEUES:
        assert depths[name]["messages"] == 0, depths[name]
    # The stack's one worker consumes every job queue in VHOST (one consumer per unit of its
    # default WORKER_CONCURRENCY); the API sees those consumers.
    management_url = vhost_stack.endpoints.management_url
    consumers = Settings.model_fields["worker_concurrency"].default
    for name in JOB_QUEUES:
        seen = depths[name]["consumers"], _statistic(management_url, name, _consumers)
        assert seen == (consumers, consumers), depths[name]
