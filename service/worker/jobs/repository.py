"""`initialize_repository`: clone a ref, parse its sources, link the graph and store it.

Phases report through the TaskContext (cloning, parsing N/M files, linking, storing), and each
report is also where a cancel is noticed. Parsing is CPU-bound, so it runs in a worker thread in
chunks: the event loop keeps heartbeats, leases and other jobs going in between. The clone is
removed as soon as parsing is done, before linking and storing, so disk is held only while
needed; the result keeps only the redacted URL. The payload's URL is normally already redacted
by the API (see `RepositoryPayload`); its `***` placeholders are dropped before cloning. Log
lines show the repository's `log_form` (scheme and host, or a digest), never its path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection
from pathlib import Path
from typing import Any, cast

from pydantic import ValidationError

from service.config import Settings
from service.errors import RetryableJobError, TerminalJobError
from service.graph.builder import link, list_source_files, parse_files
from service.graph.model import ParsedFile, RepositoryGraph, SkippedFile
from service.graph.store import ArtifactPointer, ArtifactStore
from service.models import TaskType
from service.payloads import RepositoryPayload, parse_payload
from service.repo_url import clone_url, log_form, redact_url
from service.tracing import job_step
from service.worker.context import TaskContext
from service.worker.jobs.git_clone import CloneLimits, cloned_repository

log = logging.getLogger(__name__)

MAX_SKIPPED_IN_RESULT = 1000
_PARSE_START, _PARSE_END = 20, 80


async def initialize_repository(
    ctx: TaskContext,
    *,
    limits: CloneLimits | None = None,
    allow_local: bool | None = None,
    allowed_hosts: Collection[str] | None = None,
) -> dict[str, Any]:
    """The job handler; raises RetryableJobError / TerminalJobError / TaskCancelled.

    `allow_local` is `Settings.allow_local_repos` and `allowed_hosts` `Settings.repo_allowed_hosts`:
    the worker passes its own (see `job_for`); None reads them from the environment through
    `Settings`, for callers without the worker's settings (tests and benchmarks that call the job).
    """
    if allow_local is None or allowed_hosts is None:
        settings = Settings()
        allow_local = settings.allow_local_repos if allow_local is None else allow_local
        allowed_hosts = settings.repo_allowed_hosts if allowed_hosts is None else allowed_hosts
    payload = parse_repository_payload(ctx.payload, allow_local=allow_local)
    shown_url = redact_url(payload.repo_url)
    logged_url = log_form(payload.repo_url)
    _log(ctx, "cloning", "cloning %s at %s", logged_url, payload.ref or "the default branch")
    await ctx.update(progress=5, state="cloning")
    url = clone_url(payload.repo_url)
    clone = cloned_repository(
        url, payload.ref, ctx.temp_dir, limits=limits, allow_local=allow_local, allowed_hosts=allowed_hosts
    )
    async with contextlib.AsyncExitStack() as removes_the_clone:
        with job_step("clone"):
            checkout = await removes_the_clone.enter_async_context(clone)
        with job_step("parse"):
            parsed = await _parse(ctx, checkout.path)
    with job_step("link"):
        await ctx.update(progress=_PARSE_END + 5, state="linking")
        graph = await asyncio.to_thread(link, parsed)
    with job_step("store"):
        await ctx.update(progress=92, state="storing")
        pointer = await _store(ctx.artifacts_dir, graph)
    _log(ctx, "stored", "graph of %s stored as %s", logged_url, pointer.sha256)
    return _result(shown_url, payload.ref, checkout.commit_sha, graph, pointer)


def parse_repository_payload(payload: dict[str, Any], *, allow_local: bool) -> RepositoryPayload:
    """Validates again in the worker; the message names the field, never the value (a URL)."""
    try:
        parsed = parse_payload(TaskType.INITIALIZE_REPOSITORY, payload, allow_local_repos=allow_local)
        return cast(RepositoryPayload, parsed)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "payload"
        raise TerminalJobError(f"invalid payload: {field}: {first['msg']}", code="INVALID_PAYLOAD") from None


async def _parse(ctx: TaskContext, root: Path) -> list[ParsedFile | SkippedFile]:
    """Parses in chunks, reporting `parsing done/total files` after each chunk."""
    files = await asyncio.to_thread(list_source_files, root)
    total = len(files)
    chunk = max(50, total // 20)
    results: list[ParsedFile | SkippedFile] = []
    await ctx.update(progress=_PARSE_START, state=f"parsing 0/{total} files")
    for start in range(0, total, chunk):
        results.extend(await asyncio.to_thread(parse_files, root, files[start : start + chunk]))
        done = len(results)
        progress = _PARSE_START + (_PARSE_END - _PARSE_START) * done // total
        await ctx.update(progress=progress, state=f"parsing {done}/{total} files")
    return results


async def _store(artifacts_dir: Path, graph: RepositoryGraph) -> ArtifactPointer:
    try:
        return await asyncio.to_thread(ArtifactStore(artifacts_dir).write_graph, graph)
    except OSError as error:
        raise RetryableJobError(f"cannot store the graph: {error.strerror}", code="STORAGE") from None


def _result(
    url: str, ref: str | None, commit_sha: str, graph: RepositoryGraph, pointer: ArtifactPointer
) -> dict[str, Any]:
    skipped = [{"path": item.path, "reason": item.reason} for item in graph.skipped]
    return {
        "repoUrl": url,
        "ref": ref,
        "commitSha": commit_sha,
        "artifact": {**pointer.to_json(), "format": "ast-graph+json.gz/v1"},
        "counts": graph.counts(),
        "skippedFiles": skipped[:MAX_SKIPPED_IN_RESULT],
        "skippedTruncated": len(skipped) > MAX_SKIPPED_IN_RESULT,
    }


def _log(ctx: TaskContext, step: str, message: str, *args: object) -> None:
    log.info(message, *args, extra={"taskId": str(ctx.task_id), "type": ctx.task_type, "step": step})
