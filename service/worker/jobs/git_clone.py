"""A shallow clone of one ref into a private directory that is always removed afterwards.

Git runs as a subprocess with a scrubbed environment: no prompts (a private repository fails
at once instead of hanging), only the https, ssh (and, when allowed, file) transports, no user
or system config (an `insteadOf` rule could otherwise redirect a URL), no hooks or templates.
Every arguments list ends options with `--` before the URL, which the URL policy already
forbids from starting with '-'. Credentials never come from the URL (the API stores it redacted):
a private https repository authenticates through the one credential helper the operator names
(`GIT_CREDENTIAL_HELPER`, e.g. `store --file=/etc/ast/git-credentials`), ssh through the agent.

Each clone directory sits beside a lock file held with `flock` for as long as the clone lives.
The kernel drops the lock when the process dies, even by SIGKILL, so `cleanup_stale_clones`
(called by the worker at start) removes exactly the directories nobody holds, and never the
live clone of another worker that shares the same TEMP_DIR.

Before git runs, a network URL passes the fetch policy (`fetch_policy`: no internal addresses
unless allow-listed, git pinned to the checked addresses, redirects refused) and a local
repository must be a git repository at all, so neither depends on reading git's stderr.

Failures are classified for the retry policy: network and storage trouble is retryable; a
repository that does not exist, a bad ref, an unsafe URL or host, or a repository over the size
limit can never succeed and is terminal. Messages are redacted: a URL's credentials never leave,
and neither does the path of a local repository or of the clone directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import logging
import os
import re
import shlex
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from service.errors import RetryableJobError, TerminalJobError
from service.repo_url import (
    is_commit_sha,
    local_path,
    log_form,
    redact_text,
    url_secrets,
    validate_ref,
    validate_repo_url,
)
from service.worker.jobs.fetch_policy import FetchTarget, fetch_target

log = logging.getLogger(__name__)

CLONE_PREFIX = "ast-clone-"
_LOCK_SUFFIX = ".lock"
_PASSED_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSH_AUTH_SOCK")
_GIT_CONFIG = (
    "protocol.ext.allow=never",
    "credential.helper=",
    "core.hooksPath=/dev/null",
    "init.templateDir=",
    "submodule.recurse=false",
    "advice.detachedHead=false",
    "http.followRedirects=false",
)
_SSH_COMMAND = "ssh -o BatchMode=yes"
_LOCAL_REPOSITORY = "<local repository>"
_CLONE_DIRECTORY = "<clone directory>"

# Checked in order; the first match decides. Storage first: a full disk is never the repo's fault.
_CLASSIFIED: tuple[tuple[re.Pattern[str], bool, str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), retryable, code)
    for pattern, retryable, code in (
        (r"no space left|disk quota|read-only file system|could not write|unable to create", True, "STORAGE"),
        (
            r"could not find remote branch|remote branch .* not found|couldn't find remote ref"
            r"|not our ref|unadvertised object|invalid refspec|not a valid object name",
            False,
            "BAD_REF",
        ),
        (
            r"repository .*not found|not found|does not appear to be a git repository|does not exist"
            r"|not a git repository|invalid gitfile format"
            r"|authentication failed|could not read (username|password)|terminal prompts disabled"
            r"|permission denied|host key verification failed",
            False,
            "REPOSITORY_NOT_FOUND",
        ),
        (
            r"transport '.*' not allowed|unable to find remote helper|unsupported protocol",
            False,
            "UNSAFE_URL",
        ),
        (
            r"could not resolve|connect|timed out|early eof|rpc failed|hung up|ssl|gnutls|tls"
            r"|network|temporar",
            True,
            "NETWORK",
        ),
    )
)


@dataclass(frozen=True, slots=True)
class CloneLimits:
    """A clone that takes longer is retried (the network may be slow now); a larger one is refused.

    `credential_helper` is the operator's git credential helper for private https repositories
    (empty: none, so a repository that needs credentials fails at once as not found).
    """

    timeout_seconds: float = 300.0
    max_bytes: int = 1 << 30
    poll_seconds: float = 0.25
    credential_helper: str = ""


@dataclass(frozen=True, slots=True)
class Checkout:
    path: Path
    commit_sha: str


@contextlib.asynccontextmanager
async def cloned_repository(
    url: str,
    ref: str | None,
    temp_dir: Path,
    *,
    limits: CloneLimits | None = None,
    allow_local: bool,
    allowed_hosts: Collection[str] = frozenset(),
) -> AsyncIterator[Checkout]:
    """Clones `ref` (default branch when None) of `url`; the directory is gone on exit, whatever happens.

    `allow_local` lets local repositories through (`Settings.allow_local_repos`); `allowed_hosts`
    are internal git servers a clone may reach (`Settings.repo_allowed_hosts`).
    """
    _validate(url, ref, allow_local)
    target = await fetch_target(url, allowed_hosts)
    if target is None:
        await _check_local_repository(url)
    workspace = await _create_workspace(temp_dir)
    try:
        clone = _GitClone(url, ref, workspace.path, limits or CloneLimits(), allow_local, target)
        yield await clone.run()
    finally:
        await asyncio.shield(asyncio.to_thread(workspace.remove))


def _validate(url: str, ref: str | None, allow: bool) -> None:
    try:
        validate_repo_url(url, allow_local=allow)
        if ref is not None:
            validate_ref(ref)
    except ValueError as error:
        raise TerminalJobError(f"refused repository: {error}", code="UNSAFE_URL") from None


async def _check_local_repository(url: str) -> None:
    """A path that is no repository can never be cloned: terminal, and without naming the path."""
    path = local_path(url)
    if path is None or not await asyncio.to_thread(is_git_repository, Path(path)):
        raise TerminalJobError(
            "the local repository does not exist or is not a git repository", code="REPOSITORY_NOT_FOUND"
        )


def is_git_repository(path: Path) -> bool:
    """A work tree (with `.git`, a directory or a gitfile) or a bare repository."""
    try:
        if not path.is_dir():
            return False
        return (path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir())
    except OSError:
        return False


class _Workspace:
    """A clone directory and the flock that marks it alive (see the module docstring)."""

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + _LOCK_SUFFIX)
        self._lock_fd = lock_fd

    @classmethod
    def create(cls, temp_dir: Path) -> _Workspace:
        """The lock is taken on a temporary name and renamed into place, so it never appears unlocked."""
        temp_dir.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=temp_dir, prefix=f".{CLONE_PREFIX}")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            name = f"{CLONE_PREFIX}{os.getpid()}-{Path(temporary).name.rsplit('-', 1)[-1]}"
            path = temp_dir / name
            os.rename(temporary, path.with_name(name + _LOCK_SUFFIX))
            path.mkdir(mode=0o700)
        except BaseException:
            os.close(fd)
            Path(temporary).unlink(missing_ok=True)
            raise
        return cls(path, fd)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self.path.exists():
            log.warning("clone directory could not be removed", extra={"step": "cleanup"})
        self.lock_path.unlink(missing_ok=True)
        os.close(self._lock_fd)


async def _create_workspace(temp_dir: Path) -> _Workspace:
    try:
        return await asyncio.to_thread(_Workspace.create, temp_dir)
    except OSError as error:
        message = f"cannot create a clone directory: {error.strerror}"
        raise RetryableJobError(message, code="STORAGE") from None


def cleanup_stale_clones(temp_dir: Path) -> list[Path]:
    """Removes clone directories (and lock files) of processes that are gone; returns what went.

    Safe to call while other workers clone into the same directory: a live clone's lock is held.
    """
    if not temp_dir.is_dir():
        return []
    removed: list[Path] = []
    for entry in sorted(temp_dir.iterdir()):
        name = entry.name
        if not os.path.lexists(entry):
            continue
        is_lock = name.startswith(CLONE_PREFIX) and name.endswith(_LOCK_SUFFIX)
        if is_lock or name.startswith(f".{CLONE_PREFIX}"):
            lock = entry
        elif name.startswith(CLONE_PREFIX) and entry.is_dir() and not entry.is_symlink():
            lock = entry.with_name(name + _LOCK_SUFFIX)
        else:
            continue
        if _remove_if_unlocked(entry, lock):
            removed.append(entry)
    return removed


def _remove_if_unlocked(entry: Path, lock: Path) -> bool:
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        fd = -1
    except OSError:
        return False
    try:
        if fd >= 0:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    try:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        lock.unlink(missing_ok=True)
        if not entry.is_dir():
            entry.unlink(missing_ok=True)
    finally:
        if fd >= 0:
            os.close(fd)
    return not entry.exists()


def git_environment(*, allow_local: bool, target: FetchTarget | None = None) -> dict[str, str]:
    """Only what git needs from the worker's environment, plus the safety switches.

    For a checked `target`, ssh connects to its first address, keeping host keys under the name.
    """
    env = {key: os.environ[key] for key in _PASSED_ENVIRONMENT if key in os.environ}
    ssh = _SSH_COMMAND
    if target is not None and target.addresses:
        pins = (f"HostKeyAlias={target.host}", f"Hostname={target.addresses[0]}")
        ssh = " ".join([ssh, *(f"-o {shlex.quote(pin)}" for pin in pins)])
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_ALLOW_PROTOCOL="https:ssh:file" if allow_local else "https:ssh",
        GIT_PROTOCOL_FROM_USER="0",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_SSH_COMMAND=ssh,
        GIT_LFS_SKIP_SMUDGE="1",
    )
    return env


def git_clone_arguments(
    url: str,
    ref: str | None,
    destination: Path,
    *,
    allow_local: bool,
    credential_helper: str = "",
    target: FetchTarget | None = None,
) -> list[str]:
    """The argument list of a branch/tag clone (a sha is fetched instead: see `_GitClone`)."""
    options = _config_options(allow_local, credential_helper, target)
    branch = ["--branch", ref] if ref is not None else []
    return [
        *options,
        "clone",
        "--quiet",
        "--depth",
        "1",
        "--no-tags",
        *branch,
        "--",
        _transport_url(url),
        str(destination),
    ]


def _config_options(
    allow_local: bool, credential_helper: str = "", target: FetchTarget | None = None
) -> list[str]:
    """`credential.helper=` first empties git's list of helpers; the operator's, if any, follows.

    A checked `target` pins curl (https) to its addresses, so git never resolves the host again.
    """
    pairs = [*_GIT_CONFIG, f"protocol.file.allow={'always' if allow_local else 'never'}"]
    if credential_helper:
        pairs.append(f"credential.helper={credential_helper}")
    if target is not None and target.addresses:
        addresses = ",".join(f"[{a}]" if ":" in a else a for a in target.addresses)
        pairs.append(f"http.curloptResolve={target.host}:{target.port}:{addresses}")
    return [item for pair in pairs for item in ("-c", pair)]


def _transport_url(url: str) -> str:
    """A plain local path becomes file://, since git ignores --depth for plain local clones."""
    return f"file://{url}" if url.startswith("/") else url


