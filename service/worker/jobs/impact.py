"""`initialize_impact_analysis`: what a change reaches in the graph of a repository task.

The graph is found through the repository task's result, by digest, inside this worker's
artifacts directory only: a path stored in a result is informative, never opened. A repository
task that is unknown, unfinished or failed makes this job fail terminally at once (retrying
would not make it complete); a missing or corrupt artifact is terminal too, while a storage
error while reading is retryable.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from service.errors import RetryableJobError, TerminalJobError
from service.graph.impact import analyse_impact
from service.graph.model import RepositoryGraph
from service.graph.store import ArtifactCorrupt, ArtifactNotFound, ArtifactStore
from service.payloads import ImpactPayload
from service.tracing import job_step
from service.worker.context import TaskContext

log = logging.getLogger(__name__)


async def initialize_impact_analysis(ctx: TaskContext) -> dict[str, Any]:
    """The job handler; raises RetryableJobError / TerminalJobError / TaskCancelled."""
    payload = _payload(ctx.payload)
    repository_task = UUID(payload.repository_task_id)
    with job_step("load"):
        await ctx.update(progress=5, state="loading graph")
        repository = await _completed_result(ctx, repository_task)
        digest = _artifact_digest(repository, repository_task)
        graph = await _load(ctx, digest)
    with job_step("analyse"):
        await ctx.update(progress=50, state="analysing")
        report = await asyncio.to_thread(analyse_impact, graph, payload.changed_files)
    log.info(
        "impact of %d changed files: %d files, %d symbols reached",
        len(payload.changed_files),
        report["counts"]["files"],
        report["counts"]["symbols"],
        extra={"taskId": str(ctx.task_id), "type": ctx.task_type, "step": "analysed"},
    )
    return {
        "repositoryTaskId": str(repository_task),
        "commitSha": repository.get("commitSha"),
        "artifactSha256": digest,
        **report,
    }


def _payload(payload: dict[str, Any]) -> ImpactPayload:
    try:
        return ImpactPayload.model_validate(payload)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "payload"
        raise TerminalJobError(f"invalid payload: {field}: {first['msg']}", code="INVALID_PAYLOAD") from None


async def _completed_result(ctx: TaskContext, task_id: UUID) -> dict[str, Any]:
    found = await ctx.fetch_result(task_id)
    if found is None:
        raise TerminalJobError(f"repository task {task_id} is unknown", code="REPOSITORY_TASK_UNKNOWN")
    status, result = found
    if str(status) != "COMPLETED" or result is None:
        raise TerminalJobError(
            f"repository task {task_id} is {status}, not COMPLETED", code="REPOSITORY_TASK_NOT_COMPLETED"
        )
    return result


def _artifact_digest(result: dict[str, Any], task_id: UUID) -> str:
    artifact = result.get("artifact")
    digest = artifact.get("sha256") if isinstance(artifact, dict) else None
    if not isinstance(digest, str):
        raise TerminalJobError(f"repository task {task_id} has no graph artifact", code="ARTIFACT_MISSING")
    return digest


async def _load(ctx: TaskContext, digest: str) -> RepositoryGraph:
    try:
        return await asyncio.to_thread(ArtifactStore(ctx.artifacts_dir).read_graph, digest)
    except (ArtifactNotFound, ArtifactCorrupt) as error:
        raise TerminalJobError(f"graph artifact unusable: {error}", code="ARTIFACT_MISSING") from None
    except OSError as error:
        raise RetryableJobError(f"cannot read the graph artifact: {error.strerror}", code="STORAGE") from None
