"""The HTML report, built from a made-up run written through the run record (tests/report_data.py);
no servers."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.record import SCHEMA_VERSION, RunReader, RunWriter
from harness.record.records import QueueLevel, Sample
from reports.__main__ import main
from reports.charts import Series, Shade, TimeAxis, bin_rate, binned_quantile, time_chart, value_ticks
from reports.html import build_report
from reports.model import load_run
from reports.series import queue_depths, terminal_growth
from reports.timelines import task_anchor
from tests.report_data import (
    BROKEN_TASK,
    CANCELLED_TASK,
    FAULT,
    SAMPLE_DOWN,
    SAMPLES,
    SPLIT,
    T0,
    TASKS,
    TEST_TERMINAL,
    done_at,
    get,
    make_run_dir,
    task_id,
)

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run_dir(tmp_path / "20251124-150000-gate").run_dir


@pytest.fixture
def html(run_dir: Path) -> str:
    return build_report(run_dir).read_text(encoding="utf-8")


def timeline_of(html: str, task: str) -> str:
    """The HTML of one task's timeline (its <details> element)."""
    start = html.index(f'id="{task_anchor(task)}"')
    return html[start : html.index("</details>", start)]


def chart_of(html: str, title: str) -> str:
    start = html.index('<svg class="chart" viewBox="0 0 960 ', html.index(f"<h3>{title}</h3>"))
    return html[start : html.index("</svg>", start)]


def test_report_is_written_into_the_run_dir(run_dir: Path) -> None:
    assert build_report(run_dir) == run_dir / "report.html"


def test_verdict_comes_first_and_names_the_broken_invariant(html: str) -> None:
    verdict = html.index('id="verdict"')
    assert re.search(r'class="word">FAIL<', html)
    assert html.index("#3 terminal is final") > verdict
    assert verdict < html.index('id="suites"') < html.index("<h2>Counts") < html.index("<h2>Over time")


def test_broken_task_links_to_its_timeline(html: str, run_dir: Path) -> None:
    results = RunReader(run_dir).results()
    assert results is not None
    (broken,) = results.verdict.not_held
    assert broken.task_ids == (BROKEN_TASK,)
    anchor = task_anchor(BROKEN_TASK)
    assert f'href="#{anchor}"' in html
    assert re.search(rf'<details class="task has-broken" id="{anchor}"', html)


def test_without_results_the_checks_verdict_names_the_task(run_dir: Path) -> None:
    """No results.json (a plain pytest run): the per-test checks, merged, are the verdict."""
    (run_dir / "results.json").unlink()
    report = load_run(run_dir)
    assert report.verdict == "FAIL"
    assert [i.number for i in report.broken] == [3]
    assert any("no results.json" in p for p in report.problems)
    assert (
        f'<details class="task has-broken" id="{task_anchor(BROKEN_TASK)}"'
        in build_report(run_dir).read_text()
    )


def test_every_task_has_a_timeline_with_its_final_status(html: str) -> None:
    assert html.count('<details class="task') == TASKS
    cancelled = timeline_of(html, CANCELLED_TASK)
    assert 'title="final status, from the snapshot">CANCELLED<' in cancelled
    assert TEST_TERMINAL in cancelled


def test_a_timeline_holds_client_requests_and_service_events_on_one_axis(html: str) -> None:
    task = task_id(random.Random(8).randrange(TASKS))
    timeline = timeline_of(html, task)
    requests = re.findall(r'<tr class="request', timeline)
    events = re.findall(r'<tr class="event', timeline)
    assert requests, "no client request row"
    assert len(events) >= 4, "no service event rows"
    assert "GET /tasks/{taskId} → 200" in timeline
    assert re.search(
        r'class="pill from"[^>]*>PENDING</span> → <span class="pill"[^>]*>IN_PROGRESS<', timeline
    )
    assert "worker-" in timeline
    times = [float(t) for t in re.findall(r'<td class="mono" title="[^"]*">\+([0-9.]+) s</td>', timeline)]
    assert times == sorted(times), "requests and events are merged in time order"
    order = re.findall(r'<tr class="(request|event)', timeline)
    assert order[:3] == ["request", "event", "event"], "submit, then PENDING and IN_PROGRESS events"


def test_the_status_bar_counts_the_snapshots_final_statuses(run_dir: Path, html: str) -> None:
    report = load_run(run_dir)
    assert report.final_statuses_known
    assert report.status_counts == {"COMPLETED": TASKS - 2, "FAILED": 1, "CANCELLED": 1}
    assert "Final status of 50 task(s)" in html
    assert "only client observations" not in html


