"""An existing deployment named by a target TOML file: endpoints only, no process handles."""

from __future__ import annotations

from pathlib import Path

from harness.stack.base import StackEndpoints, StackError, load_target


class TargetStack:
    """The `--target` / HARNESS_TARGET provider: start() reads the file, stop() leaves it running.

    Faults on such a deployment go through its `[faults.commands]`, never through processes
    of ours; so there is nothing to stop here.
    """

    def __init__(self, target_file: Path) -> None:
        self.target_file = target_file
        self.timings: dict[str, float] = {}
        self._endpoints: StackEndpoints | None = None

    @property
    def endpoints(self) -> StackEndpoints:
        if self._endpoints is None:
            raise StackError("the target is not loaded; call start()")
        return self._endpoints

    def start(self) -> StackEndpoints:
        self._endpoints = load_target(self.target_file)
        return self._endpoints

    def stop(self) -> None:
        """Nothing to stop: the deployment is not ours."""
