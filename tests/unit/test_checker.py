"""The checker on made-up histories and snapshots: each invariant holds on a healthy run and breaks,
alone and naming the right task, on a run with exactly one planted fault."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from harness.checker import (
    ALL_CHECKERS,
    INVARIANTS,
    Expectations,
    Verdict,
    check_all,
    check_clients_agree,
    check_dead_letters,
    invariant_names,
    merge_valid,
)
from harness.history import History, Operation, body_digest
from harness.state import (
    LEGAL_MOVES,
    REACHABLE,
    EventRow,
    OutboxRow,
    QueueDepth,
    QueueMessage,
    ResultRow,
    Snapshot,
    TaskRow,
    can_follow,
    reachable_statuses,
)

pytestmark = pytest.mark.unit

T1 = "00000000-0000-0000-0000-000000000001"
T2 = "00000000-0000-0000-0000-000000000002"
T3 = "00000000-0000-0000-0000-000000000003"
T4 = "00000000-0000-0000-0000-000000000004"
PAYLOAD = {"durationMs": 10, "steps": 2, "outcome": "success"}


class EventLog:
    """Builds a task's timeline with increasing event ids and versions, like the service writes it."""

    next_id = 1

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.events: list[EventRow] = []
        self.status: str | None = None
        self.attempt = 0

    def move(self, status: str, progress: int = 0, **kw: Any) -> EventLog:
        self.attempt += status == "IN_PROGRESS"
        self._add("status", status, progress, from_status=self.status, **kw)
        self.status = status
        return self

    def report(self, progress: int, **kw: Any) -> EventLog:
        assert self.status is not None
        self._add("progress", self.status, progress, from_status=self.status, **kw)
        return self

    def _add(self, kind: str, status: str, progress: int, **kw: Any) -> None:
        fields: dict[str, Any] = {
            "event_id": EventLog.next_id,
            "task_id": self.task_id,
            "kind": kind,
            "status": status,
            "version": len(self.events) + 1,
            "progress": progress,
            "attempt": self.attempt,
        }
        EventLog.next_id += 1
        self.events.append(EventRow(**(fields | kw)))

    @property
    def version(self) -> int:
        return self.events[-1].version


def completed(task_id: str) -> EventLog:
    return EventLog(task_id).move("PENDING").move("IN_PROGRESS").report(50).move("COMPLETED", 100)


def task_row(task_id: str, log: EventLog, **kw: Any) -> TaskRow:
    fields: dict[str, Any] = {
        "task_id": task_id,
        "type": "simulate",
        "status": log.status,
        "progress": log.events[-1].progress,
        "retry_count": 0,
        "max_retries": 3,
        "version": log.version,
        "attempt": log.attempt,
        "payload": PAYLOAD,
    }
    return TaskRow(**(fields | kw))


def submit_invoke(index: int, task_type: str = "simulate", key: str | None = None) -> Operation:
    """A submit's invocation, which keeps the task type it asked for."""
    return Operation(
        index=index,
        process="c1",
        type="invoke",
        f="submit",
        method="POST",
        path="/tasks",
        body_digest=body_digest({"type": task_type, "payload": PAYLOAD}),
        idempotency_key=key,
        value={"type": task_type},
    )


def submit_ok(index: int, task_id: str, key: str | None = None) -> Operation:
    return Operation(
        index=index,
        process="c1",
        type="ok",
        f="submit",
        method="POST",
        path="/tasks",
        body_digest=body_digest({"type": "simulate", "payload": PAYLOAD}),
        idempotency_key=key,
        invoke_index=index - 1,
        status_code=202,
        task_id=task_id,
        task_status="PENDING",
    )


def submit_info(index: int, key: str | None = None, payload: dict[str, Any] | None = None) -> Operation:
    return Operation(
        index=index,
        process="c2",
        type="info",
        f="submit",
        method="POST",
        path="/tasks",
        body_digest=body_digest({"type": "simulate", "payload": payload or PAYLOAD}),
        idempotency_key=key,
        invoke_index=index - 1,
        error="ReadTimeout",
    )


