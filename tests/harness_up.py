"""What tests that run `harness up` as a child share: its export line, and whether a pid lives."""

from __future__ import annotations

import subprocess
import time

import psutil


def read_exports(proc: subprocess.Popen[str], timeout: float) -> dict[str, str]:
    """The `export K=V ...` line `harness up` prints once the stack is ready, as a dict."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("export "):
            return dict(part.split("=", 1) for part in line.split()[1:])
    raise AssertionError(f"`harness up` printed no export line; exit {proc.poll()}")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
