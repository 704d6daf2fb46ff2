"""`--provider docker` where no Docker engine answers: fail fast, say why, leave nothing behind.

DOCKER_HOST is pointed at a socket that does not exist (or at a listener that never answers),
so these tests mean the same on a machine that does run Docker. The path that starts
containers cannot run here (no engine on this machine kind, see ENVIRONMENT.md).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from harness.stack.base import StackError
from harness.stack.docker import DockerStack
from harness.stack.services import _LIVE_STACKS, TMP_PREFIX

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
HARNESS = Path(sys.executable).parent / "harness"
PYTEST = Path(sys.executable).parent / "pytest"
FAIL_FAST_S = 10.0


def expected_message(host: str) -> str:
    return (
        f"no Docker engine answers at {host}: start Docker, "
        "or use the default embedded provider (omit --provider docker)"
    )


@pytest.fixture
def missing_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """DOCKER_HOST naming a unix socket nobody listens on (what a stopped Docker looks like)."""
    host = f"unix://{tmp_path / 'docker.sock'}"
    monkeypatch.setenv("DOCKER_HOST", host)
    return host


@pytest.fixture
def silent_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """DOCKER_HOST naming a TCP listener that accepts connections and never answers (a hung engine)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        host = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        monkeypatch.setenv("DOCKER_HOST", host)
        yield host


def _our_tmp_dirs() -> set[Path]:
    """Temp dirs of stacks owned by this test process."""
    found = set()
    for candidate in Path(tempfile.gettempdir()).glob(f"{TMP_PREFIX}*"):
        owner = candidate / "owner.pid"
        if owner.exists() and owner.read_text().strip() == str(os.getpid()):
            found.add(candidate)
    return found


def _children() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


def _assert_fails_fast(stack: DockerStack, host: str) -> None:
    children, tmp_dirs = _children(), _our_tmp_dirs()
    started = time.monotonic()
    with pytest.raises(StackError) as raised:
        stack.start()
    took = time.monotonic() - started
    assert str(raised.value) == expected_message(host)
    assert took < FAIL_FAST_S, f"took {took:.1f}s"
    assert _children() == children, "start() left child processes"
    assert _our_tmp_dirs() == tmp_dirs, "start() left a temp dir"
    assert not stack.run_dir.exists(), "start() made the run dir before finding no engine"
    assert stack not in _LIVE_STACKS
    assert stack.processes() == []
    stack.stop()


def test_start_without_an_engine_raises_at_once(tmp_path: Path, missing_socket: str) -> None:
    _assert_fails_fast(DockerStack(tmp_path / "run", show_progress=False), missing_socket)


def test_start_against_a_hung_engine_gives_up_within_the_probe_timeout(
    tmp_path: Path, silent_engine: str
) -> None:
    stack = DockerStack(tmp_path / "run", show_progress=False, probe_timeout=2.0)
    _assert_fails_fast(stack, silent_engine)


def test_harness_up_with_docker_exits_1_with_one_line(tmp_path: Path, missing_socket: str) -> None:
    run_dir = tmp_path / "up"
    started = time.monotonic()
    result = subprocess.run(
        [str(HARNESS), "up", "--provider", "docker", "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"DOCKER_HOST": missing_socket},
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [expected_message(missing_socket)]
    assert result.stdout == ""
    assert time.monotonic() - started < FAIL_FAST_S
    assert not run_dir.exists()


def test_harness_up_refuses_an_unknown_provider(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(HARNESS), "up", "--provider", "podman", "--run-dir", str(tmp_path / "up")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "unknown stack provider 'podman'" in result.stderr
    assert "local, docker" in result.stderr
    assert "Traceback" not in result.stderr


def test_pytest_plugin_honours_harness_provider(tmp_path: Path, missing_socket: str) -> None:
    """HARNESS_PROVIDER=docker reaches the session stack: a suite errors with the same line."""
    (tmp_path / "test_needs_stack.py").write_text("def test_needs_stack(endpoints):\n    pass\n")
    env = os.environ | {"DOCKER_HOST": missing_socket, "HARNESS_PROVIDER": "docker"}
    env.pop("HARNESS_TARGET", None)
    env.pop("HARNESS_RUN_DIR", None)
    result = subprocess.run(
        [str(PYTEST), "-p", "harness.pytest_plugin", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 1, result.stdout
    assert "1 error" in result.stdout
    assert expected_message(missing_socket) in result.stdout
