"""A run directory (`reports/out/<run>/`) read into one typed view model for the HTML report.

Every input is optional and may be half written: a run killed mid-way, a gate that never got
to its drills, a results.json from before a key existed. So each reader here answers "nothing"
rather than raising, and what it could not read is listed in `RunReport.problems`, which the
report shows: a report that hides a missing input would look like a pass.

Inputs, all under the run directory:
- `history.jsonl`, `histories/*.jsonl`: operations (harness/history.py);
- `results.json`: the checker's verdict (harness/verdict.py), maybe `suites`, `checks`, `timings`;
- `snapshot.json` (or a `snapshot` in results.json holding lists): `{"tasks": [...], "events":
  [...]}`, rows in snake_case or camelCase, for timelines and completion times;
- `checks.jsonl` (harness.verdict.check_record lines), `junit.xml`, `junit/*.xml` and the JUnit
  files results.json's suites name, `logs/*.log`, `stacks/*/logs/*.log`;
- `queue_depths.jsonl`: `{"t": epoch s, "queues": {name: depth}}`;
- `faults.jsonl`: `{"name", "start", "end"}` in epoch seconds (`end` null: never healed).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from harness.history import load_history
from harness.state import Snapshot
from reports.timelines import (
    LatencyPoint,
    RequestView,
    TaskTimeline,
    build_timelines,
    field_of,
    latencies,
    order_and_cap,
    parse_time,
    requests_of,
    status_counts,
)

LOG_TAIL_BYTES = 2_000_000

Verdict = Literal["PASS", "FAIL", "UNKNOWN"]


@dataclass(frozen=True)
class ViolationView:
    task_ids: tuple[str, ...]
    message: str
    evidence: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class InvariantView:
    number: int
    name: str
    status: str
    note: str = ""
    violation_count: int = 0
    violations: tuple[ViolationView, ...] = ()

    @property
    def task_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t for v in self.violations for t in v.task_ids))


@dataclass(frozen=True)
class TestCaseView:
    suite: str
    name: str
    outcome: str
    message: str = ""
    duration_s: float = 0.0


@dataclass(frozen=True)
class SuiteView:
    """A suite's totals; `status` is the gate's word for it (a suite can time out with no test
    failed), else derived from the counts."""

    name: str
    passed: int
    failed: int
    skipped: int
    duration_s: float | None = None
    status: str = ""
    note: str = ""
    junit: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and self.status not in {"failed", "timeout"}


@dataclass(frozen=True)
class CheckView:
    """One per-test verdict line (checks.jsonl or results.json `checks`)."""

    name: str
    verdict: str
    broken: tuple[InvariantView, ...] = ()

    @property
    def held(self) -> bool:
        return self.verdict.lower() in {"held", "pass", "passed", "true", "ok"}


@dataclass(frozen=True)
class FaultWindow:
    name: str
    start: float
    end: float | None


@dataclass(frozen=True)
class QueueSample:
    t: float
    depths: Mapping[str, int]


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
    valid: str | None = None
    gate: str | None = None
    reasons: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    invariants: list[InvariantView] = field(default_factory=list)
    settle: dict[str, Any] = field(default_factory=dict)
    suites: list[SuiteView] = field(default_factory=list)
    failed_tests: list[TestCaseView] = field(default_factory=list)
    checks: list[CheckView] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    requests: list[RequestView] = field(default_factory=list)
    timelines: list[TaskTimeline] = field(default_factory=list)
    hidden_timelines: int = 0
    latencies: list[LatencyPoint] = field(default_factory=list)
    status_counts: dict[str, int] = field(default_factory=dict)
    faults: list[FaultWindow] = field(default_factory=list)
    queue_samples: list[QueueSample] = field(default_factory=list)
    logs: list[LogView] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        """FAIL when an invariant broke (in the run's check or any test's) or a test failed;
        PASS needs evidence that the invariants held, never just the absence of a failure."""
        failed_tests = any(not s.ok for s in self.suites) or self.failed_tests
        if self.valid == "broken" or failed_tests or any(c.verdict == "broken" for c in self.checks):
            return "FAIL"
        if self.gate == "fail":
            return "FAIL"
        if self.valid == "held" or (self.valid is None and self.checks and all(c.held for c in self.checks)):
            return "PASS"
        return "UNKNOWN"

    @property
    def failing_checks(self) -> list[CheckView]:
        return [c for c in self.checks if not c.held]

    @property
    def broken(self) -> list[InvariantView]:
        return [i for i in self.invariants if i.status == "broken"]

    @property
    def run_name(self) -> str:
        return self.run_dir.resolve().name

    @property
    def time_range(self) -> tuple[float, float] | None:
        """First and last wall time seen in any timed input: the report's shared time axis."""
        times = [t for r in self.requests for t in (r.invoked_at, r.done_at)]
        times += [s.t for s in self.queue_samples]
        times += [t for f in self.faults for t in (f.start, f.end) if t is not None]
        times += [p.terminal_at for p in self.latencies]
        times = [t for t in times if t > 0]
        return (min(times), max(times)) if times else None


