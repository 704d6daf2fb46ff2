"""Cross-cutting concerns around every job, in the manner of dramatiq's middleware: metrics,
structured logging and the job timeout wrap the handler instead of living in the consume loop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

from service import tracing
from service.errors import RetryableJobError, TaskCancelled, TerminalJobError, WaitForEvent
from service.worker.context import TaskContext

Handler = Callable[[TaskContext], Awaitable[dict[str, Any]]]

JOBS_TOTAL = Counter("ast_worker_jobs_total", "Jobs finished by outcome", ["status", "type"])
JOB_DURATION = Histogram(
    "ast_worker_job_duration_seconds",
    "Job run time",
    ["type"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)
CURRENT_TASKS = Gauge("ast_worker_current_tasks", "Jobs running in this worker")

log = logging.getLogger("ast.worker.job")


class Middleware(Protocol):
    async def __call__(self, ctx: TaskContext, call_next: Handler) -> dict[str, Any]: ...


def outcome_of(error: BaseException | None) -> str:
    """The `status` label of a finished job."""
    if error is None:
        return "completed"
    kinds: list[tuple[type[BaseException], str]] = [
        (WaitForEvent, "waiting"),
        (TaskCancelled, "cancelled"),
        (RetryableJobError, "retryable"),
        (TerminalJobError, "failed"),
        (asyncio.CancelledError, "handed_back"),
    ]
    return next((label for kind, label in kinds if isinstance(error, kind)), "error")


class TracingMiddleware:
    """The job's span, a child of the submit through the message's traceparent (when tracing).

    A retryable failure is a `retry` event on it, a terminal one a `dead_letter` event: the
    worker retries the first (or dead-letters it once retries are spent) and dead-letters the second.
    """

    async def __call__(self, ctx: TaskContext, call_next: Handler) -> dict[str, Any]:
        if not tracing.enabled():
            return await call_next(ctx)
        attributes = {"ast.task_id": str(ctx.task_id), "ast.type": ctx.task_type, "ast.attempt": ctx.attempt}
        with tracing.job_span(getattr(ctx, "traceparent", None), ctx.task_type, attributes) as span:
            assert span is not None
            try:
                result = await call_next(ctx)
            except BaseException as error:
                outcome = outcome_of(error)
                span.set_attribute("ast.outcome", outcome)
                if outcome in {"retryable", "error"}:
                    span.add_event("retry", {"ast.error": _describe(error).removeprefix(": ")})
                elif outcome == "failed":
                    span.add_event("dead_letter", {"ast.error": _describe(error).removeprefix(": ")})
                raise
            span.set_attribute("ast.outcome", "completed")
            return result


class MetricsMiddleware:
    async def __call__(self, ctx: TaskContext, call_next: Handler) -> dict[str, Any]:
        CURRENT_TASKS.inc()
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            return await call_next(ctx)
        except BaseException as raised:
            error = raised
            raise
        finally:
            CURRENT_TASKS.dec()
            JOB_DURATION.labels(ctx.task_type).observe(time.perf_counter() - started)
            JOBS_TOTAL.labels(outcome_of(error), ctx.task_type).inc()


class LoggingMiddleware:
    async def __call__(self, ctx: TaskContext, call_next: Handler) -> dict[str, Any]:
        extra = {"taskId": str(ctx.task_id), "type": ctx.task_type, "attempt": ctx.attempt}
        log.info("job started", extra={**extra, "step": "start"})
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            return await call_next(ctx)
        except BaseException as raised:
            error = raised
            raise
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            outcome = outcome_of(error)
            level = logging.WARNING if outcome in {"failed", "error", "retryable"} else logging.INFO
            detail = _describe(error)
            log.log(
                level, f"job {outcome}{detail}", extra={**extra, "step": "finish", "durationMs": duration_ms}
            )


def _describe(error: BaseException | None) -> str:
    """What a log line may say about an error: the wait's event key is payload, so it is left out."""
    if error is None or isinstance(error, WaitForEvent | asyncio.CancelledError):
        return ""
    return f": {type(error).__name__}: {error}"


class TimeoutMiddleware:
    """A job past its time limit is cancelled and counts as a retryable failure."""

    def __init__(self, default_timeout_ms: int) -> None:
        self._default_ms = default_timeout_ms

    async def __call__(self, ctx: TaskContext, call_next: Handler) -> dict[str, Any]:
        timeout_ms = ctx.payload.get("timeoutMs") if ctx.task_type == "simulate" else None
        limit_ms = int(timeout_ms) if isinstance(timeout_ms, int) else self._default_ms
        try:
            async with asyncio.timeout(limit_ms / 1000):  # no extra task per job, unlike wait_for
                return await call_next(ctx)
        except TimeoutError:
            raise RetryableJobError(
                f"job exceeded its time limit of {limit_ms} ms", code="JOB_TIMEOUT"
            ) from None


def chain(handler: Handler, middlewares: Sequence[Middleware]) -> Handler:
    """Wraps `handler` so the first middleware is the outermost."""
    wrapped = handler
    for middleware in reversed(middlewares):
        wrapped = _bind(middleware, wrapped)
    return wrapped


def _bind(middleware: Middleware, call_next: Handler) -> Handler:
    async def run(ctx: TaskContext) -> dict[str, Any]:
        return await middleware(ctx, call_next)

    return run
