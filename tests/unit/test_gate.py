"""The gate's pure parts: budget shares, suite choice, JUnit counting and merging, the merged verdict."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.gate import (
    SUITES,
    CaseCounts,
    LiveCounts,
    Suite,
    SuiteRun,
    allowance,
    gate_reasons,
    junit_counts,
    merge_junit,
    select_suites,
    split_budget,
)
from harness.record.layout import file_stem
from harness.record.records import CheckRecord, InvariantRecord, VerdictRecord, merge_checks

pytestmark = pytest.mark.unit

A, B, C = Suite("a", ("x",), weight=1.0), Suite("b", ("y",), weight=2.0), Suite("c", ("z",), weight=1.0)

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5" time="12.5">
<testcase classname="t" name="ok1" time="1"/>
<testcase classname="t" name="ok2" time="1"/>
<testcase classname="t" name="bad" time="1"><failure message="boom">x</failure></testcase>
<testcase classname="t" name="teardown" time="1"><error message="failed on teardown">x</error></testcase>
<testcase classname="t" name="both" time="1"><failure message="a">x</failure><error message="b"/></testcase>
<testcase classname="t" name="skip" time="0"><skipped message="no"/></testcase>
</testsuite></testsuites>"""


def _junit(tmp_path: Path, name: str, text: str = JUNIT) -> Path:
    path = tmp_path / f"{name}.xml"
    path.write_text(text)
    return path


def test_the_budget_is_split_by_weight() -> None:
    assert split_budget(400, [A, B, C]) == {"a": 100, "b": 200, "c": 100}


def test_a_suite_may_use_what_is_left_but_half_the_shares_of_the_later_ones() -> None:
    assert allowance(400, A, [A, B, C]) == pytest.approx(400 - 0.5 * (200 + 100))
    assert allowance(300, B, [B, C]) == pytest.approx(300 - 0.5 * 100)
    assert allowance(120, C, [C]) == 120
    assert allowance(-5, C, [C]) == 0


def test_suites_are_selected_by_name_in_gate_order(tmp_path: Path) -> None:
    assert [s.name for s in select_suites(["checker", "e2e"], tmp_path)] == ["e2e", "checker"]
    with pytest.raises(ValueError, match="nope"):
        select_suites(["nope"], tmp_path)


def test_by_default_the_gate_runs_the_suites_that_hold_tests(tmp_path: Path) -> None:
    for name in ("scenarios/e2e", "scenarios/checker"):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "test_x.py").write_text("")

    assert [s.name for s in select_suites(None, tmp_path)] == ["e2e", "checker"]
    assert [s.name for s in select_suites(["drills"], tmp_path)] == ["drills"]
    assert [s.name for s in SUITES] == ["e2e", "checker", "property", "drills", "load"]


def test_a_suite_runs_its_paths_with_its_marker() -> None:
    assert Suite("e2e", ("scenarios/e2e",), "e2e").pytest_args() == ["scenarios/e2e", "-m", "e2e"]
    assert Suite("checker", ("scenarios/checker",)).pytest_args() == ["scenarios/checker"]


def test_a_suite_without_test_modules_is_not_present(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "conftest.py").write_text("")
    suite = Suite("s", ("s",))
    assert not suite.present(tmp_path)
    (tmp_path / "s" / "test_x.py").write_text("")
    assert suite.present(tmp_path)


def test_junit_counts_each_case_once_failure_beating_error(tmp_path: Path) -> None:
    counts = junit_counts(_junit(tmp_path, "e2e"))

    assert counts == CaseCounts(tests=6, passed=2, failed=2, errors=1, skipped=1, time_s=12.5)


def test_merged_junit_names_each_suite_and_totals_them(tmp_path: Path) -> None:
    files = {"e2e": _junit(tmp_path, "e2e"), "checker": _junit(tmp_path, "checker")}
    files["gone"] = tmp_path / "no.xml"

    root = merge_junit(files).getroot()

    assert [s.get("name") for s in root.iter("testsuite")] == ["e2e", "checker", "gone"]
    totals = [root.get(k) for k in ("tests", "failures", "errors", "skipped")]
    assert totals == ["13", "4", "3", "2"]
    assert root.find("./testsuite[@name='gone']/testcase/error") is not None
    ET.fromstring(ET.tostring(root))


