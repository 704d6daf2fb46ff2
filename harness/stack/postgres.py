"""A throwaway PostgreSQL cluster owned by the `postgres` system user.

initdb and postgres refuse to run as root, so both run as `postgres`, but through
subprocess's `user=`/`group=` rather than runuser/pg_ctl: the postmaster is then our direct
child, carries PDEATHSIG, and its backends (same process group) die with it.
"""

from __future__ import annotations

import os
import pwd
import signal
from pathlib import Path

import asyncpg

from harness.stack.ports import free_port
from harness.stack.processes import ManagedProcess, run_checked
from harness.stack.readiness import poll_until_ready

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"


class PostgresCluster:
    """One cluster listening on 127.0.0.1:<port>, database `ast` owned by role `ast` (trust auth)."""

    def __init__(
        self, base_dir: Path, log_dir: Path, port: int | None = None, *, durable: bool = False
    ) -> None:
        """`durable=True`: fsync, synchronous_commit and full_page_writes on, so a crash (an
        immediate stop, SIGKILL) loses no commit it acknowledged; the default turns all three off
        for speed, and a crash may then lose acknowledged commits."""
        self.base_dir = base_dir
        self.durable = durable
        self.data_dir = base_dir / "data"
        self.socket_dir = base_dir / "sock"
        self.port = port or free_port()
        self.server = ManagedProcess(
            "postgres",
            self._server_argv(),
            log_dir=log_dir,
            user=PG_USER,
            group=PG_USER,
            stop_signal=signal.SIGINT,
        )

    @property
    def _durability(self) -> str:
        return "on" if self.durable else "off"

    @property
    def dsn(self) -> str:
        return f"postgresql://ast@127.0.0.1:{self.port}/ast"

    @property
    def superuser_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _server_argv(self) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "fsync": self._durability,
            "synchronous_commit": self._durability,
            "full_page_writes": self._durability,
            "max_connections": "200",
            "log_min_messages": "warning",
        }
        argv = [str(PG_BIN / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def init(self) -> None:
        """initdb once; a data directory that exists already (a restart) is kept."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        entry = pwd.getpwnam(PG_USER)
        self._let_postgres_traverse(self.base_dir.parent)
        for path in (self.base_dir, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        argv = [str(PG_BIN / "initdb"), "--no-sync", "-A", "trust", "-U", PG_USER, "-E", "UTF8", "-D"]
        run_checked([*argv, str(self.data_dir)], user=PG_USER, cwd=self.base_dir, timeout=120)

    @staticmethod
    def _let_postgres_traverse(directory: Path) -> None:
        """A tempfile directory is 0700 root; postgres needs to pass through it to its own dir."""
        directory.mkdir(parents=True, exist_ok=True)
        info = directory.stat()
        if info.st_uid == os.geteuid() and not info.st_mode & 0o001:
            directory.chmod(info.st_mode | 0o011)

    def start(self) -> None:
        """initdb when needed and start the postmaster; returns at once, see `wait_ready()`."""
        self.init()
        self.server.start()

    async def wait_ready(self, timeout: float = 30.0) -> float:
        """Wait for `select 1` to answer, then make sure role and database `ast` exist."""

        async def select_one() -> None:
            connection = await asyncpg.connect(self.superuser_dsn, timeout=2)
            try:
                await connection.fetchval("select 1")
                await self._ensure_ast_database(connection)
            finally:
                await connection.close()

        return await poll_until_ready(
            f"PostgreSQL :{self.port}",
            select_one,
            timeout=timeout,
            interval=0.1,
            alive=lambda: self.server.is_running,
            explain=self.server.log_tail,
        )

    @staticmethod
    async def _ensure_ast_database(connection: asyncpg.Connection) -> None:
        if not await connection.fetchval("select 1 from pg_roles where rolname = 'ast'"):
            await connection.execute("create role ast login superuser")
        if not await connection.fetchval("select 1 from pg_database where datname = 'ast'"):
            await connection.execute("create database ast owner ast")

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT): active transactions are rolled back, then a clean checkpoint."""
        self.server.stop(timeout=timeout)

    def kill(self, hard: bool = False) -> None:
        """Immediate stop (SIGQUIT, crash recovery on next start); `hard=True` is SIGKILL."""
        if hard or not self.server.is_running:
            self.server.kill()
            return
        pid = self.server.pid
        assert pid is not None
        os.kill(pid, signal.SIGQUIT)
        if self.server.wait(10) is None:
            self.server.kill()
        self.server.kill()

    def restart(self, timeout: float = 30.0) -> None:
        """Fast restart on the same data directory and port."""
        self.stop(timeout)
        self.start()

    def pause(self) -> None:
        self.server.pause()

    def resume(self) -> None:
        self.server.resume()

    def teardown(self) -> None:
        self.stop()
