"""`harness load`: a Locust run (headless, in its own process) plus the invariant check after it.

Locust patches the standard library with gevent when imported, so this process never imports it:
it runs `python -m locust -f loadtests/locustfile.py` as a child, hands it the profile and the run
directory through the environment, and reads back what it recorded. A run:

1. the embedded stack (or `--target`'s deployment), a Sampler of queue depths and task counts;
2. Locust, shaped by the profile (steady, spike, soak), writing `histories/locust-<pid>.jsonl`
   per process and its own `locust_*.csv` and `locust.html` into the run directory;
3. the backlog drained (bounded), the invariant check over the merged histories, the SLOs
   (harness/load/slo.py) judged from the record, into `results.json` (`slos`, `metrics`) and
   `report.html`;
4. exit 0 only if every SLO and every invariant held; otherwise the failures are named.

`--drill NAME` runs a drill's faults during the load (harness/commands/load_drill.py).

`--master` runs Locust's master (waiting for `--expect-workers`) and does all of the above;
`--worker --master-host H` runs only a Locust worker; it records into its own `--run-dir` and sends
what it records to the master, whose run directory ends with every worker's history
(loadtests/shipping.py). On the master's machine, give a worker the master's `--run-dir`.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
    from chaos.drill_model import Drill
    from harness.commands.load_drill import LoadDrill
    from harness.history import History
    from harness.live_check import LiveCheck
    from harness.load.profiles import Profile
    from harness.load.slo import SloResult, Threshold
    from harness.record import RunWriter
    from harness.stack.base import StackEndpoints, StackProvider

LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtests" / "locustfile.py"
LOAD_ENV = {
    "RETRY_BASE_MS": "200",
    "JOB_TIMEOUT_MS": "30000",
    "SHUTDOWN_GRACE_MS": "5000",
    "ALLOW_LOCAL_REPOS": "1",
    "MAX_RETRIES": "3",
}
LOCUST_GRACE_S = 60.0
STOP_TIMEOUT_S = 2  # seconds users get to finish their iteration; then in-flight calls stay open (info)
WORKERS_MAX_WAIT_S = 60  # a master whose workers never come gives up instead of waiting forever
T = TypeVar("T")
DEFAULT_MASTER_PORT = 5557

ProfileOption = Annotated[str, typer.Option(help="Load profile: steady, spike or soak.")]
UsersOption = Annotated[int | None, typer.Option(min=1, help="Users (default: the profile's).")]
SpawnOption = Annotated[float | None, typer.Option(min=0.1, help="Users started per second.")]
JobMsOption = Annotated[
    str | None, typer.Option(help="Simulate jobs' duration, MIN-MAX ms (default: the profile's, 20-200).")
]
DurationOption = Annotated[
    float | None, typer.Option(min=1, help="Seconds of load (default: the profile's).")
]
ProcessesOption = Annotated[
    int, typer.Option(min=0, help="Locust worker processes on this machine (0: one).")
]
TargetOption = Annotated[
    Path | None, typer.Option(exists=True, dir_okay=False, help="Target TOML file (default: embedded stack).")
]
SloOption = Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="SLO TOML file.")]
RunDirOption = Annotated[Path | None, typer.Option(help="Run directory (default reports/out/<ts>-load).")]
WorkersOption = Annotated[int, typer.Option(min=1, help="ast-worker processes of the embedded stack.")]
DrainOption = Annotated[float, typer.Option(min=0, help="Seconds to wait for the backlog to drain.")]
MasterOption = Annotated[bool, typer.Option("--master", help="Run Locust's master; workers join it.")]
ExpectOption = Annotated[int, typer.Option(min=1, help="Workers the master waits for.")]
WorkerOption = Annotated[bool, typer.Option("--worker", help="Run only a Locust worker.")]
MasterHostOption = Annotated[str, typer.Option(help="The master a worker joins.")]
MasterPortOption = Annotated[int, typer.Option(min=1, max=65535, help="The master's port.")]
DrillOption = Annotated[
    str | None,
    typer.Option(
        help="A drill (broker-kill, db-latency, ... or a drill file) whose faults run during the load."
    ),
]


@dataclass
class LoadRun:
    """What one run needs: the profile, its SLOs, where it records, how Locust runs."""

    profile: Profile
    thresholds: tuple[Threshold, ...]
    writer: RunWriter
    processes: int = 0
    master: bool = False
    expect_workers: int = 1
    master_port: int = DEFAULT_MASTER_PORT
    drain_s: float = 60.0
    target: Path | None = None
    drill: Drill | None = None
    problems: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def load(
    profile: ProfileOption = "steady",
    users: UsersOption = None,
    spawn_rate: SpawnOption = None,
    duration: DurationOption = None,
    job_ms: JobMsOption = None,
    processes: ProcessesOption = 0,
    target: TargetOption = None,
    slo: SloOption = None,
    run_dir: RunDirOption = None,
    workers: WorkersOption = 2,
    drain: DrainOption = 60.0,
    master: MasterOption = False,
    expect_workers: ExpectOption = 1,
    worker: WorkerOption = False,
    master_host: MasterHostOption = "127.0.0.1",
    master_port: MasterPortOption = DEFAULT_MASTER_PORT,
    drill: DrillOption = None,
) -> None:
    """A Locust run plus the invariant check after it; exit 1 when an SLO or an invariant fails."""
    from harness.record import RunWriter, new_run_dir
    from harness.stack.base import StackError

    chosen = _profile(profile, users, spawn_rate, duration, job_ms)
    thresholds = _thresholds(chosen.name, slo)
    if master and processes:
        raise typer.BadParameter(
            "--master runs its workers apart; drop --processes", param_hint="--processes"
        )
    if worker:
        raise typer.Exit(run_worker(chosen, run_dir, master_host, master_port))
    chosen_drill = _chosen_drill(drill)
    out = run_dir.resolve() if run_dir else new_run_dir("load").resolve()
    writer = RunWriter.create(out, "load")
    run = LoadRun(
        chosen,
        thresholds,
        writer,
        processes,
        master,
        expect_workers,
        master_port,
        drain,
        target,
        chosen_drill,
    )
    stack = _stack(target, out, workers, chosen_drill)
    try:
        passed = run_against(stack, run)
    except StackError as exc:
        typer.echo(f"the stack failed: {exc}", err=True)
        passed = False
    finally:
        stack.stop()
    raise typer.Exit(0 if passed else 1)


def _profile(
    name: str, users: int | None, spawn_rate: float | None, duration: float | None, job_ms: str | None
) -> Profile:
    from harness.load.profiles import parse_job_ms, profile_named

    try:
        chosen = profile_named(name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--profile") from exc
    try:
        bounds = parse_job_ms(job_ms) if job_ms else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--job-ms") from exc
    return chosen.with_overrides(users=users, spawn_rate=spawn_rate, duration_s=duration, job_ms=bounds)


def _thresholds(profile: str, slo_file: Path | None) -> tuple[Threshold, ...]:
    from harness.load.slo import SloError, load_slo_file, thresholds_for

    try:
        return thresholds_for(profile, load_slo_file(slo_file) if slo_file else None)
    except SloError as exc:
        raise typer.BadParameter(str(exc), param_hint="--slo") from exc


def _chosen_drill(name: str | None) -> Drill | None:
    if name is None:
        return None
    from harness.commands.load_drill import resolve_drill

    return resolve_drill(name)


def _stack(target: Path | None, run_dir: Path, workers: int, drill: Drill | None) -> StackProvider:
    """The embedded stack (as a drill needs it, when one runs), or the target's deployment."""
    from harness.stack.factory import make_provider
    from harness.stack.local import install_cleanup_handlers

    install_cleanup_handlers()
    if drill is not None:
        from harness.commands.load_drill import drill_stack

        return drill_stack(drill, run_dir, target, LOAD_ENV)
    return make_provider("local", target, run_dir=run_dir, workers=workers, env=LOAD_ENV)


