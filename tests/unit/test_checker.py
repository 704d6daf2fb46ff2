"""The checker on made-up histories and snapshots: each invariant holds on a healthy run and breaks,
alone and naming the right task, on a run with exactly one planted fault."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from harness.checker import (
    ALL_CHECKERS,
    Expectations,
    Verdict,
    check_all,
    check_dead_letters,
    merge_valid,
)
from harness.history import History, Operation, body_digest
from harness.state import EventRow, OutboxRow, QueueDepth, QueueMessage, ResultRow, Snapshot, TaskRow

pytestmark = pytest.mark.unit

T1 = "00000000-0000-0000-0000-000000000001"
T2 = "00000000-0000-0000-0000-000000000002"
T3 = "00000000-0000-0000-0000-000000000003"
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


def healthy() -> tuple[History, Snapshot]:
    """T1 completed once, T2 cancelled while pending, T3 dead-lettered and in the DLQ."""
    l1 = completed(T1)
    l2 = EventLog(T2).move("PENDING").move("CANCELLED")
    l3 = EventLog(T3).move("PENDING").move("IN_PROGRESS").move("FAILED")
    snapshot = Snapshot(
        tasks=(task_row(T1, l1), task_row(T2, l2), task_row(T3, l3, dead_lettered=True, retry_count=3)),
        events=tuple(l1.events + l2.events + l3.events),
        results=(ResultRow(1, T1, "w1"),),
        outbox=(OutboxRow(1, "m1", "ast.jobs.x", "job.simulate", T1, sent_at="2024-01-01T00:00:00"),),
        queues=(QueueDepth("ast.simulate.q", "job", 0), QueueDepth("ast.jobs.dlq", "dlq", 1)),
        dlq_messages=(QueueMessage("ast.jobs.dlq", T3, {"taskId": T3, "retryCount": 3}),),
    )
    history = History.from_ops([submit_ok(1, T1, "k1"), submit_ok(3, T2), submit_ok(5, T3)])
    return history, snapshot


def only_broken(verdict: Verdict) -> dict[int, frozenset[str]]:
    return {r.number: r.task_ids for r in verdict.broken}


def test_a_healthy_run_holds_every_invariant() -> None:
    history, snapshot = healthy()
    verdict = check_all(history, snapshot)
    assert [r.number for r in verdict.results] == list(range(1, 12))
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
    others = [op for op in base.ops if op.task_id != T1]
    verdict = check_all(History.from_ops([*others, submit_info(8, payload=PAYLOAD)]), snapshot)
    assert verdict.valid == "held"
    assert (verdict.counts.recovered, verdict.counts.unknown, verdict.counts.completed) == (1, 0, 1)
    other = {"durationMs": 99, "steps": 1, "outcome": "success"}
    counts = check_all(History.from_ops([*others, submit_info(8, payload=other)]), snapshot).counts
    assert (counts.recovered, counts.unknown) == (0, 1)


# --- 2. once only -------------------------------------------------------------------------------


def test_2_breaks_on_a_second_result_row() -> None:
    history, snapshot = healthy()
    snapshot = dataclasses.replace(snapshot, results=(*snapshot.results, ResultRow(2, T1, "w2")))
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
    snapshot = replace_task(snapshot, T3, status="CANCELLED", dead_lettered=False)
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


def test_8_breaks_when_a_dead_lettered_task_is_not_in_the_dlq() -> None:
    history, snapshot = healthy()
    snapshot = dataclasses.replace(snapshot, dlq_messages=(), queues=(QueueDepth("ast.jobs.dlq", "dlq", 0),))
    assert only_broken(check_all(history, snapshot)) == {8: frozenset({T3})}


def test_8_a_replayed_task_need_not_be_in_the_dlq() -> None:
    history, snapshot = healthy()
    snapshot = dataclasses.replace(replace_task(snapshot, T3, replayed_by=T2), dlq_messages=())
    assert check_dead_letters(history, snapshot).status == "held"


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
    row = OutboxRow(2, "m2", "ast.events.x", "task.completed", T1)
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
    snapshot = dataclasses.replace(snapshot, results=(*snapshot.results, ResultRow(2, T2, "w1")))
    verdict = check_all(history, snapshot)
    assert only_broken(verdict) == {11: frozenset({T2})}
    assert verdict.result(11).violations[0].evidence["results"][0]["task_id"] == T2


# --- composition --------------------------------------------------------------------------------


def test_an_unreadable_store_gives_unknown_not_held() -> None:
    history, _ = healthy()
    verdict = check_all(
        history, Snapshot(postgres_error="refused", rabbitmq_error="refused", dlq_complete=False)
    )
    assert verdict.valid == "unknown"
    assert {r.number for r in verdict.results if r.status == "unknown"} == set(range(1, 10)) | {11}


def test_merge_valid_orders_broken_over_unknown_over_held() -> None:
    assert merge_valid(["held", "unknown", "broken"]) == "broken"
    assert merge_valid(["held", "unknown"]) == "unknown"
    assert merge_valid(["held"]) == "held"


def test_a_subset_of_checkers_composes() -> None:
    history, snapshot = healthy()
    verdict = check_all(history, snapshot, checkers=ALL_CHECKERS[:2])
    assert [r.number for r in verdict.results] == [1, 2]
