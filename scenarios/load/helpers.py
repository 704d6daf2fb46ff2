"""Helpers of the load suite: `harness load` and plain Locust, each in its own process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.stack.base import StackEndpoints

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