# --- the run --------------------------------------------------------------------------------------


def run_against(stack: StackProvider, run: LoadRun) -> bool:
    """Start the stack, load it (with the drill's faults, if any), check it, judge the SLOs, write
    the record; True iff all held."""
    from harness.observe.sampler import Sampler

    started = time.monotonic()
    endpoints = stack.start()
    run.timings["stack_s"] = round(time.monotonic() - started, 3)
    sampler = Sampler(endpoints, run.writer.sample, suite="load").start()
    try:
        rss_before = worker_rss_mb(stack)
        drill = _start_drill(stack, endpoints, run)
        try:
            locust_exit = _timed(run, "load_s", lambda: run_locust(run, endpoints))
        finally:
            run.problems += drill.finish() if drill is not None else []
        rss_growth = _growth(rss_before, worker_rss_mb(stack))
        merged, live = _timed(run, "check_s", lambda: check_run(run, endpoints))
        run.problems += drill.judge(live) if drill is not None else []
    finally:
        sampler.stop()
    run.timings["total_s"] = round(time.monotonic() - started, 3)
    return judge(run, merged, live, locust_exit, rss_growth)


def _start_drill(stack: StackProvider, endpoints: StackEndpoints, run: LoadRun) -> LoadDrill | None:
    if run.drill is None:
        return None
    from harness.commands.load_drill import LoadDrill, shifted

    return LoadDrill(shifted(run.drill, run.profile.duration_s), stack, endpoints, run.writer).start()


