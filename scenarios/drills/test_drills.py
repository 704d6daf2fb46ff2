"""The 16 contract drills on the embedded stack: each PASSes with nothing lost and nothing done twice.

Drills that can share a stack do (`harness drill`'s grouping: the cluster apart, proxy and
durable PostgreSQL for the rest), with the service state wiped between drills; the tests run
group by group, so one stack runs at a time. Each drill's histories, check and samples go into
the session's run record, so the gate's verdict counts them.

All 16 run under plain pytest (CI: about 9 minutes here). The gate gives this suite a share of
its budget (180 s of the default 600 s), so under the gate (`HARNESS_SUITE=drills`) only
`GATE_SUBSET` runs, one drill of each family, and its test ids say which; `HARNESS_DRILLS=a,b`
chooses the drills explicitly (`all` for every one).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from chaos.drill import DrillRunner, drill_session
from chaos.drill_model import Drill, builtin_drills
from harness.commands.drill import make_stack, stack_groups
from harness.record import RunWriter
from harness.verdict import violations_text

pytestmark = [pytest.mark.drill, pytest.mark.timeout(300)]

GATE_SUBSET = ("broker-kill", "worker-kill", "duplicate-delivery")


def chosen_drills() -> list[Drill]:
    drills = builtin_drills()
    names = os.environ.get("HARNESS_DRILLS", "").strip()
    if not names and os.environ.get("HARNESS_SUITE") == "drills":
        names = ",".join(GATE_SUBSET)
    if not names or names == "all":
        return list(drills.values())
    return [drills[name.strip()] for name in names.split(",") if name.strip()]


GROUPS = stack_groups(chosen_drills())
ORDERED = [(index, drill) for index, (_, members) in enumerate(GROUPS) for drill in members]


class StackPool:
    """The stack of one group at a time: started on first use, stopped when another is needed."""

    def __init__(self, run_dir: Path, writer: RunWriter) -> None:
        self.run_dir = run_dir
        self.writer = writer
        self.current: tuple[int, DrillRunner] | None = None
        self.exit = ExitStack()

    def runner(self, index: int) -> DrillRunner:
        if self.current is not None and self.current[0] == index:
            return self.current[1]
        self.close()
        stack = make_stack(GROUPS[index][0], self.run_dir / "stacks" / f"drills-{index}", None)
        self.exit.callback(stack.stop)
        self.current = (index, self.exit.enter_context(drill_session(stack, self.writer)))
        return self.current[1]

    def close(self) -> None:
        self.current = None
        self.exit.close()


@pytest.fixture(scope="module")
def pool(run_dir: Path, run_writer: RunWriter) -> Iterator[StackPool]:
    stacks = StackPool(run_dir, run_writer)
    try:
        yield stacks
    finally:
        stacks.close()


@pytest.mark.parametrize(("group", "drill"), ORDERED, ids=[d.name for _, d in ORDERED])
def test_drill_passes_with_nothing_lost_or_duplicated(group: int, drill: Drill, pool: StackPool) -> None:
    result = pool.runner(group).run(drill)
    evidence = violations_text(result.verdict) if result.verdict is not None else ""
    row = result.record
    assert row.passed, f"{drill.name}: {row.reasons}\n{evidence}"
    assert (row.lost, row.duplicated) == (0, 0)
    assert row.accepted > 0
    assert row.completed > 0
