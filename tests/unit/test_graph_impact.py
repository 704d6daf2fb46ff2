"""Impact analysis on the sample repository: exactly the expected reach, paths and order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scenarios.fixtures.repos import UTIL_CHANGE_FILES, UTIL_CHANGE_SYMBOLS, build_sample_repo
from service.graph.builder import build_graph
from service.graph.impact import analyse_impact
from service.graph.model import RepositoryGraph

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> RepositoryGraph:
    return build_graph(build_sample_repo(tmp_path_factory.mktemp("sample") / "repo").path)


def _files(report: dict[str, Any]) -> list[tuple[str, int]]:
    return [(item["file"], item["distance"]) for item in report["files"]]


def _symbols(report: dict[str, Any]) -> list[tuple[str, int]]:
    return [(item["id"], item["distance"]) for item in report["symbols"]]


def test_change_in_python_core_reaches_its_dependents_in_order(graph: RepositoryGraph) -> None:
    report = analyse_impact(graph, ["app/util.py"])
    assert _files(report) == UTIL_CHANGE_FILES
    assert _symbols(report) == UTIL_CHANGE_SYMBOLS
    assert report["counts"] == {"files": 4, "symbols": 11}


def test_each_reached_node_carries_the_path_that_reaches_it(graph: RepositoryGraph) -> None:
    report = analyse_impact(graph, ["app/util.py"])
    paths = {item["id"]: item["path"] for item in report["symbols"]}
    assert paths["app/cli.py::main"] == [
        "app/util.py::Base",
        "app/models.py::User",
        "app/service.py::make_user",
        "app/cli.py::main",
    ]
    assert paths["app/models.py::User.name"] == ["app/util.py::Base.greet", "app/models.py::User.name"]
    files = {item["file"]: item["path"] for item in report["files"]}
    assert files["app/cli.py"] == ["app/util.py", "app/service.py", "app/cli.py"]
    main = next(item for item in report["symbols"] if item["id"] == "app/cli.py::main")
    assert main == {
        "id": "app/cli.py::main",
        "name": "main",
        "kind": "function",
        "file": "app/cli.py",
        "line": 5,
        "distance": 3,
        "path": paths["app/cli.py::main"],
    }


def test_change_in_typescript_crosses_into_javascript(graph: RepositoryGraph) -> None:
    report = analyse_impact(graph, ["web/lib/math.ts"])
    assert _files(report) == [("web/lib/math.ts", 0), ("web/app.ts", 1), ("web/main.js", 2)]
    assert _symbols(report) == [
        ("web/lib/math.ts::Calc", 0),
        ("web/lib/math.ts::Calc.total", 0),
        ("web/lib/math.ts::ZERO", 0),
        ("web/lib/math.ts::add", 0),
        ("web/app.ts::run", 1),
        ("web/main.js::start", 2),
    ]


def test_leaf_change_reaches_only_itself(graph: RepositoryGraph) -> None:
    report = analyse_impact(graph, ["app/cli.py"])
    assert _files(report) == [("app/cli.py", 0)]
    assert _symbols(report) == [("app/cli.py::main", 0)]


def test_several_changes_take_the_shortest_distance(graph: RepositoryGraph) -> None:
    report = analyse_impact(graph, ["app/models.py", "web/app.ts"])
    assert _files(report) == [
        ("app/models.py", 0),
        ("web/app.ts", 0),
        ("app/service.py", 1),
        ("web/main.js", 1),
        ("app/cli.py", 2),
    ]
    assert _symbols(report) == [
        ("app/models.py::User", 0),
        ("app/models.py::User.name", 0),
        ("app/models.py::User.score", 0),
        ("web/app.ts::run", 0),
        ("app/service.py::make_user", 1),
        ("web/main.js::start", 1),
        ("app/cli.py::main", 2),
    ]


def test_unknown_and_unparsed_files_are_listed_and_paths_normalised(graph: RepositoryGraph) -> None:
    report = analyse_impact(graph, ["./app/cli.py", "nope.py", "broken.py", "../etc/passwd", "app//cli.py"])
    assert report["changedFiles"] == ["app/cli.py"]
    assert report["unknownFiles"] == ["../etc/passwd", "broken.py", "nope.py"]
    assert _files(report) == [("app/cli.py", 0)]


def test_only_unknown_files_reach_nothing(graph: RepositoryGraph) -> None:
    report = analyse_impact(graph, ["README.md"])
    assert report["files"] == []
    assert report["symbols"] == []
    assert report["unknownFiles"] == ["README.md"]


def test_large_generated_repository_reaches_the_whole_chain_below(tmp_path: Path) -> None:
    from scenarios.fixtures.repos import generate_large_repo, python_module

    repo = generate_large_repo(tmp_path / "large", files=100, commit=False)
    report = analyse_impact(build_graph(repo.path), [python_module(45)])
    reached = _files(report)
    assert reached[0] == (python_module(45), 0)
    assert {path for path, _ in reached} == {python_module(i) for i in range(45, 50)}
    assert dict(reached)[python_module(49)] == 4
