"""The acceptance gate: every suite that exists, each in its own pytest process, within one budget.

Suites are data (`SUITES`): adding the drills or the load run is one more `Suite`. Each suite runs
as a pytest subprocess so a crash, a hang or a leaked server in one cannot take the others down,
and each gets `HARNESS_RUN_DIR`, so histories, per-test verdicts and logs all land in the gate's
run directory. The budget is shared out when a suite starts: it may use what is left minus a reserve for the
suites after it (`allowance`), so time an early suite did not use goes to the later ones.

The pure parts (budget shares, JUnit parsing and merging, the aggregation of checks.jsonl, the
verdict) are separate from the process handling so they can be unit-tested without servers.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.record import RUN_DIR_ENV, SUITE_ENV
from harness.record.records import (
    CheckRecord,
    RunResults,
    SuiteResult,
    SuiteStatus,
    TestTotals,
    VerdictRecord,
    merge_checks,
)


@dataclass(frozen=True)
class Suite:
    """One pytest suite of the gate: the paths (and marker) it runs, and its weight in the budget.

    The gate runs by default the suites that exist (`default_suites`); a suite asked for by name
    that holds no test fails the gate: a gate must fail for missing work.
    """

    name: str
    paths: tuple[str, ...]
    marker: str | None = None
    weight: float = 1.0
    extra_args: tuple[str, ...] = ()

    def pytest_args(self) -> list[str]:
        args = [*self.paths, *self.extra_args]
        return [*args, "-m", self.marker] if self.marker else args

    def present(self, root: Path) -> bool:
        return any(_has_tests(root / path) for path in self.paths)


def _has_tests(path: Path) -> bool:
    if path.is_file():
        return path.name.startswith("test_") and path.suffix == ".py"
    return path.is_dir() and any(path.rglob("test_*.py"))


SUITES: tuple[Suite, ...] = (
    Suite("e2e", ("scenarios/e2e",), "e2e", weight=3.0),
    Suite("checker", ("scenarios/checker",), weight=1.0),
    Suite("property", ("scenarios/property",), "property", weight=2.0),
    Suite("drills", ("scenarios/drills",), "drill", weight=3.0),
    Suite("load", ("loadtests", "scenarios/load"), "load", weight=1.0),
)


def default_suites(root: Path, suites: Sequence[Suite] = SUITES) -> list[Suite]:
    """The suites that hold tests in this checkout: what the gate runs when none is named."""
    return [s for s in suites if s.present(root)]


def select_suites(
    names: Sequence[str] | None, root: Path, suites: Sequence[Suite] = SUITES
) -> list[Suite]:
    """The named suites in the gate's order, or the default ones; an unknown name is an error."""
    if not names:
        return default_suites(root, suites)
    known = {s.name: s for s in suites}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown suite(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [s for s in suites if s.name in names]


RESERVE = 0.5


def allowance(remaining_s: float, suite: Suite, still_to_run: Sequence[Suite]) -> float:
    """What this suite may use: all that is left, minus a reserve for each later suite of half
    its weighted share. A slow suite may thus run past its share while the ones after it still
    get time, and time an early suite did not use goes to the later ones."""
    total = sum(s.weight for s in still_to_run) or 1.0
    later = sum(s.weight for s in still_to_run if s is not suite)
    return max(0.0, remaining_s * (1.0 - RESERVE * later / total))


def split_budget(budget_s: float, suites: Sequence[Suite]) -> dict[str, float]:
    """The up-front split, if every suite used its whole share: what the progress display shows."""
    total = sum(s.weight for s in suites) or 1.0
    return {s.name: budget_s * s.weight / total for s in suites}


# --- JUnit ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseCounts:
    tests: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    time_s: float = 0.0

    def totals(self) -> TestTotals:
        return TestTotals(
            total=self.tests, passed=self.passed, failed=self.failed, errors=self.errors, skipped=self.skipped
        )

    def __add__(self, other: CaseCounts) -> CaseCounts:
        return CaseCounts(
            self.tests + other.tests,
            self.passed + other.passed,
            self.failed + other.failed,
            self.errors + other.errors,
            self.skipped + other.skipped,
            self.time_s + other.time_s,
        )


def _case_outcome(case: ET.Element) -> str:
    """failed beats error beats skipped: a test that failed and also errored at teardown is failed."""
    tags = {child.tag for child in case}
    for tag, outcome in (("failure", "failed"), ("error", "errors"), ("skipped", "skipped")):
        if tag in tags:
            return outcome
    return "passed"


def _testsuites(root: ET.Element) -> list[ET.Element]:
    return [root] if root.tag == "testsuite" else list(root.iter("testsuite"))


def junit_counts(path: Path) -> CaseCounts:
    """Counts of one JUnit file, from its test cases (not its header, which counts a test that
    failed and errored at teardown twice)."""
    counts: dict[str, int] = defaultdict(int)
    time_s = 0.0
    for suite in _testsuites(ET.parse(path).getroot()):
        time_s += float(suite.get("time") or 0.0)
        for case in suite.iter("testcase"):
            counts[_case_outcome(case)] += 1
    tests = sum(counts.values())
    return CaseCounts(tests, counts["passed"], counts["failed"], counts["errors"], counts["skipped"], time_s)


def merge_junit(files: Mapping[str, Path]) -> ET.ElementTree[ET.Element]:
    """One `<testsuites>` holding every suite's `<testsuite>`, each renamed after its gate suite,
    with totals recomputed; a missing or unreadable file becomes an errored suite, not a gap."""
    root = ET.Element("testsuites", name="harness gate")
    total = CaseCounts()
    for name, path in files.items():
        for element in _suites_of(name, path):
            element.set("name", name)
            root.append(element)
        total = total + (junit_counts(path) if _readable(path) else CaseCounts(1, errors=1))
    root.attrib.update(
        {
            "tests": str(total.tests),
            "failures": str(total.failed),
            "errors": str(total.errors),
            "skipped": str(total.skipped),
            "time": f"{total.time_s:.3f}",
        }
    )
    return ET.ElementTree(root)


def _readable(path: Path) -> bool:
    try:
        ET.parse(path)
    except (OSError, ET.ParseError):
        return False
    return True


def _suites_of(name: str, path: Path) -> list[ET.Element]:
    if _readable(path):
        return _testsuites(ET.parse(path).getroot())
    broken = ET.Element("testsuite", name=name, tests="1", errors="1", failures="0", skipped="0")
    case = ET.SubElement(broken, "testcase", classname=f"gate.{name}", name="suite")
    ET.SubElement(case, "error", message=f"no readable JUnit file at {path}")
    return [broken]


# --- the verdict ----------------------------------------------------------------------------------


@dataclass
class SuiteRun:
    """How one suite went: what the progress display shows and results.json records."""

    suite: Suite
    status: SuiteStatus = "skipped"
    allowance_s: float = 0.0
    elapsed_s: float = 0.0
    exit_code: int | None = None
    counts: CaseCounts = field(default_factory=CaseCounts)
    junit: Path | None = None
    log: Path | None = None
    note: str = ""

    def to_record(self) -> SuiteResult:
        return SuiteResult(
            name=self.suite.name,
            status=self.status,
            exit_code=self.exit_code,
            allowance_s=round(self.allowance_s, 1),
            duration_s=round(self.elapsed_s, 2),
            tests=self.counts.totals(),
            junit=str(self.junit) if self.junit else None,
            log=str(self.log) if self.log else None,
            note=self.note,
        )


def gate_reasons(runs: Sequence[SuiteRun], verdict: VerdictRecord, checked: int) -> list[str]:
    """Why the gate fails; empty when it passes. Every suite asked for must run and pass, and the
    invariants must be judged and held: an unknown verdict is not a held one."""
    reasons = [
        f"suite {r.suite.name} {r.status}" + (f": {r.note}" if r.note else "")
        for r in runs
        if r.status != "passed"
    ]
    if not runs:
        reasons.append("no suite to run: no suite of the gate holds a test")
    if not checked:
        reasons.append("no test checked the invariants: the verdict is unknown")
    reasons += [
        f"invariant {i.number} ({i.name}) {i.status} in {i.violation_count} place(s)"
        for i in verdict.invariants
        if i.status == "broken" or (checked and i.status == "unknown")
    ]
    return reasons


# --- running one suite ------------------------------------------------------------------------------

_OUTCOME = re.compile(r"\s(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")
STOP_GRACE_S = 60.0


@dataclass
class LiveCounts:
    """Counts read off pytest's `-v` output while the suite runs (the JUnit file exists only at the
    end); a rough view for the progress display, not the verdict."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    _offset: int = 0

    def feed(self, log: Path) -> LiveCounts:
        with log.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        cut = chunk.rfind(b"\n") + 1
        self._offset += cut
        for match in _OUTCOME.finditer(chunk[:cut].decode("utf-8", "replace")):
            word = match.group(1)
            if word in {"PASSED", "XFAIL"}:
                self.passed += 1
            elif word == "SKIPPED":
                self.skipped += 1
            else:
                self.failed += 1
        return self


@dataclass(frozen=True)
class GateContext:
    """What every suite process shares: the project root, the run directory, the environment."""

    root: Path
    run_dir: Path
    target: Path | None = None

    def env(self, suite: Suite) -> dict[str, str]:
        env = {**os.environ, RUN_DIR_ENV: str(self.run_dir), SUITE_ENV: suite.name}
        env.pop("HARNESS_TARGET", None)
        if self.target is not None:
            env["HARNESS_TARGET"] = str(self.target)
        return env

    def argv(self, suite: Suite) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pytest",
            *suite.pytest_args(),
            f"--junitxml={self.junit(suite)}",
            f"--alluredir={self.run_dir / 'allure-results'}",
            "-p",
            "no:cacheprovider",
            "-v",
        ]

    def junit(self, suite: Suite) -> Path:
        return self.run_dir / "junit" / f"{suite.name}.xml"

    def log(self, suite: Suite) -> Path:
        return self.run_dir / "logs" / f"pytest-{suite.name}.log"


def run_suite(
    ctx: GateContext, suite: Suite, allowance_s: float, tick: Callable[[float, LiveCounts], None]
) -> SuiteRun:
    """Runs one suite as a pytest process in its own session, stopped when over its allowance.

    Over time it gets SIGINT (pytest then tears its fixtures down, stops its stack and still
    writes its JUnit file), then SIGTERM, then SIGKILL of its whole process group.
    """
    run = SuiteRun(suite, allowance_s=allowance_s, junit=ctx.junit(suite), log=ctx.log(suite))
    for path in (ctx.log(suite), ctx.junit(suite)):
        path.parent.mkdir(parents=True, exist_ok=True)
    live = LiveCounts()
    started = time.monotonic()
    with ctx.log(suite).open("w") as out:
        proc = subprocess.Popen(
            ctx.argv(suite),
            cwd=ctx.root,
            env=ctx.env(suite),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            while proc.poll() is None and time.monotonic() - started < allowance_s:
                tick(time.monotonic() - started, live.feed(ctx.log(suite)))
                time.sleep(0.5)
        finally:
            timed_out = proc.poll() is None
            if timed_out:
                _stop(proc)
    tick(time.monotonic() - started, live.feed(ctx.log(suite)))
    run.elapsed_s = time.monotonic() - started
    run.exit_code = proc.returncode
    return _judge(run, timed_out)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT, then SIGTERM, then SIGKILL to the group: each step waits for the one before."""
    for sig, grace in ((signal.SIGINT, STOP_GRACE_S), (signal.SIGTERM, 15.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _judge(run: SuiteRun, timed_out: bool) -> SuiteRun:
    """The suite's status from its JUnit file and exit code; pytest's 5 (nothing collected) fails:
    a suite that exists but runs nothing is a broken gate, not a pass."""
    assert run.junit is not None
    if _readable(run.junit):
        run.counts = junit_counts(run.junit)
    if timed_out:
        run.status, run.note = "timeout", f"over its {run.allowance_s:.0f}s allowance; stopped"
    elif run.exit_code == 0 and run.counts.failed + run.counts.errors == 0:
        run.status = "passed"
    else:
        run.status, run.note = "failed", f"pytest exit {run.exit_code}"
    return run


# --- the whole gate -------------------------------------------------------------------------------

MIN_ALLOWANCE_S = 15.0
Tick = Callable[[Suite, SuiteRun | None, float, LiveCounts], None]


def run_gate(ctx: GateContext, suites: Sequence[Suite], budget_s: float, tick: Tick) -> list[SuiteRun]:
    """Runs the suites in order, each within its share of what is left of the budget.

    A suite with no test, or whose share fell under MIN_ALLOWANCE_S, fails without running:
    a suite that was asked for and never ran proves nothing.
    """
    started = time.monotonic()
    runs: list[SuiteRun] = []
    for index, suite in enumerate(suites):
        remaining = budget_s - (time.monotonic() - started)
        share = allowance(remaining, suite, suites[index:])
        if not suite.present(ctx.root):
            note = f"no tests: {', '.join(suite.paths)} hold none"
            runs.append(SuiteRun(suite, "failed", share, note=note))
        elif share < MIN_ALLOWANCE_S:
            runs.append(SuiteRun(suite, "failed", share, note="no budget left to run it"))
        else:
            runs.append(run_suite(ctx, suite, share, functools.partial(tick, suite, None)))
        tick(suite, runs[-1], runs[-1].elapsed_s, LiveCounts())
    return runs


def gate_results(
    runs: Sequence[SuiteRun],
    checks: Sequence[CheckRecord],
    *,
    budget_s: float,
    elapsed_s: float,
    target: Path | None,
) -> RunResults:
    """results.json of a gate run: the verdict merged over every check of every suite, the
    suites, the test totals, the gate's reasons, and timings."""
    verdict = merge_checks(checks)
    reasons = gate_reasons(runs, verdict, len(checks))
    tests = sum((r.counts for r in runs), CaseCounts())
    return RunResults(
        kind="gate",
        passed=not reasons,
        reasons=tuple(reasons),
        verdict=verdict,
        checked=len(checks),
        suites=tuple(r.to_record() for r in runs),
        tests=tests.totals(),
        budget_s=budget_s,
        target=str(target) if target else None,
        timings=_timings(runs, elapsed_s),
    )


def _timings(runs: Sequence[SuiteRun], elapsed_s: float) -> dict[str, float]:
    return {"total_s": round(elapsed_s, 2)} | {f"{r.suite.name}_s": round(r.elapsed_s, 2) for r in runs}
