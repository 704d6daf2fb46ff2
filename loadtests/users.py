"""The Locust user of the AST job service: submits jobs, follows each to its end, and records every
request in the run's history. Imported only in Locust's processes (it imports Locust, which
patches the standard library with gevent), never by the harness.

Why FastHttpUser and not the harness's httpx `ServiceClient`: on two cores the load generator
competes with the service for CPU, and geventhttpclient costs a fraction of httpx per request.
The recording stays the harness's own: the invocation is written before the request leaves and
the completion is classified by `harness.client.complete_with_answer` / `complete_with_error`
(2xx ok, 4xx fail, 5xx or no answer info), the same code the httpx recorder uses.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from locust import FastHttpUser, constant_pacing, task
from locust.exception import RescheduleTask

from harness.client import complete_with_answer, complete_with_error, derive_f
from harness.history import History
from harness.load.profiles import REPO_URL_ENV, TOKEN_ENV, Profile, from_env
from harness.load.repo import CHANGED_FILES
from harness.record import RunWriter, resolve_run_dir

TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
TASK_NAME = "/tasks/[taskId]"
RESUME_EVENT = "load.resume"
EXHAUST_ATTEMPTS = 100
PROFILE: Profile = from_env()


class ProcessHistory:
    """This process's history file `histories/locust-<pid>.jsonl`, opened on first use, so each
    process Locust forks (`--processes`) writes its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._history: History | None = None
        self._pid = 0

    def get(self) -> History:
        with self._lock:
            if self._history is None or self._pid != os.getpid():
                run_dir = resolve_run_dir("load", Path("reports/out"))
                self._history = RunWriter(run_dir).history(f"locust-{os.getpid()}")
                self._pid = os.getpid()
            return self._history

    def current(self) -> History | None:
        """This process's history if it has recorded anything, without opening one."""
        with self._lock:
            return self._history if self._pid == os.getpid() else None

    def close(self) -> None:
        with self._lock:
            if self._history is not None and self._pid == os.getpid():
                self._history.close()
            self._history = None


RECORDER = ProcessHistory()
_user_numbers = itertools.count(1)
_last_replay = [0.0]
DEAD_LETTERED: deque[str] = deque(maxlen=1000)
REPLAY_BATCH = 20


@dataclass(frozen=True)
class Answer:
    status_code: int | None
    body: Any

    @property
    def task_id(self) -> str | None:
        return str(self.body["taskId"]) if isinstance(self.body, dict) and self.body.get("taskId") else None

    @property
    def status(self) -> str | None:
        return str(self.body["status"]) if isinstance(self.body, dict) and self.body.get("status") else None

    @property
    def error_code(self) -> str | None:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return str(error.get("code")) if isinstance(error, dict) else None


