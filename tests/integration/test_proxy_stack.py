"""The embedded stack with every link through the Toxiproxy-compatible proxy (`--proxy`).

One stack for the module (its own, not the session's: the tests put toxics on its links and
cut them). Which worker ran a job is read from its COMPLETED event's `worker_id`; how long it
ran from the task's startedAt/completedAt.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx
import pytest

from chaos.toxiproxy_client import ToxiproxyClient
from harness.observe.rabbitmq import Management
from harness.stack.base import load_target
from harness.stack.local import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SIMULATE_QUEUE = "ast.simulate.q"
CLIENTS = ("api", "relay", "worker-0", "worker-1")
PER_WORKER = 2
"""Each worker's consumers on a job queue: its WORKER_CONCURRENCY, set here so the counts are known."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    run_dir = tmp_path_factory.mktemp("proxied-stack")
    env = {
        "RETRY_BASE_MS": "200",
        "SHUTDOWN_GRACE_MS": "5000",
        "JOB_TIMEOUT_MS": "60000",
        "WORKER_CONCURRENCY": str(PER_WORKER),
    }
    with LocalStack(run_dir, workers=2, env=env, proxy=True, show_progress=False, own_thread=True) as started:
        yield started


@pytest.fixture
def toxi(stack: LocalStack) -> Iterator[ToxiproxyClient]:
    assert stack.endpoints.toxiproxy_url is not None
    with ToxiproxyClient(stack.endpoints.toxiproxy_url) as client:
        yield client
        client.reset()


def submit(api: httpx.Client, count: int, duration_ms: int = 50) -> list[str]:
    body = {"type": "simulate", "payload": {"durationMs": duration_ms, "steps": 2, "outcome": "success"}}
    return [api.post("/tasks", json=body).json()["taskId"] for _ in range(count)]


def wait_completed(
    api: httpx.Client, task_ids: list[str], timeout_s: float = 60.0
) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout_s
    tasks: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        tasks = [api.get(f"/tasks/{task_id}").json() for task_id in task_ids]
        if all(task["status"] == "COMPLETED" for task in tasks):
            return tasks
        time.sleep(0.2)
    raise AssertionError(f"not all completed in {timeout_s}s: {[t['status'] for t in tasks]}")


async def completing_workers(dsn: str, task_ids: list[str]) -> dict[str, str]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "select task_id::text, worker_id from task_events"
            " where status = 'COMPLETED' and task_id = any($1::uuid[])",
            task_ids,
        )
    finally:
        await connection.close()
    return {row["task_id"]: row["worker_id"] for row in rows}


def run_seconds(task: dict[str, object]) -> float:
    started = datetime.fromisoformat(str(task["startedAt"]))
    completed = datetime.fromisoformat(str(task["completedAt"]))
    return (completed - started).total_seconds()


async def simulate_consumers(management_url: str) -> int:
    async with Management(management_url) as management:
        return (await management.consumers()).get(SIMULATE_QUEUE, 0)


def wait_consumers(management_url: str, expected: int, timeout_s: float) -> float:
    started = time.monotonic()
    seen = -1
    while time.monotonic() - started < timeout_s:
        seen = asyncio.run(simulate_consumers(management_url))
        if seen == expected:
            return time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(f"{SIMULATE_QUEUE} has {seen} consumers, not {expected}, after {timeout_s}s")


def test_every_link_has_its_proxy_in_the_target_file(stack: LocalStack, toxi: ToxiproxyClient) -> None:
    target_file = stack.endpoints.target_file
    assert isinstance(target_file, Path)
    target = load_target(target_file)
    expected = {f"{client}-{server}" for client in CLIENTS for server in ("postgres", "rabbitmq")}
    assert set(target.toxiproxy_proxies) == expected
    assert target.toxiproxy_url == stack.endpoints.toxiproxy_url
    assert {"broker-partition", "db-latency", "slow-network"} <= set(target.faults_allowed)
    proxies = toxi.proxies()
    assert set(proxies) == expected
    assert all(
        p.enabled and p.upstream in stack.endpoints.postgres_dsn + stack.endpoints.amqp_url
        for p in proxies.values()
    )


def test_a_job_completes_through_the_proxy(stack: LocalStack) -> None:
    with httpx.Client(base_url=stack.endpoints.api_url, timeout=10) as api:
        assert wait_completed(api, submit(api, 1))[0]["status"] == "COMPLETED"


def test_latency_on_one_workers_database_link_slows_only_that_worker(
    stack: LocalStack, toxi: ToxiproxyClient
) -> None:
    toxi.add_toxic("worker-0-postgres", "latency", {"latency": 200})
    durations: dict[str, list[float]] = {"worker-0": [], "worker-1": []}
    with httpx.Client(base_url=stack.endpoints.api_url, timeout=10) as api:
        for _ in range(5):
            task_ids = submit(api, 4)
            tasks = wait_completed(api, task_ids)
            workers = asyncio.run(completing_workers(stack.endpoints.postgres_dsn, task_ids))
            for task in tasks:
                durations[workers[str(task["taskId"])]].append(run_seconds(task))
            if all(durations.values()):
                break
    assert all(durations.values()), f"one worker ran no job: {durations}"
    slow, fast = statistics.median(durations["worker-0"]), statistics.median(durations["worker-1"])
    assert slow >= fast + 0.2, durations
    assert fast < 0.5, durations


def test_a_cut_broker_link_drops_the_consumer_until_it_is_healed(
    stack: LocalStack, toxi: ToxiproxyClient
) -> None:
    management_url = stack.endpoints.management_url
    wait_consumers(management_url, 2 * PER_WORKER, timeout_s=30)
    worker = stack.workers["worker-0"].process
    pid, restarts = worker.pid, worker.restart_count
    toxi.set_enabled("worker-0-rabbitmq", False)
    wait_consumers(management_url, PER_WORKER, timeout_s=30)
    toxi.set_enabled("worker-0-rabbitmq", True)
    wait_consumers(management_url, 2 * PER_WORKER, timeout_s=60)
    assert (worker.pid, worker.restart_count) == (pid, restarts), "the worker was restarted, not reconnected"
    with httpx.Client(base_url=stack.endpoints.api_url, timeout=10) as api:
        wait_completed(api, submit(api, 2))


def test_a_killed_proxy_comes_back_with_every_link(stack: LocalStack, toxi: ToxiproxyClient) -> None:
    assert stack.link_proxy is not None
    assert stack.link_proxy.process is not None
    process = stack.link_proxy.process
    restarts = process.restart_count
    process.kill()
    deadline = time.monotonic() + 30
    while process.restart_count == restarts or not process.is_running:
        assert time.monotonic() < deadline, "the proxy was not restarted"
        time.sleep(0.1)
    while True:
        try:
            if set(toxi.proxies()) == set(stack.link_proxy.names):
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the restarted proxy does not list every link"
        time.sleep(0.1)
    with httpx.Client(base_url=stack.endpoints.api_url, timeout=10) as api:
        wait_completed(api, submit(api, 2))


def test_an_added_worker_gets_its_own_links(stack: LocalStack, toxi: ToxiproxyClient) -> None:
    name = stack.add_worker()
    try:
        links = {f"{name}-postgres", f"{name}-rabbitmq"}
        assert links <= set(toxi.proxies())
        target_file = stack.endpoints.target_file
        assert isinstance(target_file, Path)
        assert links <= set(load_target(target_file).toxiproxy_proxies)
        wait_consumers(stack.endpoints.management_url, 3 * PER_WORKER, timeout_s=30)
    finally:
        stack.remove_worker(name)
