"""The HTML report, built from a made-up run directory (tests/report_data.py); no servers."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.history import Operation
from harness.state import EventRow, Snapshot, TaskRow
from reports.charts import Series, Shade, TimeAxis, bin_rate, binned_quantile, time_chart, value_ticks
from reports.html import build_report
from reports.model import load_run, write_snapshot_json
from reports.timelines import task_anchor
from tests.report_data import CANCELLED_TASK, FAULT, T0, TASKS, make_run_dir

pytestmark = pytest.mark.unit


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run_dir(tmp_path / "20251124-150000-gate").run_dir


@pytest.fixture
def html(run_dir: Path) -> str:
    return build_report(run_dir).read_text(encoding="utf-8")


def test_report_is_written_into_the_run_dir(run_dir: Path) -> None:
    assert build_report(run_dir) == run_dir / "report.html"


def test_verdict_comes_first_and_names_the_broken_invariant(html: str) -> None:
    verdict = html.index('id="verdict"')
    assert re.search(r'class="word">FAIL<', html)
    assert html.index("#3 Terminal is final") > verdict
    assert verdict < html.index('id="suites"') < html.index("<h2>Counts") < html.index("<h2>Over time")


def test_broken_task_links_to_its_timeline(html: str, run_dir: Path) -> None:
    broken = json.loads((run_dir / "results.json").read_text())["invariants"][2]["violations"][0]["taskIds"][
        0
    ]
    anchor = task_anchor(broken)
    assert f'href="#{anchor}"' in html
    assert re.search(rf'<details class="task has-broken" id="{anchor}"', html)


def test_task_named_by_a_per_test_check_gets_a_timeline_too(html: str) -> None:
    assert f'href="#{task_anchor(CANCELLED_TASK)}"' in html
    assert re.search(rf'<details class="task has-broken" id="{task_anchor(CANCELLED_TASK)}"', html)


def test_every_task_has_a_timeline_with_its_events(html: str) -> None:
    assert html.count('<details class="task') == TASKS
    assert "event: progress" in html
    assert "GET /tasks/{taskId} → 200" in html


def test_charts_are_inline_svg_with_the_fault_window_shaded(html: str) -> None:
    assert html.count('<svg class="chart"') == 3
    for title in ("Throughput", "Latency", "Queue depths"):
        assert f'aria-label="{title}"' in html
    assert html.count('<g class="fault">') == 3
    assert "broker-kill" in html


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
    results = json.loads((run_dir / "results.json").read_text())
    results["invariants"][2]["violations"][0]["message"] = "<script>alert(1)</script>"
    (run_dir / "results.json").write_text(json.dumps(results))
    html = build_report(run_dir).read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_an_empty_run_dir_still_gives_a_report_that_says_what_is_missing(tmp_path: Path) -> None:
    html = build_report(tmp_path).read_text()
    assert re.search(r'class="word">UNKNOWN<', html)
    assert "no results.json" in html


def test_a_torn_or_foreign_input_is_reported_not_raised(run_dir: Path) -> None:
    (run_dir / "results.json").write_text('{"valid": "held", "invariants": [{"violations": 3}]')
    (run_dir / "faults.jsonl").write_text('{"name": "x", "start": 1}\nnot json\n')
    report = load_run(run_dir)
    assert any("results.json" in p for p in report.problems)
    assert any("faults.jsonl" in p for p in report.problems)


def test_held_run_is_a_pass(run_dir: Path) -> None:
    results = json.loads((run_dir / "results.json").read_text())
    results["valid"] = "held"
    results["invariants"] = [dict(i, status="held", violations=[]) for i in results["invariants"]]
    (run_dir / "results.json").write_text(json.dumps(results))
    for name in ("junit.xml", "checks.jsonl"):
        (run_dir / name).unlink()
    assert load_run(run_dir).verdict == "PASS"


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


def test_snapshot_json_round_trips_into_timelines(tmp_path: Path) -> None:
    task = TaskRow("t-1", "simulate", "COMPLETED", 100, 0, 3, 3, created_at="2025-11-24T15:00:00+00:00")
    events = tuple(
        EventRow(
            n,
            "t-1",
            "status",
            status,
            n,
            progress=p,
            worker_id="w0",
            created_at=f"2025-11-24T15:00:0{n}+00:00",
        )
        for n, (status, p) in enumerate([("PENDING", 0), ("IN_PROGRESS", 0), ("COMPLETED", 100)])
    )
    write_snapshot_json(tmp_path, Snapshot(tasks=(task,), events=events))
    (timeline,) = load_run(tmp_path).timelines
    assert [e.status for e in timeline.entries] == ["PENDING", "IN_PROGRESS", "COMPLETED"]
    assert timeline.terminal_at == pytest.approx(datetime(2025, 11, 24, 15, 0, 2, tzinfo=UTC).timestamp())


def test_ids_only_ever_refused_are_not_tasks(run_dir: Path) -> None:
    path = "/tasks/not-a-uuid"
    invoke = Operation(10_000, "p9", "invoke", "get", "GET", path, wall_time=T0 + 1)
    refused = Operation(
        10_001, "p9", "fail", "get", "GET", path, wall_time=T0 + 1, invoke_index=10_000, status_code=404
    )
    with (run_dir / "history.jsonl").open("a") as history:
        history.write(invoke.to_json() + "\n" + refused.to_json() + "\n")
    assert "not-a-uuid" not in {t.task_id for t in load_run(run_dir).timelines}


def test_gate_results_shape(run_dir: Path) -> None:
    """results.json as harness gate writes it: suites with status and a junit path, reasons."""
    results = json.loads((run_dir / "results.json").read_text())
    (run_dir / "junit").mkdir()
    (run_dir / "junit.xml").rename(run_dir / "junit" / "e2e.xml")
    suite = {
        "name": "e2e",
        "status": "passed",
        "durationS": 12.5,
        "tests": 4,
        "passed": 4,
        "failed": 0,
        "errors": 0,
        "skipped": 0,
        "junit": "junit/e2e.xml",
        "note": "",
    }
    timed_out = dict(
        suite, name="drills", status="timeout", passed=0, tests=0, junit=None, note="over budget"
    )
    results |= {
        "gate": "fail",
        "reasons": ["suite drills timeout: over budget"],
        "suites": [suite, timed_out],
        "timings": {"total_s": 61.0, "e2e_s": 12.5},
    }
    (run_dir / "results.json").write_text(json.dumps(results))
    report = load_run(run_dir)
    assert [s.ok for s in report.suites] == [True, False]
    assert [t.name for t in report.failed_tests] == ["scenarios.e2e.test_cancel.test_terminal"]
    html = build_report(run_dir).read_text()
    assert "suite drills timeout: over budget" in html
    assert '<span class="pill failed">timeout</span> drills' in html
    assert "<td>total</td>" in html
