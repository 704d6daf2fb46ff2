"""A three-node RabbitMQ cluster in the local provider (`harness up --rabbit-nodes 3`).

One clustered stack for the module. The cluster must start with every node a member of every
quorum queue; lose the leader of ast.simulate.q while 200 jobs flow and still complete all 200
with the invariants held; take the lost node back; and ride out a stop or restart of one node
named by the fault.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from chaos.nemesis import LocalFaults, Nemesis
from harness.history import History
from harness.observe.rabbitmq import Management
from harness.record import RunWriter
from harness.stack.base import load_target
from harness.stack.local import LocalStack
from harness.stack.rabbitmq import SIMULATE_QUEUE, QuorumStatus, quorum_status
from harness.stack.readiness import run_sync
from harness.stack.reset import reset_service_state
from tests.integration.job_stream import (
    JobStream,
    check_invariants,
    poll,
    run_fault_with_jobs,
    wait_all_terminal,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
ENV = {"RETRY_BASE_MS": "200", "JOB_TIMEOUT_MS": "30000", "SHUTDOWN_GRACE_MS": "5000", "MAX_RETRIES": "3"}


@pytest.fixture(scope="module")
def cluster(run_dir: Path) -> Iterator[LocalStack]:
    stack_dir = run_dir / "stacks" / f"cluster-{os.getpid()}"
    stack = LocalStack(stack_dir, workers=2, env=ENV, show_progress=False, own_thread=True, rabbit_nodes=3)
    stack.start()
    assert stack.local_servers.cluster is not None
    print(f"\ncluster stack up: {stack.timings}; rabbitmq: {stack.local_servers.cluster.timings}")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def nemesis(cluster: LocalStack, history: History) -> Nemesis:
    run_sync(reset_service_state(cluster.endpoints), own_thread=True)
    return Nemesis(history, LocalFaults(cluster))


def _names(cluster: LocalStack) -> tuple[str, ...]:
    return tuple(sorted(node.nodename for node in cluster.rabbit_nodes))


def _status(cluster: LocalStack, queue: str) -> QuorumStatus:
    urls = [node.management_url for node in cluster.rabbit_nodes if node.server.is_running]
    return run_sync(quorum_status(urls, queue), own_thread=True)


async def _quorum_queues(management_url: str) -> list[str]:
    async with Management(management_url) as management:
        rows = await management.queue_rows("name,type")
    return sorted(q["name"] for q in rows if q.get("type") == "quorum")


def _all_online(cluster: LocalStack, timeout_s: float = 60.0) -> None:
    """Every quorum queue has all three nodes online again (bounded poll)."""
    deadline = time.monotonic() + timeout_s
    statuses: list[QuorumStatus] = []
    while time.monotonic() < deadline:
        queues = run_sync(_quorum_queues(cluster.endpoints.management_url), own_thread=True)
        statuses = [_status(cluster, q) for q in queues]
        if statuses and all(s.online == _names(cluster) and s.leader for s in statuses):
            return
        time.sleep(0.5)
    raise AssertionError(f"quorum queues not back to three online members: {statuses}")


def test_three_nodes_are_members_of_every_quorum_queue(cluster: LocalStack) -> None:
    assert len(cluster.rabbit_nodes) == 3
    assert len(set(_names(cluster))) == 3
    queues = run_sync(_quorum_queues(cluster.endpoints.management_url), own_thread=True)
    assert {"ast.initialize.repo.q", "ast.initialize.impact.q", SIMULATE_QUEUE} <= set(queues)
    for queue in queues:
        status = _status(cluster, queue)
        assert status.members == _names(cluster), status
        assert status.online == _names(cluster), status
        assert status.leader in _names(cluster), status


def test_services_get_every_node_and_the_target_file_allows_node_loss(cluster: LocalStack) -> None:
    urls = cluster.endpoints.amqp_url.split(",")
    assert urls == [node.amqp_url for node in cluster.rabbit_nodes]
    assert cluster.api is not None
    assert cluster.api.process.env is not None
    assert cluster.api.process.env["RABBIT_URL"] == cluster.endpoints.amqp_url
    target = load_target(cluster.target_file)
    assert target.amqp_url == cluster.endpoints.amqp_url
    assert "broker-node-loss" in target.faults_allowed


async def _first_completion_after(dsn: str, wall_time: float, column: str = "completed_at") -> float | None:
    """The first completion after `wall_time` of any task (`completed_at`: one in flight may
    finish without the broker) or of one accepted after it (`created_at`: published to the queue's
    new leader and consumed)."""
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        found: float | None = await connection.fetchval(
            "SELECT extract(epoch FROM min(completed_at))::float8 FROM tasks "
            f"WHERE status = 'COMPLETED' AND {column} > to_timestamp($1)",
            wall_time,
        )
        return found
    finally:
        await connection.close()


def test_losing_the_leader_of_the_simulate_queue_while_200_jobs_flow(
    cluster: LocalStack, nemesis: Nemesis, run_writer: RunWriter, request: pytest.FixtureRequest
) -> None:
    dsn = cluster.endpoints.postgres_dsn
    leader = _status(cluster, SIMULATE_QUEUE).leader
    stream = JobStream(cluster.endpoints, nemesis.history, count=200, interval_s=0.02).start()
    stream.wait("20 jobs accepted", lambda: len(stream.accepted) >= 20)
    active = nemesis.start("broker-node-loss")
    killed_at = time.time()
    first: list[float] = []

    def completed_after_the_loss() -> bool:
        found = run_sync(_first_completion_after(dsn, killed_at), own_thread=True)
        first[:] = [found] if found else []
        return bool(first)

    try:
        assert active is not None
        assert active.started["target"] == leader
        stream.wait("a completion after the leader loss", completed_after_the_loss, timeout_s=90)
        first_new = poll(
            "a job accepted after the loss completed",
            lambda: run_sync(_first_completion_after(dsn, killed_at, "created_at"), own_thread=True),
        )
        accepted = stream.join(timeout_s=120)
        assert len(accepted) == 200, f"only {len(accepted)} of 200 submissions were accepted"
        statuses = wait_all_terminal(dsn, accepted, timeout_s=180)
        assert set(statuses.values()) == {"COMPLETED"}
        new_leader = _status(cluster, SIMULATE_QUEUE).leader
        assert new_leader != leader
    finally:
        stream.stop()
        end = nemesis.stop(active) if active is not None else None
    assert end is not None
    print(f"\nleader {leader} killed; first completion {first[0] - killed_at:.2f}s later;")
    print(f"first completion of a job accepted after the loss {first_new - killed_at:.2f}s later;")
    print(f"new leader {new_leader}; node back {end.value['back_after_s']:.2f}s after the kill")
    _all_online(cluster)
    check_invariants(cluster.endpoints, nemesis.history, run_writer, request.node.nodeid)


def test_the_api_outlives_the_loss_of_the_node_it_was_connected_to(
    cluster: LocalStack, nemesis: Nemesis
) -> None:
    """The API connects to the first node of RABBIT_URL; with that node down for good, /ready
    and /queues answer again from another node, without an API restart."""
    first = cluster.rabbit_nodes[0].nodename
    token = cluster.endpoints.api_token
    headers = {"authorization": f"Bearer {token}"} if token else {}
    api = httpx.Client(base_url=cluster.endpoints.api_url, headers=headers, timeout=10)
    assert cluster.api is not None
    restarts = cluster.api.process.restart_count
    active = nemesis.start("broker-node-loss", node=first)
    try:
        assert active is not None
        assert active.started["target"] == first
        lost_at = time.monotonic()
        poll("/ready answering 200 with the first node down", lambda: api.get("/ready").is_success or None)
        ready_after = time.monotonic() - lost_at
        queues = api.get("/queues")
        assert queues.status_code == 200, queues.text
    finally:
        if active is not None:
            nemesis.stop(active)
        api.close()
    assert cluster.api.process.restart_count == restarts, "the API was restarted"
    print(f"\nAPI ready again {ready_after:.2f}s after its node {first} was killed")
    _all_online(cluster)


@pytest.mark.parametrize("action", ["stop", "restart", "kill"])
def test_one_node_by_name_with_jobs_flowing(
    cluster: LocalStack, nemesis: Nemesis, run_writer: RunWriter, request: pytest.FixtureRequest, action: str
) -> None:
    node = cluster.rabbit_nodes[-1].nodename
    name = f"broker-{action}"
    end = run_fault_with_jobs(cluster, nemesis, name, run_writer, request.node.nodeid, node=node)
    assert end.value["target"] == node
    _all_online(cluster)


async def _setting(dsn: str, name: str) -> str:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        return str(await connection.fetchval(f"SHOW {name}"))
    finally:
        await connection.close()


def test_the_default_stack_runs_postgresql_for_speed(cluster: LocalStack) -> None:
    dsn = cluster.endpoints.postgres_dsn
    settings = [run_sync(_setting(dsn, name), own_thread=True) for name in ("fsync", "synchronous_commit")]
    assert settings == ["off", "off"]
