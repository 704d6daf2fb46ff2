"""The fetch policy: which resolved addresses a clone may reach, and how git is pinned to them."""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path

import pytest

from service.errors import RetryableJobError, TerminalJobError
from service.worker.jobs.fetch_policy import FetchTarget, Resolver, fetch_target, is_public_address
from service.worker.jobs.git_clone import git_clone_arguments, git_environment

pytestmark = pytest.mark.unit

INTERNAL = [
    "127.0.0.1",
    "127.1.2.3",
    "::1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.0.1",
    "169.254.169.254",
    "fe80::1",
    "fd00:ec2::254",
    "100.64.0.1",
    "0.0.0.0",
    "::",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "224.0.0.1",
    "ff02::1",
    "198.18.0.1",
    "192.0.2.1",
]
PUBLIC = ["140.82.112.3", "8.8.8.8", "2606:4700::6810:84e5", "::ffff:140.82.112.3"]


@pytest.mark.parametrize("address", INTERNAL)
def test_internal_addresses_are_not_public(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_global_unicast_addresses_are_public(address: str) -> None:
    assert is_public_address(address)


def _resolver(answers: dict[str, list[str]]) -> tuple[Resolver, list[tuple[str, int]]]:
    asked: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        if host not in answers:
            raise OSError("Name or service not known")
        return answers[host]

    return resolve, asked


@pytest.mark.parametrize(
    "addresses", [["10.0.0.5"], ["140.82.112.3", "127.0.0.1"], ["169.254.169.254"], []]
)
async def test_a_name_that_resolves_to_any_internal_address_is_refused(addresses: list[str]) -> None:
    resolve, _ = _resolver({"git.example.com": addresses})
    with pytest.raises(TerminalJobError) as caught:
        await fetch_target("https://git.example.com/o/r.git", frozenset(), resolver=resolve)
    assert caught.value.code == "HOST_NOT_ALLOWED"
    assert "10.0.0.5" not in str(caught.value), "internal addresses are not told to the submitter"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://Git.Example.com/o/r.git", FetchTarget("git.example.com", 443, ("140.82.112.3",))),
        ("https://git.example.com:8443/o/r.git", FetchTarget("git.example.com", 8443, ("140.82.112.3",))),
        ("ssh://git@git.example.com/o/r.git", FetchTarget("git.example.com", 22, ("140.82.112.3",))),
        ("git@git.example.com:o/r.git", FetchTarget("git.example.com", 22, ("140.82.112.3",))),
    ],
)
async def test_a_public_host_gives_the_addresses_git_is_pinned_to(url: str, expected: FetchTarget) -> None:
    resolve, asked = _resolver({"git.example.com": ["140.82.112.3"]})
    assert await fetch_target(url, frozenset(), resolver=resolve) == expected
    assert asked == [(expected.host, expected.port)]


async def test_an_allow_listed_host_is_neither_resolved_nor_pinned() -> None:
    resolve, asked = _resolver({"git.internal": ["10.0.0.5"]})
    url = "ssh://git@git.internal/o/r.git"
    target = await fetch_target(url, frozenset({"git.internal"}), resolver=resolve)
    assert target == FetchTarget("git.internal", 22)
    assert asked == []


async def test_local_repositories_are_not_judged() -> None:
    resolve, asked = _resolver({})
    assert await fetch_target("file:///srv/repo", frozenset(), resolver=resolve) is None
    assert await fetch_target("/srv/repo", frozenset(), resolver=resolve) is None
    assert asked == []


async def test_a_host_that_does_not_resolve_is_retryable() -> None:
    resolve, _ = _resolver({})
    with pytest.raises(RetryableJobError) as caught:
        await fetch_target("https://nowhere.example.com/o/r.git", frozenset(), resolver=resolve)
    assert caught.value.code == "NETWORK"


def test_https_is_pinned_to_the_checked_addresses_and_never_redirected() -> None:
    target = FetchTarget("git.example.com", 443, ("140.82.112.3", "2606:4700::6810:84e5"))
    args = git_clone_arguments(
        "https://git.example.com/o/r.git", None, Path("/tmp/x"), allow_local=False, target=target
    )
    config = [args[i + 1] for i, arg in enumerate(args) if arg == "-c"]
    assert "http.curloptResolve=git.example.com:443:140.82.112.3,[2606:4700::6810:84e5]" in config
    assert "http.followRedirects=false" in config


def test_ssh_connects_to_the_checked_address_and_checks_the_key_under_the_name() -> None:
    target = FetchTarget("git.example.com", 22, ("140.82.112.3",))
    command = shlex.split(git_environment(allow_local=False, target=target)["GIT_SSH_COMMAND"])
    assert command == [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        "HostKeyAlias=git.example.com",
        "-o",
        "Hostname=140.82.112.3",
    ]
    allowed = git_environment(allow_local=False, target=FetchTarget("git.internal", 22))
    assert allowed["GIT_SSH_COMMAND"] == "ssh -o BatchMode=yes"


async def test_a_resolver_that_hangs_is_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.worker.jobs.fetch_policy.RESOLVE_TIMEOUT_S", 0.05)

    async def hang(host: str, port: int) -> list[str]:
        await asyncio.sleep(60)
        return []

    with pytest.raises(RetryableJobError) as caught:
        await fetch_target("https://slow.example.com/o/r.git", frozenset(), resolver=hang)
    assert caught.value.code == "NETWORK"
