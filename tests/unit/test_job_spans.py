"""The worker's job span: a child of the message's traceparent, its steps under it, and the retry and
dead-letter outcomes as span events (in-memory exporter, no servers)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service import tracing
from service.errors import RetryableJobError, TerminalJobError
from service.worker.middleware import TracingMiddleware
from tests.fakes import recorded_spans

pytestmark = pytest.mark.unit
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


class Ctx:
    def __init__(self) -> None:
        self.task_id = uuid.uuid4()
        self.task_type = "simulate"
        self.attempt = 2
        self.payload: dict[str, Any] = {}
        self.traceparent = tracing.traceparent_for(TRACE_ID, self.task_id)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    with recorded_spans() as spans:
        yield spans


async def test_the_job_span_continues_the_messages_trace(exporter: InMemorySpanExporter) -> None:
    ctx = Ctx()

    async def job(_: Any) -> dict[str, Any]:
        with tracing.job_step("clone"), tracing.job_step("inner"):
            pass
        return {}

    await TracingMiddleware()(ctx, job)  # type: ignore[arg-type]
    spans = {span.name: span for span in exporter.get_finished_spans()}
    job_span = spans["job simulate"]
    assert job_span.context.trace_id == int(TRACE_ID, 16)
    assert job_span.parent is not None
    assert job_span.parent.span_id == tracing.task_span_id(ctx.task_id)
    assert spans["step clone"].parent is not None
    assert spans["step clone"].parent.span_id == job_span.context.span_id
    assert spans["step inner"].parent is not None
    assert spans["step inner"].parent.span_id == spans["step clone"].context.span_id
    assert job_span.attributes is not None
    assert job_span.attributes["ast.outcome"] == "completed"


@pytest.mark.parametrize(
    ("error", "event"),
    [(RetryableJobError("flaky", code="X"), "retry"), (TerminalJobError("broken", code="Y"), "dead_letter")],
)
async def test_a_failure_is_an_event(exporter: InMemorySpanExporter, error: Exception, event: str) -> None:
    async def job(_: Any) -> dict[str, Any]:
        raise error

    with pytest.raises(type(error)):
        await TracingMiddleware()(Ctx(), job)  # type: ignore[arg-type]
    (span,) = exporter.get_finished_spans()
    assert [recorded.name for recorded in span.events if recorded.name != "exception"] == [event]


async def test_off_means_no_span_at_all() -> None:
    async def job(_: Any) -> dict[str, Any]:
        with tracing.job_step("clone"):
            return {"ok": True}

    assert not tracing.enabled()
    assert await TracingMiddleware()(Ctx(), job) == {"ok": True}  # type: ignore[arg-type]
