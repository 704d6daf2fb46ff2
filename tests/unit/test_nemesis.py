"""How the nemesis records faults, on made-up faults (no servers): a pair of operations per fault,
`ok` when healed, `info` when the outcome is unknown or injecting failed, `fail` when skipped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from chaos.faults import Details, Fault
from chaos.nemesis import FaultSkipped, Nemesis
from harness.history import FAULT, NEMESIS, History
from harness.record.reader import fault_windows

pytestmark = pytest.mark.unit


@dataclass
class MadeUpFault:
    name: str
    started: Details = field(default_factory=dict)
    fail_start: bool = False
    calls: list[str] = field(default_factory=list)

    @property
    def target(self) -> str:
        return "made-up"

    def start(self) -> Details:
        self.calls.append("start")
        if self.fail_start:
            raise RuntimeError("no such process")
        return dict(self.started)

    def stop(self) -> Details:
        self.calls.append("stop")
        return {"back_after_s": 1.5}


@dataclass
class Catalog:
    faults: dict[str, MadeUpFault]

    def build(self, name: str, **params: Any) -> Fault:
        if name not in self.faults:
            raise FaultSkipped(f"{name} cannot run here")
        return self.faults[name]


def test_a_fault_is_an_invocation_and_an_ok_completion_with_both_details() -> None:
    history = History()
    fault = MadeUpFault("worker-kill", {"pid": 42})
    nemesis = Nemesis(history, Catalog({"worker-kill": fault}))

    with nemesis.fault("worker-kill", worker=1):
        assert fault.calls == ["start"]

    start, end = history.ops
    assert (start.process, start.f, start.path, start.type) == (NEMESIS, FAULT, "worker-kill", "invoke")
    assert start.value == {"target": "made-up", "worker": 1}
    assert end.type == "ok"
    assert end.value == {"target": "made-up", "worker": 1, "pid": 42, "back_after_s": 1.5}
    (window,) = fault_windows(history.ops)
    assert window.healed is True
    assert window.end is not None


def test_an_uncertain_fault_ends_as_info() -> None:
    history = History()
    nemesis = Nemesis(history, Catalog({"api-kill": MadeUpFault("api-kill", {"uncertain": True})}))
    end = nemesis.run("api-kill")
    assert end is not None
    assert end.type == "info"


def test_a_fault_that_fails_to_start_is_recorded_then_raised() -> None:
    history = History()
    nemesis = Nemesis(history, Catalog({"db-kill": MadeUpFault("db-kill", fail_start=True)}))
    with pytest.raises(RuntimeError):
        nemesis.start("db-kill")
    _, end = history.ops
    assert end.type == "info"
    assert "no such process" in end.value["error"]


def test_a_skipped_fault_is_a_fail_with_its_reason_and_nothing_runs() -> None:
    history = History()
    nemesis = Nemesis(history, Catalog({}))
    with nemesis.fault("broker-node-loss") as active:
        assert active is None
    _, end = history.ops
    assert end.type == "fail"
    assert end.error == "skipped: broker-node-loss cannot run here"
    (window,) = fault_windows(history.ops)
    assert window.healed is False
