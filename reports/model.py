"""A run directory read into one view model for the HTML report, through the run record only.

Every record file is read by `harness.record.RunReader` into its record type; nothing here parses
JSON or guesses a key. A directory of another record schema is refused by the reader (RecordError,
one line) before anything is read. Within a run of this schema every file is still optional: a
run killed half way, a pytest run with no results.json, a gate that never got to its drills. What
is missing or could not be read is listed in `RunReport.problems`, which the report shows next to
the verdict, and a record file that could not be read makes the verdict UNKNOWN at best: a
report that hides a missing input would look like a pass.

Not record files, and read here: JUnit XML (`junit.xml`, `junit/*.xml` and the files the suites
name) and the process logs (`RunLayout.log_files()`).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal, TypeVar

from harness.record import RecordError, RunReader
from harness.record.records import (
    CheckRecord,
    FaultWindow,
    InvariantRecord,
    RunManifest,
    RunResults,
    Sample,
    SettleRecord,
    SnapshotRecord,
    SuiteResult,
    VerdictRecord,
    merge_checks,
)
from reports.timelines import (
    FinalState,
    LatencyPoint,
    RequestView,
    TaskTimeline,
    build_timelines,
    latencies,
    order_and_cap,
    requests_of,
    status_counts,
)

LOG_TAIL_BYTES = 2_000_000

Verdict = Literal["PASS", "FAIL", "UNKNOWN"]
T = TypeVar("T")


@dataclass(frozen=True)
class TestCaseView:
    suite: str
    name: str
    outcome: str
    message: str = ""
    duration_s: float = 0.0


@dataclass(frozen=True)
class SuiteView:
    """A suite's totals, from results.json's SuiteResult (the gate's word: a suite can time out
    with no test failed) or, without one, from its JUnit file."""

    name: str
    passed: int
    failed: int
    skipped: int
    duration_s: float | None = None
    status: str = ""
    note: str = ""
    junit: str | None = None

    @classmethod
    def of(cls, suite: SuiteResult) -> SuiteView:
        return cls(
            name=suite.name,
            passed=suite.tests.passed,
            failed=suite.tests.failed + suite.tests.errors,
            skipped=suite.tests.skipped,
            duration_s=suite.duration_s,
            status=suite.status,
            note=suite.note,
            junit=suite.junit,
        )

    @property
    def ok(self) -> bool:
        return not self.failed and self.status not in {"failed", "timeout"}


@dataclass(frozen=True)
class LogView:
    name: str
    size_bytes: int
    errors: int
    warnings: int
    last_errors: tuple[str, ...] = ()


@dataclass
class RunReport:
    """Everything the report shows, already joined; the template only formats it."""

    run_dir: Path
    manifest: RunManifest
    results: RunResults | None = None
    checks: list[CheckRecord] = field(default_factory=list)
    suites: list[SuiteView] = field(default_factory=list)
    failed_tests: list[TestCaseView] = field(default_factory=list)
    requests: list[RequestView] = field(default_factory=list)
    final: FinalState = field(default_factory=FinalState)
    timelines: list[TaskTimeline] = field(default_factory=list)
    hidden_timelines: int = 0
    latencies: list[LatencyPoint] = field(default_factory=list)
    status_counts: dict[str, int] = field(default_factory=dict)
    client_only_tasks: int = 0
    faults: list[FaultWindow] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    logs: list[LogView] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    @property
    def locust_files(self) -> list[str]:
        """Locust's own HTML report and CSV files of a load run, beside this report."""
        return sorted(p.name for p in self.run_dir.glob("locust*") if p.suffix in {".html", ".csv"})

    @property
    def run_verdict(self) -> VerdictRecord | None:
        """The run's checker verdict: results.json's, else every per-test check merged; None when
        nothing was checked."""
        if self.results is not None:
            return self.results.verdict
        return merge_checks(self.checks) if self.checks else None

    @property
    def failures(self) -> list[str]:
        """Why the run failed; empty when nothing says it did."""
        out = []
        if self.results is not None and not self.results.passed:
            out.append("results.json says the run did not pass")
        if self.run_verdict is not None and self.run_verdict.valid == "broken":
            out.append("an invariant is broken")
        out += [f"check of {c.name} is broken" for c in self.checks if c.verdict.valid == "broken"]
        out += [f"suite {s.name} {s.status or 'failed'}" for s in self.suites if not s.ok]
        out += [f"test {t.name} failed" for t in self.failed_tests]
        return out

    @property
    def verdict(self) -> Verdict:
        """FAIL when anything says so (results.passed false, a broken invariant in the run's verdict
        or any test's, a failed suite or test); PASS needs evidence that the invariants held and
        every record file read; anything else is UNKNOWN."""
        if self.failures:
            return "FAIL"
        held = self.run_verdict is not None and self.run_verdict.valid == "held"
        return "PASS" if held and not self.unreadable else "UNKNOWN"

    @property
    def invariants(self) -> tuple[InvariantRecord, ...]:
        return self.run_verdict.invariants if self.run_verdict is not None else ()

    @property
    def broken(self) -> list[InvariantRecord]:
        return [i for i in self.invariants if i.status == "broken"]

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.run_verdict.counts) if self.run_verdict is not None else {}

    @property
    def settle(self) -> SettleRecord | None:
        return self.results.settle if self.results is not None else None

    @property
    def failing_checks(self) -> list[CheckRecord]:
        return [c for c in self.checks if c.verdict.valid != "held"]

    @property
    def final_statuses_known(self) -> bool:
        """Whether the status bar counts snapshots' final statuses (else only client observations)."""
        return bool(self.final.tasks)

    @property
    def run_name(self) -> str:
        return self.run_dir.resolve().name

    @property
    def time_range(self) -> tuple[float, float] | None:
        """First and last wall time seen in any timed input: the report's shared time axis."""
        times = [t for r in self.requests for t in (r.invoked_at, r.done_at)]
        times += [s.t for s in self.samples]
        times += [t for f in self.faults for t in (f.start, f.end) if t is not None]
        times += [p.terminal_at for p in self.latencies]
        times = [t for t in times if t > 0]
        return (min(times), max(times)) if times else None