def _check(name: str, broken: dict[int, tuple[str, ...]] | None = None) -> CheckRecord:
    """A check record as the plugin writes it: every invariant held but those in `broken`."""
    from harness.checker import invariant_names

    invariants = tuple(
        InvariantRecord(
            number=n,
            name=title,
            status="broken" if n in (broken or {}) else "held",
            violation_count=1 if n in (broken or {}) else 0,
            violations=(
                ({"taskIds": (broken or {})[n], "message": "planted"},) if n in (broken or {}) else ()
            ),
        )
        for n, title in invariant_names().items()
    )
    verdict = VerdictRecord(
        valid="broken" if broken else "held", counts={"accepted": 1, "completed": 1}, invariants=invariants
    )
    return CheckRecord(name=name, suite="e2e", verdict=verdict)


def test_invariants_merge_the_worst_status_and_who_broke_them() -> None:
    result = merge_checks([_check("a"), _check("b", {2: ("t1",)}), _check("c")])

    assert result.valid == "broken"
    assert result.counts == {"accepted": 3, "completed": 3}
    two = next(i for i in result.invariants if i.number == 2)
    assert (two.name, two.status, two.violation_count) == ("once only", "broken", 1)
    assert two.violations[0].task_ids == ("t1",)
    assert two.violations[0].evidence["test"] == "b"
    assert {i.status for i in result.invariants if i.number != 2} == {"held"}


def test_no_checks_is_unknown_not_held() -> None:
    result = merge_checks([])
    assert result.valid == "unknown"
    assert {i.status for i in result.invariants} == {"unknown"}


def test_the_gate_fails_on_a_failed_suite_a_broken_invariant_or_no_check() -> None:
    held = merge_checks([_check("a")])
    broken = merge_checks([_check("a", {9: ()})])
    passed = SuiteRun(A, "passed")
    missing = SuiteRun(B, "failed", note="no tests: y hold none")

    assert gate_reasons([passed], held, 1) == []
    assert gate_reasons([passed, SuiteRun(C, "timeout", note="over")], held, 1) == ["suite c timeout: over"]
    assert gate_reasons([passed, missing], held, 1) == ["suite b failed: no tests: y hold none"]
    assert gate_reasons([passed], broken, 1) == [
        "invariant 9 (nothing stuck in transit) broken in 1 place(s)"
    ]
    assert gate_reasons([passed], merge_checks([]), 0) == [
        "no test checked the invariants: the verdict is unknown"
    ]
    assert gate_reasons([], held, 1) == ["no suite to run: no suite of the gate holds a test"]


def test_live_counts_read_pytest_verbose_lines_as_they_come(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("a.py::t1 PASSED [ 10%]\na.py::t2 FAILED [ 20%]\na.py::t3 SKI")
    live = LiveCounts().feed(log)
    assert (live.passed, live.failed, live.skipped) == (1, 1, 0)
    log.write_text("a.py::t1 PASSED [ 10%]\na.py::t2 FAILED [ 20%]\na.py::t3 SKIPPED\na.py::t2 ERROR\n")
    assert (live.feed(log).skipped, live.failed) == (1, 2)


def test_history_file_names_are_safe_and_unique() -> None:
    a = file_stem("scenarios/e2e/test_x.py::test_y[a/b]")
    b = file_stem("scenarios/e2e/test_x.py::test_y[a_b]")
    assert a != b
    assert "/" not in a
    assert a.startswith("scenarios_e2e_test_x.py__test_y")
    assert len(file_stem("x" * 500)) < 140


def test_check_without_a_target_tells_the_user_to_run_harness_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from harness.cli import app

    monkeypatch.delenv("HARNESS_TARGET", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["check"], env={"COLUMNS": "200"})

    assert result.exit_code == 2
    assert "harness up" in result.output
    assert "--target" in result.output


def test_a_gate_asked_for_a_suite_with_no_test_fails_saying_which(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`harness gate --suites drills` before any drill exists: exit 1, and a line naming the suite."""
    from typer.testing import CliRunner

    import harness.commands.gate as gate_command
    from harness.cli import app
    from harness.record import RunReader

    monkeypatch.setattr(gate_command, "project_root", lambda: tmp_path)
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["gate", "--suites", "drills", "--run-dir", str(run_dir)], env={"COLUMNS": "200"}
    )

    assert result.exit_code == 1, result.output
    assert "suite drills failed: no tests: scenarios/drills hold none" in result.output
    results = RunReader(run_dir).results()
    assert results is not None
    assert not results.passed
    assert results.verdict.valid == "unknown"
