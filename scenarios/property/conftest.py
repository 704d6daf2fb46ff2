"""Fixtures of the property suite: an example counter per test, and the run's example total.

Each test counts the Hypothesis examples it ran into `<run dir>/property_stats.json`; the
terminal summary repeats the total, so a plain `pytest scenarios/property` shows it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scenarios.property.stats import ExampleCounter

_saved: list[tuple[ExampleCounter, Path]] = []


@pytest.fixture
def example_counter(request: pytest.FixtureRequest, run_dir: Path) -> Iterator[ExampleCounter]:
    """Saved even when the test fails: a failing run's example count is part of its evidence."""
    counter = ExampleCounter(test=request.node.name)
    try:
        yield counter
    finally:
        _saved.append((counter, counter.save(run_dir)))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _saved:
        return
    total = sum(counter.examples for counter, _ in _saved)
    terminalreporter.section("property examples")
    for counter, _ in _saved:
        steps = f", {counter.steps} steps" if counter.steps else ""
        terminalreporter.write_line(f"{counter.test}: {counter.examples} examples{steps}")
    terminalreporter.write_line(f"total: {total} Hypothesis examples -> {_saved[-1][1]}")
