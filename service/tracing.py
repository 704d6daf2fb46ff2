"""OpenTelemetry tracing of a task, from the HTTP request that submits it to the last step of its job.

Off by default, and then nothing but a flag test on the hot path: no provider, no exporter, no
span objects. It is on when the standard variables ask for an exporter: `OTEL_TRACES_EXPORTER`
(`console`, `otlp`, or both comma-separated; `none` is off), or an OTLP endpoint
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) with no exporter named;
`OTEL_SDK_DISABLED=true` wins over both. The OTLP exporter (HTTP/protobuf) reads its own
`OTEL_EXPORTER_OTLP_*` variables, `OTEL_SERVICE_NAME` names the process.

The chain: the API's request span (FastAPI instrumentation) → `task.accepted`, whose trace id is
the task's `traceId` and whose span id is derived from the taskId → the job message's W3C
`traceparent` names that span, so the worker's `job <type>` span is its child in every attempt →
one `step <name>` span per step of the job (`job_step`), with the retry and dead-letter outcomes as
span events. The message carries the traceparent; both sides derive it from the task the same way
(`traceparent_for`), so retries and hand-backs, which rebuild the message from the row, keep it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from service.logs import bound

TRACER_NAME = "ast.service"
_SPAN_ID_MASK = (1 << 64) - 1
_HEX = frozenset("0123456789abcdef")
_provider: TracerProvider | None = None
_forced_span_id: ContextVar[int | None] = ContextVar("ast_forced_span_id", default=None)
_propagator = TraceContextTextMapPropagator()
log = logging.getLogger("ast.worker.step")


class TaskSpanIds(RandomIdGenerator):
    """Random ids, except for the one span `accepted` asks for: the task's own span id."""

    def generate_span_id(self) -> int:
        forced = _forced_span_id.get()
        return forced if forced is not None else super().generate_span_id()


def exporters_asked(env: dict[str, str] | None = None) -> list[str]:
    """The exporters the OTEL_* variables ask for; empty means tracing stays off."""
    env = dict(os.environ) if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if not names and any(env.get(variable) for variable in endpoints):
        names = "otlp"
    return [name.strip() for name in names.split(",") if name.strip() not in ("", "none")]


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (console, otlp or none)")


def tracing_or_exit(process: str) -> bool:
    """Entry points call this after the settings: an unknown exporter stops the process with one line."""
    try:
        return configure_tracing(process)
    except ValueError as error:
        print(f"invalid configuration: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def configure_tracing(process: str) -> bool:
    """Entry points call this once; True when tracing is on. An unknown exporter raises ValueError."""
    exporters = [_exporter(name) for name in exporters_asked()]
    if not exporters:
        return False
    name = os.environ.get("OTEL_SERVICE_NAME") or f"ast-{process}"
    provider = new_provider(name)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider)
    return True


def new_provider(service_name: str) -> TracerProvider:
    resource = Resource.create({"service.name": service_name})
    return TracerProvider(resource=resource, id_generator=TaskSpanIds())


def install(provider: TracerProvider | None) -> None:
    """Tracing on through `provider` (None: off again); tests pass one with an in-memory exporter."""
    global _provider
    _provider = provider


def provider() -> TracerProvider | None:
    return _provider


def enabled() -> bool:
    return _provider is not None


def _tracer() -> trace.Tracer:
    assert _provider is not None
    return _provider.get_tracer(TRACER_NAME)


def task_span_id(task_id: uuid.UUID) -> int:
    return (task_id.int & _SPAN_ID_MASK) or 1


def traceparent_for(trace_id: str, task_id: uuid.UUID) -> str | None:
    """The W3C traceparent naming the task's `task.accepted` span; None for a trace id that is not
    32 lowercase hex digits (it cannot be one)."""
    if len(trace_id) != 32 or not set(trace_id) <= _HEX or not trace_id.strip("0"):
        return None
    return f"00-{trace_id}-{task_span_id(task_id):016x}-01"


def new_trace_id() -> str:
    """The trace id of a task submitted now: the request's own trace when tracing, else random."""
    if _provider is not None:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            return trace.format_trace_id(context.trace_id)
    return uuid.uuid4().hex


def accepted(task_id: uuid.UUID, task_type: str) -> None:
    """Records the `task.accepted` span under the current request span, with the task's span id."""
    if _provider is None:
        return
    token = _forced_span_id.set(task_span_id(task_id))
    try:
        attributes = {"ast.task_id": str(task_id), "ast.type": task_type}
        span = _tracer().start_span("task.accepted", attributes=attributes)
    finally:
        _forced_span_id.reset(token)
    span.end()


def parent_context(traceparent: str | None) -> Context | None:
    return None if not traceparent else _propagator.extract({"traceparent": traceparent})


@contextmanager
def job_span(
    traceparent: str | None, task_type: str, attributes: dict[str, Any]
) -> Iterator[trace.Span | None]:
    """The worker's span of one attempt at a job, a child of the task's `task.accepted` span."""
    if _provider is None:
        yield None
        return
    span_kind = trace.SpanKind.CONSUMER
    with _tracer().start_as_current_span(
        f"job {task_type}", context=parent_context(traceparent), kind=span_kind, attributes=attributes
    ) as span:
        yield span


@contextmanager
def job_step(name: str, *, log_duration: bool = True) -> Iterator[None]:
    """One step of a job: its log lines carry `step`, its duration is logged when it ends (unless
    `log_duration` is False: simulate's many short steps), and when tracing it is a `step <name>`
    span under the job's span."""
    started = time.perf_counter()
    span = nullcontext() if _provider is None else _tracer().start_as_current_span(f"step {name}")
    outcome = "failed"
    with bound(step=name), span:
        try:
            yield
            outcome = "done"
        finally:
            if log_duration:
                duration_ms = round((time.perf_counter() - started) * 1000, 1)
                log.info("step %s %s", name, outcome, extra={"durationMs": duration_ms})