def test_without_snapshots_the_status_bar_says_it_has_only_client_observations(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "run", snapshots=False).run_dir
    report = load_run(run_dir)
    html = build_report(run_dir).read_text()
    assert not report.final_statuses_known
    assert "No snapshot in this run: only client observations exist." in html
    assert "Final status" not in html
    assert "final status of" not in html.lower().replace("final status, from the snapshot", "")
    assert 'class="pill seen"' in html
    assert report.status_counts == {"COMPLETED": TASKS - 2, "FAILED": 1, "CANCELLED": 1}
    assert 'class="event' not in html, "no snapshot, no service events"


def test_charts_are_inline_svg_on_one_axis_with_the_fault_window_shaded(html: str) -> None:
    titles = ("Throughput", "Latency", "Submit latency", "Queue depths", "Tasks by status")
    assert html.count('<svg class="chart"') == len(titles)
    for title in titles:
        assert f'aria-label="{title}"' in html
    assert html.count('<g class="fault">') == len(titles)
    assert "broker-kill" in html
    fault_x = {re.findall(r'<g class="fault">.*?<rect x="([0-9.]+)"', chart_of(html, t))[0] for t in titles}
    assert len(fault_x) == 1, "the fault window sits at the same x in every chart"


def test_latency_charts_draw_p50_p95_and_p99(html: str) -> None:
    for title in ("Latency", "Submit latency"):
        lines = re.findall(r"<polyline[^>]*><title>(p\d\d)</title>", chart_of(html, title))
        assert sorted(set(lines)) == ["p50", "p95", "p99"], title


def test_the_queue_chart_is_drawn_from_the_samples(run_dir: Path, html: str) -> None:
    samples = RunReader(run_dir).samples()
    depths = queue_depths(samples)
    assert len(depths["ast.simulate.q"]) == SAMPLES
    assert max(v for _, v in depths["ast.simulate.q"]) == 14  # 12 ready + 2 unacked at the peak
    chart = chart_of(html, "Queue depths")
    found = re.findall(r'<polyline[^>]*points="([^"]+)"><title>([^<]+)</title>', chart)
    lines = {name: points for points, name in found}
    assert set(lines) == {"ast.simulate.q", "ast.simulate.retry.200ms.q", "ast.jobs.dlq"}
    assert len(lines["ast.simulate.q"].split()) == 2 * SAMPLES - 1, "a step per sample"
    assert "ast.simulate.retry.400ms.q" not in chart, "a queue that never held a message is not drawn"


def test_throughput_counts_only_growth_between_samples(run_dir: Path) -> None:
    samples = RunReader(run_dir).samples()
    growth = terminal_growth(samples)
    assert all(n > 0 for _, n in growth)
    last_sample_of_test_many = T0 + 9
    seen_terminal = [i for i in range(TASKS) if i >= SPLIT or done_at(i) <= last_sample_of_test_many]
    assert sum(n for _, n in growth) == len(seen_terminal), "each task counted once, when first seen terminal"
    assert not any(t == T0 + SAMPLE_DOWN for t, _ in growth), "an unanswered sample is a gap"


def test_terminal_growth_ignores_truncation() -> None:
    counts = [0, 2, 5, 0, 1, 1, 4]
    samples = [Sample(t=float(i), tasks={"COMPLETED": n} if n else {}) for i, n in enumerate(counts)]
    assert terminal_growth(samples) == [(1.0, 2.0), (2.0, 3.0), (4.0, 1.0), (6.0, 3.0)]


def test_suites_counts_and_logs(html: str) -> None:
    assert "scenarios.e2e.test_cancel.test_terminal" in html
    assert "assert &#39;IN_PROGRESS&#39; == &#39;CANCELLED&#39;" in html
    assert '<div class="n">50</div><div class="k">accepted</div>' in html
    assert "logs/api.log" in html