def read(start: int, end: int, task_id: str, status: str, task_type: str = "simulate") -> list[Operation]:
    """A GET /tasks/{id} invoked at index `start` and answered (ok) at index `end`."""
    path = f"/tasks/{task_id}"
    invoke = Operation(start, f"r{start}", "invoke", "get", "GET", path)
    answer = dataclasses.replace(
        invoke,
        index=end,
        type="ok",
        invoke_index=start,
        status_code=200,
        task_id=task_id,
        task_status=status,
        value={"taskId": task_id, "type": task_type, "status": status},
    )
    return [invoke, answer]


def history_of(*ops: Operation | list[Operation]) -> History:
    flat = [o for op in ops for o in (op if isinstance(op, list) else [op])]
    return History.from_ops(sorted(flat, key=lambda o: o.index))


OUT_OF_RETRIES = {"code": "RETRIES_EXHAUSTED", "message": "gave up after 3 retries"}


def healthy() -> tuple[History, Snapshot]:
    """T1 completed once, T2 cancelled while pending, T3 out of retries and in the DLQ."""
    l1 = completed(T1)
    l2 = EventLog(T2).move("PENDING").move("CANCELLED")
    l3 = EventLog(T3).move("PENDING").move("IN_PROGRESS").move("FAILED")
    snapshot = Snapshot(
        tasks=(task_row(T1, l1), task_row(T2, l2), task_row(T3, l3, error=OUT_OF_RETRIES, retry_count=3)),
        events=tuple(l1.events + l2.events + l3.events),
        results=(ResultRow(T1),),
        outbox=(OutboxRow("2024-01-01T00:00:00", 1, T1),),
        queues=(QueueDepth("ast.simulate.q", "job", 0), QueueDepth("ast.jobs.dlq", "dlq", 1)),
        dlq_messages=(QueueMessage("ast.jobs.dlq", T3, {"taskId": T3, "retryCount": 3}),),
    )
    history = history_of(
        submit_invoke(0, key="k1"),
        submit_ok(1, T1, "k1"),
        submit_invoke(2),
        submit_ok(3, T2),
        submit_invoke(4),
        submit_ok(5, T3),
    )
    return history, snapshot


def with_reads(history: History, *reads: list[Operation]) -> History:
    return history_of(list(history.ops), *reads)


def only_broken(verdict: Verdict) -> dict[int, frozenset[str]]:
    return {r.number: r.task_ids for r in verdict.broken}


def test_a_healthy_run_holds_every_invariant() -> None:
    history, snapshot = healthy()
    history = with_reads(history, read(10, 11, T1, "COMPLETED"), read(12, 13, T3, "FAILED"))
    verdict = check_all(history, snapshot)
    assert [r.number for r in verdict.results] == list(range(1, 13))
    assert verdict.valid == "held", [r for r in verdict.results if r.status != "held"]
    assert verdict.counts.accepted == 3
    assert (verdict.counts.completed, verdict.counts.cancelled, verdict.counts.failed) == (1, 1, 1)
    assert verdict.counts.lost == verdict.counts.duplicated == 0


def replace_task(snapshot: Snapshot, task_id: str, **kw: Any) -> Snapshot:
    tasks = tuple(dataclasses.replace(t, **kw) if t.task_id == task_id else t for t in snapshot.tasks)
    return dataclasses.replace(snapshot, tasks=tasks)


def with_log(snapshot: Snapshot, task_id: str, log: EventLog, **kw: Any) -> Snapshot:
    """Swaps one task's events (and its row, to match them) for `log`'s."""
    events = tuple(e for e in snapshot.events if e.task_id != task_id) + tuple(log.events)
    tasks = tuple(t for t in snapshot.tasks if t.task_id != task_id) + (task_row(task_id, log, **kw),)
    return dataclasses.replace(snapshot, events=events, tasks=tasks)


# --- 1. no lost task ----------------------------------------------------------------------------


def test_1_breaks_when_a_202_task_is_missing() -> None:
    history, snapshot = healthy()
    snapshot = dataclasses.replace(
        snapshot,
        tasks=tuple(t for t in snapshot.tasks if t.task_id != T1),
        events=tuple(e for e in snapshot.events if e.task_id != T1),
        results=(),
        outbox=(),
    )
    verdict = check_all(history, snapshot)
    assert only_broken(verdict) == {1: frozenset({T1})}
    assert verdict.counts.lost == 1


