"""`harness up --rabbit-nodes 3` as a user runs it: a cluster, every node's URL exported, a target
file that allows losing a node, jobs that complete, and nothing left running after Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.client import ServiceClient
from harness.history import History
from harness.stack.base import load_target
from harness.stack.servers import LocalServers
from tests.harness_up import alive, read_exports

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
HARNESS = Path(sys.executable).parent / "harness"


def test_harness_up_with_three_rabbit_nodes(tmp_path: Path) -> None:
    argv = [str(HARNESS), "up", "--rabbit-nodes", "3", "--workers", "1", "--run-dir", str(tmp_path / "up")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        exports = read_exports(proc, timeout=180)
        pids = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
        urls = exports["RABBIT_URL"].split(",")
        assert len(set(urls)) == 3
        target = load_target(Path(exports["HARNESS_TARGET"]))
        assert target.amqp_url == exports["RABBIT_URL"]
        assert "broker-node-loss" in target.faults_allowed
        with ServiceClient(exports["API_URL"], History()) as client:
            task_id = client.submit("simulate", {"steps": 1, "durationMs": 50}).task_id
            assert task_id is not None
            deadline = time.monotonic() + 60
            while client.get(task_id).body["status"] != "COMPLETED":
                assert time.monotonic() < deadline, "the job never completed on the cluster"
                time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(90) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert [pid for pid in pids if alive(pid)] == [], "harness up left processes running"


def test_a_single_node_stack_does_not_allow_node_loss_and_two_nodes_are_refused(tmp_path: Path) -> None:
    refused = subprocess.run(
        [str(HARNESS), "up", "--rabbit-nodes", "2", "--run-dir", str(tmp_path / "two")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "--rabbit-nodes" in refused.stderr
    assert not (tmp_path / "two").exists()
    assert "broker-node-loss" not in LocalServers(rabbit_nodes=1).faults
    assert "broker-node-loss" in LocalServers(rabbit_nodes=3).faults
