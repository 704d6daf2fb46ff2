"""One directory per run (Jepsen's store/): reports/out/<timestamp>-<kind>/ and `latest`."""

from __future__ import annotations

import time
from pathlib import Path

DEFAULT_ROOT = Path("reports/out")


def new_run_dir(kind: str, root: Path = DEFAULT_ROOT) -> Path:
    """Create `<root>/<timestamp>-<kind>/` and point `<root>/latest` at it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = root / f"{stamp}-{kind}"
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = root / f"{stamp}-{kind}-{suffix}"
    run_dir.mkdir(parents=True)
    latest = root / "latest"
    tmp_link = root / f".latest-{run_dir.name}"
    tmp_link.symlink_to(run_dir.name)
    tmp_link.replace(latest)
    return run_dir
