"""In-memory fakes for unit tests of pure logic (dramatiq's StubBroker): never for e2e suites."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service import tracing


@dataclass
class FakeMessage:
    """An incoming AMQP message as the worker sees it; `settled` lists how it was settled."""

    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    message_id: str | None = "m-1"
    routing_key: str = "job.simulate"
    settled: list[str] = field(default_factory=list)

    @property
    def processed(self) -> bool:
        return bool(self.settled)

    async def ack(self) -> None:
        self.settled.append("ack")

    async def nack(self, requeue: bool = True) -> None:
        self.settled.append(f"nack requeue={requeue}")

    async def reject(self, requeue: bool = False) -> None:
        self.settled.append(f"reject requeue={requeue}")


@contextmanager
def recorded_spans() -> Iterator[InMemorySpanExporter]:
    """The service's tracing installed with an in-memory exporter, uninstalled after."""
    spans = InMemorySpanExporter()
    provider = tracing.new_provider("ast-test")
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracing.install(provider)
    try:
        yield spans
    finally:
        tracing.install(None)