def test_1_breaks_when_a_task_stays_in_progress() -> None:
    history, snapshot = healthy()
    log = EventLog(T1).move("PENDING").move("IN_PROGRESS").report(30)
    snapshot = dataclasses.replace(with_log(snapshot, T1, log), results=())
    assert only_broken(check_all(history, snapshot)) == {1: frozenset({T1})}


def test_1_waiting_is_fine_only_where_the_scenario_left_it() -> None:
    history, snapshot = healthy()
    log = EventLog(T1).move("PENDING").move("IN_PROGRESS").move("WAITING_FOR_EVENT")
    snapshot = dataclasses.replace(with_log(snapshot, T1, log), results=())
    assert check_all(history, snapshot, Expectations(waiting=frozenset({T1}))).valid == "held"
    assert only_broken(check_all(history, snapshot, Expectations(waiting=frozenset()))) == {
        1: frozenset({T1})
    }


def test_1_an_unknown_submit_that_never_turned_up_is_not_lost() -> None:
    history, snapshot = healthy()
    history = History.from_ops([*history.ops, submit_info(8, key="never")])
    verdict = check_all(history, snapshot)
    assert verdict.valid == "held"
    assert (verdict.counts.lost, verdict.counts.unknown, verdict.counts.recovered) == (0, 1, 0)


def test_an_unknown_submit_that_turned_up_counts_as_recovered() -> None:
    base, snapshot = healthy()
    others = [op for op in base.ops if op.index not in {0, 1}]  # T1's submit
    verdict = check_all(History.from_ops([*others, submit_info(8, payload=PAYLOAD)]), snapshot)
    assert verdict.valid == "held"
    assert (verdict.counts.recovered, verdict.counts.unknown, verdict.counts.completed) == (1, 0, 1)
    other = {"durationMs": 99, "steps": 1, "outcome": "success"}
    counts = check_all(History.from_ops([*others, submit_info(8, payload=other)]), snapshot).counts
    assert (counts.recovered, counts.unknown) == (0, 1)


# --- 2. once only -------------------------------------------------------------------------------


def test_2_breaks_on_a_second_result_row() -> None:
    history, snapshot = healthy()
    snapshot = dataclasses.replace(snapshot, results=(*snapshot.results, ResultRow(T1, worker_id="w2")))
    verdict = check_all(history, snapshot)
    assert only_broken(verdict) == {2: frozenset({T1})}
    assert len(verdict.result(2).violations[0].evidence["results"]) == 2
    assert verdict.counts.duplicated == 1


def test_2_breaks_on_a_completed_task_without_a_result() -> None:
    history, snapshot = healthy()
    snapshot = dataclasses.replace(snapshot, results=())
    assert only_broken(check_all(history, snapshot)) == {2: frozenset({T1})}


# --- 3. terminal is final -----------------------------------------------------------------------


def test_3_breaks_on_an_event_after_a_terminal_one() -> None:
    history, snapshot = healthy()
    log = completed(T1).report(100)
    verdict = check_all(history, with_log(snapshot, T1, log))
    assert only_broken(verdict) == {3: frozenset({T1})}
    assert verdict.result(3).violations[0].evidence["terminal"]["status"] == "COMPLETED"


# --- 4. legal moves only ------------------------------------------------------------------------


def test_4_breaks_on_a_move_the_machine_forbids() -> None:
    history, snapshot = healthy()
    log = EventLog(T2).move("PENDING").move("RETRYING").move("CANCELLED")
    verdict = check_all(history, with_log(snapshot, T2, log))
    assert only_broken(verdict) == {4: frozenset({T2})}
    assert verdict.result(4).violations[0].evidence["event"]["status"] == "RETRYING"


def test_4_breaks_when_the_first_event_is_not_pending() -> None:
    history, snapshot = healthy()
    log = EventLog(T2).move("IN_PROGRESS").move("CANCELLED")
    assert only_broken(check_all(history, with_log(snapshot, T2, log))) == {4: frozenset({T2})}


