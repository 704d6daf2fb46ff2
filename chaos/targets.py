"""What a process fault acts on, behind one interface: a RabbitMQ node, PostgreSQL, a service process.

Jepsen's db.clj gives every node kill!/start!/pause!/resume!; here every target of the embedded
stack gives the same six verbs plus `wait_back`, so a fault is just (target, action). Servers are
not supervised: after a kill or stop the nemesis starts them again. The API, the relay and the
workers are supervised like pods: after a kill or a SIGTERM they come back by themselves, and the
nemesis only waits for that (and records when it happened).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Protocol

from harness.stack.base import StackError
from harness.stack.postgres import PostgresCluster
from harness.stack.processes import ManagedProcess
from harness.stack.rabbitmq import RabbitNode
from harness.stack.readiness import http_ok, poll_until_ready, run_sync
from harness.stack.services import ServiceProcess, ServiceStack

BACK_TIMEOUT_S = 90.0
RA_SAVE_TIMEOUT_S = 10.0


class ProcessTarget(Protocol):
    """One process (or server) a fault can act on; every verb returns once the signal is sent
    or, for `stop`, once the process has exited."""

    @property
    def name(self) -> str: ...

    @property
    def supervised(self) -> bool:
        """True when it restarts by itself after an exit nobody asked for (a pod)."""

    @property
    def pid(self) -> int | None: ...

    def kill(self) -> None: ...

    def stop(self) -> int | None:
        """Stop it cleanly and wait for the exit; its exit code when known."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def start(self) -> None: ...

    def restart(self) -> None: ...

    def wait_back(self, since_pid: int | None, timeout: float = BACK_TIMEOUT_S) -> float:
        """Wait until it runs again (a process other than `since_pid`) and answers; seconds waited."""


class RabbitTarget:
    """One RabbitMQ node: kill is SIGKILL of the beam, stop is `rabbitmqctl stop`."""

    supervised = False

    def __init__(self, node: RabbitNode) -> None:
        self.node = node

    @property
    def name(self) -> str:
        return self.node.nodename

    @property
    def pid(self) -> int | None:
        return self.node.server.pid

    def kill(self) -> None:
        """SIGKILL, once Ra has saved its quorum queues' registrations (bounded): a kill before
        that loses the queue for good on 3.10, which would blame the service for RabbitMQ."""
        deadline = time.monotonic() + RA_SAVE_TIMEOUT_S
        while not self.node.quorum_registrations_saved() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.node.kill()

    def stop(self) -> int | None:
        self.node.stop()
        return self.node.server.returncode

    def pause(self) -> None:
        self.node.pause()

    def resume(self) -> None:
        self.node.resume()

    def start(self) -> None:
        self.node.start()

    def restart(self) -> None:
        self.node.restart()

    def wait_back(self, since_pid: int | None, timeout: float = BACK_TIMEOUT_S) -> float:
        return run_sync(self.node.wait_ready(timeout), own_thread=True)


class PostgresTarget:
    """The PostgreSQL cluster. The postmaster is our direct child, so the signals are those of
    pg_ctl: stop is `pg_ctl stop -m fast` (SIGINT), kill is `-m immediate` (SIGQUIT: a crash,
    WAL recovery at the next start)."""

    supervised = False

    def __init__(self, cluster: PostgresCluster) -> None:
        self.cluster = cluster

    @property
    def name(self) -> str:
        return "postgres"

    @property
    def pid(self) -> int | None:
        return self.cluster.server.pid

    def kill(self) -> None:
        self.cluster.kill()

    def stop(self) -> int | None:
        self.cluster.stop()
        return self.cluster.server.returncode

    def pause(self) -> None:
        self.cluster.pause()

    def resume(self) -> None:
        self.cluster.resume()

    def start(self) -> None:
        self.cluster.start()

    def restart(self) -> None:
        self.cluster.restart()

    def wait_back(self, since_pid: int | None, timeout: float = BACK_TIMEOUT_S) -> float:
        return run_sync(self.cluster.wait_ready(timeout), own_thread=True)


class ServiceTarget:
    """The API, the relay or one worker of a `ServiceStack`: supervised, so a kill or a SIGTERM is
    followed by a replacement, as a pod's; `stop` is that SIGTERM, waited for up to the grace."""

    supervised = True

    def __init__(self, stack: ServiceStack, service: ServiceProcess) -> None:
        self.stack = stack
        self.service = service

    @property
    def process(self) -> ManagedProcess:
        return self.service.process

    @property
    def name(self) -> str:
        return self.process.name

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def kill(self) -> None:
        self.process.kill()

    def stop(self) -> int | None:
        pid = self.process.pid
        if pid is None or not self.process.is_running:
            raise StackError(f"{self.name} is not running")
        os.kill(pid, signal.SIGTERM)
        code = self.process.wait(self.stack.stop_grace_s)
        if code is None:
            raise StackError(f"{self.name} did not exit within {self.stack.stop_grace_s:.0f}s of SIGTERM")
        return code

    def pause(self) -> None:
        self.process.pause()

    def resume(self) -> None:
        self.process.resume()

    def start(self) -> None:
        self.process.start()

    def restart(self) -> None:
        self.process.restart(timeout=self.stack.stop_grace_s)

    def wait_back(self, since_pid: int | None, timeout: float = BACK_TIMEOUT_S) -> float:
        started = time.monotonic()

        async def replaced_and_ready() -> None:
            if not self.process.is_running or self.process.pid == since_pid:
                raise StackError(f"{self.name} is not back yet")
            if self.service.ready_url is not None:
                await http_ok(self.service.ready_url)

        run_sync(
            poll_until_ready(
                f"{self.name} back after the fault",
                replaced_and_ready,
                timeout=timeout,
                interval=0.1,
                alive=lambda: self.process.expected_running,
                explain=self.process.log_tail,
            ),
            own_thread=True,
        )
        return time.monotonic() - started
