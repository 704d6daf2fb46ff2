"""`harness check --target` against a stack that `harness up` runs in another process.

This is how an operator uses it: one terminal runs `harness up`, another drives the service and
then asks for the verdict. The check must pass on honest work, name invariant 2 and the task when a
second result row is planted, and `harness up` must leave nothing running after Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil
import pytest

from harness.client import ServiceClient
from harness.history import History
from harness.record import RunReader
from tests.harness_up import alive, read_exports

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
HARNESS = Path(sys.executable).parent / "harness"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}


@dataclass
class UpStack:
    exports: dict[str, str]
    pids: list[int]

    @property
    def target(self) -> str:
        return self.exports["HARNESS_TARGET"]


@pytest.fixture
def up_stack(tmp_path: Path) -> Iterator[UpStack]:
    """`harness up --workers 1` in its own session; SIGINT at the end, and nothing may survive it."""
    argv = [str(HARNESS), "up", "--workers", "1", "--run-dir", str(tmp_path / "up")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        exports = read_exports(proc, timeout=150)
        pids = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
        yield UpStack(exports, pids)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(90) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert [pid for pid in pids if alive(pid)] == [], "harness up left processes running"


def _run_check(
    target: str | None, history: Path, run_dir: Path, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    chosen = ["--target", target] if target else []
    argv = [str(HARNESS), "check", *chosen, "--history", str(history), "--run-dir", str(run_dir)]
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("HARNESS_TARGET", None)
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env, cwd=cwd)


def _drive(api_url: str, history_file: Path, n: int = 3) -> list[str]:
    """Submits `n` short simulate jobs through the recording client and waits until they end."""
    with History(history_file) as history, ServiceClient(api_url, history) as client:
        ids = [str(client.submit("simulate", {"steps": 2, "durationMs": 100}).task_id) for _ in range(n)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(client.get(task_id).body["status"] in TERMINAL for task_id in ids):
                return ids
            time.sleep(0.2)
    raise AssertionError(f"tasks {ids} did not finish within 60 s")


async def _plant_second_result(dsn: str, task_id: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "INSERT INTO task_results (task_id, result, worker_id) VALUES ($1, '{}'::jsonb, 'planted')",
            uuid.UUID(task_id),
        )
    finally:
        await connection.close()


def test_check_against_a_stack_from_harness_up(up_stack: UpStack, tmp_path: Path) -> None:
    history_file = tmp_path / "history.jsonl"
    task_ids = _drive(up_stack.exports["API_URL"], history_file)

    honest = _run_check(up_stack.target, history_file, tmp_path / "honest")

    assert honest.returncode == 0, honest.stdout + honest.stderr
    results = RunReader(tmp_path / "honest").results()
    assert results is not None
    assert results.passed
    assert results.verdict.valid == "held"
    assert results.verdict.counts["accepted"] == results.verdict.counts["completed"] == len(task_ids)
    (check,) = RunReader(tmp_path / "honest").checks()
    assert check.history is not None, "the judged history is kept in the run record"

    up_runs = tmp_path / "cwd" / "reports" / "out"
    (up_runs / "20990101-000000-up").mkdir(parents=True)
    shutil.copy(up_stack.target, up_runs / "20990101-000000-up" / "target.toml")
    (up_runs / "20990102-000000-up").mkdir()
    (up_runs / "20990102-000000-up" / "target.toml").write_text(
        Path(up_stack.target).read_text().replace(up_stack.exports["API_URL"], "http://127.0.0.1:9")
    )
    embedded = _run_check(None, history_file, tmp_path / "embedded", cwd=tmp_path / "cwd")
    assert embedded.returncode == 0, "without --target, check finds the running `harness up` stack"

    asyncio.run(_plant_second_result(up_stack.exports["POSTGRES_URL"], task_ids[0]))
    planted = _run_check(up_stack.target, history_file, tmp_path / "planted")

    assert planted.returncode == 1, planted.stdout + planted.stderr
    planted_results = RunReader(tmp_path / "planted").results()
    assert planted_results is not None
    assert not planted_results.passed
    broken = planted_results.verdict.not_held
    assert [i.number for i in broken] == [2]
    assert broken[0].violations[0].task_ids == (task_ids[0],)
    assert "once only" in planted.stdout
    assert task_ids[0] in planted.stdout
