"""`create_app(settings)`: the FastAPI application with its pool, broker link and optional relay.

The lifespan opens one asyncpg pool and one robust AMQP connection (declaring the topology), and,
when `RELAY_IN_API` is set, runs the outbox relay as a background task so a single `ast-api`
process is enough for a small deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from fastapi.telemetry._api import _unconfigured
from opentelemetry import metrics, trace
from opentelemetry._logs import get_logger_provider

from service import tracing
from service.api.allow import AllowedMethods
from service.api.auth import BearerAuth
from service.api.body_limit import BodyLimit
from service.api.broker import BrokerLink
from service.api.errors import install_error_handlers
from service.api.metrics import ApiMetrics, RequestMetrics
from service.api.openapi import install_openapi
from service.api.routes import dashboard, dlq, events, ops, tasks
from service.config import Settings
from service.db.pool import create_pool
from service.errors import InfrastructureError

log = logging.getLogger("ast.api")

POOL_START_ATTEMPTS = 30
BROKER_START_WAIT_S = 15.0
RELAY_STOP_TIMEOUT_S = 10.0


async def _pool_with_retries(dsn: str) -> asyncpg.Pool[Any]:
    """PostgreSQL may still be starting next to us: bounded retries, then a clear failure."""
    for attempt in range(1, POOL_START_ATTEMPTS + 1):
        try:
            return await create_pool(dsn, min_size=1, max_size=10)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            log.warning("API cannot reach PostgreSQL yet (attempt %d): %s", attempt, type(error).__name__,
                        extra={"step": "startup"})
            await asyncio.sleep(min(2.0, 0.1 * attempt))
    raise InfrastructureError("PostgreSQL did not answer at start")


@contextlib.asynccontextmanager
async def _relay(settings: Settings) -> AsyncIterator[None]:
    if not settings.relay_in_api:
        yield
        return
    from service.outbox.relay import OutboxRelay

    relay = OutboxRelay(settings)
    task = asyncio.create_task(relay.run(), name="outbox-relay")
    try:
        yield
    finally:
        await relay.stop()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, RELAY_STOP_TIMEOUT_S)


def _lifespan(settings: Settings) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await _pool_with_retries(settings.postgres_url)
        app.state.broker = BrokerLink(settings)
        try:
            await app.state.broker.start(wait_s=BROKER_START_WAIT_S)
            async with _relay(settings):
                log.info("API started", extra={"step": "startup"})
                yield
        finally:
            await app.state.broker.close()
            await app.state.pool.close()

    return lifespan


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(
        title="AST service", version="0.1.0", lifespan=_lifespan(settings),
        description="Accepts heavy jobs, persists them, and reports their progress.",
        telemetry=_native_telemetry(),
    )
    app.state.settings = settings
    app.state.metrics = ApiMetrics()
    install_error_handlers(app)
    tasks.add_submit_route(app)
    for module in (tasks, events, dlq, ops, dashboard):
        app.include_router(module.router)
    install_openapi(app, settings)
    app.add_middleware(AllowedMethods, router=app.router)
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    if settings.api_tokens:  # without tokens it would pass every request through untouched
        app.add_middleware(BearerAuth, tokens=settings.api_tokens)
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)
    _instrument(app)
    return app


def _native_telemetry() -> TelemetryConfig | None:
    """FastAPI's own OpenTelemetry layer asks the global tracer, meter and logger providers on every
    request whether anyone configured them. This service never does (`service.tracing` keeps its
    own provider), so when nothing outside it has either (no auto-instrumentation, no
    FASTAPI_OTEL_AUTO_CONFIGURE) by the time the app is built, the layer is switched off instead of
    asking three times per request; otherwise FastAPI's defaults stand."""
    if os.getenv("FASTAPI_OTEL_AUTO_CONFIGURE", "").lower() == "true" or not all(
        _unconfigured(provider)
        for provider in (trace.get_tracer_provider(), metrics.get_meter_provider(), get_logger_provider())
    ):
        return None
    return {"tracing": False, "metrics": False, "logs": False}


def _instrument(app: FastAPI) -> None:
    """One span per request (route template as its name) when tracing is on; nothing otherwise."""
    if not tracing.enabled():
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=tracing.provider(), exclude_spans=["receive", "send"]
    )
