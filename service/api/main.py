"""`ast-api`: the HTTP API under uvicorn on API_HOST:API_PORT."""

from __future__ import annotations

import uvicorn

from service.api.app import create_app
from service.config import settings_or_exit
from service.logs import configure_logging
from service.tracing import tracing_or_exit

GRACEFUL_SHUTDOWN_S = 5


def main() -> None:
    settings = settings_or_exit()
    configure_logging(settings.log_level, process="api")
    tracing_or_exit("api")
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
