"""Shallow clones of real local repositories: refs, limits, classified errors, no leftovers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scenarios.fixtures.repos import SampleRepo, build_sample_repo
from service.errors import JobError, RetryableJobError, TerminalJobError
from service.worker.jobs.git_clone import (
    CLONE_PREFIX,
    CloneLimits,
    cleanup_stale_clones,
    cloned_repository,
    git_clone_arguments,
    git_environment,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleRepo:
    return build_sample_repo(tmp_path_factory.mktemp("sample") / "repo")


def _leftovers(temp_dir: Path) -> list[str]:
    return sorted(p.name for p in temp_dir.iterdir()) if temp_dir.exists() else []


async def _clone_files(url: str, ref: str | None, temp_dir: Path) -> tuple[str, list[str]]:
    async with cloned_repository(url, ref, temp_dir, allow_local=True) as checkout:
        assert checkout.path.parent == temp_dir
        names = sorted(
            p.relative_to(checkout.path).as_posix()
            for p in checkout.path.rglob("*.*")
            if ".git" not in p.parts
        )
        return checkout.commit_sha, names


@pytest.mark.parametrize(
    ("ref", "commit", "has_extra", "has_cli"),
    [
        (None, "main", False, True),
        ("main", "main", False, True),
        ("v1", "initial", False, False),
        ("feature", "feature", True, True),
    ],
)
async def test_clone_of_a_ref_checks_out_that_commit(
    sample: SampleRepo, tmp_path: Path, ref: str | None, commit: str, has_extra: bool, has_cli: bool
) -> None:
    sha, names = await _clone_files(sample.url, ref, tmp_path)
    assert sha == sample.commits[commit]
    assert ("web/extra.ts" in names) is has_extra
    assert ("app/cli.py" in names) is has_cli
    assert _leftovers(tmp_path) == []


async def test_clone_by_commit_sha_and_by_plain_path(sample: SampleRepo, tmp_path: Path) -> None:
    sha, names = await _clone_files(sample.url, sample.commits["second"], tmp_path)
    assert sha == sample.commits["second"]
    assert "app/cli.py" in names
    sha, _ = await _clone_files(str(sample.path), None, tmp_path)
    assert sha == sample.commits["main"]
    assert _leftovers(tmp_path) == []


async def test_clone_is_shallow(sample: SampleRepo, tmp_path: Path) -> None:
    async with cloned_repository(sample.url, None, tmp_path, allow_local=True) as checkout:
        count = subprocess.run(
            ["git", "-C", str(checkout.path), "rev-list", "--count", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    assert count == "1"


@pytest.mark.parametrize("ref", ["does-not-exist", "v9", "0" * 40])
async def test_missing_ref_fails_terminally_and_leaves_nothing(
    sample: SampleRepo, tmp_path: Path, ref: str
) -> None:
    with pytest.raises(TerminalJobError) as caught:
        await _clone_files(sample.url, ref, tmp_path)
    assert caught.value.code == "BAD_REF"
    assert _leftovers(tmp_path) == []


async def test_missing_repository_fails_terminally(tmp_path: Path) -> None:
    with pytest.raises(TerminalJobError) as caught:
        await _clone_files(f"file://{tmp_path}/nothing-here", None, tmp_path / "clones")
    assert caught.value.code == "REPOSITORY_NOT_FOUND"
    assert _leftovers(tmp_path / "clones") == []


async def test_unreachable_host_is_retryable_and_never_shows_credentials(tmp_path: Path) -> None:
    url = "https://user:s3cr3t-token@127.0.0.1:9/org/repo.git"
    with pytest.raises(RetryableJobError) as caught:
        await _clone_files(url, None, tmp_path)
    assert caught.value.code == "NETWORK"
    assert "s3cr3t-token" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    ["ext::sh -c touch% {marker}", "-uhelp", "--upload-pack=touch {marker}", "file://{repo}"],
)
async def test_unsafe_urls_are_refused_before_git_runs(sample: SampleRepo, tmp_path: Path, url: str) -> None:
    marker = tmp_path / "pwned"
    target = url.format(marker=marker, repo=sample.path)
    with pytest.raises(TerminalJobError) as caught:
        async with cloned_repository(target, None, tmp_path / "clones", allow_local=False):
            pass
    assert caught.value.code == "UNSAFE_URL"
    assert not marker.exists()
    assert _leftovers(tmp_path / "clones") == []


@pytest.mark.parametrize("ref", ["-uhelp", "--upload-pack=touch /tmp/x", "a..b"])
async def test_unsafe_refs_are_refused(sample: SampleRepo, tmp_path: Path, ref: str) -> None:
    with pytest.raises(TerminalJobError, match="ref"):
        await _clone_files(sample.url, ref, tmp_path)


def test_git_itself_refuses_ext_and_file_transports(sample: SampleRepo, tmp_path: Path) -> None:
    """Defence in depth: were the URL policy bypassed, the environment still stops git."""
    marker = tmp_path / "pwned"
    for url, allow in ((f"ext::sh -c touch% {marker}", True), (sample.url, False)):
        args = git_clone_arguments(url, None, tmp_path / f"dest-{allow}", allow_local=allow)
        done = subprocess.run(
            ["git", *args],
            env=git_environment(allow_local=allow),
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode != 0
        assert "not allowed" in done.stderr
    assert not marker.exists()


async def test_time_limit_is_retryable(sample: SampleRepo, tmp_path: Path) -> None:
    with pytest.raises(RetryableJobError) as caught:
        async with cloned_repository(
            sample.url, None, tmp_path, limits=CloneLimits(timeout_seconds=0.0), allow_local=True
        ):
            pass
    assert caught.value.code == "CLONE_TIMEOUT"
    assert _leftovers(tmp_path) == []


async def test_size_limit_is_terminal(sample: SampleRepo, tmp_path: Path) -> None:
    with pytest.raises(TerminalJobError) as caught:
        async with cloned_repository(
            sample.url, None, tmp_path, limits=CloneLimits(max_bytes=1000), allow_local=True
        ):
            pass
    assert caught.value.code == "REPOSITORY_TOO_LARGE"
    assert _leftovers(tmp_path) == []


async def test_clone_dir_is_removed_when_the_body_fails(sample: SampleRepo, tmp_path: Path) -> None:
    with pytest.raises(JobError, match="boom"):
        async with cloned_repository(sample.url, None, tmp_path, allow_local=True):
            raise JobError("boom")
    assert _leftovers(tmp_path) == []


async def test_cleanup_keeps_live_clones_and_removes_dead_ones(sample: SampleRepo, tmp_path: Path) -> None:
    dead = _clone_dir_of_killed_process(tmp_path)
    orphan_lock = tmp_path / f".{CLONE_PREFIX}tmpfile"
    orphan_lock.write_text("")
    unrelated = tmp_path / "keep-me"
    unrelated.mkdir()
    async with cloned_repository(sample.url, None, tmp_path, allow_local=True) as live:
        removed = cleanup_stale_clones(tmp_path)
        assert live.path.is_dir()
        assert (live.path / "app").is_dir()
    assert sorted(removed) == sorted([dead, orphan_lock])
    assert _leftovers(tmp_path) == ["keep-me"]


def test_cleanup_of_a_missing_directory_is_a_no_op(tmp_path: Path) -> None:
    assert cleanup_stale_clones(tmp_path / "absent") == []


def _clone_dir_of_killed_process(temp_dir: Path) -> Path:
    """A child creates a clone workspace, fills it, then dies by SIGKILL, as a crashed worker would."""
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from service.worker.jobs.git_clone import _Workspace
        workspace = _Workspace.create(Path({str(temp_dir)!r}))
        (workspace.path / "file.txt").write_text("partial clone")
        print(workspace.path, flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert child.stdout is not None
        path = Path(child.stdout.readline().strip())
        assert cleanup_stale_clones(temp_dir) == []
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert path.is_dir()
    return path
