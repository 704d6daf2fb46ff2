"""The worker's health endpoint: /health (alive), /ready (consuming, database answering), /metrics."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def health_app(is_ready: Callable[[], bool], worker_id: str) -> Starlette:
    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "workerId": worker_id})

    async def ready(_: Request) -> Response:
        if is_ready():
            return JSONResponse({"status": "ready", "workerId": worker_id})
        error = {"code": "NOT_READY", "message": "not consuming yet or a dependency is down", "details": None}
        return JSONResponse({"error": error}, status_code=503)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/health", health), Route("/ready", ready), Route("/metrics", metrics)])


class EmbeddedServer(uvicorn.Server):
    """uvicorn inside the worker's loop; the worker owns SIGTERM, so uvicorn must not capture it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def health_server(app: Starlette, port: int) -> EmbeddedServer:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off"
    )
    return EmbeddedServer(config)
