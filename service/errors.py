"""One root exception for the service, and the two kinds of job failure that decide a task's fate."""

from __future__ import annotations


class ServiceError(Exception):
    """Root of every error the service raises on purpose."""


class JobError(ServiceError):
    """A job failed. `code` is a short machine-readable reason stored on the task."""

    code = "JOB_ERROR"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class RetryableJobError(JobError):
    """Transient trouble (network, storage, timeouts): the task is retried with backoff."""

    code = "RETRYABLE"


class TerminalJobError(JobError):
    """The job can never succeed as submitted (bad input, missing repository): FAILED at once."""

    code = "TERMINAL"


class TaskCancelled(ServiceError):
    """The task was cancelled while it ran; the job must stop and write no result."""


class TaskNotRunnable(ServiceError):
    """The task is terminal or owned by another live worker; the message is settled without work."""


class InfrastructureError(ServiceError):
    """PostgreSQL or RabbitMQ did not answer after bounded retries."""


class WaitForEvent(ServiceError):
    """Raised by a job to park its task until `POST /events` with this type and key resumes it."""

    def __init__(self, event_type: str, key: str) -> None:
        super().__init__(f"waiting for event {event_type}/{key}")
        self.event_type = event_type
        self.key = key
