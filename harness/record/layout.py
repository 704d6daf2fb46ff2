"""Where each file of a run directory lives (Jepsen's store/): the one place that names them.

    <run>/run.json                  RunManifest: schema version and kind of run
    <run>/histories/<name>.jsonl    Operations: every request of one test (and the nemesis's faults)
    <run>/checks.jsonl              CheckRecord per checked test, drill or load run
    <run>/snapshots/<name>.json     SnapshotRecord the check judged
    <run>/samples.jsonl             Sample every second while a stack ran
    <run>/results.json              RunResults: the run's verdict
    <run>/junit.xml, junit/, allure-results/, logs/, stacks/<suite>/logs/, report.html
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

RUN_DIR_ENV = "HARNESS_RUN_DIR"
SUITE_ENV = "HARNESS_SUITE"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 120


def file_stem(name: str) -> str:
    """A file name for a test id: safe characters, cut to a readable length, plus a digest of the
    whole id, so two ids that clean or cut to the same text (parametrized ones) never share a file."""
    cleaned = _UNSAFE.sub("_", name.replace("::", "__")).strip("._") or "test"
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{cleaned[:MAX_NAME]}-{digest}"


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "run.json"

    @property
    def histories(self) -> Path:
        return self.root / "histories"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    @property
    def checks(self) -> Path:
        return self.root / "checks.jsonl"

    @property
    def samples(self) -> Path:
        return self.root / "samples.jsonl"

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def junit(self) -> Path:
        return self.root / "junit.xml"

    def history(self, name: str) -> Path:
        return self.histories / f"{file_stem(name)}.jsonl"

    def snapshot(self, name: str) -> Path:
        return self.snapshots / f"{file_stem(name)}.json"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def log_files(self) -> list[Path]:
        """Process logs of the run: `logs/*.log`, and each suite's stack logs `stacks/*/logs/*.log`."""
        return sorted(self.root.glob("logs/*.log")) + sorted(self.root.glob("stacks/*/logs/*.log"))
