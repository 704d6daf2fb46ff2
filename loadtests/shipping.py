"""Workers' histories to the master's run record, for a distributed run across machines.

Each Locust worker records into its own history file (on its own disk). So that the master's run
record holds every worker's history, each worker also sends the operations it recorded to the
master as Locust messages: at every stats report (a few seconds), and at the end. The end needs a
handshake: a master quitting sends `quit` and exits half a second later, while its workers may
still be stopping their users (and recording). So when the test stops on the master, it asks every
worker to stop and flush (`harness_flush`), and waits (bounded) until each has answered
(`harness_flushed`) after sending its last operations; messages keep their order.

The master appends what it receives to `histories/locust-<worker>.jsonl` of its run directory,
unless that worker's own file is already there (a worker on the same machine recording into the
same directory, as `--processes` does).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import gevent
from locust.runners import MasterRunner, WorkerRunner

from harness.record import RUN_DIR_ENV, RunLayout
from loadtests.users import RECORDER

OPERATIONS = "harness_history"
FLUSH = "harness_flush"
FLUSHED = "harness_flushed"
FLUSH_GRACE_S = 15.0
logger = logging.getLogger("loadtests.shipping")
_sent = [0]
_worker: list[Any] = []
_flushed: set[str] = set()


# --- on a worker ----------------------------------------------------------------------------------


def ship(**_: Any) -> None:
    """Send the operations recorded since the last shipment (a worker's stats report, its stop)."""
    history = RECORDER.current()
    if not _worker or history is None:
        return
    ops = history.ops
    lines, _sent[0] = [op.to_json() for op in ops[_sent[0] :]], len(ops)
    if lines:
        data = {"host": socket.gethostname(), "path": str(history.path), "lines": lines}
        _worker[0].runner.send_message(OPERATIONS, data)


def _flush(environment: Any) -> None:
    environment.runner.stop()
    ship()
    environment.runner.send_message(FLUSHED, {})


def on_flush(environment: Any, msg: Any, **_: Any) -> None:
    gevent.spawn(_flush, environment)


# --- on the master --------------------------------------------------------------------------------


def _already_here(data: dict[str, Any], histories: Path) -> bool:
    path = Path(str(data.get("path", "")))
    return data.get("host") == socket.gethostname() and path.parent.resolve() == histories.resolve()


def receive(environment: Any, msg: Any, **_: Any) -> None:
    """Append a worker's operations to its history file in this run's record."""
    layout = RunLayout(Path(os.environ[RUN_DIR_ENV]))
    if _already_here(msg.data, layout.histories):
        return
    path = layout.history(f"locust-{msg.node_id}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write("".join(f"{line}\n" for line in msg.data["lines"]))


def on_flushed(environment: Any, msg: Any, **_: Any) -> None:
    _flushed.add(msg.node_id)


def collect(environment: Any, **_: Any) -> None:
    """When the test stops on the master: every worker stops, sends what is left, and answers."""
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        return
    waiting = {client.id for client in runner.clients.all} - _flushed
    for client_id in waiting:
        runner.send_message(FLUSH, {}, client_id=client_id)
    deadline = time.monotonic() + environment.stop_timeout + FLUSH_GRACE_S
    while waiting - _flushed and time.monotonic() < deadline:
        gevent.sleep(0.2)
    if waiting - _flushed:
        logger.error(
            "workers %s sent no final history: their last operations are missing", waiting - _flushed
        )


def register(environment: Any, **_: Any) -> None:
    """At Locust's init: a master listens for the workers' histories; a worker for the flush, and
    is remembered for `ship` (the stats report event that drives it carries no environment)."""
    if isinstance(environment.runner, MasterRunner):
        environment.runner.register_message(OPERATIONS, receive)
        environment.runner.register_message(FLUSHED, on_flushed)
    elif isinstance(environment.runner, WorkerRunner):
        environment.runner.register_message(FLUSH, on_flush)
        _worker[:] = [environment]
