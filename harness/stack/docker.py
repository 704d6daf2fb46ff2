"""`--provider docker`: RabbitMQ and PostgreSQL in containers (testcontainers), the service local.

Only the two servers move into containers (`rabbitmq:4.1-management`, `postgres:16`); the
migrations, API, relay and workers are the same local child processes as in the embedded stack
(`services.ServiceStack`), pointed at the containers' published ports.

Tested here only as far as a machine without a Docker engine allows: the engine probe and its
fail-fast message are exercised for real (tests/integration/test_docker_provider.py); the path
that starts containers is written against testcontainers' typed API and checked by mypy, but
has never run on this machine. Expect the first run elsewhere to pull both images.

Nothing outlives the harness: `teardown()` removes the containers with their anonymous volumes,
and testcontainers' Ryuk reaper removes them should this process die first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import docker
from testcontainers.core.container import DockerContainer
from testcontainers.core.docker_client import get_docker_host
from testcontainers.core.wait_strategies import ExecWaitStrategy, LogMessageWaitStrategy

from harness.stack.base import StackError
from harness.stack.ports import free_ports
from harness.stack.processes import ManagedProcess
from harness.stack.readiness import http_ok, poll_until_ready
from harness.stack.servers import LOCAL_FAULTS
from harness.stack.services import ServiceStack

RABBIT_IMAGE = "rabbitmq:4.1-management"
POSTGRES_IMAGE = "postgres:16"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
ENGINE_PROBE_TIMEOUT_S = 5.0
AMQP_PORT, MANAGEMENT_PORT, POSTGRES_PORT = 5672, 15672, 5432
PG_USER = PG_PASSWORD = PG_DATABASE = "ast"
DOCKER_FAULTS = LOCAL_FAULTS
"""The same drills as the embedded stack: `ContainerHandle` offers kill, stop/start, pause."""


# ---- the engine probe -----------------------------------------------------------------------


def docker_host() -> str:
    """Where testcontainers will look for the engine (TC properties, DOCKER_HOST, docker context)."""
    return get_docker_host() or DEFAULT_DOCKER_HOST


def no_engine_message() -> str:
    return (
        f"no Docker engine answers at {docker_host()}: start Docker, "
        "or use the default embedded provider (omit --provider docker)"
    )


def _ping_engine(timeout: float) -> None:
    """Ping the engine testcontainers would use, without testcontainers' side effect on DOCKER_HOST."""
    host = get_docker_host()
    environment = dict(os.environ) | ({"DOCKER_HOST": host} if host else {})
    ssh = bool(host and host.startswith("ssh://"))
    client = docker.from_env(timeout=max(1, int(timeout)), environment=environment, use_ssh_client=ssh)
    try:
        client.ping()
    finally:
        client.close()


def probe_docker_engine(timeout: float = ENGINE_PROBE_TIMEOUT_S) -> None:
    """Raise StackError within about `timeout` seconds unless a Docker engine answers a ping.

    The client's own timeout bounds each request, but name resolution or an ssh transport can
    still hang; a daemon thread with a wall-clock deadline keeps the promise regardless.
    """
    failure: list[BaseException] = []

    def ping() -> None:
        try:
            _ping_engine(timeout)
        except Exception as exc:  # any failure to reach the engine means "no engine"
            failure.append(exc)

    thread = threading.Thread(target=ping, name="docker-engine-probe", daemon=True)
    thread.start()
    thread.join(timeout + 1)
    if thread.is_alive() or failure:
        raise StackError(no_engine_message()) from (failure[0] if failure else None)


def engine_is_local() -> bool:
    """A local engine (unix socket) publishes ports on this host: bind them to loopback only."""
    host = get_docker_host()
    return host is None or host.startswith("unix://")


@contextlib.contextmanager
def docker_errors(what: str) -> Iterator[None]:
    """Convert engine and testcontainers errors into StackError at the provider's boundary."""
    try:
        yield
    except StackError:
        raise
    except Exception as exc:
        raise StackError(f"{what}: {exc}") from exc


# ---- one server in a container --------------------------------------------------------------


