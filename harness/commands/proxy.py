"""`harness proxy`: the Toxiproxy-API-compatible proxy alone, until Ctrl-C or SIGTERM.

The same server a stack started with `--proxy` runs (as a supervised child with `--config`,
so a restart listens where it did); point any Toxiproxy client at its URL.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
import uvloop

from chaos.proxy import DEFAULT_HOST, DEFAULT_PORT, ProxyConfigError, serve


def proxy(
    host: Annotated[str, typer.Option(help="Address of the HTTP API.")] = DEFAULT_HOST,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port of the HTTP API (0: any free port).")
    ] = DEFAULT_PORT,
    config: Annotated[
        Path | None, typer.Option(help="JSON array of proxies to create at start (toxiproxy -config).")
    ] = None,
) -> None:
    """Run the Toxiproxy-compatible proxy server (HTTP API on 127.0.0.1:8474 by default)."""

    def ready(url: str) -> None:
        typer.echo(f"toxiproxy API {url}")

    try:
        # uvloop: the proxy's whole cost is its event loop's per-read and per-write work.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(host, port, ready, config))
    except ProxyConfigError as exc:
        typer.echo(f"harness proxy: bad --config {exc}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"harness proxy: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
