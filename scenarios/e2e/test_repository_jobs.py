"""The two real jobs end to end through the API: graph, impact, refusals, secrets, a killed worker.

Test repositories are built with real git in pytest's tmp directories, which the stack's
workers (same user, same machine) read through `file://` URLs: the session stack runs with
ALLOW_LOCAL_REPOS=1. Expected numbers are the sample repository's graph, written out by hand in
the unit tests, and the generated repository's computed shape.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from harness.stack.local import LocalStack
from scenarios.e2e.helpers import dlq_task_ids, sql, submit, wait_terminal
from scenarios.fixtures.repos import (
    UTIL_CHANGE_FILES,
    UTIL_CHANGE_SYMBOLS,
    LargeRepo,
    SampleRepo,
    build_sample_repo,
    generate_large_repo,
    git,
)

pytestmark = pytest.mark.e2e

SECRET = "s3cr3t-token"
REPOSITORY = "initialize_repository"
IMPACT = "initialize_impact_analysis"
SAMPLE_COUNTS = {
    "files": 8,
    "symbols": 17,
    "edges": 21,
    "fileEdges": 6,
    "symbolEdges": 15,
    "skipped": 1,
    "languages": {"javascript": 1, "python": 5, "typescript": 2},
}
SAMPLE_STATES = ["cloning", "parsing 0/9 files", "parsing 9/9 files", "linking", "storing"]
LARGE_FILES = 1000
SAMPLE_PERIOD_S = 0.05


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleRepo:
    return build_sample_repo(tmp_path_factory.mktemp("sample") / "repo")


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> LargeRepo:
    return generate_large_repo(tmp_path_factory.mktemp("large") / "repo", files=LARGE_FILES)


def _submit_repository(api: httpx.Client, url: str, ref: str | None = None) -> str:
    payload = {"repoUrl": url} | ({"ref": ref} if ref is not None else {})
    return submit(api, payload, task_type=REPOSITORY)


def _events(api: httpx.Client, task_id: str) -> list[dict[str, Any]]:
    return list(api.get(f"/tasks/{task_id}/events").json()["items"])


def _completed(api: httpx.Client, task_id: str, timeout: float = 60.0) -> dict[str, Any]:
    task = wait_terminal(api, task_id, timeout=timeout)
    assert task["status"] == "COMPLETED", (task, _events(api, task_id))
    return task


def _failed(api: httpx.Client, task_id: str, timeout: float = 60.0) -> dict[str, Any]:
    task = wait_terminal(api, task_id, timeout=timeout)
    assert task["status"] == "FAILED", (task, _events(api, task_id))
    return task


def _wait_in_dlq(management_url: str, task_id: str, timeout: float = 15.0) -> None:
    """The message is rejected to the DLQ just after the FAILED row commits: allow a moment."""
    deadline = time.monotonic() + timeout
    while task_id not in dlq_task_ids(management_url):
        assert time.monotonic() < deadline, f"task {task_id} never reached ast.jobs.dlq"
        time.sleep(0.2)


def _clone_dirs(local_stack: LocalStack) -> list[str]:
    """Whatever is in the workers' TEMP_DIR: only clones (and their lock files) ever live there."""
    assert local_stack.tmp_dir is not None
    temp_dir = local_stack.tmp_dir / "service-tmp"
    return sorted(p.name for p in temp_dir.iterdir()) if temp_dir.is_dir() else []


# ---- initialize_repository ------------------------------------------------------------------


def test_repository_task_builds_the_sample_graph_and_stores_its_artifact(
    api: httpx.Client, sample: SampleRepo, local_stack: LocalStack
) -> None:
    task_id = _submit_repository(api, sample.url)

    result = _completed(api, task_id)["result"]

    assert result["commitSha"] == git(sample.path, "rev-parse", "main")
    assert result["repoUrl"] == sample.url
    assert result["counts"] == SAMPLE_COUNTS
    assert result["skippedFiles"] == [
        {"path": "broken.py", "reason": "python syntax error at line 1: invalid syntax"}
    ]
    artifact = Path(result["artifact"]["path"])
    assert local_stack.tmp_dir is not None
    assert artifact.is_relative_to(local_stack.tmp_dir / "artifacts")
    stored = gzip.decompress(artifact.read_bytes())
    assert hashlib.sha256(stored).hexdigest() == result["artifact"]["sha256"]
    assert len(stored) == result["artifact"]["size"]
    assert json.loads(stored)["files"]
    assert _clone_dirs(local_stack) == []