def _decode(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return (response.text or "")[:500] or None


def simulate_payload(outcome: str, profile: Profile, rng: random.Random) -> dict[str, Any]:
    """A `simulate` payload for one of the profile's outcomes (`exhaust`: retryable past MAX_RETRIES)."""
    payload: dict[str, Any] = {"durationMs": rng.randint(*profile.job_ms), "steps": 2}
    if outcome == "exhaust":
        return {**payload, "outcome": "retryable", "failAttempts": EXHAUST_ATTEMPTS}
    if outcome == "retryable":
        return {**payload, "outcome": "retryable", "failAttempts": 1}
    return {**payload, "outcome": outcome}


class ServiceUser(FastHttpUser):
    """One client of the service: each iteration is one job, submitted and followed to its end."""

    wait_time = constant_pacing(PROFILE.pace_s)
    network_timeout = 10.0
    connection_timeout = 5.0

    def on_start(self) -> None:
        self.process = f"locust-{os.getpid()}-{next(_user_numbers)}"
        self.rng = random.Random()
        self.profile = PROFILE

    # --- recording --------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        key: str | None = None,
        name: str | None = None,
        expected: frozenset[int] = frozenset(),
    ) -> Answer:
        """One request, recorded like the harness client records it; `expected` 4xx codes are not
        failures in Locust's statistics (a cancel that came too late, 409)."""
        history = RECORDER.get()
        invocation = history.invoke(
            self.process, derive_f(method, path), method, path, body=body, idempotency_key=key
        )
        headers = {"Idempotency-Key": key} if key else {}
        if token := os.environ.get(TOKEN_ENV):
            headers["Authorization"] = f"Bearer {token}"
        with self.client.request(
            method, path, json=body, headers=headers, name=name or path, catch_response=True
        ) as response:
            if not response.status_code:
                error = response.error or ConnectionError("no answer")
                complete_with_error(history, invocation, error)
                response.failure(error)
                return Answer(None, None)
            decoded = _decode(response)
            op = complete_with_answer(history, invocation, response.status_code, decoded)
            if op.type == "ok" or response.status_code in expected:
                response.success()
            else:
                response.failure(f"{response.status_code} {op.error or ''}".strip())
            return Answer(response.status_code, decoded)

    def submit(self, task_type: str, payload: dict[str, Any]) -> Answer:
        """POST /tasks with an Idempotency-Key; an unknown outcome is retried once with the same key."""
        body = {"type": task_type, "payload": payload}
        key = str(uuid.uuid4())
        answer = self.call("POST", "/tasks", body=body, key=key)
        if answer.status_code is None or answer.status_code >= 500:
            answer = self.call("POST", "/tasks", body=body, key=key)
        return answer

    def follow(
        self, task_id: str, started: float, label: str, until: frozenset[str] = TERMINAL
    ) -> str | None:
        """Polls the task until its status is in `until`; a terminal one is reported to Locust as
        `JOB submit→terminal <label>`, so the time shows in its statistics, CSV and HTML report."""
        interval, answer = 0.2, Answer(None, None)
        deadline = started + self.profile.follow_timeout_s
        while time.perf_counter() < deadline:
            answer = self.call("GET", f"/tasks/{task_id}", name=TASK_NAME)
            if answer.status in until:
                break
            time.sleep(interval)
            interval = min(interval * 1.5, 2.0)
        status = answer.status
        if status == "FAILED" and answer.error_code == "RETRIES_EXHAUSTED":
            DEAD_LETTERED.append(task_id)
        if until is TERMINAL:
            self.environment.events.request.fire(
                request_type="JOB",
                name=f"submit→terminal {label}",
                response_time=(time.perf_counter() - started) * 1000,
                response_length=0,
                exception=None if status in TERMINAL else TimeoutError(f"{task_id} still {status}"),
                context={},
            )
        return status

    # --- tasks ------------------------------------------------------------------------------

    def run_job(self) -> None:
        outcome = self.rng.choices(list(self.profile.outcomes), weights=list(self.profile.outcomes.values()))[
            0
        ]
        started = time.perf_counter()
        answer = self.submit("simulate", simulate_payload(outcome, self.profile, self.rng))
        if answer.task_id is None:
            raise RescheduleTask()
        self.follow(answer.task_id, started, f"simulate {outcome}")

    def cancel_job(self) -> None:
        """A long job, cancelled while it runs (or too late: 409 is fine)."""
        started = time.perf_counter()
        answer = self.submit("simulate", {"durationMs": 3000, "steps": 10, "outcome": "success"})
        if answer.task_id is None:
            raise RescheduleTask()
        time.sleep(self.rng.uniform(0.1, 0.5))
        self.call(
            "POST",
            f"/tasks/{answer.task_id}/cancel",
            name="/tasks/[taskId]/cancel",
            expected=frozenset({409}),
        )
        self.follow(answer.task_id, started, "cancelled")

    def resume_job(self) -> None:
        """A job that waits for an event; the event is sent once it waits."""
        started, key = time.perf_counter(), str(uuid.uuid4())
        payload = {"durationMs": 10, "steps": 1, "waitForEvent": {"type": RESUME_EVENT, "key": key}}
        answer = self.submit("simulate", payload)
        if answer.task_id is None:
            raise RescheduleTask()
        self.follow(answer.task_id, started, "waiting", until=TERMINAL | {"WAITING_FOR_EVENT"})
        self.call("POST", "/events", body={"type": RESUME_EVENT, "key": key})
        self.follow(answer.task_id, started, "resumed")

    def repository_job(self) -> None:
        """`initialize_repository` on the local repository named by LOAD_REPO_URL, then an impact
        analysis on it once it completed; without a repository, a simulate job."""
        repo_url = os.environ.get(REPO_URL_ENV)
        if not repo_url:
            self.run_job()
            return
        started = time.perf_counter()
        answer = self.submit("initialize_repository", {"repoUrl": repo_url})
        if answer.task_id is None:
            raise RescheduleTask()
        if self.follow(answer.task_id, started, "initialize_repository") != "COMPLETED":
            return
        started = time.perf_counter()
        payload = {"repositoryTaskId": answer.task_id, "changedFiles": list(CHANGED_FILES)}
        impact = self.submit("initialize_impact_analysis", payload)
        if impact.task_id is not None:
            self.follow(impact.task_id, started, "initialize_impact_analysis")

    def operate(self) -> None:
        """Now and then (once per `replay_every_s` in this process) replay the dead letters this
        process saw and read the queues. Each is replayed once: replaying the whole DLQ every time
        would replay the replays too (a job built to exhaust its retries fails again), and the
        load would grow with the run's length."""
        now = time.monotonic()
        if now - _last_replay[0] < self.profile.replay_every_s:
            self.run_job()
            return
        _last_replay[0] = now
        task_ids = [DEAD_LETTERED.popleft() for _ in range(min(len(DEAD_LETTERED), REPLAY_BATCH))]
        if task_ids:
            self.call("POST", "/dlq/replay", body={"taskIds": task_ids})
        self.call("GET", "/queues")

    @task
    def iteration(self) -> None:
        weights = dict(self.profile.task_weights)
        choices = {
            "job": self.run_job,
            "cancel": self.cancel_job,
            "resume": self.resume_job,
            "repository": self.repository_job,
            "operate": self.operate,
        }
        name = self.rng.choices(list(weights), weights=list(weights.values()))[0]
        choices[name]()
