"""The `harness` command line: one Typer app; each command lives in its own small function."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from harness.commands.check import check
from harness.commands.drill import drill
from harness.commands.gate import gate
from harness.commands.load import load
from harness.commands.proxy import proxy
from harness.commands.report import report

app = typer.Typer(help="Test harness of the AST job service.", no_args_is_help=True, add_completion=False)


@app.callback()
def _root() -> None:
    """Test harness of the AST job service: up, gate, drill, load, check, report."""


def parse_env_overrides(pairs: list[str]) -> dict[str, str]:
    """`KEY=VALUE` strings into a dict; a pair without '=' is a usage error, not a silent skip."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--env")
        overrides[key] = value
    return overrides


def _catch_stop_signals() -> Callable[[], int]:
    """Take over SIGINT/SIGTERM/SIGHUP now; the returned function blocks until one arrives.

    Installed before the export line is printed: a caller may signal as soon as it reads it, and
    the provider's own handler would then stop everything and die by the signal (exit -15).
    """
    received: list[int] = []
    done = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        done.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)

    def wait() -> int:
        while not done.wait(1.0):
            pass
        return received[0]

    return wait


def _check_provider_or_exit(provider: str) -> None:
    """A wrong name is a usage error; a provider that cannot work here exits 1 with its one line."""
    from harness.stack.base import StackError
    from harness.stack.factory import check_provider, preflight

    try:
        check_provider(provider)
    except StackError as exc:
        raise typer.BadParameter(str(exc), param_hint="--provider") from None
    try:
        preflight(provider)
    except StackError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


@app.command()
def up(
    workers: Annotated[int, typer.Option(min=0, help="Number of ast-worker processes.")] = 2,
    env: Annotated[list[str] | None, typer.Option("--env", help="KEY=VALUE for the services.")] = None,
    services: Annotated[bool, typer.Option(help="Start API, relay and workers (else servers only).")] = True,
    run_dir: Annotated[Path | None, typer.Option(help="Run directory (default reports/out/<ts>-up).")] = None,
    provider: Annotated[
        str, typer.Option(help="Where RabbitMQ and PostgreSQL run: local processes or docker containers.")
    ] = "local",
    proxy: Annotated[
        bool, typer.Option("--proxy", help="Every link to PostgreSQL and RabbitMQ through the proxy.")
    ] = False,
    rabbit_nodes: Annotated[
        int, typer.Option("--rabbit-nodes", min=1, max=3, help="1, or 3 for a three-node RabbitMQ cluster.")
    ] = 1,
) -> None:
    """Start RabbitMQ, PostgreSQL, the API, N workers and the relay; Ctrl-C stops all.
    \f
    A provider that cannot work here (no Docker engine) fails before a run dir is made, with one
    line on stderr; any other failure to start is one StackError message, not a traceback.
    """
    from harness.record import new_run_dir
    from harness.stack.base import StackError
    from harness.stack.factory import make_embedded

    _check_provider_or_exit(provider)
    overrides = parse_env_overrides(env or [])
    if rabbit_nodes not in (1, 3) or (rabbit_nodes != 1 and provider.strip().lower() != "local"):
        raise typer.BadParameter("1, or 3 with the local provider", param_hint="--rabbit-nodes")
    stack = make_embedded(
        provider,
        run_dir=run_dir or new_run_dir("up"),
        workers=workers,
        services=services,
        env=overrides,
        rabbit_nodes=rabbit_nodes,
    )
    stack.proxy_requested = proxy or stack.proxy_requested
    try:
        endpoints = stack.start()
        wait_for_stop_signal = _catch_stop_signals()
        typer.echo(f"API                 {endpoints.api_url or '(services disabled)'}")
        if endpoints.api_url:
            typer.echo(f"Dashboard           {endpoints.api_url}/dashboard")
        typer.echo(f"PostgreSQL          {endpoints.postgres_dsn}")
        typer.echo(f"RabbitMQ            {endpoints.amqp_url}")
        typer.echo(f"RabbitMQ management {endpoints.management_url}")
        if endpoints.toxiproxy_url:
            proxies = " ".join(endpoints.toxiproxy_proxies)
            typer.echo(f"Toxiproxy           {endpoints.toxiproxy_url}  {proxies}")
        typer.echo(f"logs                {stack.log_dir}")
        typer.echo(f"ready in {stack.timings['total_s']:.2f}s  {stack.timings}")
        typer.echo(endpoints.export_line(), nl=True)
        signum = wait_for_stop_signal()
        typer.echo(f"{signal.Signals(signum).name}: stopping", err=True)
    except StackError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    finally:
        stack.stop()
    typer.echo("stopped; nothing left running", err=True)


app.command()(check)
app.command()(drill)
app.command()(gate)
app.command()(load)
app.command()(proxy)
app.command()(report)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
