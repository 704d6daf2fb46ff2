"""The worker's probes and metrics on WORKER_HEALTH_HOST:WORKER_HEALTH_PORT.

- `/health`: the process answers (always 200 while it runs);
- `/ready`: 200 only while the worker consumes, its RabbitMQ connection is open and PostgreSQL
  answers `SELECT 1` (run on the worker's own pool, on its own loop, within PROBE_TIMEOUT_S);
- `/live`: 200 while the worker's event loop beats: its heartbeat is younger than
  WORKER_LIVE_AFTER_S. A loop stuck in a blocking call stops beating, and because the server runs
  in a thread of its own, `/live` says so (503) instead of hanging with the loop;
- `/metrics`: Prometheus text (`ast_worker_jobs_total{status,type}`, ...), and the ready messages
  of each job queue (`ast_worker_queue_messages{queue}`), read by a passive declare on a channel of
  the worker's own connection when scraped (left as they were when that fails).

Each answers JSON like the certification worker of the design notes: `status`, `isRunning`,
`workerId`, `queue`, `concurrency`, `timestamp`, and what it checked; a 503 adds the contract's
`error` object.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

T = TypeVar("T")
PROBE_TIMEOUT_S = 3.0
HEARTBEAT_INTERVAL_S = 0.5
STOP_TIMEOUT_S = 5.0
START_TIMEOUT_S = 10.0
QUEUE_MESSAGES = Gauge(
    "ast_worker_queue_messages", "Messages ready in each job queue, read when scraped", ["queue"]
)


class Heartbeat:
    """Beats on the worker's loop; `age()` may be read from any thread."""

    def __init__(self) -> None:
        self._last = time.monotonic()

    async def run(self) -> None:
        while True:
            self._last = time.monotonic()
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)

    def age(self) -> float:
        return time.monotonic() - self._last


@dataclass(frozen=True)
class WorkerProbe:
    """What the probes read of the worker; `postgres` runs on `loop` (the worker's pool lives there)."""

    worker_id: str
    queues: tuple[str, ...]
    concurrency: int
    is_running: Callable[[], bool]
    rabbitmq_open: Callable[[], bool]
    postgres: Callable[[], Awaitable[None]]
    queue_depths: Callable[[], Awaitable[dict[str, int]]]
    loop: asyncio.AbstractEventLoop
    heartbeat: Heartbeat
    live_after_s: float

    def describe(self, status: str, checks: dict[str, Any]) -> dict[str, Any]:
        return {
            "status": status,
            "isRunning": self.is_running(),
            "workerId": self.worker_id,
            "queue": list(self.queues),
            "concurrency": self.concurrency,
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "checks": checks,
        }

    async def on_worker_loop(self, make: Callable[[], Awaitable[T]]) -> T:
        """`make()` run on the worker's loop (its pool and connection live there), bounded."""
        future = asyncio.run_coroutine_threadsafe(_coroutine(make), self.loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), PROBE_TIMEOUT_S)

    async def check_postgres(self) -> str:
        try:
            await self.on_worker_loop(self.postgres)
            return "ok"
        except Exception as error:  # noqa: BLE001 - any failure of the probe means "not ready"
            return f"down: {type(error).__name__}"

    async def refresh_queue_depths(self) -> None:
        try:
            depths = await self.on_worker_loop(self.queue_depths)
        except Exception:  # noqa: BLE001 - a scrape must answer; the gauges keep their last values
            return
        for queue, messages in depths.items():
            QUEUE_MESSAGES.labels(queue).set(messages)


async def _coroutine(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


def _answer(probe: WorkerProbe, ok: bool, status: str, checks: dict[str, Any], message: str) -> Response:
    body = probe.describe(status if ok else f"not {status}", checks)
    if ok:
        return JSONResponse(body)
    code = "NOT_READY" if status == "ready" else "NOT_LIVE"
    return JSONResponse({**body, "error": {"code": code, "message": message, "details": checks}}, 503)


def health_app(probe: WorkerProbe) -> Starlette:
    async def health(_: Request) -> Response:
        return JSONResponse(probe.describe("ok", {}))

    async def ready(_: Request) -> Response:
        checks = {
            "consuming": "ok" if probe.is_running() else "no",
            "rabbitmq": "ok" if probe.rabbitmq_open() else "down: no open connection",
            "postgres": await probe.check_postgres(),
        }
        ok = all(value == "ok" for value in checks.values())
        return _answer(probe, ok, "ready", checks, "not consuming yet or a dependency is down")

    async def live(_: Request) -> Response:
        age = round(probe.heartbeat.age(), 3)
        checks = {"heartbeatAgeS": age, "liveAfterS": probe.live_after_s}
        return _answer(probe, age < probe.live_after_s, "live", checks, "the worker's event loop is stuck")

    async def metrics(_: Request) -> Response:
        await probe.refresh_queue_depths()
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    probes = {"/health": health, "/ready": ready, "/live": live, "/metrics": metrics}
    return Starlette(routes=[Route(path, endpoint) for path, endpoint in probes.items()])


class HealthServerError(RuntimeError):
    """WORKER_HEALTH_HOST:WORKER_HEALTH_PORT cannot be listened on."""


class EmbeddedServer(uvicorn.Server):
    """uvicorn beside the worker; the worker owns SIGTERM, so uvicorn must not capture it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HealthServer:
    """The probes' server in a thread with its own loop, so it answers while the worker's is stuck."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        self.where = f"{host}:{port}"
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", log_config=None, access_log=False, lifespan="off"
        )
        self._server = EmbeddedServer(config)
        self._thread = threading.Thread(target=self._serve, name="worker-health", daemon=True)

    def _serve(self) -> None:
        with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot bind: start() says so
            self._server.run()

    def start(self) -> None:
        """Returns once it listens; raises HealthServerError when it cannot (the port is taken)."""
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise HealthServerError(f"the health server could not listen on {self.where}")
            time.sleep(0.01)

    @property
    def port(self) -> int | None:
        """The port it listens on (WORKER_HEALTH_PORT=0 picks a free one)."""
        for server in self._server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return None

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(STOP_TIMEOUT_S)
