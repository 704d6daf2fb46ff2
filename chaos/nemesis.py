"""The nemesis: faults as operations of the run's history (Jepsen's nemesis.clj).

`Nemesis.start(name)` builds the fault from a catalog, records its invocation (process `nemesis`,
the fault's name and target), injects it; `Nemesis.stop(active)` heals it and records the
completion with what happened (when a supervised process came back, a command's output): `ok`,
or `info` when whether it took effect is unknown (a command that failed or timed out). A fault
the catalog cannot run here is recorded as a `fail` (it did not happen), with the reason, and
returns None: a drill then says it was skipped.

Catalogs: `LocalFaults` acts on the embedded stack's processes; `CommandFaults` runs a target
file's `[faults.commands]`. `catalog_for(stack)` chooses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from chaos.faults import Action, CommandFault, Details, Fault, ProcessFault, RollingRestart, worker_running
from chaos.targets import PostgresTarget, ProcessTarget, RabbitTarget, ServiceTarget
from harness.history import History, Operation
from harness.stack.base import StackEndpoints, StackProvider
from harness.stack.local import LocalStack
from harness.stack.rabbitmq import SIMULATE_QUEUE, quorum_status
from harness.stack.readiness import run_sync

KINDS = ("broker", "db", "worker", "relay", "api")
SPECIAL = ("broker-node-loss", "worker-rolling-restart")


class FaultSkipped(Exception):
    """The fault cannot run on this stack; the message says why."""


class FaultCatalog(Protocol):
    def build(self, name: str, **params: Any) -> Fault:
        """The fault `name` on this stack, or FaultSkipped saying why it cannot run here."""


@dataclass
class ActiveFault:
    fault: Fault
    invocation: Operation
    started: Details


class Nemesis:
    """Injects and heals faults, recording each as one operation pair in `history`."""

    def __init__(self, history: History, catalog: FaultCatalog) -> None:
        self.history = history
        self.catalog = catalog

    def start(self, name: str, **params: Any) -> ActiveFault | None:
        """Inject `name`; None when skipped (recorded as a `fail` with the reason)."""
        try:
            fault = self.catalog.build(name, **params)
        except FaultSkipped as skipped:
            op = self.history.fault_start(name, **_plain(params))
            self.history.complete(op, "fail", error=f"skipped: {skipped}", value={"skipped": str(skipped)})
            return None
        op = self.history.fault_start(name, target=fault.target, **_plain(params))
        try:
            details = fault.start()
        except Exception as exc:
            self.history.fault_end(op, healed=False, error=f"{type(exc).__name__}: {exc}")
            raise
        return ActiveFault(fault, op, details)

    def stop(self, active: ActiveFault) -> Operation:
        """Heal the fault; the completion holds the start's details and the heal's."""
        try:
            healed = active.fault.stop()
        except Exception as exc:
            self.history.fault_end(active.invocation, healed=False, **active.started, error=f"{exc}")
            raise
        details = {**active.started, **healed}
        return self.history.fault_end(active.invocation, healed=not details.get("uncertain"), **details)

    @contextmanager
    def fault(self, name: str, **params: Any) -> Iterator[ActiveFault | None]:
        """Injected for the body of the `with`, healed after it (even when the body fails)."""
        active = self.start(name, **params)
        try:
            yield active
        finally:
            if active is not None:
                self.stop(active)

    def run(self, name: str, **params: Any) -> Operation | None:
        """Inject and heal at once (a restart, a rolling restart, a kill of a supervised process)."""
        active = self.start(name, **params)
        return None if active is None else self.stop(active)


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    plain = (str, int, float, bool, type(None))
    return {k: v if isinstance(v, plain) else str(v) for k, v in params.items()}


class LocalFaults:
    """Faults on the embedded stack's own processes: `<kind>-<action>` for kind broker, db, worker,
    relay, api and action kill, stop, pause, restart; `worker-rolling-restart`; and
    `broker-node-loss` (a SIGKILL of one cluster node, by default the leader of ast.simulate.q).

    Parameters: `node` (a RabbitMQ node name or index; `leader`), `worker` (an index or a
    WORKER_ID), `task_id` (the worker running that task).
    """

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack

    def build(self, name: str, **params: Any) -> Fault:
        if name == "worker-rolling-restart":
            targets = [ServiceTarget(self.stack, self.stack.workers[w]) for w in sorted(self.stack.workers)]
            return RollingRestart(targets, self.stack.endpoints.management_url)
        if name == "broker-node-loss":
            if len(self.stack.rabbit_nodes) < 2:
                raise FaultSkipped("broker-node-loss needs a RabbitMQ cluster (--rabbit-nodes 3)")
            return ProcessFault(name, self._rabbit(params.get("node", "leader")), Action.KILL)
        kind, _, action = name.partition("-")
        if kind not in KINDS or action not in {a.value for a in Action}:
            raise FaultSkipped(f"no such fault on the embedded stack: {name}")
        return ProcessFault(name, self._target(kind, params), Action(action))

    def _target(self, kind: str, params: dict[str, Any]) -> ProcessTarget:
        if kind == "broker":
            return self._rabbit(params.get("node", 0))
        if kind == "db":
            if self.stack.postgres is None:
                raise FaultSkipped("PostgreSQL is not running here")
            return PostgresTarget(self.stack.postgres)
        service = {"api": self.stack.api, "relay": self.stack.relay}.get(kind)
        if kind == "worker":
            service = self.stack.workers.get(self._worker_name(params))
        if service is None:
            raise FaultSkipped(f"the stack runs no {kind} to fault ({params or 'no parameters'})")
        return ServiceTarget(self.stack, service)

    def _worker_name(self, params: dict[str, Any]) -> str:
        if params.get("task_id"):
            dsn = self.stack.endpoints.postgres_dsn
            found = run_sync(worker_running(dsn, str(params["task_id"])), own_thread=True)
            if found is None:
                raise FaultSkipped(f"no worker has taken task {params['task_id']}")
            return found
        chosen = params.get("worker", 0)
        return chosen if isinstance(chosen, str) else sorted(self.stack.workers)[int(chosen)]

    def _rabbit(self, node: str | int) -> RabbitTarget:
        nodes = self.stack.rabbit_nodes
        if not nodes:
            raise FaultSkipped("RabbitMQ is not running here")
        if node == "leader":
            urls = [n.management_url for n in nodes]
            node = run_sync(quorum_status(urls, SIMULATE_QUEUE), own_thread=True).leader
        if isinstance(node, int):
            return RabbitTarget(nodes[node])
        for candidate in nodes:
            if candidate.nodename == node:
                return RabbitTarget(candidate)
        raise FaultSkipped(f"no RabbitMQ node {node!r} here")


class CommandFaults:
    """Faults on a deployment: each runs the shell command its target file gives for that name."""

    def __init__(self, endpoints: StackEndpoints, timeout_s: float | None = None) -> None:
        self.endpoints = endpoints
        self.commands = dict(endpoints.fault_commands)
        self.timeout_s = timeout_s

    def build(self, name: str, **params: Any) -> Fault:
        command = self.commands.get(name)
        if command is not None:
            fault = CommandFault(name, command)
            if self.timeout_s is not None:
                fault.timeout_s = self.timeout_s
            return fault
        if name in self.endpoints.faults_allowed:
            raise FaultSkipped(f"{name} is allowed on this target but its [faults.commands] gives no command")
        raise FaultSkipped(f"{name} is neither allowed on this target nor given a command")


def catalog_for(stack: StackProvider) -> FaultCatalog:
    """The embedded stack's process handles when it has them, else the target file's commands."""
    if isinstance(stack, LocalStack):
        return LocalFaults(stack)
    return CommandFaults(stack.endpoints)
