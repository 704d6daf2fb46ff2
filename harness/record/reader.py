"""The one reader of a run directory: every file back into its record type, or a clear refusal.

A directory written with another schema (or before schemas existed) is refused with one line
naming the version it has and the version wanted: reading it anyway would mean guessing shapes.
A run killed half way is still readable: a torn last line of a JSONL file is skipped and noted in
`problems`, and a missing file reads as nothing (the report says what is missing).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from harness.history import FAULT, NEMESIS, History, Operation, load_history
from harness.record.layout import RunLayout
from harness.record.records import (
    SCHEMA_VERSION,
    CheckRecord,
    FaultWindow,
    Record,
    RunManifest,
    RunResults,
    Sample,
    SnapshotRecord,
)

R = TypeVar("R", bound=Record)


class RecordError(Exception):
    """A run directory that cannot be read as this schema: one line that says why."""


def ensure_schema(run_dir: Path) -> RunManifest:
    path = RunLayout(run_dir).manifest
    if not path.is_file():
        raise RecordError(
            f"{run_dir} has no run.json: it was written before record schema {SCHEMA_VERSION} "
            f"(or is not a run directory); this reader wants schema {SCHEMA_VERSION}"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RecordError(f"{path} is unreadable: {exc}") from exc
    found = raw.get("schemaVersion") if isinstance(raw, dict) else None
    if found != SCHEMA_VERSION:
        raise RecordError(f"{run_dir} has record schema {found}; this reader wants schema {SCHEMA_VERSION}")
    try:
        return RunManifest.model_validate(raw)
    except ValidationError as exc:
        raise RecordError(f"{path} does not match schema {SCHEMA_VERSION}: {_first_error(exc)}") from exc


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"


class RunReader:
    """Reads one run directory; raises RecordError at once if its schema is not this one."""

    def __init__(self, run_dir: Path) -> None:
        self.layout = RunLayout(run_dir)
        self.manifest = ensure_schema(run_dir)
        self.problems: list[str] = []

    @property
    def root(self) -> Path:
        return self.layout.root

    def _jsonl(self, path: Path, kind: type[R]) -> list[R]:
        if not path.is_file():
            return []
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        out: list[R] = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                out.append(kind.model_validate_json(line))
            except ValidationError as exc:
                if number == len(lines) and "json_invalid" in {e["type"] for e in exc.errors()}:
                    self.problems.append(f"{self.layout.relative(path)}: torn last line skipped")
                    continue
                raise RecordError(f"{self.layout.relative(path)} line {number}: {_first_error(exc)}") from exc
        return out

    def _whole(self, path: Path, kind: type[R]) -> R | None:
        if not path.is_file():
            return None
        try:
            return kind.model_validate_json(path.read_text(encoding="utf-8"))
        except ValidationError as exc:
            raise RecordError(f"{self.layout.relative(path)}: {_first_error(exc)}") from exc

    def results(self) -> RunResults | None:
        return self._whole(self.layout.results, RunResults)

    def checks(self) -> list[CheckRecord]:
        return self._jsonl(self.layout.checks, CheckRecord)

    def samples(self) -> list[Sample]:
        return sorted(self._jsonl(self.layout.samples, Sample), key=lambda s: s.t)

    def snapshot(self, relative: str) -> SnapshotRecord | None:
        return self._whole(self.root / relative, SnapshotRecord)

    def snapshots(self) -> Iterator[tuple[CheckRecord, SnapshotRecord]]:
        """Each check's snapshot, in the order the checks were made; one a check names but the run
        does not hold is noted in `problems`."""
        for check in self.checks():
            found = self.snapshot(check.snapshot) if check.snapshot else None
            if found is not None:
                yield check, found
            elif check.snapshot:
                self.problems.append(f"{check.snapshot} (the snapshot of {check.name}) is missing")

    def history_files(self) -> list[Path]:
        return sorted(self.layout.histories.glob("*.jsonl")) if self.layout.histories.is_dir() else []

    def history(self, path: Path) -> History:
        try:
            return load_history(path)
        except (ValueError, TypeError) as exc:
            raise RecordError(f"{self.layout.relative(path)}: {exc}") from exc

    def histories(self) -> Iterator[tuple[Path, History]]:
        """Every history file; one that cannot be read is noted in `problems` and the rest read."""
        for path in self.history_files():
            try:
                yield path, self.history(path)
            except RecordError as exc:
                self.problems.append(str(exc))

    def operations(self) -> list[Operation]:
        """Every operation of every history of the run, in wall-clock order."""
        ops = [op for _, history in self.histories() for op in history]
        return sorted(ops, key=lambda op: op.wall_time)

    def fault_windows(self) -> list[FaultWindow]:
        """Fault windows of every history (indices pair invocations within one history file)."""
        windows = [w for _, history in self.histories() for w in fault_windows(history.ops)]
        return sorted(windows, key=lambda w: w.start)


def fault_windows(ops: Sequence[Operation]) -> list[FaultWindow]:
    """Each nemesis fault from its invocation to its completion (or open, if it never completed)."""
    ends = {op.invoke_index: op for op in ops if op.process == NEMESIS and op.type != "invoke"}
    windows = []
    for op in ops:
        if op.process != NEMESIS or op.f != FAULT or op.type != "invoke":
            continue
        end = ends.get(op.index)
        windows.append(
            FaultWindow(
                name=op.path,
                start=op.wall_time,
                end=end.wall_time if end else None,
                healed=(end.type == "ok") if end else None,
                details=dict((end or op).value or {}),
            )
        )
    return sorted(windows, key=lambda w: w.start)
