"""The service processes (migrations, API, relay, N workers) on top of any `Servers`.

Local and Docker stacks differ only in where RabbitMQ and PostgreSQL run; the service itself
always runs as local child processes pointed at their URLs, so both share this class and its
fault handles. One run directory per stack (`<run dir>/logs/<process>.log`,
`<run dir>/target.toml`); everything else (data directories, service temp dirs, artifacts)
lives in a temp directory that `stop()` removes. Nothing started here outlives the harness:
see `processes` for PDEATHSIG and process groups, and `install_cleanup_handlers()` for atexit
and signals.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

import psutil
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from harness.stack.base import StackEndpoints, StackError, render_target_toml
from harness.stack.links import LinkProxy, proxy_requested
from harness.stack.ports import free_port
from harness.stack.processes import ManagedProcess, kill_all_processes, run_checked
from harness.stack.readiness import http_ok, poll_until_ready, run_sync
from harness.stack.servers import NETWORK_FAULTS, Servers

SERVICE_BIN = Path(sys.executable).parent


@dataclass
class ServiceProcess:
    """A service process and the URL that says it is ready (None: no probe, e.g. the relay)."""

    process: ManagedProcess
    ready_url: str | None = None
    port: int | None = None


class ServiceStack:
    """`servers` (+ migrations, API, relay, N workers on free loopback ports).

    `services=False` starts only the two servers, for tests of the harness itself.
    `env` overrides the service environment (e.g. {"RETRY_BASE_MS": "200"}).
    `own_thread=True` runs the sync wrappers' coroutines on a helper thread (under pytest-asyncio).
    `proxy=True` puts every service's link to PostgreSQL and RabbitMQ through the Toxiproxy-
    compatible proxy (`links`); None: as HARNESS_PROXY says.
    """

    def __init__(
        self,
        run_dir: Path,
        servers: Servers,
        *,
        workers: int = 2,
        services: bool = True,
        env: Mapping[str, str] | None = None,
        show_progress: bool = True,
        ready_timeout: float = 90.0,
        own_thread: bool = False,
        proxy: bool | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.servers = servers
        self.log_dir = run_dir / "logs"
        self.target_file = run_dir / "target.toml"
        self.worker_count = workers
        self.services = services
        self.env_overrides = dict(env or {})
        self.show_progress = show_progress
        self.ready_timeout = ready_timeout
        self.own_thread = own_thread
        self.proxy_requested = proxy_requested() if proxy is None else proxy
        self.link_proxy: LinkProxy | None = None
        self.timings: dict[str, float] = {}
        self.tmp_dir: Path | None = None
        self.api: ServiceProcess | None = None
        self.relay: ServiceProcess | None = None
        self.workers: dict[str, ServiceProcess] = {}
        self._endpoints: StackEndpoints | None = None
        self._next_worker = 0
        self._lock = threading.RLock()

    # ---- life cycle -------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    @property
    def endpoints(self) -> StackEndpoints:
        if self._endpoints is None:
            raise StackError("the stack is not started")
        return self._endpoints

    def start(self) -> StackEndpoints:
        """Start everything and wait until each part answers its readiness probe."""
        return run_sync(self.astart(), own_thread=self.own_thread)

    async def astart(self) -> StackEndpoints:
        """The async form of `start()`; on any failure everything started so far is stopped.

        The servers' preflight runs before anything is created, so a provider that cannot work
        here (no Docker engine) fails in a second with its own message, leaving nothing behind.
        """
        self.servers.preflight()
        install_cleanup_handlers()
        with _LIVE_LOCK:
            _LIVE_STACKS.append(self)
        started = time.monotonic()
        try:
            with self._progress() as step:
                await self._start_servers(step, started)
                if self.services:
                    await self._start_services(step, started)
        except BaseException:
            self.stop()
            raise
        self.timings["total_s"] = round(time.monotonic() - started, 3)
        self._endpoints = self._make_endpoints()
        self.target_file.write_text(render_target_toml(self._endpoints))
        return self._endpoints

    async def _start_servers(self, step: _Step, started: float) -> None:
        """Start both servers first, then wait for both probes at once: RabbitMQ dominates.

        The schema migration needs only PostgreSQL, so it runs while RabbitMQ still boots.
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        sweep_stale_tmp_dirs()
        self.tmp_dir = Path(tempfile.mkdtemp(prefix=TMP_PREFIX))
        self.tmp_dir.chmod(0o711)
        (self.tmp_dir / "owner.pid").write_text(str(os.getpid()))
        self.servers.launch(self.tmp_dir, self.log_dir)
        await asyncio.gather(
            step("rabbitmq", "rabbitmq_ready_s", started, self.servers.wait_rabbit(self.ready_timeout)),
            self._postgres_then_migrate(step, started),
        )

    async def _postgres_then_migrate(self, step: _Step, started: float) -> None:
        await step("postgres", "postgres_ready_s", started, self.servers.wait_postgres(self.ready_timeout))
        if self.services:
            await step("migrate", "migrate_s", time.monotonic(), asyncio.to_thread(self.migrate))

    async def _start_services(self, step: _Step, started: float) -> None:
        if self.proxy_requested:
            assert self.tmp_dir is not None
            urls = {"postgres": self.servers.postgres_dsn, "rabbitmq": self.servers.amqp_url}
            self.link_proxy = LinkProxy(urls, self.tmp_dir / "toxiproxy.json", self.log_dir)
        self.api = self._make_api()
        # Supervised like the workers: a crashed relay or API comes back, as under an orchestrator.
        self.relay = ServiceProcess(self._service_process("relay", "ast-relay", supervise=True))
        workers = [self._new_worker() for _ in range(self.worker_count)]
        if self.link_proxy is not None:
            # Every link is planned now (each process's env names its own); the proxy listens first.
            proxy_ready = self.link_proxy.start(self.ready_timeout)
            await step("toxiproxy", "proxy_ready_s", time.monotonic(), proxy_ready)
        for service in [self.api, self.relay, *workers]:
            service.process.start()
        probes = [self._wait_service(s) for s in [self.api, *self.workers.values()]]
        await step("api, relay, workers", "services_ready_s", started, asyncio.gather(*probes))

    def stop(self) -> None:
        """Stop everything in reverse order of start; safe to call twice or after a failed start."""
        with self._lock:
            started = time.monotonic()
            self._stop_services()
            if self.link_proxy is not None:
                self.link_proxy.stop()
            self.servers.teardown()
            if self.tmp_dir is not None:
                shutil.rmtree(self.tmp_dir, ignore_errors=True)
                self.tmp_dir = None
            with _LIVE_LOCK:
                if self in _LIVE_STACKS:
                    _LIVE_STACKS.remove(self)
            self.timings.setdefault("stop_s", round(time.monotonic() - started, 3))

    def _stop_services(self) -> None:
        grace = self.stop_grace_s
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda s: s.process.stop(timeout=grace), list(self.workers.values())))
        for service in (self.relay, self.api):
            if service is not None:
                service.process.stop(timeout=grace)

    @property
    def stop_grace_s(self) -> float:
        """How long a service gets after SIGTERM before SIGKILL: its SHUTDOWN_GRACE_MS + 5 s."""
        return int(self.env_overrides.get("SHUTDOWN_GRACE_MS", "30000")) / 1000 + 5

    # ---- services -----------------------------------------------------------------------

    def migrate(self) -> str:
        """Run `ast-migrate` against the stack's database (idempotent); returns its output."""
        env = self._service_env()
        output = run_checked([str(SERVICE_BIN / "ast-migrate")], env=env, timeout=120)
        (self.log_dir / "migrate.log").write_text(output)
        return output

    def _service_env(self) -> dict[str, str]:
        if self.tmp_dir is None:
            raise StackError("servers are not started")
        return dict(os.environ) | {
            "POSTGRES_URL": self.servers.postgres_dsn,
            "RABBIT_URL": self.servers.amqp_url,
            "RABBIT_MANAGEMENT_URL": self.servers.management_url,
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            "TEMP_DIR": str(self.tmp_dir / "service-tmp"),
            "ARTIFACTS_DIR": str(self.tmp_dir / "artifacts"),
        } | self.env_overrides

    def _service_process(
        self, name: str, command: str, extra: Mapping[str, str] | None = None, supervise: bool = False
    ) -> ManagedProcess:
        links = self.link_proxy.client_env(name) if self.link_proxy is not None else {}
        env = self._service_env() | links | dict(extra or {})
        return ManagedProcess(
            name, [str(SERVICE_BIN / command)], log_dir=self.log_dir, env=env, supervise=supervise
        )

    def _make_api(self) -> ServiceProcess:
        port = free_port()
        extra = {"API_HOST": "127.0.0.1", "API_PORT": str(port), "RELAY_IN_API": "0"}
        process = self._service_process("api", "ast-api", extra, supervise=True)
        return ServiceProcess(process, f"http://127.0.0.1:{port}/ready", port)

    def _new_worker(self, env: Mapping[str, str] | None = None) -> ServiceProcess:
        name = f"worker-{self._next_worker}"
        self._next_worker += 1
        port = free_port()
        extra = {**(env or {}), "WORKER_ID": name, "WORKER_HEALTH_PORT": str(port)}
        process = self._service_process(name, "ast-worker", extra, supervise=True)
        self.workers[name] = ServiceProcess(process, f"http://127.0.0.1:{port}/ready", port)
        return self.workers[name]

    async def _wait_service(self, service: ServiceProcess) -> float:
        url = service.ready_url
        assert url is not None
        return await poll_until_ready(
            f"{service.process.name} ({url})",
            lambda: http_ok(url),
            timeout=self.ready_timeout,
            alive=lambda: service.process.expected_running,
            explain=service.process.log_tail,
        )

    def _make_endpoints(self) -> StackEndpoints:
        api_url = f"http://127.0.0.1:{self.api.port}" if self.api is not None else ""
        return StackEndpoints(
            api_url=api_url,
            postgres_dsn=self.servers.postgres_dsn,
            amqp_url=self.servers.amqp_url,
            management_url=self.servers.management_url,
            target_file=self.target_file,
            toxiproxy_url=self.link_proxy.url if self.link_proxy is not None else None,
            toxiproxy_proxies=self.link_proxy.names if self.link_proxy is not None else (),
            faults_allowed=self.servers.faults + (NETWORK_FAULTS if self.link_proxy is not None else ()),
            reset_allowed=True,
        )

    # ---- handles for chaos drills ---------------------------------------------------------

    def add_worker(self, env: Mapping[str, str] | None = None) -> str:
        """Start one more worker (with `env` on top of the stack's) and wait until it is ready;
        returns its WORKER_ID."""
        with self._lock:
            service = self._new_worker(env)
            service.process.start()
            if self.link_proxy is not None:
                # Its links are new proxies: the target file lists them for the drills.
                self._endpoints = self._make_endpoints()
                self.target_file.write_text(render_target_toml(self._endpoints))
        run_sync(self._wait_service(service), own_thread=self.own_thread)
        return service.process.name

    def remove_worker(self, name: str) -> int | None:
        """SIGTERM a worker (it finishes or hands back its job) and forget it; its exit code."""
        with self._lock:
            service = self.workers.pop(name)
        return service.process.stop(timeout=self.stop_grace_s)

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker mid-job; being supervised it comes back, like a killed pod."""
        self.workers[name].process.kill()

    def wait_worker_ready(self, name: str) -> float:
        """Wait until the worker's /ready answers 200 (e.g. after `kill_worker`); seconds waited."""
        return run_sync(self._wait_service(self.workers[name]), own_thread=self.own_thread)

    def restart_worker(self, name: str) -> None:
        """SIGTERM and start again (one step of a rolling restart); waits until ready."""
        service = self.workers[name]
        service.process.restart(timeout=self.stop_grace_s)
        run_sync(self._wait_service(service), own_thread=self.own_thread)

    def kill_relay(self) -> None:
        self._require(self.relay).process.kill()

    def restart_relay(self) -> None:
        """Start the relay again after `kill_relay()`, or restart (SIGTERM, start) a running one."""
        self._require(self.relay).process.restart(timeout=self.stop_grace_s)

    def kill_api(self) -> None:
        self._require(self.api).process.kill()

    def restart_api(self) -> None:
        """Start the API again after `kill_api()` (or restart a running one) and wait for /ready."""
        api = self._require(self.api)
        api.process.restart()
        run_sync(self._wait_service(api), own_thread=self.own_thread)

    @staticmethod
    def _require(service: ServiceProcess | None) -> ServiceProcess:
        if service is None:
            raise StackError("the stack was started without services")
        return service

    def processes(self) -> list[ManagedProcess]:
        """Every local process of the stack, for checks that nothing was left behind."""
        found: list[ManagedProcess] = [s.process for s in self.workers.values()]
        found += [s.process for s in (self.relay, self.api) if s is not None]
        if self.link_proxy is not None and self.link_proxy.process is not None:
            found.append(self.link_proxy.process)
        return found + self.servers.processes()

    # ---- progress display ----------------------------------------------------------------

    @contextmanager
    def _progress(self) -> Iterator[_Step]:
        """A Rich progress display on stderr; each step's time is also kept in `timings`."""
        console = Console(stderr=True)
        columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        with Progress(*columns, console=console, disable=not self.show_progress) as progress:

            async def step(label: str, key: str, since: float, work: Awaitable[Any]) -> Any:
                task = progress.add_task(f"{label}: starting", total=1)
                result = await work
                self.timings[key] = round(time.monotonic() - since, 3)
                progress.update(task, completed=1, description=f"{label}: ready ({self.timings[key]:.2f}s)")
                return result

            yield step


