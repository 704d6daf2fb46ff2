"""Helpers of the load suite: `harness load` and plain Locust, each in its own process, and the
check of what they recorded into the session's own record (so the gate's verdict counts them)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.checker import Expectations, Verdict
from harness.history import load_history
from harness.live_check import check_deployment
from harness.load.merge import merge_histories
from harness.pytest_plugin import suite_name
from harness.record import RunWriter
from harness.stack.base import StackEndpoints
from harness.stack.readiness import run_sync

HARNESS = Path(sys.executable).parent / "harness"
ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
RUN_TIMEOUT_S = 150.0


def clean_env() -> dict[str, str]:
    """This environment without the variables that would steer the child's run elsewhere."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("LOAD_", "HARNESS_RUN_DIR"))}


def harness_load(args: Sequence[str], timeout_s: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HARNESS), "load", *args],
        cwd=ROOT,
        env=clean_env() | {"COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def target_of(endpoints: StackEndpoints) -> str:
    """The target file of the session's stack, for `harness load --target`."""
    assert endpoints.target_file is not None, "the session stack writes a target file"
    return str(endpoints.target_file)


def locust_histories(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "histories").glob("locust-*.jsonl"))


def judge_in_session(run_writer: RunWriter, name: str, endpoints: StackEndpoints, load_dir: Path) -> Verdict:
    """Merges the Locust histories of the load run in `load_dir` into the session's record as the
    history of test `name`, checks the invariants over it, and records the check there."""
    merged = merge_histories([load_history(path) for path in locust_histories(load_dir)])
    path = run_writer.layout.history(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(op.to_json() + "\n" for op in merged.ops), encoding="utf-8")
    live = run_sync(check_deployment(endpoints, merged, Expectations(waiting=None)), own_thread=True)
    run_writer.check(name, suite_name(), live.verdict, settled=live.settled, history=path)
    return live.verdict


def plain_locust(api_url: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`locust -f loadtests/locustfile.py --headless -u 20 -r 5 -t 6s --host API` as a user types it."""
    args = f"-f {LOCUSTFILE} --headless -u 20 -r 5 -t 6s --host {api_url} --csv {out / 'locust'}".split()
    return subprocess.run(
        [str(HARNESS.with_name("locust")), *args, *extra],
        cwd=ROOT,
        env=clean_env() | {"HARNESS_RUN_DIR": str(out)},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