def test_repository_timeline_shows_each_phase_with_growing_progress(
    api: httpx.Client, sample: SampleRepo
) -> None:
    task_id = _submit_repository(api, sample.url)
    _completed(api, task_id)

    events = _events(api, task_id)
    reports = [e for e in events if e["kind"] == "progress"]
    assert [e["state"] for e in reports] == SAMPLE_STATES
    progress = [e["progress"] for e in reports]
    assert progress == sorted(set(progress))
    assert progress[0] > 0
    assert progress[-1] < 100
    assert [e["status"] for e in events if e["kind"] == "status"] == ["PENDING", "IN_PROGRESS", "COMPLETED"]


@pytest.mark.parametrize(("ref", "commit", "files"), [("v1", "initial", 5), ("feature", "feature", 9)])
def test_repository_task_at_a_tag_or_branch(
    api: httpx.Client, sample: SampleRepo, ref: str, commit: str, files: int
) -> None:
    task_id = _submit_repository(api, sample.url, ref)

    result = _completed(api, task_id)["result"]

    assert result["commitSha"] == sample.commits[commit] == git(sample.path, "rev-parse", ref)
    assert result["ref"] == ref
    assert result["counts"]["files"] == files


def test_a_ref_that_does_not_exist_fails_terminally(
    api: httpx.Client, sample: SampleRepo, management_url: str, local_stack: LocalStack
) -> None:
    task_id = _submit_repository(api, sample.url, "no-such-branch")

    task = _failed(api, task_id)

    assert task["error"]["code"] == "BAD_REF"
    assert task["retryCount"] == 0
    assert task["result"] is None
    _wait_in_dlq(management_url, task_id)
    assert _clone_dirs(local_stack) == []


# ---- initialize_impact_analysis -------------------------------------------------------------


def test_impact_of_a_change_is_exactly_what_it_reaches(api: httpx.Client, sample: SampleRepo) -> None:
    repository = _completed(api, _submit_repository(api, sample.url))
    payload = {"repositoryTaskId": repository["taskId"], "changedFiles": ["app/util.py", "gone.py"]}

    result = _completed(api, submit(api, payload, task_type=IMPACT))["result"]

    assert result["repositoryTaskId"] == repository["taskId"]
    assert result["commitSha"] == repository["result"]["commitSha"]
    assert result["artifactSha256"] == repository["result"]["artifact"]["sha256"]
    assert result["unknownFiles"] == ["gone.py"]
    assert [(f["file"], f["distance"]) for f in result["files"]] == UTIL_CHANGE_FILES
    assert [(s["id"], s["distance"]) for s in result["symbols"]] == UTIL_CHANGE_SYMBOLS
    main = next(s for s in result["symbols"] if s["id"] == "app/cli.py::main")
    assert main["path"] == [
        "app/util.py::Base",
        "app/models.py::User",
        "app/service.py::make_user",
        "app/cli.py::main",
    ]


def test_impact_on_an_unknown_repository_task_fails_terminally_into_the_dlq(
    api: httpx.Client, management_url: str
) -> None:
    payload = {"repositoryTaskId": str(uuid.uuid4()), "changedFiles": ["a.py"]}
    task_id = submit(api, payload, task_type=IMPACT)

    task = _failed(api, task_id)

    assert task["error"]["code"] == "REPOSITORY_TASK_UNKNOWN"
    assert task["retryCount"] == 0
    _wait_in_dlq(management_url, task_id)


def test_impact_on_a_failed_repository_task_fails_terminally(api: httpx.Client, sample: SampleRepo) -> None:
    repository = _failed(api, _submit_repository(api, sample.url, "no-such-branch"))
    payload = {"repositoryTaskId": repository["taskId"], "changedFiles": ["app/util.py"]}

    task = _failed(api, submit(api, payload, task_type=IMPACT))

    assert task["error"]["code"] == "REPOSITORY_TASK_NOT_COMPLETED"


# ---- what is refused, and what never shows ----------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"repoUrl": "ext::sh -c touch% /tmp/ast-pwned"},
        {"repoUrl": "-uhelp"},
        {"repoUrl": "--upload-pack=touch /tmp/ast-pwned"},
        {"repoUrl": "http://example.com/o/r.git"},
        {"repoUrl": "https://example.com/o/r.git", "ref": "--output=/tmp/ast-pwned"},
        {"repoUrl": "relative/path"},
    ],
)
def test_unsafe_repository_urls_are_refused_at_submit(api: httpx.Client, payload: dict[str, str]) -> None:
    response = api.post("/tasks", json={"type": REPOSITORY, "payload": payload})

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "INVALID_PAYLOAD"
    assert api.get("/tasks").json()["items"] == []


