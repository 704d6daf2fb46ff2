"""The printable verdict: a Rich table, the counts line, and the violations' evidence as text.

What goes to disk is the run record's (`harness.record`): this module only prints.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict

from rich.console import Console
from rich.table import Table

from harness.checker import Verdict

STYLES = {"held": "green", "broken": "bold red", "unknown": "yellow"}


def verdict_table(verdict: Verdict, max_tasks: int = 5) -> Table:
    """One row per invariant: number, name, status, and the first broken taskIds."""
    table = Table(title=f"Invariants: {verdict.valid.upper()}", title_style=STYLES[verdict.valid])
    for column in ("#", "invariant", "status", "violations", "tasks / note"):
        table.add_column(column)
    for r in verdict.results:
        tasks = sorted(r.task_ids)
        detail = ", ".join(tasks[:max_tasks]) + (" ..." if len(tasks) > max_tasks else "")
        if not detail and r.violations:
            detail = r.violations[0].message
        table.add_row(
            str(r.number),
            r.name,
            f"[{STYLES[r.status]}]{r.status}[/]",
            str(len(r.violations)),
            detail or r.note,
        )
    return table


def counts_line(verdict: Verdict) -> str:
    return "  ".join(f"{k}={v}" for k, v in asdict(verdict.counts).items())


def print_verdict(verdict: Verdict, console: Console | None = None) -> None:
    console = console or Console()
    console.print(verdict_table(verdict))
    console.print(counts_line(verdict))


def violations_text(verdict: Verdict, max_per_invariant: int = 5, max_evidence: int = 1500) -> str:
    """Each broken or unknown invariant with its taskIds and evidence: what a failing test prints."""
    lines: list[str] = []
    for r in verdict.results:
        if r.status == "held":
            continue
        lines.append(f"invariant {r.number} ({r.name}): {r.status.upper()} {r.note}".rstrip())
        for v in r.violations[:max_per_invariant]:
            evidence = json.dumps(v.evidence, default=str)
            cut = evidence[:max_evidence] + (" ..." if len(evidence) > max_evidence else "")
            lines.append(f"  tasks {', '.join(v.task_ids) or '-'}: {v.message}")
            lines.append(f"    evidence: {cut}")
        if len(r.violations) > max_per_invariant:
            lines.append(f"  ... and {len(r.violations) - max_per_invariant} more")
    return "\n".join(lines)


def verdict_text(verdict: Verdict, width: int = 120) -> str:
    """The Rich table rendered as plain text (no colour codes), the counts, then the violations."""
    console = Console(width=width, record=True, force_terminal=False, color_system=None, file=io.StringIO())
    print_verdict(verdict, console)
    return console.export_text() + violations_text(verdict)
