"""The two real jobs against a fake TaskContext: phases, results, errors, secrets, cancel."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from scenarios.fixtures.repos import SampleRepo, build_sample_repo
from service.errors import RetryableJobError, TaskCancelled, TerminalJobError
from service.graph.store import ArtifactStore
from service.worker.context import TaskContext
from service.worker.jobs.impact import initialize_impact_analysis
from service.worker.jobs.repository import initialize_repository

pytestmark = pytest.mark.unit

SECRET = "s3cr3t-t0ken-value"


@dataclass
class FakeContext:
    """Implements the TaskContext protocol in memory; records every update, can cancel on one."""

    payload: dict[str, Any]
    temp_dir: Path
    artifacts_dir: Path
    task_type: str = "initialize_repository"
    task_id: UUID = field(default_factory=uuid4)
    attempt: int = 1
    retry_count: int = 0
    resume_data: dict[str, Any] | None = None
    results: dict[UUID, tuple[str, dict[str, Any] | None]] = field(default_factory=dict)
    updates: list[tuple[int | None, str | None]] = field(default_factory=list)
    cancel_on_state: str | None = None

    async def update(self, *, progress: int | None = None, state: str | None = None) -> None:
        self.updates.append((progress, state))
        if self.cancel_on_state is not None and state is not None and state.startswith(self.cancel_on_state):
            raise TaskCancelled(str(self.task_id))

    async def fetch_result(self, task_id: UUID) -> tuple[str, dict[str, Any] | None] | None:
        return self.results.get(task_id)


@pytest.fixture(autouse=True)
def _local_repos(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOW_LOCAL_REPOS", "1")


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleRepo:
    return build_sample_repo(tmp_path_factory.mktemp("sample") / "repo")


def _context(tmp_path: Path, payload: dict[str, Any], **extra: Any) -> FakeContext:
    return FakeContext(
        payload=payload, temp_dir=tmp_path / "tmp", artifacts_dir=tmp_path / "artifacts", **extra
    )


def _leftovers(ctx: FakeContext) -> list[str]:
    return sorted(p.name for p in ctx.temp_dir.iterdir()) if ctx.temp_dir.exists() else []


def test_fake_context_satisfies_the_protocol(tmp_path: Path) -> None:
    ctx: TaskContext = _context(tmp_path, {})
    assert ctx.attempt == 1


async def test_repository_job_reports_phases_and_returns_the_artifact(
    sample: SampleRepo, tmp_path: Path
) -> None:
    ctx = _context(tmp_path, {"repoUrl": sample.url})
    result = await initialize_repository(ctx)
    assert [state for _, state in ctx.updates] == [
        "cloning",
        "parsing 0/9 files",
        "parsing 9/9 files",
        "linking",
        "storing",
    ]
    progress = [value for value, _ in ctx.updates if value is not None]
    assert progress == sorted(progress)
    assert result["commitSha"] == sample.commits["main"]
    assert result["repoUrl"] == sample.url
    assert result["counts"] == {
        "files": 8,
        "symbols": 17,
        "edges": 21,
        "fileEdges": 6,
        "symbolEdges": 15,
        "skipped": 1,
        "languages": {"javascript": 1, "python": 5, "typescript": 2},
    }
    assert result["skippedFiles"] == [
        {"path": "broken.py", "reason": "python syntax error at line 1: invalid syntax"}
    ]
    graph = ArtifactStore(ctx.artifacts_dir).read_graph(result["artifact"]["sha256"])
    assert graph.counts() == result["counts"]
    assert Path(result["artifact"]["path"]).is_file()
    assert _leftovers(ctx) == []


async def test_repository_job_at_a_tag(sample: SampleRepo, tmp_path: Path) -> None:
    ctx = _context(tmp_path, {"repoUrl": sample.url, "ref": "v1"})
    result = await initialize_repository(ctx)
    assert result["commitSha"] == sample.commits["initial"]
    assert result["ref"] == "v1"
    assert result["counts"]["files"] == 5
    assert result["skippedFiles"] == []


async def test_same_commit_twice_gives_the_same_artifact(sample: SampleRepo, tmp_path: Path) -> None:
    first = await initialize_repository(_context(tmp_path, {"repoUrl": sample.url}))
    second = await initialize_repository(_context(tmp_path, {"repoUrl": str(sample.path)}))
    assert first["artifact"] == second["artifact"]


async def test_bad_ref_fails_terminally(sample: SampleRepo, tmp_path: Path) -> None:
    ctx = _context(tmp_path, {"repoUrl": sample.url, "ref": "no-such-branch"})
    with pytest.raises(TerminalJobError) as caught:
        await initialize_repository(ctx)
    assert caught.value.code == "BAD_REF"
    assert _leftovers(ctx) == []
    assert not ctx.artifacts_dir.exists()


@pytest.mark.parametrize(
    "url",
    ["ext::sh -c touch% {marker}", "-uhelp", "--upload-pack=touch {marker}", "file://{repo}", "{repo}"],
)
async def test_unsafe_urls_fail_terminally(
    sample: SampleRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.delenv("ALLOW_LOCAL_REPOS")
    marker = tmp_path / "pwned"
    ctx = _context(tmp_path, {"repoUrl": url.format(marker=marker, repo=sample.path)})
    with pytest.raises(TerminalJobError) as caught:
        await initialize_repository(ctx)
    assert caught.value.code == "INVALID_PAYLOAD"
    assert not marker.exists()
    assert ctx.updates == []


@pytest.mark.parametrize(
    ("url", "error", "allowed"),
    [
        (f"https://user:{SECRET}@127.0.0.1:9/org/repo.git", RetryableJobError, "127.0.0.1"),
        (f"https://{SECRET}@127.0.0.1:9/org/repo.git", RetryableJobError, "127.0.0.1"),
        (f"https://user:{SECRET}@127.0.0.1:9/org/repo.git", TerminalJobError, ""),
        (f"https://user:{SECRET}@-bad-host/org/repo.git", TerminalJobError, ""),
        (f"http://user:{SECRET}@example.com/org/repo.git", TerminalJobError, ""),
        (f"https://example.invalid/org/repo.git#{SECRET}", TerminalJobError, ""),
    ],
)
async def test_credentials_never_show(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    error: type[Exception],
    allowed: str,
) -> None:
    """With 127.0.0.1 on the allow-list git really tries (and fails on the network), else it is refused."""
    monkeypatch.setenv("REPO_ALLOWED_HOSTS", allowed)
    caplog.set_level(logging.DEBUG)
    ctx = _context(tmp_path, {"repoUrl": url})
    with pytest.raises(error) as caught:
        await initialize_repository(ctx)
    shown = [str(caught.value), repr(caught.value.args), repr(ctx.updates)]
    shown += [record.getMessage() for record in caplog.records]
    shown += [repr(record.__dict__) for record in caplog.records]
    assert all(SECRET not in text for text in shown)
    assert _leftovers(ctx) == []


async def test_credentialed_url_is_logged_as_scheme_and_host(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with pytest.raises(RetryableJobError):
        await initialize_repository(
            _context(tmp_path, {"repoUrl": f"https://user:{SECRET}@127.0.0.1:9/private-x.git"}),
            allowed_hosts=frozenset({"127.0.0.1"}),
        )
    messages = [record.getMessage() for record in caplog.records]
    assert any("cloning https://127.0.0.1:9 " in message for message in messages)
    assert all("private-x" not in message for message in messages)
    ours = [record for record in caplog.records if record.name.startswith("service")]
    assert ours
    assert all(getattr(record, "taskId", None) for record in ours)


@pytest.mark.parametrize("state", ["cloning", "parsing 0/", "linking", "storing"])
async def test_cancel_at_any_phase_stops_and_leaves_nothing(
    sample: SampleRepo, tmp_path: Path, state: str
) -> None:
    ctx = _context(tmp_path, {"repoUrl": sample.url}, cancel_on_state=state)
    with pytest.raises(TaskCancelled):
        await initialize_repository(ctx)
    assert _leftovers(ctx) == []
    assert not ctx.artifacts_dir.exists()


async def test_impact_job_on_a_completed_repository_task(sample: SampleRepo, tmp_path: Path) -> None:
    repository = await initialize_repository(_context(tmp_path, {"repoUrl": sample.url}))
    repository_task = uuid4()
    ctx = _context(
        tmp_path,
        {"repositoryTaskId": str(repository_task), "changedFiles": ["web/lib/math.ts", "gone.ts"]},
        task_type="initialize_impact_analysis",
        results={repository_task: ("COMPLETED", repository)},
    )
    result = await initialize_impact_analysis(ctx)
    assert result["repositoryTaskId"] == str(repository_task)
    assert result["commitSha"] == sample.commits["main"]
    assert result["artifactSha256"] == repository["artifact"]["sha256"]
    assert result["unknownFiles"] == ["gone.ts"]
    assert [(f["file"], f["distance"]) for f in result["files"]] == [
        ("web/lib/math.ts", 0),
        ("web/app.ts", 1),
        ("web/main.js", 2),
    ]
    assert [(s["id"], s["distance"]) for s in result["symbols"]] == [
        ("web/lib/math.ts::Calc", 0),
        ("web/lib/math.ts::Calc.total", 0),
        ("web/lib/math.ts::ZERO", 0),
        ("web/lib/math.ts::add", 0),
        ("web/app.ts::run", 1),
        ("web/main.js::start", 2),
    ]
    assert [state for _, state in ctx.updates] == ["loading graph", "analysing"]


@pytest.mark.parametrize(
    ("found", "code", "message"),
    [
        (None, "REPOSITORY_TASK_UNKNOWN", "is unknown"),
        (("FAILED", None), "REPOSITORY_TASK_NOT_COMPLETED", "is FAILED, not COMPLETED"),
        (("IN_PROGRESS", None), "REPOSITORY_TASK_NOT_COMPLETED", "is IN_PROGRESS, not COMPLETED"),
        (("COMPLETED", {"counts": {}}), "ARTIFACT_MISSING", "has no graph artifact"),
        (("COMPLETED", {"artifact": {"sha256": "0" * 64}}), "ARTIFACT_MISSING", "not in the store"),
    ],
)
async def test_impact_job_fails_terminally_without_a_usable_graph(
    tmp_path: Path, found: tuple[str, dict[str, Any] | None] | None, code: str, message: str
) -> None:
    repository_task = uuid4()
    results = {} if found is None else {repository_task: found}
    ctx = _context(
        tmp_path,
        {"repositoryTaskId": str(repository_task), "changedFiles": ["a.py"]},
        task_type="initialize_impact_analysis",
        results=results,
    )
    with pytest.raises(TerminalJobError, match=message) as caught:
        await initialize_impact_analysis(ctx)
    assert caught.value.code == code


async def test_impact_job_refuses_a_malformed_payload(tmp_path: Path) -> None:
    ctx = _context(tmp_path, {"repositoryTaskId": "not-a-uuid", "changedFiles": []})
    with pytest.raises(TerminalJobError) as caught:
        await initialize_impact_analysis(ctx)
    assert caught.value.code == "INVALID_PAYLOAD"


# ---- issue 9: private paths, internal hosts, local paths that are no repository -----------------


def _everything_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records] + [
        repr(record.__dict__) for record in caplog.records
    ]


async def test_a_local_repository_path_is_never_logged(
    sample: SampleRepo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for url in (str(sample.path), sample.url):
        await initialize_repository(_context(tmp_path, {"repoUrl": url}))
    logged = _everything_logged(caplog)
    assert any("cloning local repository " in text for text in logged)
    assert all(str(sample.path) not in text for text in logged)


@pytest.mark.parametrize("url", ["/etc/passwd", "/etc", "{tmp}/private-missing", "file://{tmp}/private-missing"])
async def test_a_local_path_that_is_no_repository_fails_terminally_and_is_never_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, url: str
) -> None:
    caplog.set_level(logging.DEBUG)
    ctx = _context(tmp_path, {"repoUrl": url.format(tmp=tmp_path)})
    with pytest.raises(TerminalJobError) as caught:
        await initialize_repository(ctx)
    assert caught.value.code == "REPOSITORY_NOT_FOUND"
    shown = [str(caught.value), *_everything_logged(caplog)]
    assert all("passwd" not in text and "private-missing" not in text for text in shown)
    assert _leftovers(ctx) == []


async def test_an_internal_host_fails_terminally_and_is_never_connected_to(tmp_path: Path) -> None:
    accepted: list[int] = []

    async def count(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writer.close()

    server = await asyncio.start_server(count, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        for url in (f"https://127.0.0.1:{port}/org/x.git", f"ssh://git@localhost:{port}/org/x.git"):
            ctx = _context(tmp_path, {"repoUrl": url})
            with pytest.raises(TerminalJobError) as caught:
                await initialize_repository(ctx)
            assert caught.value.code == "HOST_NOT_ALLOWED"
            assert _leftovers(ctx) == []
        await asyncio.sleep(0.05)
    finally:
        server.close()
        await server.wait_closed()
    assert accepted == []
