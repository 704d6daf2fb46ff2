"""The two backing servers under a stack's services, RabbitMQ and PostgreSQL, as a pluggable part.

The service processes (API, relay, workers) run the same way whoever provides the servers
(`services.ServiceStack`); a provider only says how the servers start, where they answer and
how a drill reaches them. `LocalServers` runs them as child processes; `docker.DockerServers`
runs them in containers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from harness.stack.base import StackError
from harness.stack.postgres import PostgresCluster
from harness.stack.processes import ManagedProcess
from harness.stack.rabbitmq import RabbitCluster, RabbitNode


class ServerHandle(Protocol):
    """What a drill may do to one server, whichever provider runs it (Jepsen's db.clj kill!/start!/pause!)."""

    def start(self) -> None: ...

    def stop(self, timeout: float = ...) -> None: ...

    def kill(self) -> None: ...

    def restart(self, timeout: float = ...) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    async def wait_ready(self, timeout: float = ...) -> float: ...


class Servers(Protocol):
    """RabbitMQ and PostgreSQL for one stack: preflight, launch, probe, tear down.

    `launch()` returns at once so both servers boot together (RabbitMQ dominates start-up); the
    `wait_*` coroutines return once each answers a real request. The URLs are valid after that.
    """

    @property
    def rabbit(self) -> ServerHandle | None: ...

    @property
    def postgres(self) -> ServerHandle | None: ...

    @property
    def faults(self) -> tuple[str, ...]: ...

    @property
    def amqp_url(self) -> str: ...

    @property
    def management_url(self) -> str: ...

    @property
    def postgres_dsn(self) -> str: ...

    def preflight(self) -> None:
        """Raise StackError at once when these servers cannot start here at all."""

    def launch(self, tmp_dir: Path, log_dir: Path) -> None: ...

    async def wait_rabbit(self, timeout: float) -> float: ...

    async def wait_postgres(self, timeout: float) -> float: ...

    def teardown(self) -> None:
        """Stop both; idempotent, and safe after a failed or partial launch."""

    def processes(self) -> list[ManagedProcess]:
        """The local processes behind the servers (none when they run elsewhere)."""


LOCAL_FAULTS = (
    "broker-kill",
    "broker-restart",
    "db-restart",
    "db-kill",
    "worker-kill",
    "worker-rolling-restart",
    "relay-kill",
    "api-kill",
    "poison-message",
    "retry-exhaustion",
    "job-timeout",
    "duplicate-delivery",
)


CLUSTER_FAULTS = (*LOCAL_FAULTS, "broker-node-loss")
NETWORK_FAULTS = ("broker-partition", "db-latency", "slow-network")
"""Drills through the Toxiproxy API: they work only where every link goes through a proxy."""


class LocalServers:
    """A private RabbitMQ node (or a cluster of `rabbit_nodes`) and a PostgreSQL cluster as child
    processes on free loopback ports. `durable=True` runs PostgreSQL crash-safe (see postgres.py)."""

    def __init__(self, *, rabbit_nodes: int = 1, durable: bool = False) -> None:
        if rabbit_nodes not in (1, 3):
            raise StackError(f"--rabbit-nodes is 1 or 3, not {rabbit_nodes}")
        self.rabbit_node_count = rabbit_nodes
        self.durable = durable
        self.cluster: RabbitCluster | None = None
        self.rabbit_nodes: list[RabbitNode] = []
        self.postgres: PostgresCluster | None = None

    @property
    def rabbit(self) -> RabbitNode | None:
        """The (first) RabbitMQ node; the others of a cluster are in `rabbit_nodes`."""
        return self.rabbit_nodes[0] if self.rabbit_nodes else None

    @property
    def faults(self) -> tuple[str, ...]:
        return CLUSTER_FAULTS if self.rabbit_node_count > 1 else LOCAL_FAULTS

    def _both(self) -> tuple[RabbitNode, PostgresCluster]:
        if self.rabbit is None or self.postgres is None:
            raise StackError("servers are not started")
        return self.rabbit, self.postgres

    @property
    def amqp_url(self) -> str:
        """Every node's AMQP URL, comma-separated (what RABBIT_URL takes): one for a single node."""
        self._both()
        return ",".join(node.amqp_url for node in self.rabbit_nodes)

    @property
    def management_url(self) -> str:
        return self._both()[0].management_url

    @property
    def postgres_dsn(self) -> str:
        return self._both()[1].dsn

    def preflight(self) -> None:
        """Nothing to check up front: a missing binary fails the launch with its own message."""

    def launch(self, tmp_dir: Path, log_dir: Path) -> None:
        if self.rabbit_node_count > 1:
            self.cluster = RabbitCluster(tmp_dir / "rabbitmq", log_dir, self.rabbit_node_count)
            self.rabbit_nodes = list(self.cluster.nodes)
            self.cluster.start()
        else:
            self.rabbit_nodes = [RabbitNode(tmp_dir / "rabbitmq", log_dir)]
            self.rabbit_nodes[0].start()
        self.postgres = PostgresCluster(tmp_dir / "postgres", log_dir, durable=self.durable)
        self.postgres.start()

    async def wait_rabbit(self, timeout: float) -> float:
        if self.cluster is not None:
            return await self.cluster.wait_ready(timeout)
        return await self._both()[0].wait_ready(timeout)

    async def wait_postgres(self, timeout: float) -> float:
        return await self._both()[1].wait_ready(timeout)

    def teardown(self) -> None:
        if self.postgres is not None:
            self.postgres.teardown()
        if self.cluster is not None:
            self.cluster.teardown()
        else:
            for node in self.rabbit_nodes:
                node.teardown()

    def processes(self) -> list[ManagedProcess]:
        found: list[ManagedProcess] = []
        if self.postgres is not None:
            found.append(self.postgres.server)
        for node in self.rabbit_nodes:
            found.append(node.server)
            if node.owns_epmd:
                found.append(node.epmd)
        if self.cluster is not None:
            found.append(self.cluster.epmd)
        return found
