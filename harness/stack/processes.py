"""Child processes of the harness that never outlive it.

Every child gets PR_SET_PDEATHSIG=SIGKILL and its own process group. The kernel sends the death
signal when the *thread* that forked the child exits, not the process; so every fork happens on
one long-lived spawner thread that lives as long as the interpreter, whichever thread asks for
the start (a supervisor thread, an event loop, a test). Stopping kills the whole group, so
grandchildren that stay in the group (postgres backends, erl_child_setup) go too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any, TypeVar

from harness.stack.base import StackError

PR_SET_PDEATHSIG = 1
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A preexec_fn: SIGKILL this child when the spawning thread dies.

    It runs after subprocess has switched user/group (a change of credentials clears the
    death signal), and checks the parent is still there to close the fork-to-prctl race.
    """

    def preexec() -> None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


class _Spawner:
    """The single long-lived thread that forks every child (see the module docstring)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="harness-spawner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job, future = self._jobs.get()
            try:
                future.set_result(job())
            except BaseException as exc:  # handed back to the caller's thread
                future.set_exception(exc)

    def run(self, job: Callable[[], T]) -> T:
        if threading.current_thread() is self._thread:
            return job()
        future: Future[T] = Future()
        self._jobs.put((job, future))
        return future.result()


_spawner_lock = threading.Lock()
_spawner: _Spawner | None = None
_live: set[ManagedProcess] = set()
_live_lock = threading.Lock()


def spawn_on_spawner(job: Callable[[], T]) -> T:
    """Run `job` (which forks) on the spawner thread and return its result."""
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = _Spawner()
    return _spawner.run(job)


def popen_child(
    argv: Sequence[str],
    *,
    log: IO[bytes] | int,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
    group: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child with the no-orphan guarantees: PDEATHSIG, own process group, spawner thread."""

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            user=user,
            group=group,
            process_group=0,
            preexec_fn=_die_with_parent(os.getpid()),
            close_fds=True,
        )

    return spawn_on_spawner(start)


