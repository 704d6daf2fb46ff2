"""Which repository URLs and refs a job may clone, and how a URL is shown without its secrets.

The API validates at submit (422) and the worker validates again before running git, so both
share these rules. Git's transports are a large attack surface: `ext::` runs arbitrary commands,
a leading `-` becomes a git or ssh option, and `file://` reads the worker's own disk. Only
https, ssh and scp-like `user@host:path` URLs pass, plus local repositories when the caller
says so (the operator's `ALLOW_LOCAL_REPOS=1`, `Settings.allow_local_repos`; the tests set it, as
there is no network). Error messages never quote the URL itself, because it may carry credentials.

Where a secret may hide: the userinfo (redacted before anything is stored), the query (redacted
likewise; git has no use for it), the fragment and `;` path parameters (refused: git never
sends a fragment, and a path parameter would go to the server and into every record as it is).
Logs get less still: `log_form` shows scheme and host, or for a local repository a digest, never
a path. Which hosts a clone may reach once resolved is the worker's fetch policy
(`service.worker.jobs.fetch_policy`); `network_endpoint` says which host and port that judges.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from urllib.parse import SplitResult, urlsplit, urlunsplit

REDACTED = "***"

_HOST = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$|^\[[0-9A-Fa-f:.]+\]$")
_SSH_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
_USERINFO = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:%-]*$")
_DEFAULT_PORTS = {"https": 443, "ssh": 22}
_SCP_LIKE = re.compile(r"^(?P<user>[A-Za-z0-9_][A-Za-z0-9_.+-]*)@(?P<host>[^:/\s]+):(?P<path>[^\s]+)$")
_TRANSPORT_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
_URL_WITH_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def validate_repo_url(url: str, *, allow_local: bool) -> str:
    """Returns the URL unchanged when it is safe to hand to git, else raises ValueError.

    `allow_local` lets file:// URLs and absolute paths through (`Settings.allow_local_repos`).
    """
    _check_common(url)
    lowered = url.lower()
    if lowered.startswith(("https://", "ssh://")):
        _check_network_url(urlsplit(url))
    elif lowered.startswith("file://") or url.startswith("/"):
        _check_local(url, allow_local)
    elif _SCP_LIKE.match(url):
        _check_scp_like(url)
    else:
        raise ValueError("repoUrl must be an https://, ssh:// or user@host:path URL")
    return url


def _check_common(url: str) -> None:
    if not url:
        raise ValueError("repoUrl is empty")
    if url.startswith("-"):
        raise ValueError("repoUrl must not start with '-'")
    if _TRANSPORT_PREFIX.match(url):
        raise ValueError("repoUrl must not name a git transport (such as ext::)")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        raise ValueError("repoUrl must not contain whitespace or control characters")
    if "#" in url:
        raise ValueError("repoUrl must not have a fragment ('#'): git ignores it, and it may hold a secret")


def _check_network_url(parts: SplitResult) -> None:
    try:
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as error:
        raise ValueError("repoUrl has a malformed host or port") from error
    if not host or not _valid_host(host):
        raise ValueError("repoUrl has no valid host")
    if "\\" in parts.geturl() or not _USERINFO.match(parts.netloc.rpartition("@")[0]):
        raise ValueError("repoUrl has characters a URL does not allow there (such as '\\' or a second '@')")
    if parts.username is not None and parts.username.startswith("-"):
        raise ValueError("repoUrl user must not start with '-'")
    is_ssh = parts.scheme.lower() == "ssh"
    if is_ssh and parts.username is not None and not _SSH_USER.match(parts.username):
        raise ValueError("repoUrl user of an ssh URL must be a plain name (such as git)")
    if not parts.path or parts.path == "/":
        raise ValueError("repoUrl has no repository path")
    if ";" in parts.path:
        raise ValueError("repoUrl must not have path parameters (';'): they may hold a secret")


def _valid_host(host: str) -> bool:
    """A DNS name or an IP literal (urlsplit has already taken an IPv6 literal out of its brackets)."""
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return bool(_HOST.match(host)) and not host.startswith("-")


def _check_local(url: str, allow: bool) -> None:
    if not allow:
        raise ValueError("local repositories (file:// or a path) are not allowed here")
    path = url[len("file://") :] if url.lower().startswith("file://") else url
    if not path.startswith("/"):
        raise ValueError("a local repository must be an absolute path")


def _check_scp_like(url: str) -> None:
    match = _SCP_LIKE.match(url)
    assert match is not None
    if not _HOST.match(match["host"]):
        raise ValueError("repoUrl has no valid host")
    if match["path"].startswith("-"):
        raise ValueError("repoUrl path must not start with '-'")
    if any(mark in match["path"] for mark in "?;"):
        raise ValueError("repoUrl must not have a query or parameters ('?', ';'): they may hold a secret")


def validate_ref(ref: str) -> str:
    """A branch, tag or full commit sha, following `git check-ref-format` plus no leading '-'."""
    if _SHA.match(ref):
        return ref
    problems = (
        not ref,
        ref.startswith(("-", "/", ".")),
        ref.endswith(("/", ".", ".lock")),
        ".." in ref,
        "//" in ref,
        "@{" in ref,
        ref == "@",
        "/." in ref,
        bool(_REF_FORBIDDEN.search(ref)),
    )
    if any(problems):
        raise ValueError("ref is not a safe git ref")
    return ref


def is_commit_sha(ref: str) -> bool:
    """A full sha is fetched by id; branches and tags are cloned by name."""
    return bool(_SHA.match(ref))


def redact_url(url: str) -> str:
    """The URL as it may be stored or returned: credentials, query and fragment replaced by ***.

    For https the whole userinfo goes (tokens are often passed as the user name); for ssh and
    scp-like URLs the user name is kept (it is `git` by convention) and only a password goes.
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if parts.username is None and parts.password is None and not parts.query and not parts.fragment:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    if parts.scheme.lower() == "ssh" and parts.username and parts.password is None:
        netloc = f"{parts.username}@{netloc}"
    elif parts.scheme.lower() == "ssh" and parts.username:
        netloc = f"{parts.username}:{REDACTED}@{netloc}"
    elif parts.username is not None or parts.password is not None:
        netloc = f"{REDACTED}@{netloc}"
    query = REDACTED if parts.query else ""
    fragment = REDACTED if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def redact_text(text: str, *, secrets: tuple[str, ...] = ()) -> str:
    """Masks `scheme://userinfo@` anywhere in free text (git's stderr), and any given secrets."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _URL_WITH_USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)


def url_secrets(url: str) -> tuple[str, ...]:
    """The pieces of a URL that must never appear anywhere: password, token, query, fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ()
    found = {parts.password or "", parts.query, parts.fragment}
    if parts.scheme.lower() != "ssh" and len(parts.username or "") >= 8:
        found.add(parts.username or "")
    return tuple(sorted((piece for piece in found if len(piece) >= 4), key=len, reverse=True))