def test_a_plain_local_path_is_accepted_with_the_flag(api: httpx.Client, sample: SampleRepo) -> None:
    result = _completed(api, _submit_repository(api, str(sample.path)))["result"]

    assert result["commitSha"] == sample.commits["main"]


def test_credentials_in_a_url_are_never_stored_logged_or_returned(
    api: httpx.Client, dsn: str, local_stack: LocalStack
) -> None:
    url = f"https://alice:{SECRET}@127.0.0.1:9/x.git"
    accepted = api.post("/tasks", json={"type": REPOSITORY, "payload": {"repoUrl": url}})
    assert accepted.status_code == 202
    task_id = accepted.json()["taskId"]

    task = _failed(api, task_id)

    answers = [
        accepted.text,
        api.get(f"/tasks/{task_id}").text,
        api.get(f"/tasks/{task_id}/events").text,
        api.get("/tasks").text,
        api.get("/tasks", params={"status": "FAILED"}).text,
    ]
    assert all(SECRET not in answer for answer in answers)
    assert task["error"]["code"] == "HOST_NOT_ALLOWED"  # loopback is refused by the fetch policy
    rows = [
        str(row[0])
        for table in ("tasks", "task_events", "task_results", "outbox", "inbox")
        for row in sql(dsn, f"SELECT t::text FROM {table} t")
    ]
    assert any(task_id in row for row in rows)
    assert all(SECRET not in row for row in rows)
    stored = sql(dsn, "SELECT payload->>'repoUrl' AS url FROM tasks WHERE task_id = $1::uuid", task_id)
    assert stored[0]["url"] == "https://***@127.0.0.1:9/x.git"
    logs = {path.name: path.read_text(errors="replace") for path in local_stack.log_dir.glob("*.log")}
    assert any(task_id in text for text in logs.values()), "the task's log lines were read"
    assert [name for name, text in logs.items() if SECRET in text] == []


# ---- a worker killed mid-job, and what the worker costs -------------------------------------


def _worker_of(events: list[dict[str, Any]]) -> str:
    return str(next(e["workerId"] for e in reversed(events) if e["workerId"]))


def _wait_worker_back(local_stack: LocalStack, name: str, timeout: float = 60.0) -> None:
    service = local_stack.workers[name]
    assert service.ready_url is not None
    deadline = time.monotonic() + timeout
    while not (service.process.is_running and _answers(service.ready_url)):
        assert time.monotonic() < deadline, f"{name} did not come back after SIGKILL"
        time.sleep(0.2)


def _wait_mid_clone(api: httpx.Client, task_id: str, timeout: float = 60.0) -> None:
    """Cloning and parsing 1,000 files take well under a second here, so poll fast (20 ms)."""
    deadline = time.monotonic() + timeout
    while not str(api.get(f"/tasks/{task_id}").json()["state"]).startswith(("cloning", "parsing")):
        assert time.monotonic() < deadline, f"task {task_id} was never seen cloning or parsing"
        time.sleep(0.02)


def _wait_clone_dir(local_stack: LocalStack, timeout: float = 5.0) -> None:
    """`cloning` is reported just before the clone directory is made: allow that moment."""
    deadline = time.monotonic() + timeout
    while not _clone_dirs(local_stack):
        assert time.monotonic() < deadline, "no clone directory while the job clones or parses"
        time.sleep(0.02)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _assert_large_graph(result: dict[str, Any], large: LargeRepo) -> None:
    counts = result["counts"]
    assert counts["files"] == large.files
    assert counts["symbols"] == large.symbols
    assert counts["fileEdges"] == large.file_edges
    assert counts["symbolEdges"] == large.symbol_edges
    assert counts["skipped"] == 0


