"""The job handler of each task type."""

from __future__ import annotations

from functools import partial

from service.config import Settings
from service.models import TaskType
from service.worker.context import Job
from service.worker.jobs.simulate import simulate


def job_for(task_type: TaskType, settings: Settings) -> Job:
    """Repository jobs are imported on first use: their parsers are heavy to load.

    Settings reach a job here, as keyword arguments, so the TaskContext stays per task.
    """
    if task_type is TaskType.SIMULATE:
        return simulate
    if task_type is TaskType.INITIALIZE_REPOSITORY:
        from service.worker.jobs.git_clone import CloneLimits
        from service.worker.jobs.repository import initialize_repository

        limits = CloneLimits(
            timeout_seconds=settings.clone_timeout_ms / 1000,
            max_bytes=settings.clone_max_bytes,
            credential_helper=settings.git_credential_helper,
        )
        return partial(
            initialize_repository,
            limits=limits,
            allow_local=settings.allow_local_repos,
            allowed_hosts=frozenset(settings.repo_allowed_hosts),
        )
    from service.worker.jobs.impact import initialize_impact_analysis

    return initialize_impact_analysis
