"""Shallow clones of real local repositories: refs, limits, classified errors, no leftovers."""

from __future__ import annotations

import asyncio
import http.server
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from scenarios.fixtures.repos import SampleRepo, build_sample_repo
from service.errors import JobError, RetryableJobError, TerminalJobError
from service.worker.jobs.git_clone import (
    CLONE_PREFIX,
    CloneLimits,
    classify_git_failure,
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
        async with cloned_repository(
            url, None, tmp_path, allow_local=False, allowed_hosts=frozenset({"127.0.0.1"})
        ):
            pass
    assert caught.value.code == "NETWORK"
    assert "s3cr3t-token" not in str(caught.value)
    assert "https://127.0.0.1:9 " in str(caught.value)
    assert "org/repo" not in str(caught.value), "the message is logged: scheme and host only"


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


# ---- where a clone may connect (issue 9, defect 6) ----------------------------------------------


class _Listener:
    """A TCP listener on loopback that counts the connections it accepts (and closes them)."""

    def __init__(self) -> None:
        self.accepted = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> _Listener:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        writer.close()


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:{port}/org/repo.git",
        "https://localhost:{port}/org/repo.git",
        "https://user:s3cr3t-token@127.0.0.1:{port}/org/repo.git",
        "https://[::ffff:127.0.0.1]:{port}/org/repo.git",
        "https://2130706433:{port}/org/repo.git",
        "ssh://git@127.0.0.1:{port}/org/repo.git",
        "ssh://git@localhost:{port}/org/repo.git",
    ],
)
@pytest.mark.parametrize("allow_local", [False, True])
async def test_internal_hosts_are_refused_and_never_connected_to(
    tmp_path: Path, url: str, allow_local: bool
) -> None:
    async with _Listener() as listener:
        with pytest.raises(TerminalJobError) as caught:
            async with cloned_repository(
                url.format(port=listener.port), None, tmp_path, allow_local=allow_local
            ):
                pass
        await asyncio.sleep(0.05)
    assert listener.accepted == 0
    assert caught.value.code == "HOST_NOT_ALLOWED"
    assert "s3cr3t-token" not in str(caught.value)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data.git",
        "https://[fd00:ec2::254]/latest/meta-data.git",
        "https://10.0.0.1/org/repo.git",
        "https://192.168.1.1/org/repo.git",
        "https://0.0.0.0/org/repo.git",
        "git@127.0.0.1:org/repo.git",
    ],
)
async def test_metadata_private_and_unspecified_addresses_are_refused_before_git_runs(
    tmp_path: Path, url: str
) -> None:
    with pytest.raises(TerminalJobError) as caught:
        async with cloned_repository(url, None, tmp_path, allow_local=False):
            pass
    assert caught.value.code == "HOST_NOT_ALLOWED"


async def test_an_allow_listed_internal_host_is_cloned_as_named(tmp_path: Path) -> None:
    """REPO_ALLOWED_HOSTS lets an internal git server through: git really connects to it."""
    async with _Listener() as listener:
        with pytest.raises(RetryableJobError) as caught:
            async with cloned_repository(
                f"https://127.0.0.1:{listener.port}/org/repo.git",
                None,
                tmp_path,
                allow_local=False,
                allowed_hosts=frozenset({"127.0.0.1"}),
            ):
                pass
    assert listener.accepted >= 1
    assert caught.value.code == "NETWORK"


class _RedirectHandler(http.server.BaseHTTPRequestHandler):
    location = ""

    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        self.send_response(302)
        self.send_header("Location", self.location + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


async def test_git_never_follows_a_redirect(tmp_path: Path) -> None:
    """Defence in depth: a server git may reach cannot send it on to another (e.g. internal) one.

    Plain http stands in for https here (no certificate needed); the redirect rule is the same.
    """
    async with _Listener() as target:
        handler = type("Redirect", (_RedirectHandler,), {"location": f"http://127.0.0.1:{target.port}"})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            args = git_clone_arguments(
                f"http://127.0.0.1:{server.server_address[1]}/org/repo.git",
                None,
                tmp_path / "dest",
                allow_local=False,
            )
            env = {**git_environment(allow_local=False), "GIT_ALLOW_PROTOCOL": "http"}
            done = await asyncio.to_thread(
                subprocess.run,
                ["git", *args],
                env=env,
                capture_output=True,
                text=True,
                check=False,
                stdin=subprocess.DEVNULL,
                timeout=60,
            )
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
        await asyncio.sleep(0.05)
    assert done.returncode != 0
    assert target.accepted == 0


# ---- local repositories that cannot be cloned (issue 9, defect 7) -------------------------------


@pytest.mark.parametrize("kind", ["/etc/passwd", "file", "empty directory", "missing", "file url"])
async def test_a_local_path_that_is_no_repository_fails_terminally_without_showing_it(
    tmp_path: Path, kind: str
) -> None:
    a_file = tmp_path / "secret-name.txt"
    a_file.write_text("not a repository")
    (tmp_path / "secret-dir").mkdir()
    url = {
        "/etc/passwd": "/etc/passwd",
        "file": str(a_file),
        "empty directory": str(tmp_path / "secret-dir"),
        "missing": str(tmp_path / "secret-missing"),
        "file url": f"file://{tmp_path}/secret-dir",
    }[kind]
    with pytest.raises(TerminalJobError) as caught:
        await _clone_files(url, None, tmp_path / "clones")
    assert caught.value.code == "REPOSITORY_NOT_FOUND"
    assert "secret" not in str(caught.value)
    assert "passwd" not in str(caught.value)
    assert _leftovers(tmp_path / "clones") == []


def test_git_stderr_about_a_local_file_is_classified_terminal() -> None:
    """Were the path check bypassed (a race), git's own complaint still means not a repository."""
    stderr = "fatal: invalid gitfile format: /srv/x\nfatal: Could not read from remote repository."
    error = classify_git_failure(stderr)
    assert isinstance(error, TerminalJobError)
    assert error.code == "REPOSITORY_NOT_FOUND"


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
