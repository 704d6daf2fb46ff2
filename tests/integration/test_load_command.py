"""`harness load --profile steady` as a user runs it: its own embedded stack, started and stopped by
the command, Locust in its own process, the SLO table and the invariant verdict in the record.
And a distributed run: `harness load --master` with two `harness load --worker` processes.
(Not in the gate's load suite, scenarios/load/, which must stay near a minute.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import psutil
import pytest

from harness.record import RunReader
from harness.stack.base import StackEndpoints
from harness.stack.ports import free_port
from scenarios.load.helpers import (
    HARNESS,
    ROOT,
    RUN_TIMEOUT_S,
    clean_env,
    harness_load,
    locust_histories,
    plain_locust,
    target_of,
)

pytestmark = [pytest.mark.load, pytest.mark.timeout(300)]


def _children_named(name: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if name in cmdline:
            found.append(process)
    return found


def test_harness_load_steady_on_its_own_embedded_stack(tmp_path: Path) -> None:
    out = tmp_path / "steady"
    done = harness_load(["--profile", "steady", "--duration", "20", "--run-dir", str(out)], timeout_s=240)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    results = RunReader(out).results()
    assert results is not None
    assert results.passed
    assert results.verdict.valid == "held"
    assert results.timings["stack_s"] > 0
    assert results.report is not None
    assert results.slos
    assert all(row.status == "passed" for row in results.slos)
    assert (results.metrics["accepted"] or 0) > 50
    assert (out / "target.toml").is_file(), "the command started (and stopped) its own stack"
    assert not _children_named(str(out)), "no server or Locust process of the run is left"


def test_a_distributed_run_master_and_two_workers(clean_state: StackEndpoints, run_dir: Path) -> None:
    """One worker records into the master's run directory (the same machine), the other into its
    own (as on another machine): the master's record ends with both histories, neither twice."""
    out, elsewhere = run_dir / "loads" / "distributed", run_dir / "loads" / "distributed-other-machine"
    port = str(free_port())
    master_args = f"--master --expect-workers 2 --master-port {port} --users 6 --duration 8".split()
    master = subprocess.Popen(
        [str(HARNESS), "load", *master_args, "--target", target_of(clean_state), "--run-dir", str(out)],
        cwd=ROOT,
        env=clean_env() | {"COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    worker_args = f"load --worker --master-host 127.0.0.1 --master-port {port} --run-dir".split()
    workers = [
        subprocess.Popen(
            [str(HARNESS), *worker_args, str(d)], cwd=ROOT, env=clean_env(), stdout=subprocess.DEVNULL
        )
        for d in (out, elsewhere)
    ]
    try:
        output, _ = master.communicate(timeout=RUN_TIMEOUT_S)
        worker_exits = [w.wait(timeout=30) for w in workers]
    finally:
        processes: list[subprocess.Popen[str] | subprocess.Popen[bytes]] = [master, *workers]
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert master.returncode == 0, output
    assert worker_exits == [0, 0]
    histories = locust_histories(out)
    assert len(histories) == 2, "one history per worker, none from the master, none twice"
    shipped = [path for path in histories if path.read_bytes() == locust_histories(elsewhere)[0].read_bytes()]
    assert len(shipped) == 1, "the other machine's worker sent its whole history to the master"
    results = RunReader(out).results()
    assert results is not None
    assert results.passed
    assert results.verdict.valid == "held"


def test_a_drill_during_the_load_is_in_the_record_and_judged(tmp_path: Path) -> None:
    out = tmp_path / "drill"
    args = ["--duration", "12", "--drill", "worker-kill", "--run-dir", str(out)]
    done = harness_load(args, timeout_s=240)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    windows = RunReader(out).fault_windows()
    assert [(w.name, w.healed) for w in windows] == [("worker-kill", True)]
    results = RunReader(out).results()
    assert results is not None
    assert results.verdict.valid == "held"
    assert not _children_named(str(out))


def test_a_drill_the_stack_cannot_run_is_refused_naming_why(tmp_path: Path) -> None:
    done = harness_load(["--duration", "5", "--drill", "no-such-fault", "--run-dir", str(tmp_path / "x")])
    assert done.returncode == 2, done.stdout + done.stderr
    assert "unknown drill 'no-such-fault'" in done.stdout + done.stderr


def test_plain_locust_with_an_slo_out_of_reach_exits_1_naming_it(
    clean_state: StackEndpoints, tmp_path: Path
) -> None:
    slo = tmp_path / "out-of-reach.toml"
    slo.write_text('[steady]\nsubmit_p95_ms = "< 0.001"\n', encoding="utf-8")
    done = plain_locust(clean_state.api_url, tmp_path / "plain", "--slo", str(slo))
    assert done.returncode == 1, done.stderr[-3000:]
    assert "SLO submit_p95_ms < 0.001 FAILED" in done.stderr