def test_4_every_legal_path_holds() -> None:
    history, snapshot = healthy()
    log = (
        EventLog(T1)
        .move("PENDING")
        .move("IN_PROGRESS")
        .move("RETRYING")
        .move("IN_PROGRESS")
        .move("IN_PROGRESS")
        .move("PENDING")
        .move("IN_PROGRESS")
        .move("WAITING_FOR_EVENT")
        .move("PENDING")
        .move("IN_PROGRESS")
        .move("COMPLETED", 100)
    )
    assert check_all(history, with_log(snapshot, T1, log, retry_count=1)).valid == "held"


# --- 5. events match status ---------------------------------------------------------------------


def test_5_breaks_when_the_task_status_disagrees_with_its_last_event() -> None:
    history, snapshot = healthy()
    snapshot = replace_task(snapshot, T3, status="CANCELLED", error=None)
    snapshot = dataclasses.replace(snapshot, dlq_messages=(), queues=(QueueDepth("ast.jobs.dlq", "dlq", 0),))
    assert only_broken(check_all(history, snapshot)) == {5: frozenset({T3})}


def test_5_breaks_when_version_goes_backwards() -> None:
    history, snapshot = healthy()
    log = completed(T1)
    log.events[2] = dataclasses.replace(log.events[2], version=1)
    verdict = check_all(history, with_log(snapshot, T1, log))
    assert only_broken(verdict) == {5: frozenset({T1})}
    assert verdict.result(5).violations[0].evidence["after"]["version"] == 1


# --- 6. progress --------------------------------------------------------------------------------


def test_6_breaks_when_progress_goes_back_within_an_attempt() -> None:
    history, snapshot = healthy()
    log = EventLog(T1).move("PENDING").move("IN_PROGRESS").report(60).report(40).move("COMPLETED", 100)
    verdict = check_all(history, with_log(snapshot, T1, log))
    assert only_broken(verdict) == {6: frozenset({T1})}
    evidence = verdict.result(6).violations[0].evidence
    assert (evidence["before"]["progress"], evidence["after"]["progress"]) == (60, 40)


def test_6_progress_may_restart_in_a_new_attempt() -> None:
    history, snapshot = healthy()
    log = EventLog(T1).move("PENDING").move("IN_PROGRESS").report(60).move("IN_PROGRESS", 0).report(30)
    log.move("COMPLETED", 100)
    assert check_all(history, with_log(snapshot, T1, log)).valid == "held"


def test_6_breaks_when_completed_below_100() -> None:
    history, snapshot = healthy()
    log = EventLog(T1).move("PENDING").move("IN_PROGRESS").report(50).move("COMPLETED", 50)
    assert only_broken(check_all(history, with_log(snapshot, T1, log))) == {6: frozenset({T1})}


# --- 7. retries bounded -------------------------------------------------------------------------


def test_7_breaks_when_retry_count_exceeds_max_retries() -> None:
    history, snapshot = healthy()
    verdict = check_all(history, replace_task(snapshot, T3, retry_count=4))
    assert only_broken(verdict) == {7: frozenset({T3})}
    assert verdict.result(7).violations[0].evidence["task"]["retryCount"] == 4


# --- 8. dead letters ----------------------------------------------------------------------------


def without_dlq(snapshot: Snapshot) -> Snapshot:
    return dataclasses.replace(snapshot, dlq_messages=(), queues=(QueueDepth("ast.jobs.dlq", "dlq", 0),))


@pytest.mark.parametrize("code", ["RETRIES_EXHAUSTED", "DELIVERY_LIMIT"])
def test_8_breaks_when_a_task_out_of_retries_or_deliveries_is_not_in_the_dlq(code: str) -> None:
    history, snapshot = healthy()
    snapshot = replace_task(without_dlq(snapshot), T3, error={"code": code, "message": "m"})
    verdict = check_all(history, snapshot)
    assert only_broken(verdict) == {8: frozenset({T3})}
    evidence = verdict.result(8).violations[0].evidence
    assert evidence["task"]["error"]["code"] == code
    assert evidence["failedEvent"]["status"] == "FAILED"


def test_8_a_failed_task_with_another_error_code_need_not_be_in_the_dlq() -> None:
    history, snapshot = healthy()
    snapshot = replace_task(without_dlq(snapshot), T3, error={"code": "SIMULATED_TERMINAL", "message": "m"})
    assert check_dead_letters(history, snapshot).status == "held"


