"""Schemathesis against the session's real stack (API, workers, RabbitMQ, PostgreSQL): every
operation of `/openapi.json`, every check (conformance of status, content type, headers and body;
valid data accepted, invalid data refused; missing headers, undeclared methods and `Allow`; auth
when the target has a token), positive and negative data, through the examples, coverage, fuzzing
and stateful phases, at least `MIN_CASES` cases, and not one failure.

The seed is random unless given (pytest's `--hypothesis-seed`, or SCHEMATHESIS_SEED); a failure
names it with the command that replays the run. `schemathesis_hooks` keeps the valid simulate jobs
short and harmless, and the service state is wiped after the run, so no task outlives the test.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.stack.base import StackEndpoints
from harness.stack.readiness import run_sync
from harness.stack.reset import reset_service_state

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
HOOKS = "tests.integration.schemathesis_hooks"
SEED_ENV = "SCHEMATHESIS_SEED"
MIN_CASES = 1000
MAX_EXAMPLES = 100
RUN_TIMEOUT_S = 480


def chosen_seed(config: pytest.Config) -> int:
    given = config.getoption("hypothesis_seed", None) or os.environ.get(SEED_ENV)
    return int(given) if given else random.randrange(2**31)


def schemathesis_command(endpoints: StackEndpoints, seed: int, report_dir: Path) -> list[str]:
    command = [
        str(Path(sys.executable).with_name("st")), "--config-file", str(CONFIG), "run",
        f"{endpoints.api_url}/openapi.json", "--checks", "all", "--mode", "all",
        "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(seed), "--workers", "1", "--request-timeout", "15", "--wait-for-schema", "30",
        "--report", "json", "--report-dir", str(report_dir), "--output-truncate", "false",
    ]
    if endpoints.api_token:
        command += ["--header", f"Authorization: Bearer {endpoints.api_token}"]
    return command


def run_schemathesis(
    endpoints: StackEndpoints, seed: int, workdir: Path
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """The CLI in its own process, in `workdir` (it keeps a crash cache in the working directory).

    One worker: with several threads, Hypothesis may parse source for a lambda's description in
    two of them at once, and CPython 3.11's AST conversion keeps its recursion count per interpreter
    ("SystemError: AST constructor recursion depth mismatch", a crash of the tool, not the API).
    """
    env = {**os.environ, "SCHEMATHESIS_HOOKS": HOOKS, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    result = subprocess.run(
        schemathesis_command(endpoints, seed, workdir / "report"), cwd=workdir, env=env,
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False,
    )
    reports = sorted((workdir / "report").glob("json-*.json"))
    return result, json.loads(reports[-1].read_text()) if reports else {}


def test_the_published_schema_holds_for_every_operation(
    clean_state: StackEndpoints, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    seed = chosen_seed(request.config)
    try:
        result, report = run_schemathesis(clean_state, seed, tmp_path)
    finally:
        run_sync(reset_service_state(clean_state), own_thread=True)
    replay = f"pytest '{request.node.nodeid}' --hypothesis-seed={seed}"
    assert result.returncode == 0, (
        f"schemathesis found failures with seed {seed}; replay: {replay}\n"
        f"{result.stdout[-25_000:]}\n{result.stderr[-5_000:]}"
    )
    generated = report.get("test_cases", {}).get("generated", 0)
    print(f"schemathesis: {generated} cases, seed {seed}, {report.get('running_time', 0):.0f}s")
    assert generated >= MIN_CASES, f"only {generated} cases ran (seed {seed}; replay: {replay})"
    operations = report.get("operations", {})
    assert operations.get("tested") == operations.get("total") > 0, operations
