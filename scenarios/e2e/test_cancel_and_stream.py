"""Cancelling tasks before and during their run, and following a task over Server-Sent Events."""

from __future__ import annotations

import json

import httpx
import pytest

from scenarios.e2e.helpers import sql, statuses, submit, wait_for, wait_terminal

pytestmark = pytest.mark.e2e


def test_cancel_a_pending_task(api: httpx.Client, paused_workers: None, dsn: str) -> None:
    task_id = submit(api, {"steps": 1})
    assert api.get(f"/tasks/{task_id}").json()["status"] == "PENDING"

    response = api.post(f"/tasks/{task_id}/cancel")

    assert response.status_code == 202, response.text
    assert api.get(f"/tasks/{task_id}").json()["status"] == "CANCELLED"
    again = api.post(f"/tasks/{task_id}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["code"]


def test_cancel_a_running_task_stops_it_without_a_result(api: httpx.Client, dsn: str) -> None:
    task_id = submit(api, {"durationMs": 20_000, "steps": 40})
    wait_for(api, task_id, lambda t: t["status"] == "IN_PROGRESS" and t["progress"] > 0, what="running")

    response = api.post(f"/tasks/{task_id}/cancel")

    assert response.status_code == 202
    task = wait_terminal(api, task_id)
    assert task["status"] == "CANCELLED"
    assert task["result"] is None
    assert sql(dsn, "SELECT 1 FROM task_results WHERE task_id = $1::uuid", task_id) == []
    assert statuses(api, task_id)[-1] == "CANCELLED"
    follow_up = submit(api, {"steps": 1})
    assert wait_terminal(api, follow_up)["status"] == "COMPLETED", "the worker is free again"
    events_after = api.get(f"/tasks/{task_id}/events").json()["items"]
    assert events_after[-1]["status"] == "CANCELLED", "no event follows the cancel"


def test_cancelling_a_completed_task_conflicts(api: httpx.Client) -> None:
    task_id = submit(api, {"steps": 1})
    wait_terminal(api, task_id)

    response = api.post(f"/tasks/{task_id}/cancel")

    assert response.status_code == 409
    assert response.json()["error"]["code"]


def test_stream_delivers_progress_until_terminal(api: httpx.Client) -> None:
    task_id = submit(api, {"durationMs": 1000, "steps": 4})

    seen = []
    with api.stream("GET", f"/tasks/{task_id}/stream", timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data:"):
                seen.append(json.loads(line[5:]))

    assert seen[-1]["status"] == "COMPLETED"
    progress = [event["progress"] for event in seen]
    assert progress == sorted(progress)
    assert progress[-1] == 100
    assert len({event["progress"] for event in seen}) >= 3, "intermediate progress was streamed"


def test_stream_of_unknown_task_is_404(api: httpx.Client) -> None:
    response = api.get("/tasks/00000000-0000-0000-0000-000000000000/stream")

    assert response.status_code == 404
    assert response.json()["error"]["code"]
