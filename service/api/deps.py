"""What a route needs from the app, as FastAPI dependencies: the pool, the broker, the settings.

Each is `async def`: FastAPI runs a plain `def` dependency in its thread pool, a thread hand-off per
dependency per request, for what is an attribute read."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Annotated, Any

import asyncpg
from fastapi import Depends, Request

from service.api.broker import BrokerLink
from service.api.errors import task_not_found
from service.api.metrics import ApiMetrics
from service.config import Settings

ACQUIRE_TIMEOUT_S = 10.0

if TYPE_CHECKING:
    PgPool = asyncpg.Pool[Any]
else:  # asyncpg.Pool is not subscriptable at run time, and FastAPI evaluates these annotations
    PgPool = asyncpg.Pool


async def get_pool(request: Request) -> PgPool:
    pool: PgPool = request.app.state.pool
    return pool


async def get_broker(request: Request) -> BrokerLink:
    broker: BrokerLink = request.app.state.broker
    return broker


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


async def parse_task_id(task_id: str) -> uuid.UUID:
    """A path id that is not a UUID names no task: 404, the same as an unknown one."""
    try:
        return uuid.UUID(task_id)
    except ValueError:
        raise task_not_found(task_id[:100]) from None


Pool = Annotated[PgPool, Depends(get_pool)]
Broker = Annotated[BrokerLink, Depends(get_broker)]
AppSettings = Annotated[Settings, Depends(get_settings)]
Metrics = Annotated[ApiMetrics, Depends(get_metrics)]
TaskId = Annotated[uuid.UUID, Depends(parse_task_id)]
