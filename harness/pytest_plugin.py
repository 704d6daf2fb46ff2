"""pytest fixtures for suites that need the stack: `stack`, `endpoints`, `clean_state`, plus the
per-test `history` and `invariants` (Jepsen's check after every test), and the Allure hook.

Everything lands in the run record: each test's history, the snapshot and verdict of its check,
and the samples the `Sampler` takes every second while the session's stack runs.

Loaded for every run (`-p harness.pytest_plugin`), so nothing here may start a server unless
a test asks for one of these fixtures: unit tests run with no servers at all.
With HARNESS_TARGET set to a target TOML file, the suites drive that deployment instead;
with HARNESS_PROVIDER=docker the embedded stack's RabbitMQ and PostgreSQL run in containers.
With HARNESS_RUN_DIR set (by `harness gate`), every file goes into that run directory
(see `harness.record.layout`) instead of a new `reports/out/<ts>-pytest/`.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from harness.checker import Expectations
from harness.history import History
from harness.live_check import DEFAULT_SETTLE_S, check_deployment
from harness.observe.sampler import Sampler
from harness.record import RUN_DIR_ENV, SUITE_ENV, RunWriter, resolve_run_dir
from harness.stack.base import StackEndpoints, StackProvider
from harness.stack.factory import DEFAULT_PROVIDER, PROVIDER_ENV, make_embedded
from harness.stack.local import install_cleanup_handlers
from harness.stack.readiness import run_sync
from harness.stack.reset import reset_service_state
from harness.stack.target import TargetStack
from harness.verdict import verdict_text

SESSION_ENV = {
    "RETRY_BASE_MS": "200",
    "JOB_TIMEOUT_MS": "30000",
    "SHUTDOWN_GRACE_MS": "5000",
    "ALLOW_LOCAL_REPOS": "1",
    "MAX_RETRIES": "3",
}
LEAVES_WAITING = "leaves_waiting"
_LOG_DIR = pytest.StashKey[Path]()
_HISTORY_PATH = pytest.StashKey[Path]()
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
_ATTACHED = pytest.StashKey[bool]()


def suite_name() -> str:
    return os.environ.get(SUITE_ENV) or "pytest"


@pytest.fixture(scope="session")
def run_dir(pytestconfig: pytest.Config) -> Path:
    """HARNESS_RUN_DIR (the gate's run), else reports/out/<timestamp>-pytest with `latest` at it."""
    return resolve_run_dir("pytest", pytestconfig.rootpath / "reports" / "out")


@pytest.fixture(scope="session")
def run_writer(run_dir: Path) -> RunWriter:
    return RunWriter(run_dir)


def unique_dir(parent: Path, name: str) -> Path:
    """`parent/name`, or `name-2`, `name-3`... when a previous session of the run used it."""
    candidate, n = parent / name, 1
    while candidate.exists():
        n += 1
        candidate = parent / f"{name}-{n}"
    candidate.mkdir(parents=True)
    return candidate


@pytest.fixture(scope="session")
def stack_run_dir(run_dir: Path) -> Path:
    """Where the embedded stack keeps its logs and target file: the run directory itself, or,
    inside a gate's run shared by several suites, `<run>/stacks/<suite>` so no two stacks mix."""
    if os.environ.get(RUN_DIR_ENV):
        return unique_dir(run_dir / "stacks", suite_name())
    return run_dir


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[StackProvider]:
    """One deployment for the whole session: HARNESS_TARGET's, or an embedded stack
    (a `LocalStack`, or a `DockerStack` with HARNESS_PROVIDER=docker).

    A LocalStack is a `LocalStack` (with process handles for fault injection); a target is a
    `TargetStack` (endpoints only). The embedded stack is stopped at session end.
    """
    target = os.environ.get("HARNESS_TARGET")
    provider: StackProvider
    if target:
        provider = TargetStack(Path(target))
    else:
        install_cleanup_handlers()
        run_dir: Path = request.getfixturevalue("stack_run_dir")
        name = os.environ.get(PROVIDER_ENV) or DEFAULT_PROVIDER
        embedded = make_embedded(
            name, run_dir=run_dir, workers=2, env=SESSION_ENV, show_progress=False, own_thread=True
        )
        request.config.stash[_LOG_DIR] = embedded.log_dir
        provider = embedded
    provider.start()
    writer: RunWriter = request.getfixturevalue("run_writer")
    sampler = Sampler(provider.endpoints, writer.sample, suite=suite_name()).start()
    try:
        yield provider
    finally:
        sampler.stop()
        provider.stop()


@pytest.fixture(scope="session")
def endpoints(stack: StackProvider) -> StackEndpoints:
    return stack.endpoints


@pytest.fixture
def clean_state(endpoints: StackEndpoints) -> StackEndpoints:
    """Start a test from an empty service state: tables truncated, `ast.*` queues purged.

    A target deployment must consent (`[harness] reset_allowed = true` in its file): these suites
    wipe its data, which must never happen to a deployment someone cares about by accident.
    """
    ensure_reset_allowed(endpoints)
    run_sync(reset_service_state(endpoints), own_thread=True)
    return endpoints


def ensure_reset_allowed(endpoints: StackEndpoints) -> None:
    if not endpoints.reset_allowed:
        pytest.fail(
            f"the target {endpoints.target_file} does not allow the suites to wipe its tasks and queues; "
            "if it is a throwaway deployment, add `[harness]` with `reset_allowed = true` to it",
            pytrace=False,
        )


# --- the history of one test and the invariants after it ----------------------------------------


@pytest.fixture
def history(request: pytest.FixtureRequest, run_writer: RunWriter) -> Iterator[History]:
    """This test's History, mirrored to `<run>/histories/<test>.jsonl` (fresh for every run of it)."""
    recorded = run_writer.history(request.node.nodeid)
    if recorded.path is not None:
        request.node.stash[_HISTORY_PATH] = recorded.path
    try:
        yield recorded
    finally:
        recorded.close()


def _expectations(item: pytest.Item) -> Expectations:
    """No task may be left waiting for an event unless the test says so with `leaves_waiting`."""
    if item.get_closest_marker(LEAVES_WAITING) is not None:
        return Expectations(waiting=None)
    return Expectations(waiting=frozenset())


def _test_ran(item: pytest.Item) -> bool:
    """The body ran (passed or failed): a skipped test, or one whose setup failed, left nothing to judge."""
    call = item.stash.get(_REPORTS, {}).get("call")
    return call is not None and not call.skipped


@pytest.fixture
def invariants(
    request: pytest.FixtureRequest, endpoints: StackEndpoints, history: History, run_writer: RunWriter
) -> Iterator[None]:
    """After the test body, and after every fixture the test asked for has been torn down (paused
    workers resumed), let the system settle and check the invariants over this test's history.

    The verdict goes to `<run>/checks.jsonl` and the snapshot it judged to `<run>/snapshots/`; an
    invariant not held fails the test at teardown with the verdict table, the taskIds and the
    evidence. Use it autouse in suites that drive the
    service through the `history`; not in suites that plant violations on purpose.
    """
    yield
    item = request.node
    if not _test_ran(item):
        return
    live = run_sync(
        check_deployment(endpoints, history, _expectations(item), settle_timeout_s=DEFAULT_SETTLE_S),
        own_thread=True,
    )
    run_writer.check(item.nodeid, suite_name(), live.verdict, settled=live.settled, history=history.path)
    if live.verdict.valid != "held":
        pytest.fail(
            f"invariants {live.verdict.valid.upper()} after {item.nodeid}\n{verdict_text(live.verdict)}",
            pytrace=False,
        )


# --- Allure: the history and the service logs of a failing test ---------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keeps each phase's report (the `invariants` fixture asks whether the body ran) and, once per
    failing test, attaches its history and the tail of every service log to the Allure result."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    if report.failed and not item.stash.get(_ATTACHED, False) and _allure_active(item.config):
        item.stash[_ATTACHED] = True
        _attach_evidence(item)
    return report


def _allure_active(config: pytest.Config) -> bool:
    return config.pluginmanager.get_plugin("allure_listener") is not None


def _attach_evidence(item: pytest.Item) -> None:
    import allure

    history_file = item.stash.get(_HISTORY_PATH, None)
    if history_file is not None and history_file.exists():
        allure.attach.file(  # type: ignore[no-untyped-call]  # allure-python ships no annotations here
            str(history_file),
            name="history.jsonl",
            attachment_type=allure.attachment_type.TEXT,
            extension="jsonl",
        )
    log_dir = item.config.stash.get(_LOG_DIR, None)
    for log in sorted(log_dir.glob("*.log")) if log_dir is not None else ():
        allure.attach(tail(log), name=f"{log.name} (tail)", attachment_type=allure.attachment_type.TEXT)


def tail(path: Path, max_bytes: int = 32_768) -> str:
    """The last `max_bytes` of a log, from a line start: what a failing test's report attaches."""
    with path.open("rb") as log:
        log.seek(0, os.SEEK_END)
        size = log.tell()
        log.seek(max(0, size - max_bytes))
        data = log.read()
    if size > max_bytes and b"\n" in data:
        data = data.split(b"\n", 1)[1]
    return data.decode("utf-8", "replace")
