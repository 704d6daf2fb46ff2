"""The repository URL policy: what may reach git, and how a URL is shown without its secrets."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from service.api.app import create_app
from service.api.errors import validation_details
from service.config import Settings, describe_error
from service.models import TaskType
from service.payloads import parse_payload
from service.repo_url import (
    clone_url,
    log_form,
    redact_text,
    redact_url,
    url_secrets,
    validate_ref,
    validate_repo_url,
)

pytestmark = pytest.mark.unit

ACCEPTED = [
    "https://github.com/org/repo.git",
    "https://user:secret@git.example.com:8443/group/repo",
    "ssh://git@git.example.com/org/repo.git",
    "ssh://git@git.example.com:2222/org/repo.git",
    "git@github.com:org/repo.git",
]
REFUSED_ALWAYS = [
    "ext::sh -c touch% /tmp/pwned",
    "ext::sh",
    "fd::3",
    "-uhelp",
    "--upload-pack=touch /tmp/pwned",
    "http://example.com/repo.git",
    "ftp://example.com/repo.git",
    "https://-oProxyCommand=x/repo",
    "ssh://-oProxyCommand=touch%20x/repo",
    "ssh://-user@host/repo",
    "git@host:-repo",
    "https://example.com",
    "https://exa mple.com/repo",
    "https://example.com/repo\n--upload-pack=x",
    "relative/path",
    "./repo",
    "",
]


@pytest.mark.parametrize("url", ACCEPTED)
def test_safe_urls_pass_unchanged(url: str) -> None:
    assert validate_repo_url(url, allow_local=False) == url


@pytest.mark.parametrize("url", REFUSED_ALWAYS)
@pytest.mark.parametrize("allow_local", [False, True])
def test_unsafe_urls_are_refused_even_with_local_repos_allowed(url: str, allow_local: bool) -> None:
    with pytest.raises(ValueError, match="repoUrl"):
        validate_repo_url(url, allow_local=allow_local)


@pytest.mark.parametrize("url", ["file:///srv/repo", "/srv/repo", "FILE:///srv/repo"])
def test_local_repositories_need_the_flag(url: str) -> None:
    with pytest.raises(ValueError, match="local repositories"):
        validate_repo_url(url, allow_local=False)
    assert validate_repo_url(url, allow_local=True) == url


@pytest.mark.parametrize(("value", "allowed"), [(None, False), ("0", False), ("1", True), ("true", True)])
def test_allow_local_repos_reaches_the_payload_check_through_settings(
    monkeypatch: pytest.MonkeyPatch, value: str | None, allowed: bool
) -> None:
    if value is None:
        monkeypatch.delenv("ALLOW_LOCAL_REPOS", raising=False)
    else:
        monkeypatch.setenv("ALLOW_LOCAL_REPOS", value)
    settings = Settings()
    assert settings.allow_local_repos is allowed
    local = {"repoUrl": "file:///srv/repo"}
    if allowed:
        parse_payload(TaskType.INITIALIZE_REPOSITORY, local, allow_local_repos=settings.allow_local_repos)
    else:
        with pytest.raises(ValidationError, match="local repositories"):
            parse_payload(TaskType.INITIALIZE_REPOSITORY, local, allow_local_repos=settings.allow_local_repos)


def test_payloads_refuse_local_repositories_unless_told() -> None:
    with pytest.raises(ValidationError, match="local repositories"):
        parse_payload(TaskType.INITIALIZE_REPOSITORY, {"repoUrl": "/srv/repo"})


def test_a_bad_allow_local_repos_stops_the_process_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOW_LOCAL_REPOS", "maybe")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert describe_error(caught.value).startswith("invalid configuration: ALLOW_LOCAL_REPOS:")


def test_relative_file_url_is_refused_even_when_allowed() -> None:
    with pytest.raises(ValueError, match="absolute"):
        validate_repo_url("file://relative/repo", allow_local=True)


def test_refusal_messages_never_quote_the_url() -> None:
    with pytest.raises(ValueError, match="repoUrl") as caught:
        validate_repo_url("http://user:hunter2secret@example.com/x.git", allow_local=False)
    assert "hunter2secret" not in str(caught.value)


@pytest.mark.parametrize("ref", ["main", "v1.2.3", "feature/x-y", "release_1", "a" * 40, "0123abcd" * 8])
def test_safe_refs_pass(ref: str) -> None:
    assert validate_ref(ref) == ref


@pytest.mark.parametrize(
    "ref",
    [
        "-uhelp",
        "--upload-pack=x",
        "a..b",
        "a b",
        "a~1",
        "a^",
        "a:b",
        "x.lock",
        "/x",
        "x/",
        "@{1}",
        "a\\b",
        "a*",
        "a?",
        "[a",
        ".hidden",
        "a//b",
        "a/.b",
        "",
        "a\nb",
    ],
)
def test_unsafe_refs_are_refused(ref: str) -> None:
    with pytest.raises(ValueError, match="ref"):
        validate_ref(ref)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:secret@host/x.git", "https://***@host/x.git"),
        ("https://ghp_token123456@host/x.git", "https://***@host/x.git"),
        ("https://host/x.git?access_token=abc", "https://host/x.git?***"),
        ("ssh://git@host/x.git", "ssh://git@host/x.git"),
        ("ssh://git:pw@host/x.git", "ssh://git:***@host/x.git"),
        ("git@host:org/x.git", "git@host:org/x.git"),
        ("https://host/x.git", "https://host/x.git"),
        ("/srv/repo", "/srv/repo"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_masks_userinfo_and_given_secrets() -> None:
    text = "fatal: unable to access 'https://user:secret@host/x.git/': secret was wrong"
    shown = "fatal: unable to access 'https://***@host/x.git/': *** was wrong"
    assert redact_text(text, secrets=("secret",)) == shown


# ---- secrets in other parts of a URL (issue 9, defect 3) ----------------------------------------

FRAGMENT_SECRET = "tok3n-SECRET"
REFUSED_PARTS = [
    f"https://example.invalid/x.git#{FRAGMENT_SECRET}",
    f"https://user:pw@example.invalid/x.git#{FRAGMENT_SECRET}",
    f"ssh://git@example.invalid/x.git#{FRAGMENT_SECRET}",
    f"git@example.invalid:x.git#{FRAGMENT_SECRET}",
    f"git@example.invalid:x.git?token={FRAGMENT_SECRET}",
    f"git@example.invalid:x.git;token={FRAGMENT_SECRET}",
    f"https://example.invalid/x.git;token={FRAGMENT_SECRET}",
    f"ssh://git@example.invalid/x.git;token={FRAGMENT_SECRET}",
    f"ssh://{FRAGMENT_SECRET}%3Apw@example.invalid/x.git",
    f"file:///srv/repo#{FRAGMENT_SECRET}",
    f"/srv/repo#{FRAGMENT_SECRET}",
]


@pytest.mark.parametrize("url", REFUSED_PARTS)
def test_fragments_path_parameters_and_odd_ssh_users_are_refused_without_quoting_them(url: str) -> None:
    with pytest.raises(ValueError, match="repoUrl") as caught:
        validate_repo_url(url, allow_local=True)
    assert FRAGMENT_SECRET not in str(caught.value)
    with pytest.raises(ValidationError) as refused:
        parse_payload(TaskType.INITIALIZE_REPOSITORY, {"repoUrl": url}, allow_local_repos=True)
    assert FRAGMENT_SECRET not in str(validation_details(refused.value.errors()))


async def test_a_secret_in_a_fragment_is_refused_at_the_api_and_never_stored_or_echoed() -> None:
    """Through the real route: 422 in the contract's error shape, and the database is never reached."""

    class NoDatabase:
        def acquire(self, *args: object, **kwargs: object) -> object:
            raise AssertionError("a refused payload must never reach the database")

    app = create_app(Settings(allow_local_repos=True))
    app.state.pool = NoDatabase()
    app.state.broker = None
    body = {"type": "initialize_repository", "payload": {"repoUrl": REFUSED_PARTS[0]}}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        answer = await client.post("/tasks", json=body, headers={"Idempotency-Key": "k"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "INVALID_PAYLOAD"
    assert set(answer.json()["error"]) == {"code", "message", "details"}
    assert FRAGMENT_SECRET not in answer.text


@pytest.mark.parametrize(
    "url",
    ["https://[2001:db8::1]/org/x.git", "https://[2001:db8::1]:8443/org/x.git", "ssh://git@[2001:db8::1]/x.git"],
)
def test_ipv6_literal_hosts_are_valid_urls(url: str) -> None:
    """Their address is judged by the fetch policy in the worker, like any other host's."""
    assert validate_repo_url(url, allow_local=False) == url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://host/x.git#frag", "https://host/x.git#***"),
        ("https://u:p@host/x.git?q=1#frag", "https://***@host/x.git?***#***"),
    ],
)
def test_redact_url_masks_a_fragment_too(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "frag" not in clone_url(shown)
    assert "frag" in url_secrets(url)


# ---- what a log line may show of a repository (issue 9, defect 5) -------------------------------


@pytest.mark.parametrize(
    ("url", "start"),
    [
        ("https://user:pw@github.com/org/private-name.git", "https://github.com "),
        ("https://git.example.com:8443/org/private-name.git", "https://git.example.com:8443 "),
        ("ssh://git@git.example.com/org/private-name.git", "ssh://git.example.com "),
        ("git@git.example.com:org/private-name.git", "ssh://git.example.com "),
        ("/home/alice/private-name", "local repository "),
        ("file:///home/alice/private-name", "local repository "),
    ],
)
def test_log_form_shows_scheme_and_host_or_a_digest_never_the_path(url: str, start: str) -> None:
    shown = log_form(url)
    assert shown.startswith(start)
    for private in ("private-name", "alice", "user", "pw"):
        assert private not in shown
    assert log_form(url) == shown
    assert log_form(url + "2") != shown


# ---- the allow-list of internal git servers (issue 9, defect 6) ---------------------------------


def test_repo_allowed_hosts_is_a_comma_separated_list_of_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPO_ALLOWED_HOSTS", raising=False)
    assert Settings().repo_allowed_hosts == []
    monkeypatch.setenv("REPO_ALLOWED_HOSTS", " Git.Internal.example ,10.0.0.5,[fd00::1],, ")
    assert Settings().repo_allowed_hosts == ["git.internal.example", "10.0.0.5", "fd00::1"]


@pytest.mark.parametrize("value", ["git internal", "-oProxyCommand=x", "https://git.internal", "host:22"])
def test_a_bad_repo_allowed_hosts_stops_the_process_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("REPO_ALLOWED_HOSTS", value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert describe_error(caught.value).startswith("invalid configuration: REPO_ALLOWED_HOSTS:")


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1\\@example.com/x.git",
        "https://a@b@example.com/x.git",
        "https://user\\:pw@example.com/x.git",
        "ssh://git@example.com\\@127.0.0.1/x.git",
        "https://example.com/x\\..\\y.git",
    ],
)
def test_urls_that_parsers_may_read_differently_are_refused(url: str) -> None:
    """Python must judge the host git's curl or ssh connects to: no backslash, no second '@'."""
    with pytest.raises(ValueError, match="repoUrl"):
        validate_repo_url(url, allow_local=False)