# --- the record ---------------------------------------------------------------------------------


def _attempt(report: RunReport, what: str, read: Callable[[], T], empty: T) -> T:
    """One record file read; one that does not match the schema is listed and never a pass."""
    try:
        return read()
    except (RecordError, OSError, ValueError) as exc:
        report.unreadable.append(what)
        report.problems.append(f"{what} could not be read: {exc}")
        return empty


def load_record(report: RunReport, reader: RunReader) -> None:
    report.results = _attempt(report, "results.json", reader.results, None)
    report.checks = _attempt(report, "checks.jsonl", reader.checks, [])
    report.samples = _attempt(report, "samples.jsonl", reader.samples, [])
    report.faults = _attempt(report, "fault windows", reader.fault_windows, [])
    report.requests = load_requests(report, reader)
    report.final = FinalState.of(load_snapshots(report, reader))


def load_requests(report: RunReport, reader: RunReader) -> list[RequestView]:
    """Every history's client requests (each history file pairs its own invocations). A history
    that cannot be read is named in the reader's problems and the rest are read; it is never a pass."""
    out: list[RequestView] = []
    before = len(reader.problems)
    try:
        for _, history in reader.histories():
            out += requests_of(history)
    except OSError as exc:
        report.problems.append(f"the histories could not be read: {exc}")
    if len(reader.problems) > before or any("histories" in p for p in report.problems):
        report.unreadable.append("histories")
    return sorted(out, key=lambda r: r.invoked_at)


def load_snapshots(report: RunReport, reader: RunReader) -> list[tuple[str, SnapshotRecord]]:
    """Each check's snapshot, by the check's test name; a snapshot a check names but the run does
    not hold is a problem, not a silence."""
    out = []
    for check in report.checks:
        path = check.snapshot
        if path is None:
            continue
        snapshot = _attempt(report, path, partial(reader.snapshot, path), None)
        if snapshot is None:
            if path not in report.unreadable:
                report.problems.append(f"{path} (the snapshot of {check.name}) is missing")
            continue
        for store, error in (("PostgreSQL", snapshot.postgres_error), ("RabbitMQ", snapshot.rabbitmq_error)):
            if error:
                report.problems.append(f"{check.name}: {store} could not be read for its snapshot: {error}")
        out.append((check.name, snapshot))
    return out


def missing_inputs(report: RunReport, reader: RunReader) -> list[str]:
    """What a run of this kind would hold but this one does not, said plainly."""
    out = []
    if report.results is None and "results.json" not in report.unreadable:
        out.append(
            "no results.json: no run-wide verdict; the verdict rests on the per-test checks"
            if report.checks
            else "no results.json: the invariant check did not run or did not finish"
        )
    if not report.checks and "checks.jsonl" not in report.unreadable:
        out.append("no checks.jsonl: no test's invariants were checked")
    if not reader.history_files():
        out.append("no histories/: no client request was recorded")
    if report.checks and not report.final.snapshots:
        out.append(
            "no snapshots: final statuses and service events are unknown; only client observations exist"
        )
    if not report.samples and "samples.jsonl" not in report.unreadable:
        out.append("no samples.jsonl: queue depths and tasks over time are not shown")
    failed = sum(1 for s in report.samples if s.error)
    if failed:
        out.append(f"{failed} of {len(report.samples)} samples missed a store that did not answer")
    return out


# --- JUnit (not a record file) ------------------------------------------------------------------