def test_worker_killed_mid_clone_still_completes_once_and_leaves_no_clone(
    api: httpx.Client, large: LargeRepo, local_stack: LocalStack, dsn: str
) -> None:
    task_id = _submit_repository(api, f"file://{large.path}")
    _wait_mid_clone(api, task_id)
    victim = _worker_of(_events(api, task_id))
    _wait_clone_dir(local_stack)

    local_stack.kill_worker(victim)

    result = _completed(api, task_id, timeout=120)["result"]
    _assert_large_graph(result, large)
    events = _events(api, task_id)
    assert [e["status"] for e in events if e["kind"] == "status"].count("IN_PROGRESS") == 2
    assert len(sql(dsn, "SELECT 1 FROM task_results WHERE task_id = $1::uuid", task_id)) == 1
    completions = "SELECT 1 FROM task_events WHERE task_id = $1::uuid AND status = 'COMPLETED'"
    assert len(sql(dsn, completions, task_id)) == 1
    _wait_worker_back(local_stack, victim)
    assert _clone_dirs(local_stack) == []


class RssSampler:
    """Samples the RSS of every worker process every 50 ms on a thread; keeps each one's peak."""

    def __init__(self, local_stack: LocalStack) -> None:
        self._processes = {
            name: psutil.Process(service.process.pid)
            for name, service in local_stack.workers.items()
            if service.process.pid is not None
        }
        self.peak_bytes = dict.fromkeys(self._processes, 0)
        self.peak_with_children_bytes = dict.fromkeys(self._processes, 0)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    @contextmanager
    def running(self) -> Iterator[RssSampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_PERIOD_S):
            self.samples += 1
            for name, process in self._processes.items():
                try:
                    rss = process.memory_info().rss
                    children = sum(_rss(child) for child in process.children(recursive=True))
                except psutil.Error:
                    continue
                self.peak_bytes[name] = max(self.peak_bytes[name], rss)
                self.peak_with_children_bytes[name] = max(self.peak_with_children_bytes[name], rss + children)


def _rss(process: psutil.Process) -> int:
    """A child (git) may exit between listing and reading: it then counts as nothing."""
    try:
        return int(process.memory_info().rss)
    except psutil.Error:
        return 0


def _seconds_between(events: list[dict[str, Any]], first: str, last: str) -> float:
    """Seconds from the event whose state starts with `first` to the last whose state starts with `last`."""
    start = next(e for e in events if str(e["state"]).startswith(first))
    end = next(e for e in reversed(events) if str(e["state"]).startswith(last))
    return (
        datetime.fromisoformat(end["createdAt"]) - datetime.fromisoformat(start["createdAt"])
    ).total_seconds()


@pytest.mark.benchmark
def test_worker_peak_memory_and_throughput_on_the_large_repository(
    api: httpx.Client, large: LargeRepo, local_stack: LocalStack, benchmark: BenchmarkFixture, run_dir: Path
) -> None:
    """Recorded, never asserted: the worker's peak RSS, and files/s and symbols/s by the job's own clock."""
    sampler = RssSampler(local_stack)
    task_ids: list[str] = []

    def run_job() -> dict[str, Any]:
        task_ids.append(_submit_repository(api, f"file://{large.path}"))
        return _completed(api, task_ids[-1], timeout=120)

    with sampler.running():
        task = benchmark.pedantic(run_job, rounds=1, iterations=1)

    _assert_large_graph(task["result"], large)
    events = _events(api, task_ids[-1])
    worker = _worker_of(events)
    parse_s = _seconds_between(events, "parsing 0/", f"parsing {large.files}/")
    job_s = _seconds_between(events, "started", "completed")
    phases = {
        "cloning": ("cloning", "parsing 0/"),
        "parsing": ("parsing 0/", "linking"),
        "linking": ("linking", "storing"),
        "storing": ("storing", "completed"),
    }
    figures = {
        "worker": worker,
        "files": large.files,
        "symbols": large.symbols,
        "peak_rss_mib": round(sampler.peak_bytes[worker] / 2**20, 1),
        "peak_rss_with_git_mib": round(sampler.peak_with_children_bytes[worker] / 2**20, 1),
        "rss_samples": sampler.samples,
        "phase_seconds": {name: round(_seconds_between(events, *span), 3) for name, span in phases.items()},
        "parse_seconds": round(parse_s, 3),
        "job_seconds": round(job_s, 3),
        "parse_files_per_second": round(large.files / parse_s, 1),
        "parse_symbols_per_second": round(large.symbols / parse_s, 1),
        "job_files_per_second": round(large.files / job_s, 1),
        "job_symbols_per_second": round(large.symbols / job_s, 1),
    }
    benchmark.extra_info.update(figures)
    out = run_dir / "benchmarks" / "worker-repository-job.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nworker repository job on {large.files} files: {json.dumps(figures)}")
    assert sampler.samples > 0
