"""Drills as data, random schedules from a seed, and recovery measured from samples (no servers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.drill_model import CONTRACT_DRILLS, DrillFileError, builtin_drills, load_drill, parse_drill
from chaos.recovery import first_completion_s, rate_between, recovery_s
from chaos.schedule import PROCESS_HOLDS, random_drill, random_schedule, shrink_candidates

pytestmark = pytest.mark.unit


def test_every_contract_drill_is_a_valid_file() -> None:
    drills = builtin_drills()
    assert tuple(drills) == CONTRACT_DRILLS
    assert all(d.faults and d.faults[0].name == name for name, d in drills.items())
    assert drills["broker-node-loss"].stack.rabbit_nodes == 3
    assert drills["db-kill"].stack.durable
    assert all(drills[n].stack.proxy for n in ("broker-partition", "db-latency", "slow-network"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "my.toml"
    path.write_text(text)
    return path


def test_an_unknown_fault_is_refused_with_one_line_naming_it(tmp_path: Path) -> None:
    path = _write(tmp_path, 'name = "mine"\n[[faults]]\nname = "disk-fill"\nat_s = 1\n')
    with pytest.raises(DrillFileError) as error:
        load_drill(path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: faults.0.name: unknown fault 'disk-fill'")


def test_a_bad_field_is_refused_with_one_line_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DrillFileError, match=r"workload\.rte: unknown field$"):
        load_drill(_write(tmp_path, 'name = "mine"\n[workload]\nrte = 5\n'))
    with pytest.raises(DrillFileError, match=r"workload\.rate: Input should be greater than 0"):
        parse_drill({"name": "mine", "workload": {"rate": -1}})
    with pytest.raises(DrillFileError, match="needs the proxy"):
        parse_drill({"name": "mine", "faults": [{"name": "db-latency", "at_s": 1}]})
    with pytest.raises(DrillFileError, match="not TOML"):
        load_drill(_write(tmp_path, "name = \n"))


def test_a_user_drill_without_python() -> None:
    drill = parse_drill(
        {
            "name": "mine",
            "workload": {"rate": 2, "duration_s": 30, "mix": {"success": 3, "crash": 1}},
            "faults": [{"name": "worker-pause", "at_s": 5, "hold_s": 3}, {"name": "relay-kill", "at_s": 12}],
        }
    )
    assert drill.first_fault_s == 5
    assert [f.heal_s for f in drill.faults] == [8, 12]


def test_the_same_seed_gives_the_same_schedule() -> None:
    assert random_schedule(1, 120) == random_schedule(1, 120)
    assert random_drill(7, 90) == random_drill(7, 90)
    assert random_schedule(1, 120) != random_schedule(2, 120)


def test_process_faults_of_a_random_schedule_never_overlap() -> None:
    for seed in range(20):
        steps = [s for s in random_schedule(seed, 120) if s.name in PROCESS_HOLDS]
        assert steps
        for before, after in zip(steps, steps[1:], strict=False):
            assert before.heal_s < after.at_s
        assert all(s.at_s < 120 for s in steps)


def test_shrinking_drops_one_fault_at_a_time_then_halves_holds() -> None:
    drill = random_drill(3, 120)
    candidates = list(shrink_candidates(drill))
    sizes = [len(c.faults) for c in candidates]
    assert sizes[: len(drill.faults)] == [len(drill.faults) - 1] * len(drill.faults)


def test_steady_rate_and_recovery_from_the_series() -> None:
    steady = [(float(t), 5 * t) for t in range(0, 10)]  # 5/s
    outage = [(float(t), 45) for t in range(10, 15)]  # nothing completes
    back = [(15.0 + t, 45 + 4 * t) for t in range(1, 10)]  # 4/s = 80%: not yet
    drained = [(25.0 + t, 81 + 6 * t) for t in range(0, 10)]  # 6/s
    points = steady + outage + back + drained
    assert rate_between(points, 1, 9) == pytest.approx(5.0)
    assert recovery_s(points, heal_at=12.0, steady=5.0) == pytest.approx(13.0)
    assert recovery_s(points, heal_at=12.0, steady=4.0) == pytest.approx(4.0)
    assert recovery_s(points[:20], heal_at=12.0, steady=5.0) is None
    assert first_completion_s(points, fault_at=10.5) == pytest.approx(5.5)
    assert rate_between(points[:1], 0, 9) is None


def test_network_faults_of_a_random_schedule_never_overlap_one_another() -> None:
    for seed in range(30):
        steps = [s for s in random_schedule(seed, 300) if s.name not in PROCESS_HOLDS]
        for before, after in zip(steps, steps[1:], strict=False):
            assert before.heal_s < after.at_s


class _RecordedFault:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.target = "fake"
        self.log = log

    def start(self) -> dict[str, object]:
        self.log.append(f"start {self.name}")
        return {}

    def stop(self) -> dict[str, object]:
        self.log.append(f"stop {self.name}")
        return {}


class _FakeCatalog:
    def __init__(self) -> None:
        self.log: list[str] = []

    def build(self, name: str, **params: object) -> _RecordedFault:
        return _RecordedFault(name, self.log)


def test_rollback_heals_a_fault_still_injected_when_the_drill_stops_early() -> None:
    import threading
    import time

    from chaos.drill import Schedule
    from chaos.nemesis import Nemesis
    from harness.history import History

    drill = parse_drill(
        {
            "name": "cut-short",
            "workload": {"duration_s": 100},
            "faults": [{"name": "worker-pause", "at_s": 0, "hold_s": 90}, {"name": "relay-kill", "at_s": 50}],
        }
    )
    catalog = _FakeCatalog()
    history = History()
    schedule = Schedule(drill, Nemesis(history, catalog))
    schedule.start(time.monotonic())
    deadline = time.monotonic() + 5
    while not schedule.active and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    schedule.heal_all()
    assert catalog.log == ["start worker-pause", "stop worker-pause"]
    assert [op.type for op in history.ops] == ["invoke", "ok"]
    assert schedule.runs[0].healed_at is not None