# --- reading files ------------------------------------------------------------------------------


def _read_json(path: Path, problems: list[str]) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(f"{path.name} could not be read: {exc}")
        return None


def _read_jsonl(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows, bad = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
    if bad:
        problems.append(f"{path.name}: {bad} unreadable line(s) skipped")
    return rows


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _as_int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# --- history ------------------------------------------------------------------------------------


def _history_files(run_dir: Path) -> list[Path]:
    files = [run_dir / "history.jsonl"] if (run_dir / "history.jsonl").is_file() else []
    histories = run_dir / "histories"
    if histories.is_dir():
        files += sorted(histories.glob("*.jsonl"))
    return files


def load_requests(run_dir: Path, problems: list[str]) -> list[RequestView]:
    out: list[RequestView] = []
    for path in _history_files(run_dir):
        try:
            out += requests_of(load_history(path))
        except (OSError, ValueError) as exc:
            problems.append(f"{path.relative_to(run_dir)} could not be read: {exc}")
    return sorted(out, key=lambda r: r.invoked_at)


# --- results.json -------------------------------------------------------------------------------


def _evidence(raw: Any) -> tuple[tuple[str, str], ...]:
    """Evidence as short `key: value` lines; long values are cut, since people scan, not parse."""
    if not isinstance(raw, Mapping):
        return (("evidence", _short(raw)),) if raw else ()
    return tuple((str(k), _short(v)) for k, v in raw.items())


def _short(value: Any, limit: int = 240) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, separators=(", ", ": "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _invariant(raw: Mapping[str, Any]) -> InvariantView:
    violations = tuple(
        ViolationView(
            task_ids=tuple(str(t) for t in field_of(v, "taskIds", "task_ids") or ()),
            message=str(v.get("message", "")),
            evidence=_evidence(v.get("evidence")),
        )
        for v in _list(raw.get("violations"))
        if isinstance(v, Mapping)
    )
    return InvariantView(
        number=_as_int(raw.get("number")),
        name=str(raw.get("name", "")),
        status=str(raw.get("status", "unknown")),
        note=str(raw.get("note") or ""),
        violation_count=_as_int(field_of(raw, "violationCount", "violation_count"), len(violations)),
        violations=violations,
    )


def _suite(raw: Mapping[str, Any]) -> SuiteView:
    return SuiteView(
        name=str(raw.get("name", "?")),
        passed=_as_int(raw.get("passed")),
        failed=_as_int(raw.get("failed")) + _as_int(raw.get("errors")),
        skipped=_as_int(raw.get("skipped")),
        duration_s=_as_float(field_of(raw, "duration_s", "durationS", "duration")),
        status=str(raw.get("status") or ""),
        note=str(raw.get("note") or ""),
        junit=str(raw["junit"]) if raw.get("junit") else None,
    )


def _not_held(raw: Any) -> list[InvariantView]:
    """A check line's non-held invariants, in any of the shapes a line may use: a `broken` list
    of objects or numbers, or `invariants` as a list of objects or a {number: status} map."""
    if isinstance(raw, Mapping):
        return [InvariantView(_as_int(k), "", str(v)) for k, v in raw.items() if str(v) != "held"]
    out = []
    for item in raw or ():
        if isinstance(item, Mapping):
            view = _invariant(item)
            ids = tuple(str(t) for t in field_of(item, "taskIds", "task_ids") or ())
            if ids and not view.violations:
                count = _as_int(field_of(item, "violations", "violationCount"), len(ids))
                view = replace(view, violation_count=count, violations=(ViolationView(ids, ""),))
            if view.status != "held":
                out.append(view)
        else:
            out.append(InvariantView(_as_int(item), str(item), "broken"))
    return out


def _check(raw: Mapping[str, Any]) -> CheckView:
    broken = raw.get("broken")
    not_held = _not_held(broken if broken is not None else raw.get("invariants"))
    verdict = field_of(raw, "valid", "verdict", "status", "outcome")
    return CheckView(
        name=str(field_of(raw, "nodeid", "test", "name", "scenario") or "?"),
        verdict=str(verdict if verdict is not None else "unknown"),
        broken=tuple(not_held),
    )


def _timings(raw: Any) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): v for k, v0 in raw.items() if (v := _as_float(v0)) is not None}


