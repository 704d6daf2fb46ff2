"""The contract's 12 invariants as pure functions of (history, snapshot), composable like Jepsen's.

`INVARIANTS` is the one table of them: number, name and checker, so a reader (the gate, the run
record) gets the names from `invariant_names()` without running anything. Every checker has the
same shape, `check_xxx(history, snapshot, expect) -> InvariantResult`, so `check_all` can run any
list of them and merge the verdicts: broken beats unknown beats held.

The checker reads only what the contract's "What the checker may read" lists (the row types of
`harness.state` hold it), and imports no driver.

- `verdict`: Violation, InvariantResult, Expectations, Verdict, the `Invariant` row, merge_valid
- `invariants`: 1 to 11, over the stores (and the history's submits for 1 and 10)
- `clients`: 12, what clients saw, over the history (the final snapshot as the last word)
- `counts`: what the run did (accepted, lost, recovered, poison...)
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.checker.clients import check_clients_agree
from harness.checker.counts import Counts, accepted_submits, count, recovered_task_ids, unknown_submits
from harness.checker.evidence import status_events
from harness.checker.invariants import (
    check_cancelled_no_result,
    check_dead_letters,
    check_events_match_status,
    check_legal_moves,
    check_no_lost_task,
    check_nothing_in_transit,
    check_once_only,
    check_one_key_one_task,
    check_progress,
    check_retries_bounded,
    check_terminal_is_final,
)
from harness.checker.verdict import (
    DEFAULT_EXPECTATIONS,
    Checker,
    Expectations,
    Finding,
    Invariant,
    InvariantResult,
    Status,
    Verdict,
    Violation,
    merge_valid,
)
from harness.history import History
from harness.state import Snapshot

INVARIANTS: tuple[Invariant, ...] = (
    check_no_lost_task,
    check_once_only,
    check_terminal_is_final,
    check_legal_moves,
    check_events_match_status,
    check_progress,
    check_retries_bounded,
    check_dead_letters,
    check_nothing_in_transit,
    check_one_key_one_task,
    check_cancelled_no_result,
    check_clients_agree,
)
ALL_CHECKERS: tuple[Checker, ...] = INVARIANTS


def invariant_names() -> dict[int, str]:
    """Number -> name of every invariant, read off the table."""
    return {i.number: i.name for i in INVARIANTS}


def check_all(
    history: History,
    snapshot: Snapshot,
    expect: Expectations = DEFAULT_EXPECTATIONS,
    checkers: Sequence[Checker] = ALL_CHECKERS,
) -> Verdict:
    results = tuple(checker(history, snapshot, expect) for checker in checkers)
    return Verdict(merge_valid(r.status for r in results), results, count(history, snapshot))


__all__ = [
    "ALL_CHECKERS",
    "DEFAULT_EXPECTATIONS",
    "INVARIANTS",
    "Checker",
    "Counts",
    "Expectations",
    "Finding",
    "Invariant",
    "InvariantResult",
    "Status",
    "Verdict",
    "Violation",
    "accepted_submits",
    "check_all",
    "check_cancelled_no_result",
    "check_clients_agree",
    "check_dead_letters",
    "check_events_match_status",
    "check_legal_moves",
    "check_no_lost_task",
    "check_nothing_in_transit",
    "check_once_only",
    "check_one_key_one_task",
    "check_progress",
    "check_retries_bounded",
    "check_terminal_is_final",
    "count",
    "invariant_names",
    "merge_valid",
    "recovered_task_ids",
    "status_events",
    "unknown_submits",
]
