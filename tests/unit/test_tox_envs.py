"""tox.ini has an env for every tier, each running the commands the README and ./dev run."""

from __future__ import annotations

import configparser
import re
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
TIERS = ("lint", "type", "unit", "e2e", "property", "drills", "load", "gate")


def tox_commands() -> dict[str, list[str]]:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "tox.ini")
    return {
        section.removeprefix("testenv:"): [line for line in config[section]["commands"].splitlines() if line]
        for section in config.sections()
        if section.startswith("testenv:")
    }


def test_every_tier_has_an_env_whose_tools_are_installed() -> None:
    commands = tox_commands()
    assert set(TIERS) <= set(commands)
    tools = Path(sys.executable).parent
    for env, lines in commands.items():
        for line in lines:
            assert (tools / line.split()[0]).exists(), (env, line)


def test_lint_and_type_run_what_dev_test_runs() -> None:
    dev = (ROOT / "dev").read_text(encoding="utf-8")
    ruff = re.search(r'"\$VENV/bin/ruff" check (.+)', dev)
    assert ruff is not None
    assert f"ruff check {ruff.group(1).strip()}" in tox_commands()["lint"]
    assert '"$VENV/bin/mypy"' in dev
    assert tox_commands()["type"] == ["mypy"]
