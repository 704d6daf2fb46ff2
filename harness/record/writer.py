"""The one writer of a run directory. Several processes write one run (the gate's suites one after
another, Locust's workers, a drill's nemesis), so every append is one whole line in one write, and
every whole-file record is written beside and renamed into place: a reader never sees half a file.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from harness.checker import Verdict
from harness.history import History
from harness.record.layout import RUN_DIR_ENV, RunLayout
from harness.record.reader import ensure_schema
from harness.record.records import (
    CheckRecord,
    Record,
    RunKind,
    RunManifest,
    RunResults,
    Sample,
    SettleRecord,
    SnapshotRecord,
    VerdictRecord,
)
from harness.state import Settled, Snapshot

DEFAULT_ROOT = Path("reports/out")


def new_run_dir(kind: RunKind, root: Path = DEFAULT_ROOT) -> Path:
    """Create `<root>/<timestamp>-<kind>/` with its manifest, and point `<root>/latest` at it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir, suffix = root / f"{stamp}-{kind}", 1
    while run_dir.exists():
        suffix += 1
        run_dir = root / f"{stamp}-{kind}-{suffix}"
    run_dir.mkdir(parents=True)
    RunWriter.create(run_dir, kind)
    point_latest(run_dir)
    return run_dir


def point_latest(run_dir: Path) -> None:
    """Point `<root>/latest` at `run_dir` (again: a pytest session started meanwhile may have moved it)."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest-{run_dir.name}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_dir.name)
    tmp.replace(link)


def resolve_run_dir(kind: RunKind, root: Path) -> Path:
    """`HARNESS_RUN_DIR` when a parent process (the gate) chose the run directory; else a new one."""
    chosen = os.environ.get(RUN_DIR_ENV)
    if not chosen:
        return new_run_dir(kind, root)
    path = Path(chosen)
    path.mkdir(parents=True, exist_ok=True)
    RunWriter.create(path, kind)
    return path


def _write_whole(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _append_line(path: Path, record: Record) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(record.to_json() + "\n")


class RunWriter:
    """Writes the typed files of one run directory (see layout.py for where each goes)."""

    def __init__(self, run_dir: Path) -> None:
        self.layout = RunLayout(run_dir)

    @classmethod
    def create(cls, run_dir: Path, kind: RunKind) -> RunWriter:
        """The run's manifest, written once by whoever makes the directory; joining a run written
        with another schema is refused (its files could not be read back together)."""
        writer = cls(run_dir)
        if writer.layout.manifest.exists():
            ensure_schema(run_dir)
        else:
            manifest = RunManifest(kind=kind, created_at=time.time(), argv=tuple(sys.argv))
            _write_whole(writer.layout.manifest, manifest.to_json(indent=2))
        return writer

    @property
    def root(self) -> Path:
        return self.layout.root

    def history(self, name: str) -> History:
        """A fresh history for `name` (a test id, `nemesis`, a Locust worker), mirrored line by line."""
        path = self.layout.history(name)
        path.unlink(missing_ok=True)
        return History(path)

    def snapshot(self, name: str, snapshot: Snapshot) -> Path:
        return _write_whole(self.layout.snapshot(name), SnapshotRecord.of(snapshot).to_json())

    def check(
        self,
        name: str,
        suite: str,
        verdict: Verdict,
        *,
        settled: Settled | None = None,
        history: Path | None = None,
    ) -> CheckRecord:
        """Appends one checked test's verdict, and saves the snapshot it was judged on beside it."""
        snapshot_path = self.snapshot(name, settled.snapshot) if settled is not None else None
        record = CheckRecord(
            name=name,
            suite=suite,
            verdict=VerdictRecord.of(verdict),
            settle=SettleRecord.of(settled) if settled is not None else None,
            history=self.layout.relative(history) if history is not None else None,
            snapshot=self.layout.relative(snapshot_path) if snapshot_path else None,
            checked_at=time.time(),
        )
        _append_line(self.layout.checks, record)
        return record

    def sample(self, sample: Sample) -> None:
        _append_line(self.layout.samples, sample)

    def results(self, results: RunResults) -> Path:
        return _write_whole(self.layout.results, results.to_json(indent=2))
