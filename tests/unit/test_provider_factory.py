"""Choosing a stack provider (harness.stack.factory): names, precedence of --target, errors.

Building a provider must touch nothing (no engine, no directories): only `start()` may.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.stack.base import StackError
from harness.stack.docker import DockerStack, docker_host, engine_is_local, no_engine_message
from harness.stack.factory import PROVIDERS, check_provider, make_embedded, make_provider, preflight
from harness.stack.local import LocalStack
from harness.stack.target import TargetStack

pytestmark = pytest.mark.unit


def test_local_is_the_default(tmp_path: Path) -> None:
    stack = make_provider(run_dir=tmp_path / "run")
    assert isinstance(stack, LocalStack)


@pytest.mark.parametrize(("name", "expected"), [("local", LocalStack), ("docker", DockerStack)])
def test_each_name_gives_its_stack(tmp_path: Path, name: str, expected: type) -> None:
    stack = make_provider(name, run_dir=tmp_path / "run", workers=3, env={"MAX_RETRIES": "1"})
    assert type(stack) is expected
    assert isinstance(stack, LocalStack | DockerStack)
    assert (stack.worker_count, stack.env_overrides) == (3, {"MAX_RETRIES": "1"})


def test_names_ignore_case_and_spaces(tmp_path: Path) -> None:
    assert isinstance(make_provider(" Docker ", run_dir=tmp_path), DockerStack)


def test_building_a_stack_creates_nothing(tmp_path: Path) -> None:
    """No engine is asked and no directory made until start(): a wrong choice costs nothing."""
    for name in PROVIDERS:
        make_provider(name, run_dir=tmp_path / name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["local", "docker"])
def test_target_wins_over_provider(tmp_path: Path, name: str) -> None:
    target = tmp_path / "target.toml"
    stack = make_provider(name, target, run_dir=tmp_path / "run")
    assert isinstance(stack, TargetStack)
    assert stack.target_file == target


@pytest.mark.parametrize("name", ["podman", "", "kubernetes"])
def test_unknown_name_lists_the_choices(tmp_path: Path, name: str) -> None:
    with pytest.raises(StackError, match=r"unknown stack provider .*: choose one of local, docker$"):
        make_provider(name, run_dir=tmp_path)


def test_unknown_name_is_refused_even_with_a_target(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="unknown stack provider 'dokcer'"):
        make_provider("dokcer", tmp_path / "target.toml", run_dir=tmp_path)


def test_make_embedded_refuses_unknown_names(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="choose one of local, docker"):
        make_embedded("podman", run_dir=tmp_path)


def test_check_provider_normalises() -> None:
    assert check_provider("LOCAL") == "local"


def test_preflight_of_local_needs_nothing() -> None:
    preflight("local")


def test_preflight_checks_the_name_first() -> None:
    with pytest.raises(StackError, match="unknown stack provider"):
        preflight("podman")


def test_no_engine_message_names_docker_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://build-host:2375")
    assert docker_host() == "tcp://build-host:2375"
    assert no_engine_message() == (
        "no Docker engine answers at tcp://build-host:2375: start Docker, "
        "or use the default embedded provider (omit --provider docker)"
    )
    assert not engine_is_local()


def test_a_unix_socket_engine_is_local(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ports of a local engine are published on loopback only, like the local servers."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/user/1000/docker.sock")
    assert engine_is_local()