TMP_PREFIX = "ast-stack-"


def sweep_stale_tmp_dirs() -> list[Path]:
    """Remove temp dirs of stacks whose owner died without cleaning up (SIGKILL, OOM).

    PDEATHSIG takes their processes down, but nobody is left to delete their data; a dir is
    stale only when its `owner.pid` names a process that no longer exists.
    """
    removed = []
    for candidate in Path(tempfile.gettempdir()).glob(f"{TMP_PREFIX}*"):
        try:
            owner = int((candidate / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if not psutil.pid_exists(owner):
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


_Step = Callable[[str, str, float, Awaitable[Any]], Awaitable[Any]]

# ---- last-resort cleanup: atexit and signals ------------------------------------------------

_LIVE_STACKS: list[ServiceStack] = []
_LIVE_LOCK = threading.Lock()
_HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_previous_handlers: dict[int, Any] = {}
_atexit_registered = threading.Event()


def stop_all_stacks() -> None:
    """Stop every live stack (newest first), then SIGKILL any managed process still around."""
    with _LIVE_LOCK:
        stacks = list(reversed(_LIVE_STACKS))
    for stack in stacks:
        stack.stop()
    kill_all_processes()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Stop everything, then behave as the handler we replaced would have."""
    stop_all_stacks()
    previous = _previous_handlers.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def install_cleanup_handlers() -> None:
    """Idempotent. Signal handlers only from the main thread (Python allows no other)."""
    if not _atexit_registered.is_set():
        atexit.register(stop_all_stacks)
        _atexit_registered.set()
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in _HANDLED_SIGNALS:
        current = signal.getsignal(sig)
        if current is not _on_signal:
            _previous_handlers[sig] = current
            signal.signal(sig, _on_signal)
