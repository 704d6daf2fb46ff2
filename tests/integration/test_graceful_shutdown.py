"""A rollout costs no delivery attempts: SIGTERM never bounces a message back to the queue.

The broker counts every return of a message (a nack with requeue, or a channel closed with it
unacked) against the quorum queue's `x-delivery-limit`, and dead-letters it past the limit
without the service hearing of it: the task would be left RETRYING or PENDING until the
reconciler re-published it, and the DLQ would hold a message of a task that later COMPLETED (a
CI run's worker-rolling-restart drill broke invariant 8 exactly so). A worker that nacked every
message delivered between SIGTERM and its consumer's cancel made the broker hand the same
message straight back, in a loop.

So this stack runs with `RABBIT_DELIVERY_LIMIT=2`: a message may cross one consumer's cancel
on its way (a quorum queue can still deliver one after it) and come back once, but a second
return fails its task. Fast jobs stream in while every worker is restarted in turn, several
times; every task must complete and the DLQ stay empty. (Before the fix, 9 tasks failed with
`DELIVERY_LIMIT` in the first such run.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chaos.nemesis import LocalFaults, Nemesis
from harness.history import History
from harness.observe.rabbitmq import Management
from harness.record import RunWriter
from harness.stack.local import LocalStack
from harness.stack.readiness import run_sync
from tests.integration.job_stream import JobStream, check_invariants, wait_all_terminal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
ENV = {"RABBIT_DELIVERY_LIMIT": "2", "SHUTDOWN_GRACE_MS": "5000", "RETRY_BASE_MS": "200"}
ROLLOUTS = 4


@pytest.fixture(scope="module")
def stack(run_dir: Path) -> Iterator[LocalStack]:
    stack_dir = run_dir / "stacks" / f"shutdown-{os.getpid()}"
    local = LocalStack(stack_dir, workers=2, env=ENV, show_progress=False, own_thread=True)
    local.start()
    try:
        yield local
    finally:
        local.stop()


def test_rolling_restarts_under_a_stream_of_fast_jobs_return_nothing_to_the_broker(
    stack: LocalStack, history: History, run_writer: RunWriter, request: pytest.FixtureRequest
) -> None:
    nemesis = Nemesis(history, LocalFaults(stack))
    payload = {"durationMs": 5, "steps": 1}
    stream = JobStream(stack.endpoints, history, count=100_000, payload=payload, interval_s=0.005).start()
    try:
        for _ in range(ROLLOUTS):
            stream.wait_more_accepted(20)
            assert nemesis.run("worker-rolling-restart") is not None
        stream.wait_more_accepted(20)
    finally:
        stream.stop()
        accepted = stream.join()

    statuses = wait_all_terminal(stack.endpoints.postgres_dsn, accepted)
    not_completed = {t: s for t, s in statuses.items() if s != "COMPLETED"}
    assert not_completed == {}, _errors(stack, list(not_completed))
    dlq = run_sync(_dead_letters(stack.endpoints.management_url), own_thread=True)
    assert dlq == 0, f"{dlq} message(s) dead-lettered by a rollout"
    check_invariants(stack.endpoints, history, run_writer, request.node.nodeid)


def _errors(stack: LocalStack, task_ids: list[str]) -> list[object]:
    """What the tasks that did not complete failed with, for the assertion message."""
    headers = {"authorization": f"Bearer {stack.endpoints.api_token}"} if stack.endpoints.api_token else {}
    with httpx.Client(base_url=stack.endpoints.api_url, headers=headers, timeout=10) as api:
        return [api.get(f"/tasks/{task_id}").json().get("error") for task_id in task_ids[:5]]


async def _dead_letters(management_url: str) -> int:
    async with Management(management_url) as management:
        return len(await management.peek("ast.jobs.dlq", 100))
