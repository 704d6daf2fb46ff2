"""Suites wipe state between tests; a target deployment must consent to that in its file."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.pytest_plugin import ensure_reset_allowed
from harness.stack.base import StackEndpoints, load_target, render_target_toml

pytestmark = pytest.mark.unit

CONTRACT_EXAMPLE = """
[api]
url = "http://127.0.0.1:8080"
token = ""
[postgres]
dsn = "postgresql://ast@127.0.0.1:5432/ast"
[rabbitmq]
amqp_url = "amqp://guest:guest@127.0.0.1:5672/"
management_url = "http://guest:guest@127.0.0.1:15672/"
[faults]
allowed = ["worker-kill"]
"""


def test_a_deployment_described_as_in_the_contract_does_not_allow_a_reset(tmp_path: Path) -> None:
    path = tmp_path / "target.toml"
    path.write_text(CONTRACT_EXAMPLE)

    endpoints = load_target(path)

    assert endpoints.reset_allowed is False
    with pytest.raises(pytest.fail.Exception, match="reset_allowed = true"):
        ensure_reset_allowed(endpoints)


def test_a_stack_the_harness_started_says_so_in_its_target_file(tmp_path: Path) -> None:
    endpoints = StackEndpoints("http://a", "postgresql://b", "amqp://c", "http://d", reset_allowed=True)
    path = tmp_path / "target.toml"
    path.write_text(render_target_toml(endpoints))

    loaded = load_target(path)

    assert loaded.reset_allowed is True
    ensure_reset_allowed(loaded)
