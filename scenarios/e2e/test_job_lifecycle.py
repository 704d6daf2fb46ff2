"""A job's whole life through the contract's surface: HTTP in, PostgreSQL and RabbitMQ observed."""

from __future__ import annotations

import json

import httpx
import pytest

from scenarios.e2e.helpers import dlq_task_ids, sql, statuses, submit, wait_for, wait_status, wait_terminal

pytestmark = pytest.mark.e2e


def test_success_reports_progress_and_stores_one_result(api: httpx.Client, dsn: str) -> None:
    task_id = submit(api, {"durationMs": 600, "steps": 3})

    task = wait_terminal(api, task_id)

    assert task["status"] == "COMPLETED"
    assert task["progress"] == 100
    assert task["result"]["outcome"] == "success"
    assert task["startedAt"]
    assert task["completedAt"]
    assert statuses(api, task_id) == ["PENDING", "IN_PROGRESS", "COMPLETED"]
    events = api.get(f"/tasks/{task_id}/events").json()["items"]
    # The last step's 100% rides on the completion (one statement, not two): no progress event of its own.
    assert [(e["kind"], e["progress"]) for e in events if e["status"] != "PENDING"] == [
        ("status", 0), ("progress", 33), ("progress", 66), ("status", 100)
    ]
    assert events[-1]["status"] == "COMPLETED"
    rows = sql(dsn, "SELECT result FROM task_results WHERE task_id = $1::uuid", task_id)
    assert len(rows) == 1
    assert json.loads(rows[0]["result"]) == task["result"], "the stored result is the one the API returns"
    versions = sql(dsn, "SELECT version FROM task_events WHERE task_id = $1::uuid ORDER BY event_id", task_id)
    assert [r["version"] for r in versions] == sorted({r["version"] for r in versions})


def test_retryable_failures_are_retried_then_succeed(api: httpx.Client) -> None:
    task_id = submit(api, {"outcome": "retryable", "failAttempts": 2, "steps": 1})

    task = wait_terminal(api, task_id)

    assert task["status"] == "COMPLETED"
    assert task["retryCount"] == 2
    assert statuses(api, task_id) == [
        "PENDING",
        "IN_PROGRESS",
        "RETRYING",
        "IN_PROGRESS",
        "RETRYING",
        "IN_PROGRESS",
        "COMPLETED",
    ]


def test_exhausted_retries_fail_into_the_dlq_and_replay_brings_the_job_back(
    api: httpx.Client, management_url: str
) -> None:
    task_id = submit(api, {"outcome": "retryable", "steps": 1})

    task = wait_terminal(api, task_id)

    assert task["status"] == "FAILED"
    assert task["retryCount"] == task["maxRetries"]
    assert task["error"]["code"] == "RETRIES_EXHAUSTED"
    wait_for(api, task_id, lambda _: task_id in dlq_task_ids(management_url), timeout=10, what="the DLQ")

    replay = api.post("/dlq/replay", json={"taskIds": [task_id]})

    assert replay.status_code == 202, replay.text
    assert replay.json()["replayed"] == 1
    new_id = replay.json()["taskIds"][0]
    assert new_id != task_id
    assert task_id not in dlq_task_ids(management_url)
    assert wait_terminal(api, new_id)["retryCount"] == task["maxRetries"]
    assert "IN_PROGRESS" in statuses(api, new_id)
    assert api.get(f"/tasks/{task_id}").json()["status"] == "FAILED", "terminal is final, even on replay"


def test_terminal_error_fails_at_once_into_the_dlq(api: httpx.Client, management_url: str) -> None:
    task_id = submit(api, {"outcome": "terminal"})

    task = wait_terminal(api, task_id)

    assert task["status"] == "FAILED"
    assert task["retryCount"] == 0
    assert task["error"]["code"] == "SIMULATED_TERMINAL"
    wait_for(api, task_id, lambda _: task_id in dlq_task_ids(management_url), timeout=10, what="the DLQ")


def test_a_job_that_crashes_its_worker_every_time_ends_in_the_dlq(
    api: httpx.Client, management_url: str
) -> None:
    task_id = submit(api, {"outcome": "crash", "steps": 2, "durationMs": 100})

    task = wait_terminal(api, task_id, timeout=120)

    assert task["status"] == "FAILED"
    assert task["error"]["code"] == "DELIVERY_LIMIT"
    assert "times" in task["error"]["message"]
    wait_for(api, task_id, lambda _: task_id in dlq_task_ids(management_url), timeout=10, what="the DLQ")
    assert wait_terminal(api, submit(api, {"steps": 1}))["status"] == "COMPLETED", "workers are back"


def test_a_hanging_job_times_out_and_is_retried(api: httpx.Client) -> None:
    task_id = submit(api, {"outcome": "hang", "failAttempts": 1, "timeoutMs": 500, "steps": 2})

    task = wait_terminal(api, task_id)

    assert task["status"] == "COMPLETED"
    assert task["retryCount"] == 1
    events = api.get(f"/tasks/{task_id}/events").json()["items"]
    assert any(e["status"] == "RETRYING" and "JOB_TIMEOUT" in (e["message"] or "") for e in events)


def test_a_job_that_always_hangs_fails_after_its_retries(api: httpx.Client) -> None:
    task_id = submit(api, {"outcome": "hang", "timeoutMs": 300})

    task = wait_terminal(api, task_id)

    assert task["status"] == "FAILED"
    assert "JOB_TIMEOUT" in task["error"]["message"]


def test_waiting_task_resumes_on_its_event(api: httpx.Client) -> None:
    task_id = submit(api, {"waitForEvent": {"type": "review", "key": "pr-7"}})
    wait_status(api, task_id, "WAITING_FOR_EVENT")

    other = api.post("/events", json={"type": "review", "key": "pr-8"})
    resumed = api.post("/events", json={"type": "review", "key": "pr-7", "payload": {"approved": True}})

    assert other.status_code == 202
    assert other.json() == {"resumed": 0}
    assert resumed.status_code == 202
    assert resumed.json() == {"resumed": 1}
    task = wait_terminal(api, task_id)
    assert task["status"] == "COMPLETED"
    assert task["result"]["event"]["payload"] == {"approved": True}
    assert statuses(api, task_id) == [
        "PENDING",
        "IN_PROGRESS",
        "WAITING_FOR_EVENT",
        "PENDING",
        "IN_PROGRESS",
        "COMPLETED",
    ]


def test_same_key_and_body_share_a_task_and_another_body_conflicts(api: httpx.Client, dsn: str) -> None:
    body = {"type": "simulate", "payload": {"steps": 1}}
    first = api.post("/tasks", json=body, headers={"Idempotency-Key": "order-42"})
    again = api.post("/tasks", json=body, headers={"Idempotency-Key": "order-42"})
    other = api.post(
        "/tasks", json={**body, "payload": {"steps": 2}}, headers={"Idempotency-Key": "order-42"}
    )

    assert first.status_code == 202
    assert again.status_code == 202
    assert again.json()["taskId"] == first.json()["taskId"]
    assert other.status_code == 409
    assert other.json()["error"]["code"]
    assert len(sql(dsn, "SELECT 1 FROM tasks WHERE idempotency_key = 'order-42'")) == 1
    wait_terminal(api, first.json()["taskId"])
