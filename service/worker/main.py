"""`ast-worker`: one worker process. SIGTERM stops consuming, finishes or hands back work, exits 0."""

from __future__ import annotations

import asyncio
import signal
import sys

import uvloop

from service.config import settings_or_exit
from service.logs import configure_logging
from service.tracing import tracing_or_exit
from service.worker.consumer import Worker
from service.worker.health import HealthServerError


async def _serve(worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_stop)
    await worker.run()


def main() -> None:
    settings = settings_or_exit()
    configure_logging(settings.log_level, process=f"worker:{settings.worker_id or 'anon'}")
    tracing_or_exit("worker")
    try:
        uvloop.run(_serve(Worker(settings)))
    except HealthServerError as error:
        print(f"ast-worker: {error}", file=sys.stderr)
        raise SystemExit(1) from None
