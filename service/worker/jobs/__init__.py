"""The job handler of each task type."""

from __future__ import annotations

from service.models import TaskType
from service.worker.context import Job
from service.worker.jobs.simulate import simulate


def job_for(task_type: TaskType) -> Job:
    """Repository jobs are imported on first use: their parsers are heavy to load."""
    if task_type is TaskType.SIMULATE:
        return simulate
    if task_type is TaskType.INITIALIZE_REPOSITORY:
        from service.worker.jobs.repository import initialize_repository

        return initialize_repository
    from service.worker.jobs.impact import initialize_impact_analysis

    return initialize_impact_analysis
