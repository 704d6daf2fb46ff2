"""The pure parts of `harness load`: SLO parsing and judging, the shapes' tick(), the history merge,
the measurements, the profiles handed to Locust through the environment. No servers, no Locust."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.history import History, load_history
from harness.load.measure import Submits, completion_times, measure, percentile, queue_depth_max
from harness.load.merge import merge_histories
from harness.load.profiles import PROFILES, from_env, profile_named
from harness.load.slo import (
    SloError,
    evaluate,
    load_slo_file,
    parse_threshold,
    slo_records,
    thresholds_for,
)
from harness.record.records import QueueLevel, RunResults, Sample, VerdictRecord
from harness.state import TaskRow
from loadtests.shapes import Stage, spike, stages_for, steady, tick

pytestmark = pytest.mark.unit


# --- SLOs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value", "holds"),
    [
        ("< 500", 499.9, True),
        ("< 500", 500, False),
        ("<=500", 500, True),
        ("> 2", 2, False),
        (">= 2e0", 2, True),
    ],
)
def test_a_threshold_holds_as_k6_reads_it(expression: str, value: float, holds: bool) -> None:
    assert parse_threshold("submit_p95_ms", expression).holds(value) is holds


@pytest.mark.parametrize(
    ("metric", "expression"), [("p95", "< 1"), ("submit_p95_ms", "= 1"), ("submit_p95_ms", "<")]
)
def test_a_bad_threshold_is_refused_naming_it(metric: str, expression: str) -> None:
    with pytest.raises(SloError, match=metric):
        parse_threshold(metric, expression)


def test_a_profile_gets_its_defaults_and_the_file_replaces_only_what_it_names() -> None:
    defaults = {str(t) for t in thresholds_for("steady")}
    assert {"submit_p95_ms < 1000", "complete_p95_s < 10", "queue_depth_max < 100"} <= defaults
    assert not any(t.startswith("worker_rss_growth_mb") for t in defaults)
    assert any(str(t) == "worker_rss_growth_mb < 100" for t in thresholds_for("soak"))
    overrides = {
        "all": {"submit_p95_ms": "< 5"},
        "steady": {"queue_depth_max": "< 7"},
        "spike": {"submit_p99_ms": "< 1"},
    }
    merged = {str(t) for t in thresholds_for("steady", overrides)}
    assert {"submit_p95_ms < 5", "queue_depth_max < 7", "submit_p99_ms < 2000"} <= merged
    assert "submit_p95_ms < 1000" not in merged


def test_an_slo_file_is_read_and_an_unknown_metric_in_it_named(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[steady]\nsubmit_p95_ms = "< 0.001"\n')
    assert str(thresholds_for("steady", load_slo_file(good))[1]) == "submit_p95_ms < 0.001"
    bad = tmp_path / "bad.toml"
    bad.write_text('[steady]\nsubmit_p96_ms = "< 1"\n')
    with pytest.raises(SloError, match="submit_p96_ms"):
        load_slo_file(bad)
    bad.write_text('[stedy]\nsubmit_p95_ms = "< 1"\n')
    with pytest.raises(SloError, match=r"\[stedy\] is neither"):
        load_slo_file(bad)


def test_evaluate_fails_a_missed_and_an_unmeasured_slo_and_the_record_keeps_it() -> None:
    thresholds = thresholds_for("soak")
    metrics: dict[str, float | None] = {t.metric: t.limit / 2 for t in thresholds}
    metrics["throughput_min_per_s"] = 1.0
    metrics["worker_rss_growth_mb"] = None
    results = {r.threshold.metric: r for r in evaluate(thresholds, metrics)}
    assert results["submit_p95_ms"].status == "passed"
    assert results["throughput_min_per_s"].status == "failed"
    assert (
        results["worker_rss_growth_mb"].line
        == "SLO worker_rss_growth_mb < 100 FAILED (measured not measured)"
    )
    records = slo_records(tuple(results.values()))
    kept = RunResults(kind="load", passed=False, verdict=VerdictRecord(valid="held"), slos=records)
    assert RunResults.model_validate_json(kept.to_json()) == kept
    assert kept.slo("submit_p95_ms").status == "passed"
    assert kept.slo("throughput_min_per_s").status == "failed"
    assert kept.slo("worker_rss_growth_mb").value is None


# --- shapes -------------------------------------------------------------------------------------


def test_steady_holds_its_users_for_the_duration_then_stops() -> None:
    plan = steady(profile_named("steady").with_overrides(users=12, spawn_rate=3, duration_s=20))
    assert tick(plan, 0) == (12, 3)
    assert tick(plan, 19.9) == (12, 3)
    assert tick(plan, 20) is None


def test_spike_steps_to_several_times_the_base_and_back() -> None:
    profile = profile_named("spike").with_overrides(users=5, spawn_rate=1, duration_s=90)
    plan = spike(profile)
    assert tick(plan, 10) == (5, 1)
    users, rate = tick(plan, 45) or (0, 0)
    assert users == 20
    assert rate >= 15, "the step is reached within about a second"
    assert tick(plan, 80) == (5, rate)
    assert tick(plan, 90) is None


def test_soak_is_a_long_steady_and_every_profile_has_a_plan() -> None:
    assert stages_for(PROFILES["soak"]) == (Stage(1800, 8, 2),)
    assert all(stages_for(p) for p in PROFILES.values())


def test_the_profile_reaches_locust_through_the_environment() -> None:
    chosen = profile_named("spike").with_overrides(users=7, duration_s=12)
    assert from_env(chosen.to_env()) == chosen
    assert from_env({}).name == "steady"
    with pytest.raises(ValueError, match="steady, spike, soak"):
        profile_named("burst")


# --- merge --------------------------------------------------------------------------------------


def _locust_history(path: Path, process: str, submits: int) -> History:
    history = History(path)
    for n in range(submits):
        invocation = history.invoke(process, "submit", "POST", "/tasks", body={"type": "simulate", "n": n})
        history.complete(invocation, "ok", status_code=202, task_id=f"{process}-{n}", task_status="PENDING")
    history.invoke(process, "get", "GET", f"/tasks/{process}-0")
    history.close()
    return load_history(path)


def test_merge_keeps_each_completion_with_its_own_invocation(tmp_path: Path) -> None:
    a = _locust_history(tmp_path / "a.jsonl", "locust-a", 3)
    b = _locust_history(tmp_path / "b.jsonl", "locust-b", 2)
    merged = merge_histories([a, b])
    ops = merged.ops
    assert [op.index for op in ops] == list(range(len(a) + len(b)))
    assert [op.wall_time for op in ops] == sorted(op.wall_time for op in ops)
    by_index = {op.index: op for op in ops}
    for op in merged.completions():
        invocation = by_index[op.invoke_index or 0]
        assert invocation.type == "invoke"
        assert invocation.process == op.process
        assert invocation.body_digest == op.body_digest
        assert invocation.index < op.index
    assert sorted(op.path for op in merged.pending()) == ["/tasks/locust-a-0", "/tasks/locust-b-0"]


# --- measurements -------------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50, 95, 99)
    assert percentile([], 95) is None
    assert percentile([7.0], 99) == 7.0


def test_submits_count_answers_and_leave_those_in_flight_at_stop_out_of_the_error_rate() -> None:
    history = History()
    for status, outcome in ((202, "ok"), (202, "ok"), (422, "fail"), (503, "info")):
        history.complete(history.invoke("p", "submit", "POST", "/tasks"), outcome, status_code=status)  # type: ignore[arg-type]
    history.invoke("p", "submit", "POST", "/tasks")
    submits = Submits.of(history)
    assert (submits.completed, submits.accepted, submits.in_flight) == (4, 2, 1)
    assert submits.error_rate == 0.5
    assert len(submits.latencies_ms) == 4
    assert min(submits.latencies_ms) >= 0


def _task(task_id: str, status: str, created: str, updated: str) -> TaskRow:
    return TaskRow(task_id, "simulate", status, 100, 0, 3, 3, created_at=created, updated_at=updated)


def test_completion_times_are_created_to_updated_of_terminal_tasks_of_the_run() -> None:
    tasks = [
        _task("a", "COMPLETED", "2026-11-30T10:00:00+00:00", "2026-11-30T10:00:01.500000+00:00"),
        _task("b", "IN_PROGRESS", "2026-11-30T10:00:00+00:00", "2026-11-30T10:00:09+00:00"),
        _task("c", "FAILED", "2026-11-30T10:00:00+00:00", "2026-11-30T10:00:03+00:00"),
    ]
    assert completion_times(tasks, {"a", "b"}) == [1.5]


def test_queue_depth_max_sums_job_and_retry_queues_but_not_the_dlq() -> None:
    def sample(t: float, simulate: int, retry: int, dlq: int) -> Sample:
        queues = {
            "ast.simulate.q": QueueLevel(ready=simulate, unacked=1),
            "ast.simulate.retry.200ms.q": QueueLevel(ready=retry, unacked=0),
            "ast.jobs.dlq": QueueLevel(ready=dlq, unacked=0),
        }
        return Sample(t=t, queues=queues)

    samples = [sample(1, 3, 0, 50), sample(2, 5, 4, 60), sample(99, 100, 0, 0)]
    assert queue_depth_max(samples) == 101
    history = History()
    history.complete(history.invoke("p", "submit", "POST", "/tasks"), "ok", status_code=202, task_id="a")
    metrics = measure(history, [], samples)
    assert metrics["submit_error_rate"] == 0.0
    assert metrics["accepted"] == 1
    assert metrics["worker_rss_growth_mb"] is None
    assert metrics["complete_p95_s"] is None


def test_a_drills_faults_are_shifted_so_the_first_starts_a_third_of_the_way_in() -> None:
    from chaos.drill_model import builtin_drills
    from harness.commands.load_drill import shifted

    drill = builtin_drills()["broker-kill"]
    moved = shifted(drill, 60)
    assert moved.first_fault_s == 20
    assert [f.hold_s for f in moved.faults] == [f.hold_s for f in drill.faults]
    assert [f.at_s - moved.faults[0].at_s for f in moved.faults] == [
        f.at_s - drill.faults[0].at_s for f in drill.faults
    ]


def test_job_durations_are_min_max_milliseconds() -> None:
    from harness.load.profiles import parse_job_ms

    assert parse_job_ms("0-10") == (0, 10)
    assert parse_job_ms("50") == (50, 50)
    for bad in ("10-5", "fast", "-3"):
        with pytest.raises(ValueError, match="job duration"):
            parse_job_ms(bad)
    chosen = profile_named("steady").with_overrides(job_ms=(0, 5))
    assert from_env(chosen.to_env()).job_ms == (0, 5)


def test_locust_runs_headless_shaped_with_its_files_beside_the_record(tmp_path: Path) -> None:
    from harness.commands.load import LoadRun, locust_args
    from harness.record import RunWriter

    writer = RunWriter.create(tmp_path, "load")
    run = LoadRun(profile_named("steady"), thresholds_for("steady"), writer, processes=2)
    args = locust_args(run, "http://127.0.0.1:9")
    assert args[1:5] == ["-m", "locust", "-f", args[4]]
    assert args[4].endswith("loadtests/locustfile.py")
    assert {"--headless", "--processes", "--only-summary"} <= set(args)
    assert args[args.index("--csv") + 1] == str(tmp_path / "locust")
    assert args[args.index("--html") + 1] == str(tmp_path / "locust.html")
    master = locust_args(
        LoadRun(run.profile, run.thresholds, writer, master=True, expect_workers=3), "http://h"
    )
    assert master[master.index("--expect-workers") + 1] == "3"
    assert "--processes" not in master
