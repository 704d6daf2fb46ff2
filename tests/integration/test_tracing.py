"""One traced job: the span chain from the API's request to the job's last step, one trace id
from the task resource through the job message to every log line of the job.

The API runs in process (ASGI transport, lifespan run, no relay) with an in-memory exporter; the
job message it wrote to the outbox is delivered to the worker's own MessageProcessor and
TaskLifecycle (a fake delivery: the broker is not what is under test). Both use a database of
their own on the stack's PostgreSQL, so the stack's relay and workers never see this task.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from aio_pika.abc import AbstractIncomingMessage
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from harness.stack.base import StackEndpoints
from service import tracing
from service.api.app import create_app
from service.config import Settings
from service.db.migrate import apply_migrations
from service.db.pool import create_pool
from service.logs import JsonFormatter
from service.worker.lifecycle import TaskLifecycle
from service.worker.processor import MessageProcessor
from tests.fakes import FakeMessage, recorded_spans

pytestmark = pytest.mark.integration
STEPS = 3


@pytest.fixture
async def own_database(endpoints: StackEndpoints) -> AsyncIterator[str]:
    """A migrated database of this test's own on the stack's server, dropped afterwards."""
    name = f"traced_{uuid.uuid4().hex[:12]}"
    parts = urlsplit(endpoints.postgres_dsn)
    dsn = urlunsplit(parts._replace(path=f"/{name}"))
    admin = await asyncpg.connect(endpoints.postgres_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        await apply_migrations(dsn)
        yield dsn
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    with recorded_spans() as spans:
        yield spans


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every line logged meanwhile, as the entry points render them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


async def dead_letter(*_: Any) -> None:
    raise AssertionError("a job message is never poison here")


async def submit_and_run(settings: Settings) -> tuple[dict[str, Any], dict[str, Any], FakeMessage]:
    """POST /tasks, deliver the job message it wrote to the worker; the task and the message body."""
    app = create_app(settings)
    pool = await create_pool(settings.postgres_url, min_size=1, max_size=4)
    transport = httpx.ASGITransport(app=app)
    try:
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=transport, base_url="http://api.test", timeout=30
        ) as client:
            body = {"type": "simulate", "payload": {"durationMs": 30, "steps": STEPS}}
            task_id = (await client.post("/tasks", json=body)).json()["taskId"]
            message = await pool.fetchval(
                "SELECT body FROM outbox WHERE task_id = $1 AND exchange = 'ast.jobs.x'", uuid.UUID(task_id)
            )
            delivery = FakeMessage(json.dumps(message).encode(), message_id=f"m-{uuid.uuid4()}")
            lifecycle = TaskLifecycle(pool, "tracing-test", lease_ms=30_000)
            await MessageProcessor(lifecycle, settings, dead_letter).process(
                cast(AbstractIncomingMessage, delivery)
            )
            task = (await client.get(f"/tasks/{task_id}")).json()
    finally:
        await pool.close()
    return task, message, delivery


def one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


async def test_a_job_is_traced_from_the_request_to_its_last_step(
    own_database: str, endpoints: StackEndpoints, exporter: InMemorySpanExporter, log_lines: io.StringIO
) -> None:
    settings = Settings(postgres_url=own_database, rabbit_url=endpoints.amqp_url, relay_in_api=False)
    task, message, delivery = await submit_and_run(settings)
    assert (task["status"], delivery.settled) == ("COMPLETED", ["ack"])

    spans = list(exporter.get_finished_spans())
    request = one(spans, "POST /tasks")
    accepted, job = one(spans, "task.accepted"), one(spans, "job simulate")
    steps = [span for span in spans if span.name.startswith("step ")]
    assert request.kind is SpanKind.SERVER
    assert parent_of(accepted) == request.context.span_id
    assert parent_of(job) == accepted.context.span_id
    assert [span.name for span in steps] == [f"step {n}/{STEPS}" for n in range(1, STEPS + 1)]
    assert {parent_of(step) for step in steps} == {job.context.span_id}
    assert {span.context.trace_id for span in [request, accepted, job, *steps]} == {int(task["traceId"], 16)}
    assert message["traceparent"] == f"00-{task['traceId']}-{accepted.context.span_id:016x}-01"

    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    job_lines = [line for line in lines if line.get("taskId") == task["taskId"]]
    worker_lines = [line for line in job_lines if line["logger"].startswith("ast.worker")]
    assert worker_lines, job_lines
    assert {line.get("traceId") for line in worker_lines} == {task["traceId"]}


def test_tracing_is_off_unless_the_environment_asks() -> None:
    assert tracing.exporters_asked({}) == []
    assert tracing.exporters_asked({"OTEL_TRACES_EXPORTER": "none"}) == []
    assert tracing.exporters_asked({"OTEL_TRACES_EXPORTER": "console,otlp"}) == ["console", "otlp"]
    assert tracing.exporters_asked({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) == ["otlp"]
    assert tracing.exporters_asked({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}) == []
