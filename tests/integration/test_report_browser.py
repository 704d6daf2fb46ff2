"""The report of a REAL run, rendered by a real browser: headless Chromium, offline, file:// URL.

Two e2e tests run in their own pytest process against a real RabbitMQ and PostgreSQL, writing a
real run record (histories, checks, snapshots, samples, JUnit) into a fresh run directory; then
`python -m reports` builds its report in its own process, as the gate does. A unit test can only
say the HTML contains `<svg`; this says a browser lays out and scripts the report of what the
harness really wrote: the DOM after scripts ran holds the verdict, a task's timeline with both the
client's requests and the service's events, and a queue-depth chart drawn from the samples. The
screenshot is kept in the run directory for a person to look at.

Chromium is a declared dependency (`./dev` installs it), so a missing binary fails here with the
fix, never a skip. Every process started here runs in its own session and is reaped, even on a
timeout.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.record import RUN_DIR_ENV, SUITE_ENV, RunReader, RunWriter
from reports.series import queue_depths

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
E2E_FILE = "scenarios/e2e/test_job_lifecycle.py"
E2E_TESTS = "test_success_reports_progress or test_exhausted_retries_fail_into_the_dlq"
E2E_TIMEOUT_S = 420
BROWSER_TIMEOUT_S = 90
GROUP_GRACE_S = 20.0
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
MISSING = (
    "headless Chromium is needed to render the report: `apt-get install -y chromium` (./dev setup does it)"
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JOB_QUEUE = "ast.simulate.q"


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str

    def tail(self, chars: int = 3000) -> str:
        return (self.stdout + "\n" + self.stderr)[-chars:]


def run_reaped(command: list[str], *, timeout_s: float, env: dict[str, str] | None = None) -> Finished:
    """Runs `command` in its own session and waits; on a timeout its whole process group is asked
    to stop (SIGTERM: a stack's cleanup handlers run), then killed. Nothing it started outlives it."""
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _stop_group(process)
        stdout, stderr = process.communicate()
        pytest.fail(
            f"{command[:4]} did not finish in {timeout_s} s:\n{(stdout + stderr)[-3000:]}", pytrace=False
        )
    finally:
        _stop_group(process)
    return Finished(process.returncode, stdout, stderr)


def _stop_group(process: subprocess.Popen[str]) -> None:
    """Ends whatever is left of the process group this test started (by its id): SIGTERM, a
    bounded wait for the group to empty, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + GROUP_GRACE_S
        while time.monotonic() < deadline:
            process.poll()  # reap the leader, or the group never looks empty
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def _chromium() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        pytest.fail(MISSING, pytrace=False)
    return found


def headless(profile: Path, *args: str) -> Finished:
    """One headless run with its own profile (parallel runs never share one); --no-sandbox because
    CI containers run as root, where Chromium's sandbox refuses to start; nothing fetched."""
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-sync",
        "--no-default-browser-check",
        "--no-first-run",
        "--mute-audio",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    return run_reaped(command, timeout_s=BROWSER_TIMEOUT_S)


@dataclass(frozen=True)
class RealRun:
    run_dir: Path
    e2e: Finished


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> RealRun:
    """A real e2e run recorded into a fresh run directory, and its report built by `python -m reports`."""
    run_dir = tmp_path_factory.mktemp("real-run") / "run"
    run_dir.mkdir()
    RunWriter.create(run_dir, "gate")
    env = {**os.environ, RUN_DIR_ENV: str(run_dir), SUITE_ENV: "e2e"}
    env.pop("HARNESS_TARGET", None)
    pytest_args = ["-k", E2E_TESTS, "-p", "no:cacheprovider", "-q", f"--junitxml={run_dir / 'junit.xml'}"]
    e2e = run_reaped(
        [sys.executable, "-m", "pytest", E2E_FILE, *pytest_args], timeout_s=E2E_TIMEOUT_S, env=env
    )
    built = run_reaped([sys.executable, "-m", "reports", str(run_dir)], timeout_s=120)
    assert built.returncode == 0, f"python -m reports failed:\n{built.tail()}"
    assert built.stdout.strip() == str(run_dir / "report.html")
    return RealRun(run_dir, e2e)


def _timelines(dom: str) -> dict[str, str]:
    """Each task timeline's HTML in the DOM, by its element id."""
    found = {}
    for match in re.finditer(r'<details class="task[^"]*" id="(task-[^"]+)"', dom):
        found[match.group(1)] = dom[match.start() : dom.index("</details>", match.start())]
    return found


def _queue_chart(dom: str) -> str:
    start = dom.index('aria-label="Queue depths"')
    return dom[start : dom.index("</svg>", start)]


@pytest.mark.timeout(E2E_TIMEOUT_S + 4 * BROWSER_TIMEOUT_S)
def test_the_report_of_a_real_run_renders_in_chromium(real_run: RealRun, tmp_path: Path) -> None:
    run_dir, e2e = real_run.run_dir, real_run.e2e
    report = run_dir / "report.html"
    reader = RunReader(run_dir)
    assert reader.checks(), f"the e2e run recorded no check (exit {e2e.returncode}):\n{e2e.tail()}"
    assert list(reader.snapshots()), f"the e2e run saved no snapshot:\n{e2e.tail()}"

    screenshot = run_dir / "report.png"
    shot = headless(
        tmp_path / "profile-shot", "--window-size=1280,3600", f"--screenshot={screenshot}", report.as_uri()
    )
    assert screenshot.is_file(), f"no screenshot; chromium exited {shot.returncode}: {shot.stderr[-2000:]}"
    assert screenshot.read_bytes()[:8] == PNG_MAGIC
    assert screenshot.stat().st_size > 20_000, "the screenshot is too small to hold a rendered page"
    print(f"\nscreenshot of the real run's report: {screenshot}")

    dom = headless(tmp_path / "profile-dom", "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    expected = "PASS" if e2e.returncode == 0 else "FAIL"
    assert f'class="word">{expected}</div>' in dom.stdout, f"e2e exited {e2e.returncode}:\n{e2e.tail()}"

    timelines = _timelines(dom.stdout)
    assert timelines, "no task timeline in the report"
    anchor = random.choice(sorted(timelines))
    print(f"timeline picked: {anchor}")
    assert '<tr class="request' in timelines[anchor], f"{anchor}: no client request row"
    assert '<tr class="event' in timelines[anchor], f"{anchor}: no service event row"

    chart = _queue_chart(dom.stdout)
    answered = len(queue_depths(reader.samples())[JOB_QUEUE])
    assert answered >= 2, "the run took fewer than two samples of the broker"
    (points,) = re.findall(rf'<polyline[^>]*points="([^"]+)"><title>{re.escape(JOB_QUEUE)}</title>', chart)
    assert len(points.split()) == 2 * answered - 1, "the job queue's line has a step per sample"