def apply_results(report: RunReport, results: Mapping[str, Any]) -> None:
    report.valid = str(results["valid"]) if results.get("valid") is not None else None
    report.gate = str(results["gate"]) if results.get("gate") else None
    report.reasons = [str(r) for r in _list(results.get("reasons"))]
    report.counts = {str(k): _as_int(v) for k, v in (results.get("counts") or {}).items()}
    report.invariants = sorted(
        (_invariant(i) for i in results.get("invariants") or () if isinstance(i, Mapping)),
        key=lambda i: i.number,
    )
    report.settle = dict(results.get("settle") or {})
    report.suites = [_suite(s) for s in results.get("suites") or () if isinstance(s, Mapping)]
    report.checks = [_check(c) for c in results.get("checks") or () if isinstance(c, Mapping)]
    report.timings = _timings(results.get("timings"))


def summed_counts(check_lines: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Without a run-wide check, the per-test counts added up: each test judged its own tasks."""
    total: dict[str, int] = {}
    for line in check_lines:
        counts = line.get("counts")
        for key, value in counts.items() if isinstance(counts, Mapping) else ():
            total[str(key)] = total.get(str(key), 0) + _as_int(value)
    return total


# --- JUnit --------------------------------------------------------------------------------------


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
            failed.append(TestCaseView(name, title, outcome, message, _as_float(case.get("time")) or 0.0))
    duration = _as_float(element.get("time"))
    return SuiteView(name, tally["passed"], tally["failed"], tally["skipped"], duration), failed


def load_junit(
    run_dir: Path, problems: list[str], named: Iterable[str | None] = ()
) -> tuple[list[SuiteView], list[TestCaseView]]:
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
            suite, cases = _junit_suite(element, path.stem)
            suites.append(suite)
            failed += cases
    return suites, failed


# --- snapshot ---------------------------------------------------------------------


def load_snapshot_rows(
    run_dir: Path, results: Mapping[str, Any] | None, problems: list[str]
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """Task and event rows from snapshot.json, else from results.json when it holds lists."""
    raw = _read_json(run_dir / "snapshot.json", problems)
    if not isinstance(raw, Mapping) and results is not None:
        raw = results.get("snapshot")
    if not isinstance(raw, Mapping):
        return [], []
    tasks = raw["tasks"] if isinstance(raw.get("tasks"), list) else []
    events = raw["events"] if isinstance(raw.get("events"), list) else []
    return [t for t in tasks if isinstance(t, Mapping)], [e for e in events if isinstance(e, Mapping)]


def write_snapshot_json(run_dir: Path, snapshot: Snapshot) -> Path:
    """Saves the rows the task timelines are drawn from (results.json keeps only sizes); whoever
    takes the run's final snapshot (the gate, `harness check`) calls this next to results.json."""
    rows = {
        "takenAt": snapshot.taken_at,
        "tasks": [asdict(t) for t in snapshot.tasks],
        "events": [asdict(e) for e in snapshot.events],
    }
    path = run_dir / "snapshot.json"
    path.write_text(json.dumps(rows, default=str) + "\n", encoding="utf-8")
    return path


# --- drills, queues, logs -----------------------------------------------------------------------


def load_faults(run_dir: Path, problems: list[str]) -> list[FaultWindow]:
    out = []
    for row in _read_jsonl(run_dir / "faults.jsonl", problems):
        start = parse_time(row.get("start"))
        if start is not None:
            out.append(FaultWindow(str(row.get("name", "fault")), start, parse_time(row.get("end"))))
    return sorted(out, key=lambda f: f.start)


def load_queue_samples(run_dir: Path, problems: list[str]) -> list[QueueSample]:
    out = []
    for row in _read_jsonl(run_dir / "queue_depths.jsonl", problems):
        t, queues = parse_time(field_of(row, "t", "time", "wall_time")), row.get("queues")
        if t is not None and isinstance(queues, Mapping):
            out.append(QueueSample(t, {str(k): _as_int(v) for k, v in queues.items()}))
    return sorted(out, key=lambda s: s.t)


def _log_view(path: Path, name: str) -> LogView:
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(0, size - LOG_TAIL_BYTES))
        lines = handle.read().decode("utf-8", errors="replace").splitlines()
    errors = [ln for ln in lines if re.search(r"\b(ERROR|CRITICAL|Traceback)\b", ln)]
    warnings = sum(1 for ln in lines if re.search(r"\bWARNING\b", ln))
    return LogView(name, size, len(errors), warnings, tuple(e[:400] for e in errors[-8:]))


