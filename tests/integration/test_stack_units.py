"""Pure parts of the stack providers: no servers (they live next to their integration tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from harness.cli import parse_env_overrides
from harness.record import new_run_dir
from harness.stack.base import StackEndpoints, StackError, load_target, render_target_toml
from harness.stack.ports import free_ports
from harness.stack.target import TargetStack

pytestmark = pytest.mark.unit

ENDPOINTS = StackEndpoints(
    api_url="http://127.0.0.1:8080",
    postgres_dsn="postgresql://ast@127.0.0.1:5432/ast",
    amqp_url="amqp://guest:guest@127.0.0.1:5672/",
    management_url="http://guest:guest@127.0.0.1:15672/",
    faults_allowed=("worker-kill", "broker-kill"),
)


def test_target_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "target.toml"
    path.write_text(render_target_toml(ENDPOINTS))
    loaded = load_target(path)
    assert loaded == StackEndpoints(**{**ENDPOINTS.__dict__, "target_file": path})


def test_bad_target_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[api]\n")
    with pytest.raises(StackError, match="broken.toml"):
        TargetStack(path).start()


def test_export_line_has_every_variable(tmp_path: Path) -> None:
    line = StackEndpoints(**{**ENDPOINTS.__dict__, "target_file": tmp_path / "t.toml"}).export_line()
    names = [part.split("=", 1)[0] for part in line.removeprefix("export ").split()]
    assert names == ["API_URL", "POSTGRES_URL", "RABBIT_URL", "RABBIT_MANAGEMENT_URL", "HARNESS_TARGET"]


def test_env_overrides_parse_and_reject_garbage() -> None:
    assert parse_env_overrides(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(typer.BadParameter):
        parse_env_overrides(["NOEQUALS"])


def test_free_ports_are_distinct() -> None:
    ports = free_ports(50)
    assert len(set(ports)) == 50


def test_run_dir_and_latest_link(tmp_path: Path) -> None:
    first = new_run_dir("pytest", tmp_path)
    second = new_run_dir("pytest", tmp_path)
    assert first != second
    assert (tmp_path / "latest").resolve() == second.resolve()
