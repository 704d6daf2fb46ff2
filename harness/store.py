"""Where a run's files go (Jepsen's store/): one directory per run, shared by every process of it.

`harness gate` makes the run directory and hands it to each suite's pytest process through
`HARNESS_RUN_DIR`, so histories, per-test verdicts and logs of all suites land in one place:

    <run>/histories/<test>.jsonl   every request of one test and its answer
    <run>/checks.jsonl             one invariant verdict per test, appended by every suite
    <run>/stacks/<suite>/logs/     the embedded stack's process logs, per suite

Without `HARNESS_RUN_DIR` a pytest session makes its own `reports/out/<ts>-pytest/`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.stack.rundir import new_run_dir

RUN_DIR_ENV = "HARNESS_RUN_DIR"
SUITE_ENV = "HARNESS_SUITE"
CHECKS_FILE = "checks.jsonl"
HISTORIES_DIR = "histories"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 120


def resolve_run_dir(kind: str, root: Path) -> Path:
    """`HARNESS_RUN_DIR` when a parent process (the gate) chose the run directory; else a new one."""
    chosen = os.environ.get(RUN_DIR_ENV)
    if chosen:
        path = Path(chosen)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return new_run_dir(kind, root)


def suite_name(default: str = "pytest") -> str:
    return os.environ.get(SUITE_ENV) or default


def unique_dir(parent: Path, name: str) -> Path:
    """`parent/name`, or `name-2`, `name-3`... when a previous session of the run used it."""
    candidate, n = parent / name, 1
    while candidate.exists():
        n += 1
        candidate = parent / f"{name}-{n}"
    candidate.mkdir(parents=True)
    return candidate


def sanitize_nodeid(nodeid: str) -> str:
    """A file name for a test id: safe characters, cut to a readable length, plus a digest of the
    whole id, so two ids that clean or cut to the same text (parametrized ones) never share a file."""
    cleaned = _UNSAFE.sub("_", nodeid.replace("::", "__")).strip("._") or "test"
    digest = hashlib.sha256(nodeid.encode()).hexdigest()[:8]
    return f"{cleaned[:MAX_NAME]}-{digest}"


def history_path(run_dir: Path, nodeid: str) -> Path:
    return run_dir / HISTORIES_DIR / f"{sanitize_nodeid(nodeid)}.jsonl"


def append_check(run_dir: Path, record: dict[str, Any]) -> None:
    """One line per test; a single write of one line, so suites appending in turn never interleave."""
    line = json.dumps(record, default=str, separators=(",", ":")) + "\n"
    with (run_dir / CHECKS_FILE).open("a", encoding="utf-8") as out:
        out.write(line)


def read_checks(run_dir: Path) -> list[dict[str, Any]]:
    """Every per-test verdict of the run; a torn last line (a killed suite) is skipped."""
    path = run_dir / CHECKS_FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def log_files(log_dir: Path) -> Iterator[Path]:
    if log_dir.is_dir():
        yield from sorted(p for p in log_dir.iterdir() if p.is_file() and p.suffix == ".log")


def tail(path: Path, max_bytes: int = 32_768) -> str:
    """The last `max_bytes` of a log, from a line start: what a failing test's report attaches."""
    with path.open("rb") as log:
        log.seek(0, os.SEEK_END)
        size = log.tell()
        log.seek(max(0, size - max_bytes))
        data = log.read()
    if size > max_bytes and b"\n" in data:
        data = data.split(b"\n", 1)[1]
    return data.decode("utf-8", "replace")


def write_json(path: Path, data: Any) -> Path:
    """Written whole and then renamed, so a reader (the report, CI) never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def point_latest(run_dir: Path) -> None:
    """Point `<root>/latest` at `run_dir` again: a pytest session started meanwhile may have moved it."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest-{run_dir.name}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_dir.name)
    tmp.replace(link)
