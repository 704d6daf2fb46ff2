"""What a job sees of its task: its payload, and a way to report progress that notices a cancel."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol
from uuid import UUID


class TaskContext(Protocol):
    """Every job reports through this; the consumer implements it over PostgreSQL.

    `update` is idempotent and raises `service.errors.TaskCancelled` when the task was cancelled,
    so a job stops at its next report.
    """

    task_id: UUID
    task_type: str
    payload: dict[str, Any]
    attempt: int
    retry_count: int
    resume_data: dict[str, Any] | None
    temp_dir: Path
    artifacts_dir: Path

    async def update(self, *, progress: int | None = None, state: str | None = None) -> None: ...

    async def fetch_result(self, task_id: UUID) -> tuple[str, dict[str, Any] | None] | None:
        """Status and result of another task (None when unknown), e.g. the repository of an impact job."""
        ...


class Job(Protocol):
    """A job handler: returns the result JSON; raises RetryableJobError / TerminalJobError."""

    async def __call__(self, ctx: TaskContext) -> dict[str, Any]: ...
