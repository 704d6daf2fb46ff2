"""`python -m reports [RUN_DIR]`: build a run's HTML report and print its path.

The harness runs this in its own process (the gate, `harness report`): the report reads the run
record and the harness never imports the report. A run directory of another record schema is
refused with one line (exit 2).
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.record import RecordError
from reports.html import build_report


def main(argv: list[str]) -> int:
    run_dir = Path(argv[0]) if argv else Path("reports/out/latest")
    if not run_dir.is_dir():
        print(f"{run_dir} is not a run directory", file=sys.stderr)
        return 2
    try:
        print(build_report(run_dir))
    except RecordError as exc:
        print(f"cannot build the report: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
