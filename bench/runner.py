"""One benchmark run on one embedded stack: the three rows side by side, then the service's
scaling, its POST latency at half its maximum rate, and the empty vs pre-loaded database."""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console

from bench import bare
from bench.celery_row import CeleryWorker, ensure_venv, finish_driver, start_driver
from bench.cpu import CpuMeter
from bench.drive import SubmitOne, closed_loop, open_loop, wait_completed
from bench.preload import count_older, deep_cursor, preload, time_list
from bench.service_row import CLIENTS, ServiceClient
from bench.stats import BenchError, RowResult, Submit, mean_row, summarize
from harness.stack.local import LocalStack
from harness.stack.reset import truncate_service_tables

ROOT = Path(__file__).resolve().parent.parent

# (label, workers, environment) of the service's scaling rows; the default row is measured first.
WORKER_SCALING: tuple[tuple[int, dict[str, str]], ...] = ((1, {}), (4, {}))
KNOBS: tuple[dict[str, str], ...] = (
    {"WORKER_CONCURRENCY": "1", "RABBIT_PREFETCH": "1"},
    {"WORKER_CONCURRENCY": "1", "RABBIT_PREFETCH": "10"},
    {"WORKER_CONCURRENCY": "4", "RABBIT_PREFETCH": "4"},
    {"WORKER_CONCURRENCY": "4", "RABBIT_PREFETCH": "16"},
    {"WORKER_CONCURRENCY": "16", "RABBIT_PREFETCH": "32"},
)
OPEN_LOOP_S = 30
"""The half-rate row offers its rate for this long at most (at 100 jobs/s: 3,000 jobs)."""
QUICK_KNOBS: tuple[dict[str, str], ...] = ({"WORKER_CONCURRENCY": "4", "RABBIT_PREFETCH": "16"},)


