"""The 16 contract drills on the embedded stack: each PASSes with nothing lost and nothing done twice.

Drills that can share a stack do (`harness drill`'s grouping: the cluster apart, proxy and
durable PostgreSQL for the rest), with the service state wiped between drills; the tests run
group by group, so one stack runs at a time. Each drill's histories, check and samples go into
the session's run record, so the gate's verdict counts them.
"""

from __future__ import annotations

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

GROUPS = stack_groups(list(builtin_drills().values()))
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
    assert result.passed, f"{drill.name}: {result.reasons}\n{evidence}"
    assert (result.lost, result.duplicated) == (0, 0)
    assert result.accepted > 0
    assert result.completed > 0