def test_8_a_task_replayed_as_another_need_not_be_in_the_dlq() -> None:
    """'Replayed' is read off the replay's `replay_of`: the contract names no `replayed_by`."""
    history, snapshot = healthy()
    log = completed(T4)
    snapshot = dataclasses.replace(
        without_dlq(snapshot),
        tasks=(*snapshot.tasks, task_row(T4, log, replay_of=T3)),
        events=(*snapshot.events, *log.events),
        results=(*snapshot.results, ResultRow(T4)),
    )
    verdict = check_all(history, snapshot)
    assert verdict.valid == "held", [r for r in verdict.results if r.status != "held"]
    assert verdict.counts.replayed == 1


def test_8_poison_is_counted_and_listed_not_broken() -> None:
    history, snapshot = healthy()
    poison = (
        QueueMessage("ast.jobs.dlq", None, "not json", message_id="m-garbage"),
        QueueMessage("ast.jobs.dlq", "no-such-task", {"taskId": "no-such-task"}),
    )
    snapshot = dataclasses.replace(snapshot, dlq_messages=(*snapshot.dlq_messages, *poison))
    verdict = check_all(history, snapshot)
    assert verdict.valid == "held", [r for r in verdict.results if r.status != "held"]
    assert verdict.counts.poison == 2
    note = verdict.result(8).note
    assert note.startswith("2 DLQ message(s) name no known task")
    assert "m-garbage" in note
    assert "no-such-task" in note


def test_8_breaks_on_a_dlq_message_of_a_completed_task() -> None:
    history, snapshot = healthy()
    message = QueueMessage("ast.jobs.dlq", T1, {"taskId": T1})
    verdict = check_all(
        history, dataclasses.replace(snapshot, dlq_messages=(*snapshot.dlq_messages, message))
    )
    assert only_broken(verdict) == {8: frozenset({T1})}
    assert verdict.result(8).violations[0].evidence["message"]["body"] == {"taskId": T1}


def test_8_is_unknown_when_the_dlq_was_not_read_in_full() -> None:
    history, snapshot = healthy()
    snapshot = dataclasses.replace(snapshot, dlq_messages=(), dlq_complete=False)
    assert check_dead_letters(history, snapshot).status == "unknown"


# --- 9. nothing in transit ----------------------------------------------------------------------


def test_9_breaks_on_an_unsent_outbox_row() -> None:
    history, snapshot = healthy()
    row = OutboxRow(None, 2, T1)
    verdict = check_all(history, dataclasses.replace(snapshot, outbox=(*snapshot.outbox, row)))
    assert only_broken(verdict) == {9: frozenset({T1})}


def test_9_breaks_on_a_non_empty_retry_queue() -> None:
    history, snapshot = healthy()
    queue = QueueDepth("ast.simulate.retry.200ms.q", "retry", 2, 2, 0)
    verdict = check_all(history, dataclasses.replace(snapshot, queues=(*snapshot.queues, queue)))
    assert only_broken(verdict) == {9: frozenset()}
    assert verdict.result(9).violations[0].evidence["queue"]["name"] == "ast.simulate.retry.200ms.q"


# --- 10. one key, one task ----------------------------------------------------------------------


def test_10_breaks_when_one_key_got_two_task_ids() -> None:
    history, snapshot = healthy()
    history = History.from_ops([*history.ops, submit_ok(7, T2, "k1")])
    verdict = check_all(history, snapshot)
    assert only_broken(verdict) == {10: frozenset({T1, T2})}


def test_10_holds_when_a_repeated_key_got_the_same_task() -> None:
    history, snapshot = healthy()
    history = History.from_ops([*history.ops, submit_ok(7, T1, "k1")])
    assert check_all(history, snapshot).valid == "held"


# --- 11. cancelled never gets a result ----------------------------------------------------------


def test_11_breaks_on_a_result_for_a_cancelled_task() -> None:
    history, snapshot = healthy()
    snapshot = dataclasses.replace(snapshot, results=(*snapshot.results, ResultRow(T2, worker_id="w1")))
    verdict = check_all(history, snapshot)
    assert only_broken(verdict) == {11: frozenset({T2})}
    assert verdict.result(11).violations[0].evidence["results"][0]["task_id"] == T2