def _timed(run: LoadRun, key: str, job: Callable[[], T]) -> T:
    started = time.monotonic()
    try:
        return job()
    finally:
        run.timings[key] = round(time.monotonic() - started, 3)


def locust_env(run: LoadRun, endpoints: StackEndpoints) -> dict[str, str]:
    """The profile, the run directory and the API token for Locust's processes. The repository
    jobs clone a small local repository built here, on the embedded stack only (it allows local
    repositories); against a target they run only when LOAD_REPO_URL names a repository it can clone."""
    import os

    from harness.load.profiles import REPO_URL_ENV, SHAPE_ENV, TOKEN_ENV
    from harness.record import RUN_DIR_ENV

    env = {
        **os.environ,
        **run.profile.to_env(),
        SHAPE_ENV: run.profile.name,
        RUN_DIR_ENV: str(run.writer.root),
    }
    env[TOKEN_ENV] = endpoints.api_token
    if run.target is None and not env.get(REPO_URL_ENV):
        from harness.load.repo import build_load_repo

        try:
            env[REPO_URL_ENV] = str(build_load_repo(run.writer.root / "repo"))
        except (OSError, subprocess.SubprocessError) as exc:
            run.problems.append(f"no repository jobs: the local repository could not be built ({exc})")
    return env


def locust_args(run: LoadRun, api_url: str) -> list[str]:
    """The Locust command line: headless, shaped by the profile, its CSV and HTML beside the record."""
    root = run.writer.root
    args = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", api_url]
    args += ["--csv", str(root / "locust"), "--html", str(root / "locust.html"), "--only-summary"]
    args += ["--exit-code-on-error", "0", "--stop-timeout", str(STOP_TIMEOUT_S)]
    if run.processes:
        args += ["--processes", str(run.processes)]
    if run.master:
        args += [
            "--master",
            "--expect-workers",
            str(run.expect_workers),
            "--master-bind-port",
            str(run.master_port),
            "--expect-workers-max-wait",
            str(WORKERS_MAX_WAIT_S),
        ]
    return args


def run_locust(run: LoadRun, endpoints: StackEndpoints) -> int:
    """Runs Locust to its end (the shape stops it); killed, with its children, past the grace."""
    return run_child(
        locust_args(run, endpoints.api_url),
        locust_env(run, endpoints),
        run.writer.root / "logs" / "locust.log",
        run.profile.duration_s + LOCUST_GRACE_S + (WORKERS_MAX_WAIT_S if run.master else 0),
    )


def run_worker(profile: Profile, run_dir: Path | None, master_host: str, master_port: int) -> int:
    """A Locust worker of a distributed run: it records into `run_dir` (the master's run directory)."""
    import os

    from harness.record import RUN_DIR_ENV, resolve_run_dir

    out = run_dir.resolve() if run_dir else resolve_run_dir("load", Path("reports/out")).resolve()
    args = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker"]
    args += ["--master-host", master_host, "--master-port", str(master_port)]
    env = {**os.environ, **profile.to_env(), RUN_DIR_ENV: str(out)}
    log = out / "logs" / f"locust-worker-{os.getpid()}.log"
    typer.echo(f"locust worker joining {master_host}:{master_port}; recording into {out}")
    return run_child(args, env, log, None)


def run_child(args: list[str], env: dict[str, str], log_path: Path, timeout_s: float | None) -> int:
    """A child in its own process group that dies with us; on timeout or interrupt, its group is killed."""
    import signal

    from harness.stack.processes import popen_child, signal_group

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        child = popen_child(args, log=log, env=env)
        try:
            return child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            typer.echo(f"locust ran past {timeout_s:.0f}s: killed (see {log_path})", err=True)
            return -9
        finally:
            if child.poll() is None:
                signal_group(child.pid, signal.SIGTERM)
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    signal_group(child.pid, signal.SIGKILL)
                    child.wait()


def run_histories(run_dir: Path) -> list[History]:
    """Every history of the run: each Locust process's (`histories/locust-*.jsonl`), and when a
    drill ran, the nemesis's and its client's."""
    from harness.record import RunReader

    return [history for _, history in RunReader(run_dir).histories()]


def check_run(run: LoadRun, endpoints: StackEndpoints) -> tuple[History, LiveCheck]:
    """The invariant check over the merged histories of the run, after the drain.

    Tasks may be left WAITING_FOR_EVENT: a user stopped by the end of the run before it sent
    the event leaves its task waiting, which the contract allows."""
    from harness.checker import Expectations
    from harness.live_check import check_deployment
    from harness.load.merge import merge_histories
    from harness.stack.readiness import run_sync

    merged = merge_histories(run_histories(run.writer.root))
    check = check_deployment(endpoints, merged, Expectations(waiting=None), settle_timeout_s=run.drain_s)
    return merged, run_sync(check)


