"""The gate's load suite: short Locust runs against the session's stack, each judged like a drill.

`harness load --target` drives the stack the session started (tables emptied first), so the
suite pays for one stack start. Durations are short: this is CI; `harness load --profile steady`
with its default minute, `spike` and `soak` run on demand.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.record import RunReader, RunWriter
from harness.stack.base import StackEndpoints
from scenarios.load.helpers import (
    harness_load,
    judge_in_session,
    locust_histories,
    plain_locust,
    target_of,
)

pytestmark = [pytest.mark.load, pytest.mark.timeout(240)]


def test_a_steady_run_holds_its_slos_and_the_invariants(
    clean_state: StackEndpoints, run_dir: Path, run_writer: RunWriter, request: pytest.FixtureRequest
) -> None:
    out = run_dir / "loads" / "steady"
    done = harness_load(
        ["--profile", "steady", "--duration", "10", "--target", target_of(clean_state), "--run-dir", str(out)]
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = RunReader(out).results()
    assert results is not None
    assert (results.kind, results.passed, results.reasons, results.checked) == ("load", True, (), 1)
    assert results.verdict.valid == "held"
    assert results.verdict.counts["accepted"] > 0
    assert {row.metric for row in results.slos} >= {"submit_p95_ms", "submit_error_rate", "complete_p95_s"}
    assert all(row.status == "passed" and row.value is not None for row in results.slos)
    assert "load steady: SLOs" in done.stdout
    assert "load: PASS" in done.stdout
    for name in ("locust.html", "locust_stats.csv", "report.html", "samples.jsonl"):
        assert (out / name).is_file(), name
    assert locust_histories(out)
    assert judge_in_session(run_writer, request.node.nodeid, clean_state, out).valid == "held"


def test_an_slo_out_of_reach_fails_the_run_naming_it(
    clean_state: StackEndpoints, run_dir: Path, run_writer: RunWriter, request: pytest.FixtureRequest
) -> None:
    out = run_dir / "loads" / "slo-out-of-reach"
    slo = out.parent / "out-of-reach.toml"
    slo.parent.mkdir(parents=True, exist_ok=True)
    slo.write_text('[steady]\nsubmit_p95_ms = "< 0.001"\n', encoding="utf-8")
    args = ["--duration", "4", "--slo", str(slo), "--target", target_of(clean_state), "--run-dir", str(out)]
    done = harness_load(args)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "SLO submit_p95_ms < 0.001 FAILED" in done.stdout
    results = RunReader(out).results()
    assert results is not None
    assert not results.passed
    assert [r for r in results.reasons if r.startswith("SLO ")] == [
        next(r for r in results.reasons if "submit_p95_ms < 0.001" in r)
    ]
    assert results.verdict.valid == "held", "only the SLO failed"
    assert judge_in_session(run_writer, request.node.nodeid, clean_state, out).valid == "held"


def test_plain_locust_runs_the_locustfile_and_records_a_checkable_history(
    clean_state: StackEndpoints, run_dir: Path, run_writer: RunWriter, request: pytest.FixtureRequest
) -> None:
    out = run_dir / "loads" / "plain-locust"
    slo = out.parent / "plain-locust-slo.toml"
    slo.parent.mkdir(parents=True, exist_ok=True)
    slo.write_text('[steady]\nsubmit_p95_ms = "< 5000"\n', encoding="utf-8")
    done = plain_locust(clean_state.api_url, out, "--slo", str(slo))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SLO submit_p95_ms < 5000 PASSED" in done.stderr, "Locust judged the SLOs it measures when it quit"
    stats = (out / "locust_stats.csv").read_text(encoding="utf-8")
    assert "POST,/tasks," in stats
    assert "JOB,submit→terminal simulate success" in stats
    assert locust_histories(out)
    verdict = judge_in_session(run_writer, request.node.nodeid, clean_state, out)
    assert verdict.valid == "held", verdict
