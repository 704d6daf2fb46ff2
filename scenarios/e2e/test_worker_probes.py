"""What an operator's probes and scrapes see of the running stack: the worker's /health, /ready and
/live answer JSON on WORKER_HEALTH_PORT, and every contract metric moves when a job runs."""

from __future__ import annotations

import re

import httpx
import pytest

from harness.stack.local import LocalStack
from scenarios.e2e.helpers import submit, wait_terminal

pytestmark = pytest.mark.e2e
PROBE_FIELDS = {"status", "isRunning", "workerId", "queue", "concurrency", "timestamp", "checks"}


def worker_urls(local_stack: LocalStack) -> list[str]:
    return [f"http://127.0.0.1:{worker.port}" for worker in local_stack.workers.values()]


def test_every_worker_answers_its_probes_in_json(local_stack: LocalStack) -> None:
    for url in worker_urls(local_stack):
        for path in ("/health", "/ready", "/live"):
            answer = httpx.get(url + path, timeout=10)
            assert answer.status_code == 200, (path, answer.text)
            body = answer.json()
            assert set(body) >= PROBE_FIELDS, (path, body)
            assert body["isRunning"] is True
            assert "ast.simulate.q" in body["queue"]
        ready = httpx.get(url + "/ready", timeout=10).json()
        assert ready["checks"] == {"consuming": "ok", "rabbitmq": "ok", "postgres": "ok"}


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one series in Prometheus text (0 when it is absent)."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(match.group(2))
    return 0.0


def scrape(local_stack: LocalStack, api: httpx.Client) -> dict[str, float]:
    """The series this test follows, summed over every worker, and the API's submit counter."""
    totals = {"completed": 0.0, "duration_count": 0.0}
    for url in worker_urls(local_stack):
        text = httpx.get(url + "/metrics", timeout=10).text
        assert "ast_worker_current_tasks" in text
        assert 'ast_worker_queue_messages{queue="ast.simulate.q"}' in text
        totals["completed"] += sample(text, "ast_worker_jobs_total", status="completed", type="simulate")
        totals["duration_count"] += sample(text, "ast_worker_job_duration_seconds_count", type="simulate")
    api_text = api.get("/metrics").text
    labels = {"method": "POST", "route": "/tasks", "status": "202"}
    totals["submitted"] = sample(api_text, "ast_api_requests_total", **labels)
    totals["submit_latency_count"] = sample(api_text, "ast_api_request_duration_seconds_count",
                                            method="POST", route="/tasks")
    return totals


def test_a_job_moves_every_counter(api: httpx.Client, local_stack: LocalStack) -> None:
    before = scrape(local_stack, api)
    task_id = submit(api, {"durationMs": 100, "steps": 2})
    assert wait_terminal(api, task_id)["status"] == "COMPLETED"
    after = scrape(local_stack, api)
    moved = {name: after[name] - before[name] for name in before}
    # Only this test submits, so the API's counters move by exactly one. A worker may still finish
    # a job of an earlier test (its task wiped by the clean state) meanwhile: at least one there.
    assert (moved["submitted"], moved["submit_latency_count"]) == (1.0, 1.0)
    assert moved["completed"] >= 1.0
    assert moved["duration_count"] >= 1.0