@dataclass
class Options:
    jobs: int = 2000
    concurrency: int = 16
    workers: int = 2
    rounds: int = 2
    """Rounds of the side-by-side rows, alternately in order and reversed; the table shows the mean."""
    warmup: int = 0
    """Jobs run and waited for before each measured row, not counted (0: jobs // 10, at least 20)."""
    quick: bool = False
    preload_tasks: int = 1_000_000
    celery: bool = True
    scaling: bool = True
    growth: bool = True
    retention_tasks: int = 200_000
    """Finished tasks aged past the service's RETENTION_DAYS (default 30) for the retention part; 0 skips."""
    list_rounds: int = 30
    client: str = "aiohttp"
    """The service row's HTTP client (bench.service_row.CLIENTS); its CPU counts as the "bench" group."""
    client_comparison: bool = False
    synchronous_commit: bool = True
    """Every row commits synchronously (as the service does); False leaves the server's default."""
    """Also the service row with each other client, side by side, to show what the client costs."""

    @property
    def warmup_jobs(self) -> int:
        return self.warmup or max(20, self.jobs // 10)

    @property
    def timeout_s(self) -> float:
        return max(120.0, self.jobs / 5)


@dataclass
class Results:
    options: dict[str, Any]
    machine: dict[str, Any]
    rows: list[RowResult] = field(default_factory=list)
    rounds: list[list[dict[str, Any]]] = field(default_factory=list)
    """Every round of each side-by-side row (`rows` holds their means)."""
    scaling: list[RowResult] = field(default_factory=list)
    half_rate: dict[str, Any] = field(default_factory=dict)
    growth: dict[str, Any] = field(default_factory=dict)
    retention: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def _commit_synchronously(dsn: str) -> None:
    """Every row commits as durably as the service does: the embedded PostgreSQL defaults to
    `synchronous_commit = off` (a throwaway test server), which the service turns on for its own
    sessions (service.db.pool) while the bare and Celery rows would have kept it off."""
    connection = await asyncpg.connect(dsn)
    try:
        database = await connection.fetchval("SELECT current_database()")
        await connection.execute(f'ALTER DATABASE "{database}" SET synchronous_commit = on')
    finally:
        await connection.close()


def machine_facts() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def env_label(workers: int, env: Mapping[str, str]) -> str:
    knobs = ", ".join(f"{key}={value}" for key, value in env.items())
    return f"{workers} worker{'s' if workers != 1 else ''}" + (f", {knobs}" if knobs else ", defaults")


class Bench:
    """The run: a LocalStack (as `harness up` starts it) and every row measured on it in turn."""

    def __init__(self, options: Options, run_dir: Path, console: Console) -> None:
        self.options = options
        self.run_dir = run_dir
        self.console = console
        self.stack = LocalStack(run_dir, workers=options.workers, show_progress=True)
        self.worker_env: dict[str, str] = {}
        self.results = Results(
            options=asdict(options) | {"warmup_jobs": options.warmup_jobs}, machine=machine_facts()
        )

    # ---- the run --------------------------------------------------------------------------

    def run(self) -> Results:
        celery_version = ""
        if self.options.celery:
            self.say("Celery venv (.bench-venv): checking or installing celery and psycopg from PyPI")
            celery_version = ensure_venv()
        self.results.machine["celery"] = celery_version
        self.say("starting the stack (RabbitMQ, PostgreSQL, API, relay, workers)")
        samples: list[float] = []
        stop = threading.Event()
        sampler = threading.Thread(target=_sample_load, args=(samples, stop), daemon=True)
        sampler.start()
        self.stack.start()
        try:
            if self.options.synchronous_commit:
                asyncio.run(_commit_synchronously(self.dsn))
            else:
                self.results.skipped.append("synchronous_commit for every row (--server-commit)")
            self._all_parts()
        finally:
            self.stack.stop()
            stop.set()
            sampler.join()
        self.results.machine["loadavg_end"] = os.getloadavg()
        if samples:
            self.results.machine["load_1min_during"] = {
                "min": min(samples), "mean": sum(samples) / len(samples), "max": max(samples)
            }
        return self.results

    def _all_parts(self) -> None:
        options = self.options
        label = f"service: {env_label(options.workers, {})}, {options.client} client"
        systems: list[Callable[[], RowResult]] = [
            lambda: self.service_row(label, options.workers, {}),
            self.bare_row,
        ]
        if options.celery:
            systems.append(self.celery_row)
        else:
            self.results.skipped.append("celery row (--no-celery)")
        if options.client_comparison:
            for other in (kind for kind in CLIENTS if kind != options.client):
                systems.append(self._service_row_with(other))
        # Round 1 in order, round 2 in reverse (A B C, C B A, ...): a drift in the machine's other
        # load hits every row alike instead of favouring the one measured first.
        measured: list[list[RowResult]] = [[] for _ in systems]
        for round_index in range(options.rounds):
            order = list(range(len(systems)))
            for index in order if round_index % 2 == 0 else reversed(order):
                measured[index].append(systems[index]())
        self.results.rounds = [[asdict(row) for row in rows] for rows in measured]
        self.results.rows = [mean_row(rows) for rows in measured]
        main = self.results.rows[0]
        if options.scaling:
            self.results.scaling.append(main)
            for workers, env in WORKER_SCALING:
                self.results.scaling.append(self.service_row(env_label(workers, env), workers, env))
            for env in QUICK_KNOBS if options.quick else KNOBS:
                label = env_label(options.workers, env)
                self.results.scaling.append(self.service_row(label, options.workers, env))
        self.half_rate(main.jobs_per_s)
        if options.growth:
            self.growth()
        if options.retention_tasks:
            self.retention()

    def _service_row_with(self, client: str) -> Callable[[], RowResult]:
        label = f"service: {env_label(self.options.workers, {})}, {client} client"
        return lambda: self.service_row(label, self.options.workers, {}, client=client)

    def say(self, text: str) -> None:
        self.console.print(f"[bold]==>[/bold] {text}  [dim](load {os.getloadavg()[0]:.2f})[/dim]")

    # ---- stack helpers --------------------------------------------------------------------

    @property
    def dsn(self) -> str:
        return self.stack.endpoints.postgres_dsn

    @property
    def amqp_url(self) -> str:
        return self.stack.endpoints.amqp_url

    def set_workers(self, count: int, env: Mapping[str, str]) -> None:
        """Exactly `count` workers, each with `env` on top of the stack's environment."""
        if dict(env) != self.worker_env:
            for name in list(self.stack.workers):
                self.stack.remove_worker(name)
            self.worker_env = dict(env)
        while len(self.stack.workers) > count:
            self.stack.remove_worker(list(self.stack.workers)[-1])
        while len(self.stack.workers) < count:
            self.stack.add_worker(self.worker_env)

    def server_groups(self) -> dict[str, list[int]]:
        servers = self.stack.servers.processes()
        postgres = [p.pid for p in servers if p.pid is not None and "postgres" in p.name]
        rabbit = [p.pid for p in servers if p.pid is not None and "postgres" not in p.name]
        return {"postgres": postgres, "rabbitmq": rabbit}

    def service_groups(self) -> dict[str, list[int]]:
        def pids(services: list[Any]) -> list[int]:
            return [s.process.pid for s in services if s is not None and s.process.pid is not None]

        return {
            "api": pids([self.stack.api]),
            "relay": pids([self.stack.relay]),
            "workers": pids(list(self.stack.workers.values())),
        } | self.server_groups()

    # ---- one measured row -----------------------------------------------------------------

    async def _measure(
        self,
        name: str,
        table: str,
        submit_one: SubmitOne,
        groups: Mapping[str, list[int]],
        rate: float | None = None,
    ) -> RowResult:
        """Warm-up (waited for, not counted), then the measured jobs, then every one COMPLETED."""
        options = self.options
        warm = await closed_loop(options.warmup_jobs, options.concurrency, submit_one)
        await wait_completed(self.dsn, table, [s.job_id for s in warm], options.timeout_s)
        meter = CpuMeter(groups)
        meter.start()
        if rate is None:
            submits = await closed_loop(options.jobs, options.concurrency, submit_one)
        else:
            submits = await open_loop(self.open_loop_jobs(rate), rate, submit_one)
        done = await wait_completed(self.dsn, table, [s.job_id for s in submits], options.timeout_s)
        meter.stop()
        row = summarize(name, submits, done, meter.percent(), cpu_s=meter.seconds())
        row.load_1min = os.getloadavg()[0]
        return row

    def service_row(
        self,
        name: str,
        workers: int,
        env: Mapping[str, str],
        rate: float | None = None,
        client: str | None = None,
    ) -> RowResult:
        self.say(f"measuring {name}" + (f" at {rate:.0f} jobs/s offered" if rate else ""))
        self.set_workers(workers, env)
        asyncio.run(truncate_service_tables(self.dsn))
        kind = client or self.options.client

        async def go() -> RowResult:
            async with ServiceClient(self.stack.endpoints.api_url, kind=kind) as client:
                return await self._measure(name, "tasks", client.submit, self.service_groups(), rate)

        row = asyncio.run(go())
        self.console.print(f"    {row.jobs_per_s:.0f} jobs/s, POST p50 {row.post_p50_ms:.0f} ms")
        return row

    def bare_row(self, consumers: int = 2, prefetch: int = 10) -> RowResult:
        name = f"bare aio-pika + asyncpg: {consumers} consumers, prefetch {prefetch}"
        self.say(f"measuring {name}")
        asyncio.run(bare.prepare(self.dsn, self.amqp_url))
        command = [sys.executable, "-m", "bench.bare", self.amqp_url, self.dsn, str(prefetch)]
        processes = [
            subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(consumers)
        ]
        try:
            for process in processes:
                assert process.stdout is not None
                if process.stdout.readline().strip() != "ready":
                    raise BenchError("a bare consumer did not start")
            groups = {"consumers": [p.pid for p in processes]} | self.server_groups()

            async def go() -> RowResult:
                async with bare.Submitter(self.dsn, self.amqp_url, self.options.concurrency) as submitter:
                    return await self._measure(name, "bench.tasks", submitter.submit, groups)

            row = asyncio.run(go())
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(30)
        self.console.print(f"    {row.jobs_per_s:.0f} jobs/s")
        return row

    def celery_row(self, concurrency: int = 2) -> RowResult:
        version = self.results.machine.get("celery", "")
        name = f"Celery {version}: prefork ×{concurrency}, acks_late, confirms, quorum"
        self.say(f"measuring {name}")
        asyncio.run(bare.prepare(self.dsn, self.amqp_url))
        endpoints = self.stack.endpoints
        log = self.run_dir / "logs" / "celery.log"
        worker = CeleryWorker(self.amqp_url, self.dsn, endpoints.management_url, log)
        worker.start()
        try:
            row = self._celery_measure(name, worker)
        finally:
            worker.stop()
        self.console.print(f"    {row.jobs_per_s:.0f} jobs/s")
        return row

    def _celery_measure(self, name: str, worker: CeleryWorker) -> RowResult:
        options = self.options
        driver, out = start_driver(options.warmup_jobs, options.concurrency, self.amqp_url, self.dsn)
        warm, _ = finish_driver(driver, out)
        asyncio.run(wait_completed(self.dsn, "bench.tasks", [s.job_id for s in warm], options.timeout_s))
        groups: dict[str, list[int]] = {"celery": [worker.pid]} | self.server_groups()
        meter = CpuMeter(groups)
        meter.start()
        driver, out = start_driver(options.jobs, options.concurrency, self.amqp_url, self.dsn)
        submits: list[Submit]
        submits, driver_cpu_s = finish_driver(driver, out)
        ids = [s.job_id for s in submits]
        done = asyncio.run(wait_completed(self.dsn, "bench.tasks", ids, options.timeout_s))
        meter.stop()
        meter.add("driver", driver_cpu_s)  # it has exited: its own count, start-up included
        note = "driver CPU includes its start-up"
        row = summarize(name, submits, done, meter.percent(), note=note, cpu_s=meter.seconds())
        row.load_1min = os.getloadavg()[0]
        return row

    # ---- POST latency at half the maximum rate -----------------------------------------------

    def open_loop_jobs(self, rate: float) -> int:
        """Jobs of the open-loop row: --jobs, but no more than OPEN_LOOP_S seconds' worth (>= 100)."""
        return min(self.options.jobs, max(100, int(rate * OPEN_LOOP_S)))

    def half_rate(self, max_rate: float) -> None:
        rate = max(max_rate / 2, 1.0)
        row = self.service_row(f"service at half rate ({rate:.0f}/s offered)", self.options.workers, {}, rate)
        self.results.half_rate = {
            "offered_per_s": rate,
            "jobs": self.open_loop_jobs(rate),
            "row": asdict(row),
            "post_p99_over_p50": row.post_p99_ms / row.post_p50_ms if row.post_p50_ms else None,
            "goal": "<= 5",
        }

    # ---- cost as work grows ------------------------------------------------------------------

    def growth(self) -> None:
        """Empty, pre-loaded, then empty again: the two empty points bracket the loaded one, so
        their difference shows how much the machine's other load moved the numbers meanwhile."""
        options = self.options
        empty = self._growth_point("empty database")
        self.say(f"pre-loading {options.preload_tasks:,} finished tasks and their events")
        asyncio.run(truncate_service_tables(self.dsn))
        took = asyncio.run(preload(self.dsn, options.preload_tasks))
        self.console.print(f"    loaded in {took:.1f}s")
        loaded = self._growth_point(f"{options.preload_tasks:,} tasks pre-loaded", truncate=False)
        empty_after = self._growth_point("empty database again")
        self.results.growth = {
            "preload_tasks": options.preload_tasks,
            "preload_events": options.preload_tasks * 4,
            "preload_s": took,
            "empty": empty,
            "loaded": loaded,
            "empty_after": empty_after,
        }

    def retention(self) -> None:
        """Old finished tasks pre-loaded; once the relay's retention has deleted its first batch,
        the service row measured while it deletes the rest (the service's defaults: RETENTION_DAYS
        30, small batches); then how long from that first batch until none is left (at most
        DRAIN_LIMIT_S)."""
        options = self.options
        aged = f"{options.retention_tasks:,} tasks finished {RETENTION_AGE_DAYS} days ago"
        self.say(f"retention: pre-loading {aged}")
        self.set_workers(options.workers, {})
        asyncio.run(truncate_service_tables(self.dsn))
        asyncio.run(preload(self.dsn, options.retention_tasks, age_days=RETENTION_AGE_DAYS))
        _, before = _sample_old(self.dsn, time.monotonic())
        # The relay runs a batch every RETENTION_INTERVAL_MS (60 s) and the next at once while they
        # come back full: wait for the first deletion, so the row runs while retention does.
        waited, started, left = 0.0, time.monotonic(), before
        while left == before and waited < START_LIMIT_S:
            time.sleep(0.5)
            waited, left = _sample_old(self.dsn, started)
        started = time.monotonic()
        _, at_start = _sample_old(self.dsn, started)

        async def go() -> RowResult:
            async with ServiceClient(self.stack.endpoints.api_url, kind=self.options.client) as client:
                name = "service, retention deleting meanwhile"
                return await self._measure(name, "tasks", client.submit, self.service_groups())

        row = asyncio.run(go())
        row_s, after_row = _sample_old(self.dsn, started)
        elapsed, left = row_s, after_row
        while left and elapsed < DRAIN_LIMIT_S:
            time.sleep(1)
            elapsed, left = _sample_old(self.dsn, started)
        self.results.retention = {
            "old_tasks": before,
            "waited_for_first_batch_s": waited,
            "age_days": RETENTION_AGE_DAYS,
            "row": asdict(row),
            "deleted_during_row": at_start - after_row,
            "row_s": row_s,
            "left": left,
            "drain_s": elapsed if not left else None,
            "deleted_per_s": (at_start - left) / elapsed if elapsed else None,
        }
        self.console.print(
            f"    {row.jobs_per_s:.0f} jobs/s; {at_start - after_row:,} old tasks deleted during the row, "
            f"{left:,} left after {elapsed:.0f}s"
        )

    def _growth_point(self, label: str, truncate: bool = True) -> dict[str, Any]:
        self.say(f"growth: {label}")
        self.set_workers(self.options.workers, {})
        if truncate:
            asyncio.run(truncate_service_tables(self.dsn))

        async def go() -> dict[str, Any]:
            async with ServiceClient(self.stack.endpoints.api_url, kind=self.options.client) as client:
                row = await self._measure(f"service, {label}", "tasks", client.submit, self.service_groups())
                total = await _count_tasks(self.dsn)
                first = await time_list(client, None, self.options.list_rounds)
                cursor = await deep_cursor(self.dsn, total // 2)
                deep = await time_list(client, cursor, self.options.list_rounds)
                return {"row": asdict(row), "tasks_in_db": total, "list_first": first, "list_deep": deep}

        point = asyncio.run(go())
        self.console.print(
            f"    {point['row']['jobs_per_s']:.0f} jobs/s, GET first {point['list_first']['p50_ms']:.1f} ms,"
            f" deep {point['list_deep']['p50_ms']:.1f} ms"
        )
        return point


def _sample_load(samples: list[float], stop: threading.Event, every_s: float = 5.0) -> None:
    """The 1-minute load average every few seconds while the run lasts."""
    while not stop.wait(every_s):
        samples.append(os.getloadavg()[0])


RETENTION_AGE_DAYS = 40
"""Past the service's default RETENTION_DAYS (30): every task pre-loaded this old is due."""
RETENTION_DAYS = 30
DRAIN_LIMIT_S = 150.0
START_LIMIT_S = 90.0


def _sample_old(dsn: str, since: float) -> tuple[float, int]:
    return time.monotonic() - since, asyncio.run(count_older(dsn, RETENTION_DAYS))


async def _count_tasks(dsn: str) -> int:
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM tasks"))
    finally:
        await connection.close()