def signal_group(pid: int, sig: int) -> None:
    """Send `sig` to the process group led by `pid`; a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class ManagedProcess:
    """A named child process with its output in `<log_dir>/<name>.log`.

    With `supervise=True` it behaves like a pod with restartPolicy=Always: an exit the caller
    did not ask for through `stop()` (a crash, or `kill()` which stands for a pod kill) leads to
    a restart after a short back-off that grows while it keeps crashing.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        group: str | None = None,
        supervise: bool = False,
        stop_signal: int = signal.SIGTERM,
        restart_delay: float = 0.5,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.user = user
        self.group = group
        self.supervise = supervise
        self.stop_signal = stop_signal
        self.restart_delay = restart_delay
        self.log_path = log_dir / f"{name}.log"
        self.restart_count = 0
        self._popen: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._wanted = False
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, pid={self.pid}, running={self.is_running})"

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def is_running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def expected_running(self) -> bool:
        """Running, or supervised and due to be restarted (between a crash and its restart)."""
        return self.is_running or (self.supervise and self._wanted)

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def start(self) -> None:
        """Start the process unless it already runs; output is appended to its log."""
        with self._lock:
            self._wanted = True
            if self.is_running:
                return
            self._spawn()

    def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"=== {time.strftime('%H:%M:%S')} start {' '.join(self.argv)}\n".encode())
            log.flush()
            try:
                popen = popen_child(
                    self.argv, log=log, env=self.env, cwd=self.cwd, user=self.user, group=self.group
                )
            except OSError as exc:
                raise StackError(f"cannot start {self.name}: {exc}") from exc
        self._popen = popen
        self._started_at = time.monotonic()
        with _live_lock:
            _live.add(self)
        threading.Thread(target=self._watch, args=(popen,), name=f"watch-{self.name}", daemon=True).start()

    def _watch(self, popen: subprocess.Popen[bytes]) -> None:
        """Reap at once (no zombie), note the exit in the log, restart if supervised and unasked."""
        code = popen.wait()
        with contextlib.suppress(OSError), open(self.log_path, "ab") as log:
            log.write(f"=== {time.strftime('%H:%M:%S')} exited {code}\n".encode())
        if not self.supervise:
            return
        time.sleep(self._backoff())
        with self._lock:
            if not self._wanted or self._popen is not popen:
                return
            signal_group(popen.pid, signal.SIGKILL)
            self.restart_count += 1
            try:
                self._spawn()
            except StackError:
                self._wanted = False

    def _backoff(self) -> float:
        """Like CrashLoopBackOff: short after a long run, doubling while it keeps crashing."""
        if time.monotonic() - self._started_at > 10:
            return self.restart_delay
        return min(10.0, self.restart_delay * 2.0 ** min(self.restart_count, 5))

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop for good: `stop_signal`, then SIGKILL of the group after `timeout` s; no restart."""
        with self._lock:
            self._wanted = False
            popen = self._popen
        if popen is None:
            return None
        if popen.poll() is None:
            signal_group(popen.pid, signal.SIGCONT)
            with contextlib.suppress(ProcessLookupError):
                os.kill(popen.pid, self.stop_signal)
            try:
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                signal_group(popen.pid, signal.SIGKILL)
                popen.wait()
        signal_group(popen.pid, signal.SIGKILL)
        with _live_lock:
            _live.discard(self)
        return popen.returncode

    def kill(self) -> None:
        """SIGKILL the whole group: a crash. A supervised process is then restarted (a pod kill)."""
        with self._lock:
            popen = self._popen
        if popen is None:
            return
        signal_group(popen.pid, signal.SIGKILL)
        popen.wait()

    def pause(self) -> None:
        """SIGSTOP the group: the process hangs, its sockets stay open."""
        if self._popen is not None:
            signal_group(self._popen.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the group after `pause()`."""
        if self._popen is not None:
            signal_group(self._popen.pid, signal.SIGCONT)

    def restart(self, timeout: float = 10.0) -> None:
        """A deliberate stop followed by a start."""
        self.stop(timeout)
        self.start()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the current process to exit; None if it is still running after `timeout`."""
        if self._popen is None:
            return None
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the log, for error messages that should explain a failure."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def kill_all_processes() -> None:
    """Last resort (atexit): SIGKILL every managed process still alive, with its group."""
    with _live_lock:
        procs = list(_live)
        _live.clear()
    for proc in procs:
        proc.supervise = False
        with proc._lock:
            proc._wanted = False
        proc.kill()


def run_checked(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    user: str | None = None,
    cwd: Path | None = None,
) -> str:
    """Run a short-lived helper command (initdb, rabbitmqctl, ast-migrate) to completion.

    The helper is also forked on the spawner thread with PDEATHSIG; its combined output is
    returned, and a failure raises StackError with that output.
    """
    rfd, wfd = os.pipe()
    try:
        popen = popen_child(argv, log=wfd, env=env, user=user, group=user, cwd=cwd)
    finally:
        os.close(wfd)
    with os.fdopen(rfd, "rb") as out:
        reader = _Reader(out)
        try:
            code = popen.wait(timeout)
        except subprocess.TimeoutExpired:
            signal_group(popen.pid, signal.SIGKILL)
            popen.wait()
            raise StackError(f"{argv[0]} timed out after {timeout}s:\n{reader.text()}") from None
        signal_group(popen.pid, signal.SIGKILL)
        text = reader.text()
    if code != 0:
        raise StackError(f"{' '.join(argv)} exited {code}:\n{text}")
    return text


class _Reader:
    """Drains a pipe on a thread so a chatty helper never blocks on a full pipe."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._chunks: list[bytes] = []
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream: IO[bytes]) -> None:
        for chunk in iter(lambda: stream.read(4096), b""):
            self._chunks.append(chunk)

    def text(self) -> str:
        self._thread.join(5)
        return b"".join(self._chunks).decode(errors="replace")
