"""RETENTION_DAYS and its knobs are validated like every other setting: one line names a bad value."""

from __future__ import annotations

import subprocess
import sys

import pytest

from service.config import Settings
from service.retention import Retention

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        ("RETENTION_DAYS", "-1", "invalid configuration: RETENTION_DAYS: Input should be greater"),
        (
            "RETENTION_DAYS",
            "forever",
            "invalid configuration: RETENTION_DAYS: Input should be a valid integer",
        ),
        ("RETENTION_BATCH_SIZE", "0", "invalid configuration: RETENTION_BATCH_SIZE: Input should be greater"),
    ],
)
def test_a_bad_retention_setting_stops_with_one_line(variable: str, value: str, line: str) -> None:
    code = "from service.config import settings_or_exit; settings_or_exit()"
    env = {variable: value, "PATH": "/usr/bin:/bin"}
    started = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 2
    assert started.stderr.strip().splitlines() == [started.stderr.strip()]
    assert line in started.stderr


def test_zero_days_keeps_everything() -> None:
    assert not Retention(Settings(retention_days=0)).due(now=1e9)
    assert Retention(Settings(retention_days=1)).due(now=1e9)
