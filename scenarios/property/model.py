"""The state machine's model: what each simulate job must become, from its payload and its history.

Pure logic, no I/O. `predict` reads the simulate contract: the outcome applies to the first
`failAttempts` attempts (every attempt when absent), a retryable error or a hang past `timeoutMs`
is retried up to MAX_RETRIES times, a terminal error fails at once, and a `waitForEvent` job parks
in WAITING_FOR_EVENT after its first successful attempt until a matching event resumes it.
`TrackedTask` then folds in what the run did to the task: a cancel that won, an event, a replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TERMINAL: frozenset[str] = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
STATUSES: frozenset[str] = TERMINAL | {"PENDING", "IN_PROGRESS", "RETRYING", "WAITING_FOR_EVENT"}
EVENT_TYPE = "review"
SESSION_MAX_RETRIES = 3  # the session stack's MAX_RETRIES (harness.pytest_plugin.SESSION_ENV)


@dataclass(frozen=True)
class JobSpec:
    """One simulate submission as the rules draw it; `payload()` is what goes on the wire."""

    outcome: str = "success"
    steps: int = 1
    duration_ms: int = 0
    fail_attempts: int | None = None
    timeout_ms: int | None = None
    wait_key: str | None = None
    priority: int | None = None

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "outcome": self.outcome, "steps": self.steps, "durationMs": self.duration_ms,
        }
        if self.fail_attempts is not None:
            payload["failAttempts"] = self.fail_attempts
        if self.timeout_ms is not None:
            payload["timeoutMs"] = self.timeout_ms
        if self.wait_key is not None:
            payload["waitForEvent"] = {"type": EVENT_TYPE, "key": self.wait_key}
        return payload

    def same_request(self, other: JobSpec) -> bool:
        """The service's idempotency identity: type, payload and priority (absent means 0)."""
        return self.payload() == other.payload() and (self.priority or 0) == (other.priority or 0)


@dataclass(frozen=True)
class Prediction:
    """The status a job settles in when nothing else happens to it, and its retry count there."""

    status: str
    retry_count: int
    dead_lettered: bool = False


def predict(spec: JobSpec, max_retries: int = SESSION_MAX_RETRIES) -> Prediction:
    failures = spec.fail_attempts
    if spec.outcome == "success" or failures == 0:
        return _succeeds(spec, 0)
    if spec.outcome == "terminal":
        return Prediction("FAILED", 0, dead_lettered=True)
    if failures is None or failures > max_retries:
        return Prediction("FAILED", max_retries, dead_lettered=True)
    return _succeeds(spec, failures)


def _succeeds(spec: JobSpec, retries: int) -> Prediction:
    return Prediction("WAITING_FOR_EVENT" if spec.wait_key else "COMPLETED", retries)


@dataclass
class TrackedTask:
    """One accepted task and what the run did to it."""

    task_id: str
    spec: JobSpec
    prediction: Prediction
    key: str | None = None
    replay_of: str | None = None
    cancelled: bool = False
    resumed: bool = False
    replayed_as: str | None = None
    seen_terminal: str | None = None

    @property
    def expected_status(self) -> str:
        if self.cancelled:
            return "CANCELLED"
        if self.prediction.status == "WAITING_FOR_EVENT" and self.resumed:
            return "COMPLETED"
        return self.prediction.status

    @property
    def parks(self) -> bool:
        """Will sit in WAITING_FOR_EVENT until an event for its key arrives."""
        return self.expected_status == "WAITING_FOR_EVENT"

    @property
    def replayable(self) -> bool:
        """Ends FAILED with its job in the DLQ, not yet replayed."""
        return self.expected_status == "FAILED" and self.prediction.dead_lettered and self.replayed_as is None


@dataclass
class ServiceModel:
    """Every task of one program, by id, plus the idempotency keys used and the races seen."""

    tasks: dict[str, TrackedTask] = field(default_factory=dict)
    keys: dict[str, TrackedTask] = field(default_factory=dict)
    races: dict[str, int] = field(default_factory=dict)

    def accept(self, task: TrackedTask) -> TrackedTask:
        self.tasks[task.task_id] = task
        if task.key is not None:
            self.keys[task.key] = task
        return task

    def parked_on(self, wait_key: str) -> list[TrackedTask]:
        return [t for t in self.tasks.values() if t.parks and t.spec.wait_key == wait_key]

    def waiting_ids(self) -> frozenset[str]:
        return frozenset(t.task_id for t in self.tasks.values() if t.parks)

    def note_race(self, name: str) -> None:
        self.races[name] = self.races.get(name, 0) + 1