class ContainerHandle:
    """One server in a container, with the handles a drill needs (as RabbitNode/PostgresCluster).

    Host ports are bound explicitly rather than left to Docker's ephemeral choice, so a
    kill/start or stop/start keeps them: the services were given these URLs once and must find
    the server at the same address again, as they do after a local server restarts.
    """

    def __init__(
        self, name: str, container: DockerContainer, probe: Callable[[], Awaitable[None]], log_dir: Path
    ) -> None:
        self.name = name
        self.container = container
        self.log_dir = log_dir
        self.host = "127.0.0.1"
        self._probe = probe
        self._lock = threading.Lock()
        self._created = False
        self._torn_down = False

    def _wrapped(self) -> Any:
        with docker_errors(f"{self.name} container"):
            return self.container.get_wrapped_container()

    def start(self) -> None:
        """First call: pull if needed, create, start and wait for the startup strategy.
        Later calls start the same (stopped or killed) container again, data and ports kept."""
        with self._lock:
            if self._torn_down:
                raise StackError(f"{self.name} container was torn down")
            first, self._created = not self._created, True
        with docker_errors(f"{self.name} container ({self.container.image})"):
            if not first:
                self._wrapped().start()
                return
            self.container.start()
            self.host = self.container.get_container_host_ip()
        if self._torn_down:  # the stack stopped while we were still starting: leave nothing
            self.teardown()

    def stop(self, timeout: float = 30.0) -> None:
        """`docker stop`: the image's stop signal (a clean shutdown), SIGKILL after `timeout`."""
        with docker_errors(f"stop {self.name}"):
            self._wrapped().stop(timeout=int(timeout))

    def kill(self, sig: str = "SIGKILL") -> None:
        """`docker kill`: a crash by default; `sig="SIGQUIT"` is PostgreSQL's immediate stop."""
        with docker_errors(f"kill {self.name}"):
            self._wrapped().kill(signal=sig)

    def restart(self, timeout: float = 30.0) -> None:
        with docker_errors(f"restart {self.name}"):
            self._wrapped().restart(timeout=int(timeout))

    def pause(self) -> None:
        """`docker pause` freezes the cgroup: connections stay open, nothing answers (as SIGSTOP)."""
        with docker_errors(f"pause {self.name}"):
            self._wrapped().pause()

    def resume(self) -> None:
        with docker_errors(f"resume {self.name}"):
            self._wrapped().unpause()

    async def wait_ready(self, timeout: float = 60.0) -> float:
        """Poll the server's real protocol until it answers; gives up early if the container exits."""
        return await poll_until_ready(
            f"{self.name} container", self._probe, timeout=timeout, alive=self.is_alive, explain=self.log_tail
        )

    def is_alive(self) -> bool:
        """False once the container has exited; an engine hiccup counts as alive (the probe decides)."""
        try:
            wrapped = self._wrapped()
            wrapped.reload()
            return str(wrapped.status) not in {"exited", "dead", "removing"}
        except Exception:
            return True

    def log_tail(self, lines: int = 40) -> str:
        try:
            return bytes(self._wrapped().logs(tail=lines)).decode(errors="replace")
        except Exception as exc:
            return f"(no logs: {exc})"

    def teardown(self) -> None:
        """Keep the container's log in the run's log dir, then remove it with its volumes."""
        with self._lock:
            self._torn_down = True
        with contextlib.suppress(Exception):
            (self.log_dir / f"{self.name}.log").write_bytes(self._wrapped().logs())
        with contextlib.suppress(Exception):  # the engine may be gone already; teardown goes on
            self.container.stop()


def bind_port(container: DockerContainer, container_port: int, host_port: int, loopback: bool) -> None:
    """Publish `container_port` on `host_port`, on loopback only when the engine is local.

    testcontainers' `with_bind_ports` cannot name a host address; the Docker API takes
    (address, port), so the entry is written directly.
    """
    ports: dict[str, Any] = container.ports
    ports[f"{container_port}/tcp"] = ("127.0.0.1", host_port) if loopback else host_port


# ---- the two servers --------------------------------------------------------------------------


