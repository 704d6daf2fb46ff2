"""The HTML report rendered by a real browser: headless Chromium, offline, file:// URL.

A unit test can only say the HTML contains `<svg`; this says a browser lays it out and runs
it: the screenshot is kept in the run directory for a person to look at, and the DOM after
scripts ran still holds the verdict and the charts. Chromium is a declared dependency (`./dev`
installs it), so a missing binary fails here with the fix, never a skip.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from reports.html import build_report
from tests.report_data import make_run_dir

pytestmark = pytest.mark.integration

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
MISSING = (
    "headless Chromium is needed to render the report: `apt-get install -y chromium` (./dev setup does it)"
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _chromium() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        pytest.fail(MISSING, pytrace=False)
    return found


def _headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless run with its own profile (parallel runs never share one); --no-sandbox because
    CI containers run as root, where Chromium's sandbox refuses to start."""
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)


@pytest.fixture
def report(tmp_path: Path) -> Path:
    return build_report(make_run_dir(tmp_path / "run").run_dir)


def test_report_renders_in_chromium_with_verdict_and_charts(report: Path, tmp_path: Path) -> None:
    browser = _chromium()
    screenshot = report.parent / "report.png"
    shot = _headless(
        browser,
        tmp_path / "profile-shot",
        "--window-size=1280,2400",
        f"--screenshot={screenshot}",
        report.as_uri(),
    )
    assert screenshot.is_file(), f"no screenshot; chromium exited {shot.returncode}: {shot.stderr[-2000:]}"
    assert screenshot.read_bytes()[:8] == PNG_MAGIC
    assert screenshot.stat().st_size > 20_000, "the screenshot is too small to hold a rendered page"

    dom = _headless(browser, tmp_path / "profile-dom", "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'class="word">FAIL</div>' in dom.stdout
    assert "#3 Terminal is final" in dom.stdout
    assert dom.stdout.count('<svg class="chart"') == 3
    assert "<polyline" in dom.stdout
    assert "<circle" in dom.stdout