class _GitClone:
    def __init__(
        self,
        url: str,
        ref: str | None,
        destination: Path,
        limits: CloneLimits,
        allow: bool,
        target: FetchTarget | None,
    ) -> None:
        self.url = url
        self.ref = ref
        self.destination = destination
        self.limits = limits
        self.allow = allow
        self.target = target
        self.env = git_environment(allow_local=allow, target=target)
        self.options = _config_options(allow, limits.credential_helper, target)
        self.secrets = url_secrets(url)
        self.hidden = _private_paths(url, destination)
        self.deadline = 0.0

    async def run(self) -> Checkout:
        self.deadline = asyncio.get_running_loop().time() + self.limits.timeout_seconds
        if self.ref is not None and is_commit_sha(self.ref):
            await self._fetch_commit(self.ref)
        else:
            args = git_clone_arguments(
                self.url,
                self.ref,
                self.destination,
                allow_local=self.allow,
                credential_helper=self.limits.credential_helper,
                target=self.target,
            )
            await self._git(args, watch=True)
        await self._check_size()
        sha = await self._git(["-C", str(self.destination), "rev-parse", "HEAD"], watch=False)
        return Checkout(self.destination, sha.strip())

    async def _fetch_commit(self, sha: str) -> None:
        where = ["-C", str(self.destination)]
        options = self.options
        await self._git([*options, "init", "--quiet", str(self.destination)], watch=False)
        fetch = [
            *options,
            *where,
            "fetch",
            "--quiet",
            "--depth",
            "1",
            "--no-tags",
            "--",
            _transport_url(self.url),
            sha,
        ]
        await self._git(fetch, watch=True)
        await self._git([*options, *where, "checkout", "--quiet", "--detach", "FETCH_HEAD"], watch=True)

    async def _check_size(self) -> None:
        size = await asyncio.to_thread(directory_size, self.destination)
        if size > self.limits.max_bytes:
            raise TerminalJobError(
                f"repository is larger than the limit of {self.limits.max_bytes} bytes",
                code="REPOSITORY_TOO_LARGE",
            )

    async def _git(self, args: list[str], *, watch: bool) -> str:
        """Runs git to completion within the deadline; returns stdout, raises a classified error."""
        process = await _spawn(args, self.env)
        finished = asyncio.ensure_future(process.communicate())
        watcher = asyncio.ensure_future(self._watch_size() if watch else asyncio.Event().wait())
        try:
            remaining = max(0.0, self.deadline - asyncio.get_running_loop().time())
            done, _ = await asyncio.wait(
                {finished, watcher}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            if finished not in done:
                await self._raise_stopped(watcher in done)
            stdout, stderr = finished.result()
        finally:
            watcher.cancel()
            _kill_group(process)
            await asyncio.gather(finished, return_exceptions=True)
        if process.returncode != 0:
            text = stderr.decode("utf-8", errors="replace")
            raise classify_git_failure(text, secrets=self.secrets, hidden=self.hidden)
        return stdout.decode("utf-8", errors="replace")

    async def _raise_stopped(self, too_large: bool) -> None:
        if too_large:
            await self._check_size()
        raise RetryableJobError(
            f"git did not finish within {self.limits.timeout_seconds:g}s", code="CLONE_TIMEOUT"
        )

    async def _watch_size(self) -> None:
        """Returns only when the checkout grows past the limit (git has no limit of its own)."""
        while await asyncio.to_thread(directory_size, self.destination) <= self.limits.max_bytes:
            await asyncio.sleep(self.limits.poll_seconds)


def _private_paths(url: str, destination: Path) -> tuple[tuple[str, str], ...]:
    """What git may echo that no message (stored, returned and logged) may show, and its stand-in:
    the local repository's path, the clone directory's, and a network URL's path (`log_form`)."""
    pairs = [(str(destination), _CLONE_DIRECTORY)]
    path = local_path(url)
    if path is None:
        shown = log_form(url)
        pairs += [(url, shown), (_without_userinfo(url), shown)]
    elif path.rstrip("/"):
        pairs.append((path.rstrip("/"), _LOCAL_REPOSITORY))
    return tuple(sorted(pairs, key=lambda pair: len(pair[0]), reverse=True))


def _without_userinfo(url: str) -> str:
    """The URL as git prints it: curl leaves the user name and password out."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def classify_git_failure(
    stderr: str, *, secrets: tuple[str, ...] = (), hidden: tuple[tuple[str, str], ...] = ()
) -> RetryableJobError | TerminalJobError:
    """The error git's stderr means for the retry policy, its message redacted (`hidden`: path, shown as)."""
    redacted = stderr
    for path, shown in hidden:
        redacted = redacted.replace(path, shown)
    redacted = redact_text(redacted, secrets=secrets)
    detail = _summary(redacted)
    for pattern, retryable, code in _CLASSIFIED:
        if pattern.search(redacted):
            error_type = RetryableJobError if retryable else TerminalJobError
            return error_type(f"git failed ({code.lower()}): {detail}", code=code)
    return RetryableJobError(f"git failed: {detail}", code="CLONE_FAILED")


_PR_SET_PDEATHSIG = 1


async def _spawn(args: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(
            "git",
            *args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    except OSError as error:
        raise RetryableJobError(f"cannot run git: {error.strerror}", code="STORAGE") from None


def _die_with_parent() -> None:
    """In the child before exec: a SIGKILLed worker takes its git with it (its own session would
    otherwise keep it writing into a clone directory the next start removes)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _kill_group(process: asyncio.subprocess.Process) -> None:
    """Git's helpers (remote-https, ssh, upload-pack) run in its session; they all go."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def _summary(stderr: str) -> str:
    """git's fatal/error lines, which say what went wrong; other lines are progress chatter."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    fatal = [line for line in lines if line.lower().startswith(("fatal:", "error:"))]
    return " / ".join(fatal or lines[-1:] or ["no message"])[:500]


def directory_size(root: Path) -> int:
    """Bytes of regular files below `root`, symlinks not followed; 0 when it is gone."""
    total = 0
    stack = [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    return total