def worker_rss_mb(stack: StackProvider) -> float | None:
    """Resident memory of the embedded stack's workers, in MB; None for a target deployment."""
    import psutil

    from harness.stack.services import ServiceStack

    if not isinstance(stack, ServiceStack) or not stack.workers:
        return None
    total = 0
    for service in stack.workers.values():
        with contextlib.suppress(psutil.Error, TypeError):
            total += psutil.Process(service.process.pid).memory_info().rss
    return total / 2**20


def _growth(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


# --- the verdict ----------------------------------------------------------------------------------


def judge(run: LoadRun, merged: History, live: LiveCheck, locust_exit: int, rss_growth: float | None) -> bool:
    """SLOs and invariants into checks.jsonl, results.json and the report; prints the table."""
    from harness.load.measure import measure
    from harness.load.slo import evaluate, slo_records
    from harness.record import RunReader
    from harness.record.records import RunResults, SettleRecord, VerdictRecord

    samples = RunReader(run.writer.root).samples()
    metrics = measure(merged, live.settled.snapshot.tasks, samples, rss_growth)
    slos = evaluate(run.thresholds, metrics)
    run.writer.check("load", "load", live.verdict, settled=live.settled)
    reasons = run.problems + failure_reasons(slos, live, locust_exit, len(merged))
    results = RunResults(
        kind="load",
        passed=not reasons,
        reasons=tuple(reasons),
        verdict=VerdictRecord.of(live.verdict),
        checked=1,
        settle=SettleRecord.of(live.settled),
        target=str(run.target) if run.target else None,
        timings=run.timings,
        slos=slo_records(slos),
        metrics=dict(metrics),
    )
    run.writer.results(results)
    report = _timed(run, "report_s", lambda: _report(run.writer.root))
    run.writer.results(results.model_copy(update={"report": report, "timings": run.timings}))
    print_summary(run, metrics, slos, live, reasons, report)
    return not reasons


def failure_reasons(slos: Sequence[SloResult], live: LiveCheck, locust_exit: int, ops: int) -> list[str]:
    """Why the run failed, one line per SLO or invariant (or Locust itself); empty when it passed."""
    reasons = [result.line for result in slos if result.status != "passed"]
    for result in live.verdict.results:
        if result.status != "held":
            reasons.append(f"invariant {result.number} ({result.name}) {result.status}")
    if locust_exit != 0:
        reasons.append(f"locust exited {locust_exit} (see logs/locust.log)")
    if ops == 0:
        reasons.append("no request was recorded: Locust sent nothing (see logs/locust.log)")
    return reasons


def _report(run_dir: Path) -> str | None:
    from rich.console import Console

    from harness.commands.gate import build_report

    return build_report(run_dir, Console(stderr=True))


def print_summary(
    run: LoadRun,
    metrics: Mapping[str, float | None],
    slos: Sequence[SloResult],
    live: LiveCheck,
    reasons: Sequence[str],
    report: str | None,
) -> None:
    from rich.console import Console
    from rich.table import Table

    from harness.verdict import print_verdict

    console = Console()
    table = Table(title=f"load {run.profile.name}: SLOs")
    for column in ("SLO", "measured", "status"):
        table.add_column(column)
    for result in slos:
        measured = "not measured" if result.value is None else f"{result.value:.4g}"
        colour = "green" if result.status == "passed" else "bold red"
        table.add_row(str(result.threshold), measured, f"[{colour}]{result.status.upper()}[/]")
    console.print(table)
    console.print(metrics_line(metrics))
    print_verdict(live.verdict)
    for reason in reasons:
        console.print(f"[red]- {reason}[/]")
    root = run.writer.root
    console.print(f"record {root}  report {report or '(none)'}  locust {root / 'locust.html'}")
    console.print(f"load: {'PASS' if not reasons else 'FAIL'}")


def metrics_line(metrics: Mapping[str, float | None]) -> str:
    def show(key: str, unit: str = "") -> str:
        value = metrics.get(key)
        return "-" if value is None else f"{value:.4g}{unit}"

    return (
        f"rate {show('throughput_min_per_s', '/s')}  submit p50 {show('submit_p50_ms', 'ms')} "
        f"p95 {show('submit_p95_ms', 'ms')} p99 {show('submit_p99_ms', 'ms')}  "
        f"submit->terminal p95 {show('complete_p95_s', 's')}  queue max {show('queue_depth_max')}  "
        f"accepted {show('accepted')} completed {show('completed')} in {show('window_s', 's')}"
    )
