"""The printable verdict (a Rich table) and results.json, from a checker Verdict.

results.json is what the HTML report, the gate and CI read, so its shape is documented here:
`{"valid": held|broken|unknown, "counts": {...}, "invariants": [{"number", "name", "status",
"note", "violations": [{"taskIds", "message", "evidence"}]}], "snapshot": {...}, "settle": {...}}`.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.checker import InvariantResult, Verdict
from harness.state import Settled, Snapshot

STYLES = {"held": "green", "broken": "bold red", "unknown": "yellow"}
MAX_VIOLATIONS_JSON = 200


def _invariant_json(result: InvariantResult) -> dict[str, Any]:
    return {
        "number": result.number,
        "name": result.name,
        "status": result.status,
        "note": result.note,
        "violationCount": len(result.violations),
        "violations": [
            {"taskIds": list(v.task_ids), "message": v.message, "evidence": v.evidence}
            for v in result.violations[:MAX_VIOLATIONS_JSON]
        ],
    }


def verdict_json(
    verdict: Verdict, snapshot: Snapshot | None = None, settled: Settled | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "valid": verdict.valid,
        "counts": asdict(verdict.counts),
        "invariants": [_invariant_json(r) for r in verdict.results],
    }
    if snapshot is not None:
        out["snapshot"] = snapshot.summary()
    if settled is not None:
        out["settle"] = {
            "settled": settled.settled,
            "waitedS": settled.waited_s,
            "reasons": list(settled.reasons),
        }
    return out


def write_results_json(
    path: Path, verdict: Verdict, snapshot: Snapshot | None = None, settled: Settled | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(verdict_json(verdict, snapshot, settled), indent=2, default=str) + "\n")
    return path


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


def check_record(
    nodeid: str, verdict: Verdict, settled: Settled | None = None, **extra: Any
) -> dict[str, Any]:
    """One line of checks.jsonl: a test's verdict with the broken invariants and their taskIds."""
    return {
        "nodeid": nodeid,
        "valid": verdict.valid,
        "counts": asdict(verdict.counts),
        "invariants": {str(r.number): r.status for r in verdict.results},
        "broken": [
            {"number": r.number, "name": r.name, "status": r.status, "note": r.note,
             "taskIds": sorted(r.task_ids)[:50], "violations": len(r.violations)}
            for r in verdict.results
            if r.status != "held"
        ],
        "settled": settled.settled if settled is not None else None,
        "waitedS": round(settled.waited_s, 3) if settled is not None else None,
        **extra,
    }