# --- 12. what clients saw agrees --------------------------------------------------------------


def test_12_breaks_when_a_client_saw_a_terminal_task_later_in_another_status() -> None:
    """(a): COMPLETED answered at 11, and a read invoked after it (12) answered IN_PROGRESS."""
    history, snapshot = healthy()
    history = with_reads(history, read(10, 11, T1, "COMPLETED"), read(12, 13, T1, "IN_PROGRESS"))
    verdict = check_all(history, snapshot)
    assert only_broken(verdict) == {12: frozenset({T1})}
    (violation,) = verdict.result(12).violations
    assert violation.message == "a client saw terminal COMPLETED, later IN_PROGRESS"
    assert violation.evidence["earlier"]["op"]["index"] == 11
    assert violation.evidence["later"]["op"]["index"] == 13


def test_12_breaks_when_the_final_status_is_not_the_terminal_one_a_client_saw() -> None:
    """(a) against the snapshot: a client saw COMPLETED; the stores, consistent, say FAILED."""
    history, snapshot = healthy()
    failed = EventLog(T1).move("PENDING").move("IN_PROGRESS").move("FAILED")
    snapshot = dataclasses.replace(with_log(snapshot, T1, failed), results=())
    verdict = check_all(with_reads(history, read(10, 11, T1, "COMPLETED")), snapshot)
    assert only_broken(verdict) == {12: frozenset({T1})}
    evidence = verdict.result(12).violations[0].evidence
    assert (evidence["earlier"]["status"], evidence["final"]["status"]) == ("COMPLETED", "FAILED")


def test_12_backwards_is_what_the_status_machine_cannot_reach() -> None:
    """(b): reachability is computed from LEGAL_MOVES, not listed: a hand-back is not backwards;
    leaving a terminal status is; on a machine without hand-back, IN_PROGRESS -> PENDING would be."""
    assert can_follow("IN_PROGRESS", "PENDING")
    assert can_follow("WAITING_FOR_EVENT", "IN_PROGRESS")
    assert can_follow("RETRYING", "COMPLETED")
    assert not can_follow("COMPLETED", "IN_PROGRESS")
    assert not can_follow("FAILED", "RETRYING")
    assert not can_follow("CANCELLED", "UNHEARD_OF")
    assert reachable_statuses(LEGAL_MOVES) == REACHABLE
    no_hand_back = dict(LEGAL_MOVES) | {
        "IN_PROGRESS": LEGAL_MOVES["IN_PROGRESS"] - {"PENDING"},
        "WAITING_FOR_EVENT": frozenset({"CANCELLED"}),
    }
    assert not can_follow("IN_PROGRESS", "PENDING", reachable_statuses(no_hand_back))


def test_12_breaks_when_a_status_is_seen_after_a_cancel_answered() -> None:
    """(b) through the invariant: the cancel's 202 said CANCELLED; a later read says PENDING."""
    history, snapshot = healthy()
    path = f"/tasks/{T2}/cancel"
    cancel = Operation(10, "c9", "invoke", "cancel", "POST", path)
    answered = dataclasses.replace(
        cancel, index=11, type="ok", invoke_index=10, status_code=202, task_id=T2, task_status="CANCELLED"
    )
    verdict = check_all(with_reads(history, [cancel, answered], read(12, 13, T2, "PENDING")), snapshot)
    assert only_broken(verdict) == {12: frozenset({T2})}


def test_12_breaks_when_a_client_reads_another_type_than_it_submitted() -> None:
    """(c): T1 was submitted as simulate (its invocation's value), a read says otherwise."""
    history, snapshot = healthy()
    history = with_reads(history, read(10, 11, T1, "COMPLETED", task_type="initialize_repository"))
    verdict = check_all(history, snapshot)
    assert only_broken(verdict) == {12: frozenset({T1})}
    evidence = verdict.result(12).violations[0].evidence
    assert evidence["read"]["taskType"] == "initialize_repository"
    assert [s["taskType"] for s in evidence["submits"]] == ["simulate"]


