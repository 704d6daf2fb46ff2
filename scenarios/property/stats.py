"""The count of Hypothesis examples each property test ran, kept in `<run dir>/property_stats.json`.

The gate's closing note reports "the number of Hypothesis examples it ran"; Hypothesis itself
only prints statistics on request, so each test counts what it executed (every generated,
replayed and shrunk example) and merges its line into one JSON file of the run.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATS_FILE = "property_stats.json"
_lock = threading.Lock()


@dataclass
class ExampleCounter:
    """Examples (and, for state machines, steps) one test ran; `save` merges it into the file."""

    test: str
    examples: int = 0
    steps: int = 0
    started: float = field(default_factory=time.monotonic)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_record(self) -> dict[str, Any]:
        record = asdict(self)
        record.pop("started")
        record["seconds"] = round(time.monotonic() - self.started, 1)
        return record

    def save(self, run_dir: Path) -> Path:
        path = run_dir / STATS_FILE
        with _lock:
            data = load_stats(path)
            data.setdefault("tests", {})[self.test] = self.as_record()
            data["total_examples"] = sum(t["examples"] for t in data["tests"].values())
            path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return path


def load_stats(path: Path) -> dict[str, Any]:
    """The file's content, or an empty record when it does not exist yet."""
    if not path.exists():
        return {"tests": {}, "total_examples": 0}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data
