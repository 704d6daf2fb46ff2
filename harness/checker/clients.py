"""Invariant 12, what clients saw agrees: judged over the history, with the final snapshot as the
last word on each task's status.

A client observed a task's status in every `ok` completion that names both: a submit's 202, a
GET /tasks/{id}, a cancel's 202, and the items of a list answer when the history kept them as
objects (the client summarises lists to a count today, so those are usually absent). One
observation comes before another only when it completed before the other was invoked, by the
history's order (`time_ns`, then `index`): overlapping requests may have been served in either
order, so they are never compared, as Jepsen orders operations. The final snapshot was taken after
every operation, so the task's final status follows all of them.

"Backwards" is what the status machine cannot do by any path: a terminal status is followed only
by itself; from IN_PROGRESS, PENDING is fine (a hand-back). The type a client read is compared with
the type of the submit that returned that taskId (its invocation's `value["type"]`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.checker.counts import accepted_submits
from harness.checker.evidence import op_json, task_json
from harness.checker.verdict import Expectations, Finding, Invariant, Violation
from harness.history import History, Operation
from harness.state import TERMINAL, Snapshot, can_follow

Position = tuple[int, int]


def _position(op: Operation) -> Position:
    return (op.time_ns, op.index)


@dataclass(frozen=True)
class Observation:
    """A client saw `task_id` in `status`, between `start` (the invocation) and `end` (its answer)."""

    task_id: str
    status: str
    start: Position
    end: Position
    op: Operation

    def evidence(self) -> dict[str, Any]:
        return {"status": self.status, "op": op_json(self.op)}


def _invocations(history: History) -> dict[int, Operation]:
    return {op.index: op for op in history.ops if op.type == "invoke"}


def _invocation_of(op: Operation, invocations: Mapping[int, Operation]) -> Operation | None:
    return invocations.get(op.invoke_index) if op.invoke_index is not None else None


def _list_items(op: Operation) -> list[dict[str, Any]]:
    if op.f == "list" and isinstance(op.value, dict) and isinstance(op.value.get("items"), list):
        return [item for item in op.value["items"] if isinstance(item, dict)]
    return []


def _fields(op: Operation, name: str) -> Iterator[tuple[str, str]]:
    """(taskId, value of `name`) of the task objects an ok answer holds: itself and list items."""
    for item in [op.value, *_list_items(op)]:
        if isinstance(item, dict) and isinstance(item.get("taskId"), str) and isinstance(item.get(name), str):
            yield item["taskId"], item[name]


def observations(history: History) -> dict[str, list[Observation]]:
    """Each task's status observations, in history order of their answers."""
    invocations = _invocations(history)
    found: dict[str, list[Observation]] = defaultdict(list)
    for op in history.ops:
        if op.type != "ok":
            continue
        start = _position(_invocation_of(op, invocations) or op)
        seen = set(_fields(op, "status"))
        if op.task_id and op.task_status:
            seen.add((op.task_id, op.task_status))
        for task_id, status in sorted(seen):
            found[task_id].append(Observation(task_id, status, start, _position(op), op))
    return found


def first_backwards(observed: Sequence[Observation]) -> tuple[Observation, Observation] | None:
    """The first pair (earlier, later) where `later` began after `earlier` ended and the status
    machine cannot go from earlier's status to later's. A sweep over invocations and answers: at
    an invocation, compare with every status answered before it."""
    points = sorted(
        [(o.start, 0, i) for i, o in enumerate(observed)] + [(o.end, 1, i) for i, o in enumerate(observed)]
    )
    answered: dict[str, Observation] = {}
    for _, is_answer, i in points:
        current = observed[i]
        if is_answer:
            answered.setdefault(current.status, current)
            continue
        earlier = next((o for s, o in answered.items() if not can_follow(s, current.status)), None)
        if earlier is not None:
            return earlier, current
    return None


def _status_violation(task_id: str, observed: Sequence[Observation], snapshot: Snapshot) -> Violation | None:
    pair = first_backwards(observed)
    if pair is not None:
        earlier, later = pair
        message = (
            f"a client saw terminal {earlier.status}, later {later.status}"
            if earlier.status in TERMINAL
            else f"a client saw {earlier.status}, later {later.status}, which the status machine cannot reach"
        )
        return Violation((task_id,), message, {"earlier": earlier.evidence(), "later": later.evidence()})
    task = None if snapshot.postgres_error else snapshot.tasks_by_id.get(task_id)
    if task is None:
        return None  # a 202 task the table lacks is invariant 1's
    seen = next((o for o in observed if not can_follow(o.status, task.status)), None)
    if seen is None:
        return None
    return Violation(
        (task_id,),
        f"a client saw {seen.status}, but the task's final status is {task.status}",
        {"earlier": seen.evidence(), "final": task_json(task)},
    )


def submitted_types(history: History) -> dict[str, dict[str, Operation]]:
    """Each accepted taskId's submitted type(s), from the submit invocations, with a submit of each."""
    invocations = _invocations(history)
    types: dict[str, dict[str, Operation]] = defaultdict(dict)
    for op in accepted_submits(history):
        invoked = _invocation_of(op, invocations)
        value = invoked.value if invoked is not None else None
        if isinstance(value, dict) and isinstance(value.get("type"), str):
            types[str(op.task_id)].setdefault(value["type"], op)
    return types


def _typed(op: Operation, task_type: str) -> dict[str, Any]:
    return op_json(op) | {"taskType": task_type}


def _type_violations(history: History) -> list[Violation]:
    submitted = submitted_types(history)
    violations = [
        Violation(
            (task_id,),
            f"one taskId returned to submits of types {', '.join(sorted(types))}",
            {"submits": [_typed(op, t) for t, op in sorted(types.items())]},
        )
        for task_id, types in submitted.items()
        if len(types) > 1
    ]
    reported = {task_id for v in violations for task_id in v.task_ids}
    for op in history.ops:
        if op.type != "ok" or op.f == "submit":
            continue
        for task_id, read_type in _fields(op, "type"):
            types = submitted.get(task_id, {})
            if not types or read_type in types or task_id in reported:
                continue
            reported.add(task_id)
            submits = [_typed(s, t) for t, s in sorted(types.items())]
            violations.append(
                Violation(
                    (task_id,),
                    f"a client read type {read_type}, but it was submitted as {', '.join(sorted(types))}",
                    {"read": _typed(op, read_type), "submits": submits},
                )
            )
    return violations


def _clients_agree(history: History, snapshot: Snapshot, expect: Expectations) -> Finding:
    """No client saw a status move backwards or a terminal task later in another status (the final
    snapshot counts as the last thing seen), and every taskId a client read has the type it was
    submitted with."""
    violations = [
        v
        for task_id, observed in observations(history).items()
        if (v := _status_violation(task_id, observed, snapshot)) is not None
    ]
    violations += _type_violations(history)
    note = "final statuses not compared: PostgreSQL was not read" if snapshot.postgres_error else ""
    return Finding(tuple(violations), note=note)


check_clients_agree = Invariant(12, "what clients saw agrees", _clients_agree)