def test_12_breaks_when_submits_of_two_types_got_one_task_id() -> None:
    history, snapshot = healthy()
    other = submit_ok(21, T1)
    verdict = check_all(with_reads(history, [submit_invoke(20, "initialize_repository"), other]), snapshot)
    assert only_broken(verdict) == {12: frozenset({T1})}


def test_12_list_items_kept_as_objects_are_observations_too() -> None:
    history, snapshot = healthy()
    invoke = Operation(10, "l1", "invoke", "list", "GET", "/tasks")
    items = [{"taskId": T1, "type": "simulate", "status": "COMPLETED"}]
    listed = dataclasses.replace(invoke, index=11, type="ok", invoke_index=10, value={"items": items})
    verdict = check_all(with_reads(history, [invoke, listed], read(12, 13, T1, "RETRYING")), snapshot)
    assert only_broken(verdict) == {12: frozenset({T1})}


def test_12_holds_for_overlapping_reads_hand_backs_and_unsubmitted_tasks() -> None:
    """Reads that overlap in time are not ordered (the IN_PROGRESS one was invoked first and may
    have been served first); IN_PROGRESS -> PENDING is a hand-back; a refused (fail) read is not an
    observation; a task no submit returned (a replay) has no type to compare."""
    history, snapshot = healthy()
    slow, fast = read(10, 13, T1, "IN_PROGRESS"), read(11, 12, T1, "COMPLETED")
    refused = dataclasses.replace(read(16, 17, T1, "PENDING")[1], type="fail", status_code=404)
    history = with_reads(
        history,
        read(6, 7, T1, "IN_PROGRESS"),
        read(8, 9, T1, "PENDING"),
        slow,
        fast,
        read(14, 15, T1, "COMPLETED"),
        [read(16, 17, T1, "PENDING")[0], refused],
        read(18, 19, T4, "FAILED", task_type="anything"),
    )
    assert check_clients_agree(history, snapshot).status == "held"
    assert check_all(history, snapshot).valid == "held"


# --- composition --------------------------------------------------------------------------------


def test_an_unreadable_store_gives_unknown_not_held() -> None:
    history, _ = healthy()
    verdict = check_all(
        history, Snapshot(postgres_error="refused", rabbitmq_error="refused", dlq_complete=False)
    )
    assert verdict.valid == "unknown"
    assert {r.number for r in verdict.results if r.status == "unknown"} == set(range(1, 10)) | {11}
    assert verdict.result(12).status == "held"
    assert "not read" in verdict.result(12).note


def test_the_table_names_every_invariant_once_in_order() -> None:
    names = invariant_names()
    assert list(names) == list(range(1, 13))
    assert names[8] == "dead letters match"
    assert names[12] == "what clients saw agrees"
    assert tuple(ALL_CHECKERS) == INVARIANTS
    assert all(i.doc for i in INVARIANTS)


def test_merge_valid_orders_broken_over_unknown_over_held() -> None:
    assert merge_valid(["held", "unknown", "broken"]) == "broken"
    assert merge_valid(["held", "unknown"]) == "unknown"
    assert merge_valid(["held"]) == "held"


def test_a_subset_of_checkers_composes() -> None:
    history, snapshot = healthy()
    verdict = check_all(history, snapshot, checkers=ALL_CHECKERS[:2])
    assert [r.number for r in verdict.results] == [1, 2]


def test_exact_ready_counts_replace_stale_management_totals() -> None:
    """After a cluster node is lost the management API kept reporting 8 messages in a retry queue
    whose leader held none; the exact count by passive declare (plus unacked) is what a queue holds."""
    from harness.observe.rabbitmq import with_exact

    stale = QueueDepth("ast.simulate.retry.200ms.q", "retry", messages=8, ready=0, unacked=0)
    busy = QueueDepth("ast.simulate.q", "job", messages=1, ready=1, unacked=2)
    unread = QueueDepth("ast.jobs.dlq", "dlq", messages=3, ready=3)

    fixed = with_exact((stale, busy, unread), {"ast.simulate.retry.200ms.q": 0, "ast.simulate.q": 4})

    assert [(q.messages, q.ready, q.unacked) for q in fixed] == [(0, 0, 0), (6, 4, 2), (3, 3, 0)]
