"""Choosing a stack provider: `--target` wins, else `--provider local` (default) or `docker`.

One place decides, so `harness up`, the pytest plugin and the commands agree on the names and
on the error a wrong name gets.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from harness.stack.base import StackError, StackProvider
from harness.stack.target import TargetStack

if TYPE_CHECKING:
    from harness.stack.services import ServiceStack

PROVIDERS = ("local", "docker")
DEFAULT_PROVIDER = "local"
PROVIDER_ENV = "HARNESS_PROVIDER"


def check_provider(provider: str) -> str:
    """The provider's name, lower-cased; a StackError listing the choices for any other name."""
    name = provider.strip().lower()
    if name not in PROVIDERS:
        choices = ", ".join(PROVIDERS)
        raise StackError(f"unknown stack provider {provider!r}: choose one of {choices}")
    return name


def preflight(provider: str) -> None:
    """Fail before anything is created (run dir, temp dirs) when the provider cannot work here."""
    if check_provider(provider) == "docker":
        from harness.stack.docker import probe_docker_engine

        probe_docker_engine()


def make_provider(
    provider: str = DEFAULT_PROVIDER,
    target: Path | None = None,
    *,
    run_dir: Path,
    workers: int = 2,
    services: bool = True,
    env: Mapping[str, str] | None = None,
    show_progress: bool = True,
    own_thread: bool = False,
) -> StackProvider:
    """The stack to run against: the `target` file's deployment, else a new embedded stack.

    The provider name is checked even with a target, so a typo never goes unnoticed.
    """
    name = check_provider(provider)
    if target is not None:
        return TargetStack(target)
    return make_embedded(
        name,
        run_dir=run_dir,
        workers=workers,
        services=services,
        env=env,
        show_progress=show_progress,
        own_thread=own_thread,
    )


def make_embedded(
    provider: str = DEFAULT_PROVIDER,
    *,
    run_dir: Path,
    workers: int = 2,
    services: bool = True,
    env: Mapping[str, str] | None = None,
    show_progress: bool = True,
    own_thread: bool = False,
    rabbit_nodes: int = 1,
    durable: bool = False,
) -> ServiceStack:
    """A new embedded stack (`LocalStack` or `DockerStack`), typed for callers that need its
    run dir, logs and process handles (`harness up`, the pytest plugin).

    The docker module is imported only when chosen: the local path needs neither the docker SDK
    nor an engine. Each provider keeps its own readiness timeout (docker's allows for image pulls).
    `rabbit_nodes=3` (a RabbitMQ cluster) and `durable` (crash-safe PostgreSQL) are local only.
    """
    if check_provider(provider) == "docker":
        from harness.stack.docker import DockerStack

        if rabbit_nodes != 1 or durable:
            raise StackError("--provider docker runs one RabbitMQ node and the default PostgreSQL only")
        return DockerStack(
            run_dir,
            workers=workers,
            services=services,
            env=env,
            show_progress=show_progress,
            own_thread=own_thread,
        )
    from harness.stack.local import LocalStack

    return LocalStack(
        run_dir,
        workers=workers,
        services=services,
        env=env,
        show_progress=show_progress,
        own_thread=own_thread,
        rabbit_nodes=rabbit_nodes,
        durable=durable,
    )
