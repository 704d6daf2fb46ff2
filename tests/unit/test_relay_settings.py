"""RELAY_LINGER_MS is validated like every other setting: one line names a bad value."""

from __future__ import annotations

import subprocess
import sys

import pytest

from service.config import Settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("-1", "invalid configuration: RELAY_LINGER_MS: Input should be greater than or equal to 0"),
        ("1001", "invalid configuration: RELAY_LINGER_MS: Input should be less than or equal to 1000"),
        ("soon", "invalid configuration: RELAY_LINGER_MS: Input should be a valid integer"),
    ],
)
def test_a_bad_linger_stops_with_one_line(value: str, line: str) -> None:
    code = "from service.config import settings_or_exit; settings_or_exit()"
    env = {"RELAY_LINGER_MS": value, "PATH": "/usr/bin:/bin"}
    started = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 2
    lines = started.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(line)


def test_the_linger_defaults_to_a_few_ms_and_zero_turns_it_off() -> None:
    assert 0 < Settings().relay_linger_ms <= 20
    assert Settings(relay_linger_ms=0).relay_linger_ms == 0