def test_no_external_resources(html: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "http://" not in html
    assert "https://" not in html
    assert "<link" not in html


def test_text_from_inputs_is_escaped(run_dir: Path) -> None:
    reader = RunReader(run_dir)
    results = reader.results()
    assert results is not None
    (broken,) = results.verdict.not_held
    violation = broken.violations[0].model_copy(update={"message": "<script>alert(1)</script>"})
    invariants = tuple(
        i.model_copy(update={"violations": (violation,)}) if i.number == broken.number else i
        for i in results.verdict.invariants
    )
    verdict = results.verdict.model_copy(update={"invariants": invariants})
    RunWriter(run_dir).results(results.model_copy(update={"verdict": verdict}))
    html = build_report(run_dir).read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_run_with_only_its_manifest_says_what_is_missing(tmp_path: Path) -> None:
    RunWriter.create(tmp_path, "gate")
    report = load_run(tmp_path)
    html = build_report(tmp_path).read_text()
    assert report.verdict == "UNKNOWN"
    assert re.search(r'class="word">UNKNOWN<', html)
    for missing in ("no results.json", "no checks.jsonl", "no histories/", "no samples.jsonl"):
        assert missing in html


@pytest.mark.parametrize(
    ("manifest", "found"), [(None, "no run.json"), ('{"schemaVersion": 99}', "schema 99")]
)
def test_a_run_of_another_schema_is_refused_with_one_line(
    tmp_path: Path, manifest: str | None, found: str
) -> None:
    if manifest is not None:
        (tmp_path / "run.json").write_text(manifest)
    done = subprocess.run(
        [sys.executable, "-m", "reports", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert found in lines[0]
    assert f"wants schema {SCHEMA_VERSION}" in lines[0]
    assert not (tmp_path / "report.html").exists()


def test_main_refuses_what_is_not_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "is not a run directory" in capsys.readouterr().err


def test_a_torn_or_foreign_record_is_reported_and_is_never_a_pass(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "run", broken=False).run_dir
    assert load_run(run_dir).verdict == "PASS"
    with (run_dir / "samples.jsonl").open("a") as samples:
        samples.write('{"t": 1')
    report = load_run(run_dir)
    assert any("samples.jsonl: torn last line skipped" in p for p in report.problems)
    assert report.verdict == "PASS", "a torn last sample loses one sample, not the evidence"
    (run_dir / "checks.jsonl").write_text('{"name": "x", "guessed": true}\n')
    report = load_run(run_dir)
    assert any(p.startswith("checks.jsonl could not be read") for p in report.problems)
    assert report.verdict == "UNKNOWN"


def test_held_run_is_a_pass(tmp_path: Path) -> None:
    report = load_run(make_run_dir(tmp_path / "run", broken=False).run_dir)
    assert report.verdict == "PASS"
    assert not report.failures


def test_results_not_passed_is_a_fail_even_when_every_invariant_held(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "run", broken=False).run_dir
    results = RunReader(run_dir).results()
    assert results is not None
    RunWriter(run_dir).results(results.model_copy(update={"passed": False, "reasons": ("budget exceeded",)}))
    report = load_run(run_dir)
    assert report.verdict == "FAIL"
    assert "budget exceeded" in build_report(run_dir).read_text()


def test_fault_windows_come_from_the_nemesis_history(run_dir: Path) -> None:
    (fault,) = load_run(run_dir).faults
    assert (fault.name, fault.start, fault.end, fault.healed) == (*FAULT, True)


def test_latency_uses_completion_times(run_dir: Path) -> None:
    report = load_run(run_dir)
    assert len(report.latencies) == TASKS
    during_fault = [p.latency_s for p in report.latencies if FAULT[1] <= p.submitted_at <= FAULT[2]]
    assert min(during_fault) >= 4.0
    assert report.time_range is not None
    assert report.time_range[0] == pytest.approx(T0)


def test_harness_report_command_prints_the_path(run_dir: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(run_dir / "report.html")


def test_ids_only_ever_refused_are_not_tasks(run_dir: Path) -> None:
    with RunWriter(run_dir).history("refused") as history:
        invocation = history.invoke("p9", *get("not-a-uuid"))
        history.complete(invocation, "fail", status_code=404)
    report = load_run(run_dir)
    assert any(r.task_id == "not-a-uuid" for r in report.requests)
    assert "not-a-uuid" not in {t.task_id for t in report.timelines}


def test_gate_suites_timeout_and_junit_paths(run_dir: Path) -> None:
    """results.json's suites as `harness gate` writes them: a status, a JUnit path, reasons."""
    results = RunReader(run_dir).results()
    assert results is not None
    (run_dir / "junit").mkdir()
    (run_dir / "junit.xml").rename(run_dir / "junit" / "e2e.xml")
    (suite,) = results.suites
    e2e = suite.model_copy(update={"junit": "junit/e2e.xml"})
    drills = suite.model_copy(
        update={"name": "drills", "status": "timeout", "junit": None, "note": "over budget"}
    )
    reasons = ("suite drills timeout: over budget",)
    RunWriter(run_dir).results(results.model_copy(update={"suites": (e2e, drills), "reasons": reasons}))
    report = load_run(run_dir)
    assert [s.ok for s in report.suites] == [False, False]
    assert [t.name for t in report.failed_tests] == ["scenarios.e2e.test_cancel.test_terminal"]
    html = build_report(run_dir).read_text()
    assert "suite drills timeout: over budget" in html
    assert '<span class="pill failed">timeout</span> drills' in html
    assert "<td>total</td>" in html


# --- charts -------------------------------------------------------------------------------------


def test_value_ticks_cover_the_top() -> None:
    assert value_ticks(7.3) == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert value_ticks(0) == [0.0, 1.0]


def test_bin_rate_counts_per_second() -> None:
    axis = TimeAxis(0.0, 10.0)
    points = bin_rate([0.1, 0.2, 0.3, 5.5], axis, 2.0)
    assert [y for _, y in points] == [1.5, 0.0, 0.5, 0.0, 0.0]


def test_binned_quantile_skips_empty_bins() -> None:
    axis = TimeAxis(0.0, 10.0)
    points = binned_quantile([(0.5, 1.0), (0.6, 3.0), (9.0, 2.0)], axis, 5.0, 0.95)
    assert points == [(2.5, 3.0), (7.5, 2.0)]


def test_time_chart_shares_the_axis_and_escapes_labels() -> None:
    axis = TimeAxis(100.0, 200.0)
    svg = time_chart(
        axis,
        [Series("a<b", [(100.0, 1.0), (200.0, 2.0)])],
        title="T",
        unit="/s",
        shades=[Shade(150.0, None, "kill & restart")],
    )
    assert svg.startswith('<svg class="chart"')
    assert "a&lt;b" in svg
    assert "kill &amp; restart" in svg
    assert f'x="{axis.x(150.0):.1f}"' in svg
    assert axis.x(100.0) == axis.left
    assert axis.x(200.0) == axis.width - axis.right


def test_a_long_legend_wraps_and_the_chart_grows() -> None:
    axis = TimeAxis(0.0, 10.0)
    many = [Series(f"ast.initialize.impact.retry.{n}00ms.q", [(0.0, 1.0)]) for n in range(1, 9)]
    one_row = time_chart(axis, many[:1], title="T", unit="")
    wrapped = time_chart(axis, many, title="T", unit="")
    assert 'viewBox="0 0 960 200"' in one_row
    (height,) = re.findall(r'viewBox="0 0 960 (\d+)"', wrapped)
    assert int(height) > 200


def test_queue_depths_leave_a_gap_where_the_broker_did_not_answer() -> None:
    level = QueueLevel(ready=3, unacked=1)
    samples = [
        Sample(t=0.0, queues={"ast.simulate.q": level}),
        Sample(t=1.0, rabbitmq_error="ConnectionRefusedError"),
        Sample(t=2.0, queues={"ast.simulate.q": level, "ast.jobs.dlq": QueueLevel(ready=1, unacked=0)}),
    ]
    assert queue_depths(samples) == {
        "ast.simulate.q": [(0.0, 4.0), (2.0, 4.0)],
        "ast.jobs.dlq": [(0.0, 0.0), (2.0, 1.0)],
    }


def test_a_load_runs_slos_are_drawn_as_a_table(tmp_path: Path) -> None:
    from harness.record import RunWriter
    from harness.record.records import RunResults, SloRecord, VerdictRecord
    from reports.html import build_report

    writer = RunWriter.create(tmp_path / "load", "load")
    slos = (
        SloRecord(metric="submit_p95_ms", op="<", limit=500, value=31.2, status="passed"),
        SloRecord(metric="queue_depth_max", op="<", limit=100, value=None, status="failed"),
    )
    writer.results(RunResults(kind="load", passed=False, verdict=VerdictRecord(valid="held"), slos=slos))
    (tmp_path / "load" / "locust.html").write_text("<html></html>")

    html = build_report(tmp_path / "load").read_text()

    section = html[html.index('id="slos"') :]
    assert "submit_p95_ms" in section
    assert "31.2" in section
    assert "queue_depth_max" in section
    assert "not measured" in section
    assert 'href="locust.html"' in section


def test_a_drill_runs_verdict_rows_are_drawn_as_a_table(tmp_path: Path) -> None:
    from harness.record import RunWriter
    from harness.record.records import DrillRecord, RunResults, VerdictRecord
    from reports.html import build_report

    writer = RunWriter.create(tmp_path / "drill", "drill")
    rows = (
        DrillRecord(
            name="worker-kill",
            passed=True,
            fault_window="6.0-7.5s",
            sent=90,
            accepted=90,
            completed=86,
            failed=4,
            lost=0,
            duplicated=0,
            recovery_s=0.3,
            first_completion_s=0.9,
        ),
        DrillRecord(
            name="db-kill",
            passed=False,
            fault_window="6.0-8.2s",
            sent=90,
            accepted=79,
            completed=70,
            failed=4,
            lost=5,
            duplicated=0,
            broken=("1 no lost task",),
        ),
    )
    writer.results(RunResults(kind="drill", passed=False, verdict=VerdictRecord(valid="broken"), drills=rows))

    section = build_report(tmp_path / "drill").read_text().split('id="drills"', 1)[1]

    assert "worker-kill" in section
    assert "0.3 s" in section
    assert "db-kill" in section
    assert "1 no lost task" in section
    assert section.count(">FAIL<") == 1
