"""The checker catches a drill that breaks: a worker with a bug planted on purpose (it acks each
job message before it commits, tests/planted/worker.py) killed mid-job loses the task it held,
and the drill comes out FAIL naming invariant 1."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.drill import drill_session
from chaos.drill_model import parse_drill
from harness.commands.drill import DRILL_ENV
from harness.record import RunWriter
from harness.stack.local import LocalStack, ServiceProcess
from harness.stack.ports import free_port
from harness.stack.processes import ManagedProcess

pytestmark = [pytest.mark.drill, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
PLANTED = "worker-planted"


def add_planted_worker(stack: LocalStack) -> None:
    """The planted worker as the stack's only worker, supervised like the others (a killed one
    comes back), so the nemesis's worker-kill finds it by name."""
    port = free_port()
    env = dict(os.environ) | {
        "POSTGRES_URL": stack.servers.postgres_dsn,
        "RABBIT_URL": stack.servers.amqp_url,
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "WORKER_ID": PLANTED,
        "WORKER_HEALTH_PORT": str(port),
        **PLANTED_ENV,
    }
    command = [sys.executable, "-m", "tests.planted.worker"]
    process = ManagedProcess(PLANTED, command, log_dir=stack.log_dir, env=env, supervise=True)
    stack.workers[PLANTED] = ServiceProcess(process, f"http://127.0.0.1:{port}/ready", port)
    process.start()
    stack.wait_worker_ready(PLANTED)


# The reconciler would re-drive the lost task after its lease and grace; kept out of the way here,
# so the test shows what the checker sees between two of its rounds.
PLANTED_ENV = DRILL_ENV | {"RECONCILE_INTERVAL_MS": "3600000"}


@pytest.fixture
def planted_stack(run_dir: Path) -> Iterator[LocalStack]:
    stack = LocalStack(run_dir / "stacks" / "planted", workers=0, env=PLANTED_ENV, proxy=False)
    try:
        yield stack
    finally:
        stack.stop()


def test_a_worker_that_acks_before_it_commits_fails_the_worker_kill_drill(
    planted_stack: LocalStack, run_dir: Path
) -> None:
    drill = parse_drill(
        {
            "name": "planted-ack-before-commit",
            "workload": {"rate": 2, "duration_s": 12, "job_ms": [1500, 2500], "mix": {"success": 1}},
            "faults": [{"name": "worker-kill", "at_s": 6, "params": {"worker": PLANTED}}],
            "expect": {"settle_s": 10},
        }
    )
    # Its own run record: a verdict broken on purpose must not count in the session's (the gate's).
    writer = RunWriter.create(run_dir / "planted-drill", "drill")
    with drill_session(planted_stack, writer) as runner:
        add_planted_worker(planted_stack)
        result = runner.run(drill)
    assert not result.passed
    assert "1 no lost task" in result.record.broken
    assert result.record.lost >= 1
