"""The layout's promises, read off the import statements of every module (no module is imported).

- no cycle between top-level packages (service, harness, chaos, scenarios, loadtests, reports);
  the command line (`harness.cli`, `harness.commands`) is the composition root above them all,
  so it counts as a layer of its own: it may run what chaos builds on top of the harness;
- `service/` never imports the harness (it reaches the service only through the contract);
- no module under `harness/` imports the report (the report reads the run record, not the reverse);
- the checker and the record types import no database or broker driver: they judge values.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("service", "harness", "chaos", "scenarios", "loadtests", "reports")
COMPOSITION_ROOT = ("harness.cli", "harness.commands")
CLI_LAYER = "cli"
DRIVERS = ("asyncpg", "aio_pika", "aiormq", "pamqp", "psycopg", "httpx", "pika")
PURE = (
    "harness.checker",
    "harness.state",
    "harness.history",
    "harness.record.records",
    "harness.record.layout",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names imported by a module, at any depth (a function-level import counts too)."""
    found: set[str] = set()
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def all_modules() -> dict[str, set[str]]:
    return {
        module_name(path): imports_of(path)
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def layer(name: str) -> str:
    if any(name == root or name.startswith(f"{root}.") for root in COMPOSITION_ROOT):
        return CLI_LAYER
    return name.split(".")[0]


def package_graph(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, imported in modules.items():
        source = layer(module)
        for name in imported:
            target = layer(name)
            if target in (*PACKAGES, CLI_LAYER) and target != source:
                graph[source].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Pairs of packages that reach each other."""

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(graph.get(node, ()))
        return False

    layers = (*PACKAGES, CLI_LAYER)
    return [(a, b) for a in layers for b in layers if a < b and reaches(a, b) and reaches(b, a)]


def test_no_cycle_between_top_level_packages() -> None:
    assert cycles(package_graph(all_modules())) == []


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    planted = {"harness.gate": {"reports.html"}, "reports.model": {"harness.record"}}
    assert cycles(package_graph(planted)) == [("harness", "reports")]
    through_the_cli = {"harness.commands.drill": {"chaos.nemesis"}, "chaos.nemesis": {"harness.cli"}}
    assert cycles(package_graph(through_the_cli)) == [("chaos", "cli")]


def test_no_harness_module_imports_the_report() -> None:
    offenders = {
        module: sorted(n for n in imported if n.split(".")[0] == "reports")
        for module, imported in all_modules().items()
        if module.startswith("harness")
    }
    assert {m: names for m, names in offenders.items() if names} == {}


def test_the_service_never_imports_the_harness() -> None:
    offenders = {
        module: sorted(n for n in imported if n.split(".")[0] in PACKAGES and n.split(".")[0] != "service")
        for module, imported in all_modules().items()
        if module.startswith("service")
    }
    assert {m: names for m, names in offenders.items() if names} == {}


def transitive_imports(module: str, modules: dict[str, set[str]]) -> set[str]:
    """Every name `module` imports, following the project's own modules (drivers are leaves)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        for name in modules.get(current, ()):
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


@pytest.mark.parametrize("module", PURE)
def test_the_checker_and_record_types_import_no_driver(module: str) -> None:
    modules = all_modules()
    reached = {n.split(".")[0] for n in transitive_imports(module, modules)}
    assert sorted(reached & set(DRIVERS)) == []
    assert module in modules, f"{module} is not a module of the project any more: update PURE"
