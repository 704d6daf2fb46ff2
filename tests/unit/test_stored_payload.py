"""What the API stores of a payload and what the worker clones: secrets never kept, never needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import Settings
from service.models import TaskType
from service.payloads import parse_payload
from service.repo_url import clone_url
from service.worker.jobs import job_for
from service.worker.jobs.git_clone import git_clone_arguments

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("sent", "stored", "cloned"),
    [
        (
            "https://alice:s3cr3t@example.com/o/r.git",
            "https://***@example.com/o/r.git",
            "https://example.com/o/r.git",
        ),
        (
            "https://ghp_token1234@example.com/o/r.git?x=1",
            "https://***@example.com/o/r.git?***",
            "https://example.com/o/r.git",
        ),
        (
            "ssh://git:pw12@example.com/o/r.git",
            "ssh://git:***@example.com/o/r.git",
            "ssh://git@example.com/o/r.git",
        ),
        ("git@example.com:o/r.git", "git@example.com:o/r.git", "git@example.com:o/r.git"),
        (
            "https://example.com:8443/o/r.git",
            "https://example.com:8443/o/r.git",
            "https://example.com:8443/o/r.git",
        ),
    ],
)
def test_repository_payload_is_stored_redacted_and_cloned_without_placeholders(
    sent: str, stored: str, cloned: str
) -> None:
    payload = parse_payload(TaskType.INITIALIZE_REPOSITORY, {"repoUrl": sent, "ref": "main"}).stored()
    assert payload == {"repoUrl": stored, "ref": "main"}
    assert parse_payload(TaskType.INITIALIZE_REPOSITORY, payload).stored() == payload
    assert clone_url(payload["repoUrl"]) == cloned


def test_other_payloads_are_stored_as_sent() -> None:
    sent = {
        "durationMs": 10,
        "outcome": "retryable",
        "failAttempts": None,
        "waitForEvent": {"type": "a", "key": "b"},
    }
    assert parse_payload(TaskType.SIMULATE, sent).stored() == sent
    impact = {"repositoryTaskId": "00000000-0000-0000-0000-000000000001", "changedFiles": ["a.py"]}
    assert parse_payload(TaskType.INITIALIZE_IMPACT_ANALYSIS, impact).stored() == impact


def test_the_operator_credential_helper_follows_the_reset() -> None:
    args = git_clone_arguments(
        "https://example.com/o/r.git", None, Path("/tmp/x"), allow_local=False, credential_helper="store"
    )
    helpers = [
        args[i + 1] for i, arg in enumerate(args) if arg == "-c" and "credential.helper" in args[i + 1]
    ]
    assert helpers == ["credential.helper=", "credential.helper=store"]
    plain = git_clone_arguments("https://example.com/o/r.git", None, Path("/tmp/x"), allow_local=False)
    assert "credential.helper=store" not in plain


def test_clone_limits_come_from_settings() -> None:
    settings = Settings(clone_timeout_ms=5000, clone_max_bytes=2 << 20, git_credential_helper="store")
    job = job_for(TaskType.INITIALIZE_REPOSITORY, settings)
    limits = job.keywords["limits"]  # type: ignore[attr-defined]
    assert (limits.timeout_seconds, limits.max_bytes, limits.credential_helper) == (5.0, 2 << 20, "store")


@pytest.mark.parametrize(("variable", "value"), [("CLONE_TIMEOUT_MS", "10"), ("CLONE_MAX_BYTES", "big")])
def test_bad_clone_limits_are_refused(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    from pydantic import ValidationError

    from service.config import describe_error

    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert variable in describe_error(caught.value)
