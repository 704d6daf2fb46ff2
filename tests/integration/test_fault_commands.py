"""Faults on a deployment (`--target`): each runs the shell command of the target file's
`[faults.commands]`, with a timeout, its output kept in the fault's record; a fault neither
allowed nor given a command is skipped and recorded as such."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.nemesis import CommandFaults, Nemesis, catalog_for
from harness.history import History
from harness.record import RunReader, RunWriter
from harness.stack.base import load_target, render_target_toml
from harness.stack.target import TargetStack

pytestmark = pytest.mark.integration


def _target(tmp_path: Path, commands: str) -> TargetStack:
    path = tmp_path / "target.toml"
    path.write_text(
        f"""
[api]
url = "http://127.0.0.1:9"
[postgres]
dsn = "postgresql://ast@127.0.0.1:9/ast"
[rabbitmq]
amqp_url = "amqp://guest:guest@127.0.0.1:9/"
management_url = "http://guest:guest@127.0.0.1:9/"
[faults]
allowed = ["worker-kill", "api-kill"]
[faults.commands]
{commands}
"""
    )
    stack = TargetStack(path)
    stack.start()
    return stack


def test_a_fault_command_runs_and_its_output_is_recorded(tmp_path: Path) -> None:
    marker = tmp_path / "pod-deleted"
    stack = _target(tmp_path, f'worker-kill = "touch {marker} && echo deleted pod ast-worker-0"')
    writer = RunWriter.create(tmp_path / "run", "drill")
    history = writer.history("nemesis")
    nemesis = Nemesis(history, catalog_for(stack))

    end = nemesis.run("worker-kill")

    assert marker.exists()
    assert end is not None
    assert end.type == "ok"
    assert end.value["exit_code"] == 0
    assert end.value["output"] == "deleted pod ast-worker-0\n"
    history.close()
    (window,) = RunReader(writer.root).fault_windows()
    assert window.name == "worker-kill"
    assert window.healed is True
    assert window.details["command"].startswith("touch ")


def test_a_failing_or_hanging_command_is_recorded_as_unknown(tmp_path: Path) -> None:
    stack = _target(tmp_path, 'worker-kill = "echo no such pod >&2; exit 3"\napi-kill = "sleep 30"')
    history = History()
    nemesis = Nemesis(history, CommandFaults(stack.endpoints, timeout_s=0.5))

    failed = nemesis.run("worker-kill")
    hung = nemesis.run("api-kill")

    assert failed is not None
    assert failed.type == "info"
    assert failed.value["exit_code"] == 3
    assert failed.value["output"] == "no such pod\n"
    assert hung is not None
    assert hung.type == "info"
    assert hung.value["timed_out"] is True
    assert hung.value["exit_code"] is None


def test_a_fault_without_a_command_is_skipped_and_says_why(tmp_path: Path) -> None:
    stack = _target(tmp_path, 'worker-kill = "true"')
    history = History()
    nemesis = Nemesis(history, catalog_for(stack))

    assert nemesis.start("api-kill") is None
    assert nemesis.start("db-kill") is None

    skipped = [op for op in history if op.type == "fail"]
    assert [op.path for op in skipped] == ["api-kill", "db-kill"]
    assert "allowed on this target but" in (skipped[0].error or "")
    assert "neither allowed" in (skipped[1].error or "")


def test_fault_commands_survive_a_round_trip_through_the_target_file(tmp_path: Path) -> None:
    stack = _target(tmp_path, 'worker-kill = "kubectl delete pod -l app=\\"ast-worker\\" --wait=false"')
    again = tmp_path / "again.toml"
    again.write_text(render_target_toml(stack.endpoints))
    assert load_target(again).fault_commands == (
        ("worker-kill", 'kubectl delete pod -l app="ast-worker" --wait=false'),
    )
