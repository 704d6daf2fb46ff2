"""The embedded stack: RabbitMQ, PostgreSQL and the service as local child processes.

The service part (migrations, API, relay, workers, their fault handles, cleanup on exit) is
shared with the Docker stack and lives in `services`; this module adds the local servers and
their typed handles (`rabbit`, `postgres`) that drills and tests use for broker and database
faults. The names re-exported below keep `harness.stack.local` the one import for callers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from harness.stack.postgres import PostgresCluster
from harness.stack.rabbitmq import RabbitNode
from harness.stack.servers import LOCAL_FAULTS, LocalServers
from harness.stack.services import (
    SERVICE_BIN,
    TMP_PREFIX,
    ServiceProcess,
    ServiceStack,
    install_cleanup_handlers,
    stop_all_stacks,
    sweep_stale_tmp_dirs,
)

__all__ = [
    "LOCAL_FAULTS",
    "SERVICE_BIN",
    "TMP_PREFIX",
    "LocalStack",
    "ServiceProcess",
    "install_cleanup_handlers",
    "stop_all_stacks",
    "sweep_stale_tmp_dirs",
]


class LocalStack(ServiceStack):
    """RabbitMQ + PostgreSQL (+ migrations, API, relay, N workers) on free loopback ports.

    `services=False` starts only the two servers, for tests of the harness itself.
    `env` overrides the service environment (e.g. {"RETRY_BASE_MS": "200"}).
    `own_thread=True` runs the sync wrappers' coroutines on a helper thread (under pytest-asyncio).
    `proxy=True` routes every service's server links through the proxy (None: HARNESS_PROXY).
    `rabbit_nodes=3` runs a three-node RabbitMQ cluster; `durable=True` a crash-safe PostgreSQL.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        workers: int = 2,
        services: bool = True,
        env: Mapping[str, str] | None = None,
        show_progress: bool = True,
        ready_timeout: float = 90.0,
        own_thread: bool = False,
        proxy: bool | None = None,
        rabbit_nodes: int = 1,
        durable: bool = False,
    ) -> None:
        self.local_servers = LocalServers(rabbit_nodes=rabbit_nodes, durable=durable)
        super().__init__(
            run_dir,
            self.local_servers,
            workers=workers,
            services=services,
            env=env,
            show_progress=show_progress,
            ready_timeout=ready_timeout,
            own_thread=own_thread,
            proxy=proxy,
        )

    @property
    def rabbit(self) -> RabbitNode | None:
        """The RabbitMQ node once started (kill, restart, pause, rabbitmqctl); None before."""
        return self.local_servers.rabbit

    @property
    def rabbit_nodes(self) -> list[RabbitNode]:
        """Every RabbitMQ node (one, or the three of a cluster), in RABBIT_URL's order."""
        return self.local_servers.rabbit_nodes

    @property
    def postgres(self) -> PostgresCluster | None:
        """The PostgreSQL cluster once started (fast restart, immediate stop, pause); None before."""
        return self.local_servers.postgres
