"""Faults, each a small class with `start` (inject) and `stop` (heal), as Jepsen's nemeses are.

`start()` and `stop()` return the details the nemesis records in the fault's operation: what was
targeted, the pids, exit codes, when a supervised process came back, a command's output. A fault
never sleeps to let time pass; how long it stays injected is the caller's business (the schedule).
"""

from __future__ import annotations

import enum
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from chaos.targets import ProcessTarget, ServiceTarget
from harness.observe.rabbitmq import Management
from harness.stack.base import StackError
from harness.stack.processes import popen_child, signal_group
from harness.stack.readiness import poll_until_ready, run_sync

Details = dict[str, Any]
WORK_QUEUES = ("ast.initialize.repo.q", "ast.initialize.impact.q", "ast.simulate.q")
COMMAND_TIMEOUT_S = 120.0
OUTPUT_LIMIT = 16_384


class Fault(Protocol):
    """One fault: its stable name (a drill's, e.g. `worker-kill`), what it acts on, inject and heal."""

    @property
    def name(self) -> str: ...

    @property
    def target(self) -> str: ...

    def start(self) -> Details: ...

    def stop(self) -> Details: ...


class Action(enum.StrEnum):
    KILL = "kill"  # SIGKILL (PostgreSQL: immediate stop, a crash)
    STOP = "stop"  # SIGTERM / clean stop, waited for
    PAUSE = "pause"  # SIGSTOP until healed with SIGCONT
    RESTART = "restart"  # a clean stop and a start, done within start()


@dataclass
class ProcessFault:
    """`action` on one process target. Healing starts a server again (or resumes it); a supervised
    process comes back by itself, and healing waits for that and records when it happened."""

    name: str
    process: ProcessTarget
    action: Action
    _pid: int | None = field(default=None, init=False)
    _injected_at: float = field(default=0.0, init=False)

    @property
    def target(self) -> str:
        return self.process.name

    def start(self) -> Details:
        self._pid = self.process.pid
        details: Details = {"target": self.target, "action": str(self.action), "pid": self._pid}
        self._injected_at = time.monotonic()
        if self.action is Action.KILL:
            self.process.kill()
        elif self.action is Action.STOP:
            details["exit_code"] = self.process.stop()
        elif self.action is Action.PAUSE:
            self.process.pause()
        else:
            self.process.restart()
            details["restart_s"] = round(time.monotonic() - self._injected_at, 3)
        return details

    def stop(self) -> Details:
        if self.action is Action.PAUSE:
            self.process.resume()
            return {"resumed": True}
        healing = time.monotonic()
        if not self.process.supervised and self.action is not Action.RESTART:
            self.process.start()
        self.process.wait_back(self._pid)
        return {
            "came_back_by_itself": self.process.supervised,
            "heal_took_s": round(time.monotonic() - healing, 3),
            "back_after_s": round(time.monotonic() - self._injected_at, 3),
            "back_at": time.time(),
            "new_pid": self.process.pid,
        }


async def consumer_tags(management_url: str, vhost: str = "/") -> dict[str, set[str]]:
    """The consumer tags on each work queue, from the management API's consumers list."""
    async with Management(management_url, vhost=vhost) as management:
        rows = await management.consumer_rows()
    tags: dict[str, set[str]] = {name: set() for name in WORK_QUEUES}
    for row in rows:
        queue = (row.get("queue") or {}).get("name")
        if queue in tags:
            tags[queue].add(str(row.get("consumer_tag")))
    return tags


@dataclass
class RollingRestart:
    """Every worker in turn: SIGTERM it (it hands its job back), start its replacement, and wait
    until the replacement consumes (a new consumer on every work queue, the count back to what it
    was) before the next: a rollout with maxUnavailable 1."""

    workers: Sequence[ServiceTarget]
    management_url: str
    name: str = "worker-rolling-restart"
    timeout_s: float = 90.0

    @property
    def target(self) -> str:
        return ",".join(w.name for w in self.workers)

    def start(self) -> Details:
        steps = []
        for worker in self.workers:
            before = run_sync(consumer_tags(self.management_url), own_thread=True)
            began, pid = time.monotonic(), worker.pid
            exit_code = worker.stop()
            back = worker.wait_back(pid, self.timeout_s)
            run_sync(self._consuming_again(before), own_thread=True)
            steps.append(
                {
                    "worker": worker.name,
                    "pid": pid,
                    "exit_code": exit_code,
                    "ready_after_s": round(back, 3),
                    "consuming_after_s": round(time.monotonic() - began, 3),
                    "new_pid": worker.pid,
                }
            )
        return {"target": self.target, "action": "rolling-restart", "steps": steps}

    async def _consuming_again(self, before: dict[str, set[str]]) -> None:
        async def replaced() -> None:
            now = await consumer_tags(self.management_url)
            for queue, tags in before.items():
                if len(now[queue]) < len(tags) or not now[queue] - tags:
                    raise StackError(f"{queue}: consumers {len(now[queue])}, none new yet")

        await poll_until_ready("the replacement worker consuming", replaced, timeout=self.timeout_s)

    def stop(self) -> Details:
        return {}


@dataclass
class CommandFault:
    """A fault on a deployment: the shell command its target file gives for `name`, run with a
    timeout; exit code and output (the last 16 KiB) go into the record. Whatever heals it is the
    deployment's (a pod comes back by itself), so `stop()` has nothing to do."""

    name: str
    command: str
    timeout_s: float = COMMAND_TIMEOUT_S

    @property
    def target(self) -> str:
        return "deployment"

    def start(self) -> Details:
        started = time.monotonic()
        code, output, timed_out = run_shell(self.command, self.timeout_s)
        return {
            "target": self.target,
            "command": self.command,
            "exit_code": code,
            "timed_out": timed_out,
            "output": output,
            "took_s": round(time.monotonic() - started, 3),
            # A command that failed or hung may or may not have done its work.
            "uncertain": code != 0,
        }

    def stop(self) -> Details:
        return {}


def run_shell(command: str, timeout_s: float) -> tuple[int | None, str, bool]:
    """`sh -c command` as a child that dies with us; (exit code or None on timeout, output, timed out)."""
    with tempfile.TemporaryFile() as log:
        popen = popen_child(["/bin/sh", "-c", command], log=log.fileno(), env=os.environ)
        timed_out = False
        try:
            code: int | None = popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            timed_out, code = True, None
        signal_group(popen.pid, signal.SIGKILL)
        popen.wait()
        log.seek(0)
        data = log.read()
    text = data[-OUTPUT_LIMIT:].decode("utf-8", "replace")
    return code, text, timed_out


async def worker_running(postgres_dsn: str, task_id: str) -> str | None:
    """The WORKER_ID running `task_id`: its row's `locked_by`, else the last event that names one."""
    import asyncpg

    connection = await asyncpg.connect(postgres_dsn, timeout=10)
    try:
        locked: str | None = await connection.fetchval(
            "SELECT locked_by FROM tasks WHERE task_id = $1::uuid", task_id
        )
        if locked:
            return locked
        found: str | None = await connection.fetchval(
            "SELECT worker_id FROM task_events WHERE task_id = $1::uuid AND worker_id IS NOT NULL "
            "ORDER BY event_id DESC LIMIT 1",
            task_id,
        )
        return found
    finally:
        await connection.close()
