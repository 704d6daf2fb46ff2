"""`harness report [RUN_DIR]`: (re)builds the HTML report of a run from what its directory holds.

Rebuilding is cheap and needs no servers, so a report can be regenerated after a run was
copied off a CI machine, or after the report's template improved. The builder runs as its own
process (`python -m reports`): the harness never imports the report.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_RUN_DIR = Path("reports/out/latest")

RunDirArgument = Annotated[
    Path,
    typer.Argument(help="Run directory (default: reports/out/latest).", file_okay=False),
]


def report(run_dir: RunDirArgument = DEFAULT_RUN_DIR) -> None:
    """(Re)build the HTML report of a run; prints the path of report.html."""
    if not run_dir.is_dir():
        raise typer.BadParameter(f"{run_dir} is not a run directory", param_hint="RUN_DIR")
    done = subprocess.run(
        [sys.executable, "-m", "reports", str(run_dir)], capture_output=True, text=True, check=False
    )
    if done.stdout.strip():
        typer.echo(done.stdout.strip())
    if done.stderr.strip():
        typer.echo(done.stderr.strip(), err=True)
    raise typer.Exit(done.returncode)