def load_logs(run_dir: Path) -> list[LogView]:
    """Process logs of the run: `logs/*.log`, and each suite's stack logs `stacks/*/logs/*.log`."""
    paths = sorted(run_dir.glob("logs/*.log")) + sorted(run_dir.glob("stacks/*/logs/*.log"))
    return [_log_view(p, p.relative_to(run_dir).as_posix()) for p in paths]


# --- the whole run ------------------------------------------------------------------------------


def load_run(run_dir: Path) -> RunReport:
    """Reads everything the run directory holds into one RunReport; never raises on bad inputs."""
    report = RunReport(run_dir=run_dir)
    problems = report.problems
    results = _read_json(run_dir / "results.json", problems)
    if isinstance(results, Mapping):
        apply_results(report, results)
    junit_suites, report.failed_tests = load_junit(run_dir, problems, (s.junit for s in report.suites))
    report.suites = report.suites or junit_suites
    check_lines = _read_jsonl(run_dir / "checks.jsonl", problems)
    report.checks += [_check(c) for c in check_lines]
    report.counts = report.counts or summed_counts(check_lines)
    if results is None:
        problems.append(
            "no results.json: no run-wide invariant check; the verdict rests on the per-test checks"
            if report.checks
            else "no results.json: the invariant check did not run or did not finish"
        )
    report.requests = load_requests(run_dir, problems)
    tasks, events = load_snapshot_rows(run_dir, results if isinstance(results, Mapping) else None, problems)
    named = [*report.invariants, *(b for c in report.checks for b in c.broken)]
    pairs = [(task, inv.number) for inv in named for task in inv.task_ids]
    timelines = build_timelines(tasks, events, report.requests, pairs)
    report.status_counts = status_counts(timelines, tasks)
    report.latencies = latencies(timelines)
    report.timelines, report.hidden_timelines = order_and_cap(timelines)
    report.faults = load_faults(run_dir, problems)
    report.queue_samples = load_queue_samples(run_dir, problems)
    report.logs = load_logs(run_dir)
    return report
