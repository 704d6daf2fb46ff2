"""One History from the history files of every Locust process of a run, for the checker.

Each Locust process writes its own history file, with its own `index` sequence; the checker
judges one History. The merge orders every operation by wall-clock time and renumbers them,
mapping each completion's `invoke_index` through the renumbering of its own file, so a pair
is never matched with an operation of another process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from harness.history import History, Operation


def merge_histories(histories: Sequence[History]) -> History:
    tagged = [
        (op.wall_time, op.time_ns, file_no, op)
        for file_no, history in enumerate(histories)
        for op in history.ops
    ]
    tagged.sort(key=lambda item: item[:3] + (item[3].index,))
    new_index = {(file_no, op.index): number for number, (_, _, file_no, op) in enumerate(tagged)}
    merged: list[Operation] = []
    for number, (_, _, file_no, op) in enumerate(tagged):
        invoke_index = None if op.invoke_index is None else new_index.get((file_no, op.invoke_index))
        merged.append(replace(op, index=number, invoke_index=invoke_index))
    return History.from_ops(merged)