def _junit_files(run_dir: Path, named: Iterable[str | None] = ()) -> list[Path]:
    """junit.xml, junit/*.xml, and the files results.json's suites name (relative to the run)."""
    files = [run_dir / "junit.xml", *sorted(run_dir.glob("junit/*.xml"))]
    files += [run_dir / n for n in named if n]
    return [f for f in dict.fromkeys(f.resolve() for f in files) if f.is_file()]


def _case_outcome(case: ET.Element) -> tuple[str, str]:
    for tag in ("failure", "error", "skipped"):
        found = case.find(tag)
        if found is not None:
            message = (found.get("message") or found.text or "").strip().splitlines()
            return ("failed" if tag != "skipped" else "skipped", message[0][:300] if message else "")
    return "passed", ""


def _seconds(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _junit_suite(element: ET.Element, fallback: str) -> tuple[SuiteView, list[TestCaseView]]:
    name = element.get("name") or fallback
    name = fallback if name == "pytest" else name
    tally = {"passed": 0, "failed": 0, "skipped": 0}
    failed: list[TestCaseView] = []
    for case in element.iter("testcase"):
        outcome, message = _case_outcome(case)
        tally[outcome] += 1
        if outcome == "failed":
            title = ".".join(p for p in (case.get("classname"), case.get("name")) if p)
            failed.append(TestCaseView(name, title, outcome, message, _seconds(case.get("time")) or 0.0))
    duration = _seconds(element.get("time"))
    return SuiteView(name, tally["passed"], tally["failed"], tally["skipped"], duration), failed


def load_junit(
    run_dir: Path, problems: list[str], named: Iterable[str | None] = (), suite: str | None = None
) -> tuple[list[SuiteView], list[TestCaseView]]:
    """Suites and failed tests of the run's JUnit files. A suite pytest named "pytest" is named after
    its file (`junit/e2e.xml`), and in `junit.xml` after `suite` (the checks' one suite) if given."""
    suites: list[SuiteView] = []
    failed: list[TestCaseView] = []
    for path in _junit_files(run_dir, named):
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError) as exc:
            problems.append(f"{path.name} could not be parsed: {exc}")
            continue
        elements = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        for element in elements:
            found, cases = _junit_suite(element, path.stem if path.stem != "junit" else suite or "junit")
            suites.append(found)
            failed += cases
    return suites, failed


# --- logs (not record files) --------------------------------------------------------------------


def _log_view(path: Path, name: str) -> LogView:
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(0, size - LOG_TAIL_BYTES))
        lines = handle.read().decode("utf-8", errors="replace").splitlines()
    errors = [ln for ln in lines if re.search(r"\b(ERROR|CRITICAL|Traceback)\b", ln)]
    warnings = sum(1 for ln in lines if re.search(r"\bWARNING\b", ln))
    return LogView(name, size, len(errors), warnings, tuple(e[:400] for e in errors[-8:]))


# --- the whole run ------------------------------------------------------------------------------


def _named_tasks(report: RunReport) -> list[tuple[str, int]]:
    """(taskId, invariant number) for every task a violation names, run-wide or in any test."""
    invariants: Sequence[InvariantRecord] = [
        *report.invariants,
        *(i for c in report.checks for i in c.verdict.not_held),
    ]
    return [(task, inv.number) for inv in invariants for task in inv.task_ids]


def join_tasks(report: RunReport) -> None:
    """Timelines, latencies and the status bar. The bar counts the snapshots' final statuses;
    a task no snapshot holds is counted apart (`client_only_tasks`), and with no snapshot at all
    the bar shows what clients last saw, which the template says plainly."""
    timelines = build_timelines(report.final, report.requests, _named_tasks(report))
    if report.final.tasks:
        report.status_counts = status_counts(t.status for t in report.final.tasks.values())
        report.client_only_tasks = sum(1 for t in timelines if t.task is None)
    else:
        report.status_counts = status_counts(t.last_seen for t in timelines)
        report.client_only_tasks = len(timelines)
    report.latencies = latencies(timelines)
    report.timelines, report.hidden_timelines = order_and_cap(timelines)


def load_run(run_dir: Path) -> RunReport:
    """Reads the run directory into one RunReport. Raises RecordError only when the directory is
    not of this record schema (no run.json, or another version); anything else is a problem."""
    reader = RunReader(run_dir)
    report = RunReport(run_dir=run_dir, manifest=reader.manifest)
    load_record(report, reader)
    named = (s.junit for s in report.results.suites) if report.results is not None else ()
    suite_names = {c.suite for c in report.checks}
    only_suite = suite_names.pop() if len(suite_names) == 1 else None
    junit_suites, report.failed_tests = load_junit(run_dir, report.problems, named, only_suite)
    if report.results is not None and report.results.suites:
        report.suites = [SuiteView.of(s) for s in report.results.suites]
    else:
        report.suites = junit_suites
    join_tasks(report)
    report.problems += reader.problems + missing_inputs(report, reader)
    report.logs = [_log_view(p, reader.layout.relative(p)) for p in reader.layout.log_files()]
    return report
