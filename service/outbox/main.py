"""`ast-relay`: the outbox relay on its own, stopping cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal

import uvloop

from service.config import settings_or_exit
from service.logs import configure_logging
from service.outbox.relay import OutboxRelay


async def _serve(relay: OutboxRelay) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(relay.stop()))
    await relay.run()


def main() -> None:
    settings = settings_or_exit()
    configure_logging(settings.log_level, process="relay")
    uvloop.run(_serve(OutboxRelay(settings)))