class DockerServers:
    """RabbitMQ and PostgreSQL containers on explicitly bound host ports.

    Each container starts with a testcontainers wait strategy (RabbitMQ's startup log line,
    `psql` inside the PostgreSQL container); then our own probe (a real AMQP connection and the
    management API, `select 1`) confirms it from this host, as for the local servers.
    """

    faults = DOCKER_FAULTS

    def __init__(
        self, *, startup_timeout: float = 300.0, probe_timeout: float = ENGINE_PROBE_TIMEOUT_S
    ) -> None:
        self.startup_timeout = startup_timeout
        self.probe_timeout = probe_timeout
        self.rabbit: ContainerHandle | None = None
        self.postgres: ContainerHandle | None = None
        self._ports: Mapping[int, int] = {}

    def preflight(self) -> None:
        probe_docker_engine(self.probe_timeout)

    def launch(self, tmp_dir: Path, log_dir: Path) -> None:
        """Describe both containers; they start in `wait_*` (on threads), so both boot at once."""
        loopback = engine_is_local()
        self._ports = dict(zip((AMQP_PORT, MANAGEMENT_PORT, POSTGRES_PORT), free_ports(3), strict=True))
        with docker_errors("Docker engine"):
            rabbit, postgres = self._rabbit_container(), self._postgres_container()
        for container, inner in ((rabbit, AMQP_PORT), (rabbit, MANAGEMENT_PORT), (postgres, POSTGRES_PORT)):
            bind_port(container, inner, self._ports[inner], loopback)
        self.rabbit = ContainerHandle("rabbitmq", rabbit, self._probe_rabbit, log_dir)
        self.postgres = ContainerHandle("postgres", postgres, self._probe_postgres, log_dir)

    def _rabbit_container(self) -> DockerContainer:
        startup = LogMessageWaitStrategy("Server startup complete")
        startup.with_startup_timeout(int(self.startup_timeout))
        return DockerContainer(RABBIT_IMAGE).waiting_for(startup)

    def _postgres_container(self) -> DockerContainer:
        """postgres:16 with the local cluster's throwaway settings (no fsync) and role/db `ast`."""
        settings = ["fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=200"]
        command = ["postgres"] + [arg for setting in settings for arg in ("-c", setting)]
        psql = f"PGPASSWORD={PG_PASSWORD} psql -U {PG_USER} -d {PG_DATABASE} -h 127.0.0.1 -c 'select 1'"
        startup = ExecWaitStrategy(["sh", "-c", psql]).with_startup_timeout(int(self.startup_timeout))
        container = DockerContainer(POSTGRES_IMAGE).with_command(command)
        container.with_envs(POSTGRES_USER=PG_USER, POSTGRES_PASSWORD=PG_PASSWORD, POSTGRES_DB=PG_DATABASE)
        return container.waiting_for(startup)

    def _handles(self) -> tuple[ContainerHandle, ContainerHandle]:
        if self.rabbit is None or self.postgres is None:
            raise StackError("servers are not started")
        return self.rabbit, self.postgres

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@{self._handles()[0].host}:{self._ports[AMQP_PORT]}/"

    @property
    def management_url(self) -> str:
        return f"http://guest:guest@{self._handles()[0].host}:{self._ports[MANAGEMENT_PORT]}/"

    @property
    def postgres_dsn(self) -> str:
        host, port = self._handles()[1].host, self._ports[POSTGRES_PORT]
        return f"postgresql://{PG_USER}:{PG_PASSWORD}@{host}:{port}/{PG_DATABASE}"

    async def wait_rabbit(self, timeout: float) -> float:
        return await self._start_and_wait(self._handles()[0], timeout)

    async def wait_postgres(self, timeout: float) -> float:
        return await self._start_and_wait(self._handles()[1], timeout)

    @staticmethod
    async def _start_and_wait(handle: ContainerHandle, timeout: float) -> float:
        """Start the container on a thread (pull, create, startup strategy), then probe it from here."""
        started = time.monotonic()
        await asyncio.to_thread(handle.start)
        return time.monotonic() - started + await handle.wait_ready(timeout)

    async def _probe_rabbit(self) -> None:
        connection = await aio_pika.connect(self.amqp_url, timeout=2)
        await connection.close()
        management = f"http://{self._handles()[0].host}:{self._ports[MANAGEMENT_PORT]}/api/overview"
        await http_ok(management, auth=("guest", "guest"))

    async def _probe_postgres(self) -> None:
        connection = await asyncpg.connect(self.postgres_dsn, timeout=2)
        try:
            await connection.fetchval("select 1")
        finally:
            await connection.close()

    def teardown(self) -> None:
        for handle in (self.postgres, self.rabbit):
            if handle is not None:
                handle.teardown()

    def processes(self) -> list[ManagedProcess]:
        """None: both servers run inside the engine, not as our children."""
        return []


class DockerStack(ServiceStack):
    """The embedded stack with RabbitMQ and PostgreSQL from testcontainers (`--provider docker`).

    Same shape and handles as `LocalStack` (run dir, workers, env, start/stop, endpoints, target
    file); `rabbit` and `postgres` are `ContainerHandle`s. `start()` first pings the engine and
    fails within seconds with one clear line when none answers. `ready_timeout` defaults higher
    than the local one because the first start may pull both images.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        workers: int = 2,
        services: bool = True,
        env: Mapping[str, str] | None = None,
        show_progress: bool = True,
        ready_timeout: float = 300.0,
        own_thread: bool = False,
        probe_timeout: float = ENGINE_PROBE_TIMEOUT_S,
    ) -> None:
        self.docker_servers = DockerServers(startup_timeout=ready_timeout, probe_timeout=probe_timeout)
        super().__init__(
            run_dir,
            self.docker_servers,
            workers=workers,
            services=services,
            env=env,
            show_progress=show_progress,
            ready_timeout=ready_timeout,
            own_thread=own_thread,
        )

    @property
    def rabbit(self) -> ContainerHandle | None:
        return self.docker_servers.rabbit

    @property
    def postgres(self) -> ContainerHandle | None:
        return self.docker_servers.postgres
