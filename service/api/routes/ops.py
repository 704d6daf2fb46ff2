"""Operations: liveness, readiness, queue depths and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
from aio_pika.abc import AbstractChannel
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from service.api import queries
from service.api.broker import BrokerLink
from service.api.deps import ACQUIRE_TIMEOUT_S, AppSettings, Broker, Metrics, Pool
from service.api.errors import UNAVAILABLE_ERRORS, error_response
from service.api.metrics import CONTENT_TYPE
from service.api.openapi import errors
from service.api.schemas import HealthStatus, QueueDepth, QueuesReport
from service.broker.topology import all_queue_names
from service.models import Status

log = logging.getLogger("ast.api")
router = APIRouter(tags=["ops"])

PROBE_TIMEOUT_S = 3.0


@router.get("/health", response_model=HealthStatus)
async def health() -> HealthStatus:
    """Liveness: the process serves requests. Dependencies are /ready's business."""
    return HealthStatus(status="ok")


@router.get("/ready", response_model=HealthStatus, responses=errors(503))
async def ready(pool: Pool, broker: Broker) -> Response:
    """200 only when PostgreSQL answers `SELECT 1` and RabbitMQ opens a channel."""
    checks = {"postgres": await _probe_postgres(pool), "rabbitmq": await _probe_rabbitmq(broker)}
    if all(value == "ok" for value in checks.values()):
        return JSONResponse(HealthStatus(status="ok", checks=checks).model_dump(mode="json", by_alias=True))
    return error_response(503, "NOT_READY", "a dependency does not answer", checks)


async def _probe_postgres(pool: asyncpg.Pool[Any]) -> str:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S), pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
        return "ok"
    except UNAVAILABLE_ERRORS as error:
        return f"down: {type(error).__name__}"


async def _probe_rabbitmq(broker: BrokerLink) -> str:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await broker.ping()
        return "ok"
    except UNAVAILABLE_ERRORS as error:
        return f"down: {type(error).__name__}"


@router.get("/queues", response_model=QueuesReport, responses=errors(503))
async def queues(pool: Pool, broker: Broker, settings: AppSettings) -> QueuesReport:
    """Depth and consumers of every job, retry and dead-letter queue (passive declares), and task
    counts by status. A queue that does not exist is reported with null counts."""
    names = all_queue_names(settings.max_retries, settings.retry_base_ms)
    depths = [await _depth(broker, name) for name in names]
    async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
        counts = await queries.counts_by_status(conn)
    tasks = {status.value: counts.get(status.value, 0) for status in Status}
    return QueuesReport(queues=depths, tasks=tasks)


async def _depth(broker: BrokerLink, name: str) -> QueueDepth:
    """A passive declare of a missing queue closes its channel, so each queue gets its own."""
    async with broker.channel() as channel:
        return await _declare_passive(channel, name)


async def _declare_passive(channel: AbstractChannel, name: str) -> QueueDepth:
    from aiormq.exceptions import ChannelNotFoundEntity

    try:
        queue = await channel.declare_queue(name, passive=True)
    except ChannelNotFoundEntity:
        return QueueDepth(name=name, messages=None, consumers=None)
    result = queue.declaration_result
    return QueueDepth(name=name, messages=result.message_count, consumers=result.consumer_count)


@router.get("/metrics", response_class=Response, responses={
    200: {"description": "Prometheus text",
          "content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}}},
})
async def metrics(api_metrics: Metrics) -> Response:
    return Response(api_metrics.render(), media_type=CONTENT_TYPE)