def clone_url(url: str) -> str:
    """The URL git is given for a stored (redacted) one: the `***` placeholders and any fragment go.

    A redacted secret cannot be used anyway, and a literal `***` user name would make git ask
    for a password instead of consulting the worker's credential helper or ssh agent.
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    if parts.username not in (None, REDACTED):
        netloc = f"{parts.username}@{netloc}"
    if parts.password not in (None, REDACTED):
        return url
    query = "" if parts.query == REDACTED else parts.query
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def local_path(url: str) -> str | None:
    """The path of a local repository (file:// URL or absolute path); None for a network URL."""
    if url.lower().startswith("file://"):
        return url[len("file://") :]
    return url if url.startswith("/") else None


def network_endpoint(url: str) -> tuple[str, int] | None:
    """The host (lower case, an IPv6 literal without brackets) and port a clone connects to.

    None for a local repository; raises ValueError for a URL `validate_repo_url` refuses.
    """
    if local_path(url) is not None:
        return None
    match = _SCP_LIKE.match(url)
    if "://" not in url and match:
        return match["host"].strip("[]").lower(), _DEFAULT_PORTS["ssh"]
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError("repoUrl is not a network URL")
    return parts.hostname.lower(), parts.port or _DEFAULT_PORTS[scheme]


def log_form(url: str) -> str:
    """What a log line may show of a repository: scheme and host plus a digest, never a path.

    The digest (of the redacted URL) tells two repositories on one host apart and joins log lines
    of one repository, without showing a path that may name a customer, a user or a project.
    """
    digest = hashlib.sha256(redact_url(url).encode()).hexdigest()[:12]
    if local_path(url) is not None:
        return f"local repository {digest}"
    try:
        endpoint = network_endpoint(url)
    except ValueError:
        endpoint = None
    if endpoint is None:
        return f"repository {digest}"
    host, port = endpoint
    scheme = "ssh" if "://" not in url else url.split("://", 1)[0].lower()
    shown_host = f"[{host}]" if ":" in host else host
    shown_port = "" if port == _DEFAULT_PORTS.get(scheme) else f":{port}"
    return f"{scheme}://{shown_host}{shown_port} {digest}"


def allowed_host(entry: str) -> str:
    """One entry of `REPO_ALLOWED_HOSTS` in the form `network_endpoint` gives hosts; ValueError if bad."""
    host = entry.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not _valid_host(host):
        raise ValueError(f"{entry.strip()!r} is not a host name or IP address")
    return host
