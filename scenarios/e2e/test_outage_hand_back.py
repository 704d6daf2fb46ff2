"""A job interrupted by a PostgreSQL outage is handed back, not retried: the task completes with
`retryCount` 0, its timeline shows the hand-back (IN_PROGRESS -> PENDING) and why."""

from __future__ import annotations

import time

import httpx
import pytest

from harness.stack.local import LocalStack
from harness.stack.readiness import run_sync
from scenarios.e2e.helpers import sql, submit, wait_for, wait_terminal

pytestmark = pytest.mark.e2e
OUTAGE_S = 3.0


def test_a_database_outage_mid_job_spends_no_retry(
    api: httpx.Client, local_stack: LocalStack, dsn: str
) -> None:
    task_id = submit(api, {"steps": 20, "durationMs": 8000})
    wait_for(api, task_id, lambda t: t["status"] == "IN_PROGRESS" and t["progress"] >= 10, what="running")
    postgres = local_stack.postgres
    assert postgres is not None

    postgres.stop()
    time.sleep(OUTAGE_S)  # the fault's hold: the job's progress reports meet the outage
    postgres.start()
    run_sync(postgres.wait_ready(), own_thread=True)

    task = wait_terminal(api, task_id, timeout=120)
    assert task["status"] == "COMPLETED"
    assert task["retryCount"] == 0
    moves = sql(
        dsn,
        "SELECT from_status, status, message FROM task_events WHERE task_id = $1::uuid AND kind = 'status'"
        " ORDER BY event_id",
        task_id,
    )
    handed = [m for m in moves if (m["from_status"], m["status"]) == ("IN_PROGRESS", "PENDING")]
    assert handed, [dict(m) for m in moves]
    assert handed[0]["message"].startswith("handed back: infrastructure error")
    assert not [m for m in moves if m["status"] == "RETRYING"]
