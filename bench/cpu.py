"""CPU per process group (psutil): a group is some root pids and all their descendants."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import psutil

from bench.stats import cpu_percent


def _tree_cpu(roots: Iterable[int], recursive: bool = True) -> dict[int, float]:
    """pid -> user+system CPU seconds, for every live process in the trees under `roots`."""
    found: dict[int, float] = {}
    for root in roots:
        try:
            top = psutil.Process(root)
            members = [top, *top.children(recursive=True)] if recursive else [top]
        except psutil.Error:
            continue
        for process in members:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            found[process.pid] = times.user + times.system
    return found


@dataclass
class CpuMeter:
    """Snapshot the groups at `start()`, again at `stop()`; `percent()` per group over the window.

    `self` is the benchmark's own process (the submitters and the completion poll).
    """

    groups: Mapping[str, list[int]]
    _before: dict[str, dict[int, float]] = field(default_factory=dict)
    _after: dict[str, dict[int, float]] = field(default_factory=dict)
    _started: float = 0.0
    _wall: float = 0.0

    def start(self) -> None:
        self._before = self._snapshot()
        self._started = time.monotonic()

    def stop(self) -> None:
        self._wall = time.monotonic() - self._started
        self._after = self._snapshot()

    def _snapshot(self) -> dict[str, dict[int, float]]:
        # The benchmark's own process alone: every stack process is a descendant of it.
        found = {name: _tree_cpu(pids) for name, pids in self.groups.items()}
        return found | {"bench": _tree_cpu([os.getpid()], recursive=False)}

    def add(self, name: str, cpu_s: float) -> None:
        """CPU seconds of a group measured elsewhere (a process that exited inside the window)."""
        self._after[name] = {-1: cpu_s}

    def seconds(self) -> float:
        """CPU seconds used by every group together over the window."""
        before = self._before
        return sum(cpu_percent(before.get(name, {}), after, 1.0) for name, after in self._after.items()) / 100

    def percent(self) -> dict[str, float]:
        return {
            name: round(cpu_percent(self._before.get(name, {}), after, self._wall), 1)
            for name, after in self._after.items()
        }
