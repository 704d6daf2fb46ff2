"""The graph of real repositories: exactly the expected symbols, imports and references."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenarios.fixtures.repos import SampleRepo, build_sample_repo, generate_large_repo
from service.graph.builder import build_graph, list_source_files
from service.graph.model import Edge, RepositoryGraph

pytestmark = pytest.mark.unit

EXPECTED_SYMBOLS = {
    ("app/cli.py::main", "function", 5),
    ("app/models.py::User", "class", 4),
    ("app/models.py::User.name", "method", 5),
    ("app/models.py::User.score", "method", 8),
    ("app/service.py::compute", "function", 9),
    ("app/service.py::make_user", "function", 5),
    ("app/util.py::Base", "class", 8),
    ("app/util.py::Base.greet", "method", 9),
    ("app/util.py::RATE", "variable", 1),
    ("app/util.py::VERSION", "variable", 13),
    ("app/util.py::helper", "function", 4),
    ("web/app.ts::run", "function", 5),
    ("web/lib/math.ts::Calc", "class", 7),
    ("web/lib/math.ts::Calc.total", "method", 8),
    ("web/lib/math.ts::ZERO", "variable", 5),
    ("web/lib/math.ts::add", "function", 1),
    ("web/main.js::start", "function", 3),
}
EXPECTED_FILE_EDGES = {
    ("app/cli.py", "app/service.py"),
    ("app/models.py", "app/util.py"),
    ("app/service.py", "app/models.py"),
    ("app/service.py", "app/util.py"),
    ("web/app.ts", "web/lib/math.ts"),
    ("web/main.js", "web/app.ts"),
}
EXPECTED_SYMBOL_EDGES = {
    ("app/cli.py::main", "app/service.py::make_user"),
    ("app/models.py::User", "app/util.py::Base"),
    ("app/models.py::User.name", "app/util.py::Base.greet"),
    ("app/models.py::User.score", "app/util.py::helper"),
    ("app/service.py::compute", "app/util.py::helper"),
    ("app/service.py::make_user", "app/models.py::User"),
    ("app/util.py::Base.greet", "app/util.py::helper"),
    ("app/util.py::VERSION", "app/util.py::RATE"),
    ("app/util.py::helper", "app/util.py::RATE"),
    ("web/app.ts::run", "web/lib/math.ts::Calc"),
    ("web/app.ts::run", "web/lib/math.ts::ZERO"),
    ("web/app.ts::run", "web/lib/math.ts::add"),
    ("web/lib/math.ts::Calc.total", "web/lib/math.ts::ZERO"),
    ("web/lib/math.ts::Calc.total", "web/lib/math.ts::add"),
    ("web/main.js::start", "web/app.ts::run"),
}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleRepo:
    return build_sample_repo(tmp_path_factory.mktemp("sample") / "repo")


@pytest.fixture(scope="module")
def graph(sample: SampleRepo) -> RepositoryGraph:
    return build_graph(sample.path)


def _pairs(edges: list[Edge]) -> set[tuple[str, str]]:
    return {(edge.source, edge.target) for edge in edges}


def test_sample_symbols_are_exactly_the_definitions(graph: RepositoryGraph) -> None:
    assert {(s.id, s.kind, s.line) for s in graph.symbols} == EXPECTED_SYMBOLS


def test_sample_file_edges_are_exactly_the_resolved_imports(graph: RepositoryGraph) -> None:
    assert _pairs(graph.file_edges) == EXPECTED_FILE_EDGES


def test_sample_symbol_edges_are_exactly_the_resolved_references(graph: RepositoryGraph) -> None:
    assert _pairs(graph.symbol_edges) == EXPECTED_SYMBOL_EDGES


def test_unparsable_file_is_recorded_and_skipped(graph: RepositoryGraph) -> None:
    assert [(s.path, s.reason) for s in graph.skipped] == [
        ("broken.py", "python syntax error at line 1: invalid syntax")
    ]
    assert "broken.py" not in {f.path for f in graph.files}


def test_external_imports_are_kept_apart(graph: RepositoryGraph) -> None:
    assert graph.external_imports == {"app/cli.py": ["os"], "web/app.ts": ["express"]}


def test_counts(graph: RepositoryGraph) -> None:
    assert graph.counts() == {
        "files": 8,
        "symbols": 17,
        "edges": 21,
        "fileEdges": 6,
        "symbolEdges": 15,
        "skipped": 1,
        "languages": {"javascript": 1, "python": 5, "typescript": 2},
    }


def test_json_round_trip_is_lossless(graph: RepositoryGraph) -> None:
    assert RepositoryGraph.from_json(graph.to_json()) == graph


def _write(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return root


def test_python_relative_star_and_src_layout_imports(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "src/pkg/__init__.py": "from .core import engine\n",
            "src/pkg/core.py": "def engine():\n    return 1\n",
            "src/pkg/sub/deep.py": "from ..core import *\nfrom pkg import engine as e\n\n"
            "def a():\n    return engine()\n\ndef b():\n    return e()\n",
            "tools/run.py": "import pkg.core\n\ndef go():\n    return pkg.core.engine()\n",
        },
    )
    graph = build_graph(root)
    assert _pairs(graph.file_edges) == {
        ("src/pkg/__init__.py", "src/pkg/core.py"),
        ("src/pkg/sub/deep.py", "src/pkg/core.py"),
        ("src/pkg/sub/deep.py", "src/pkg/__init__.py"),
        ("tools/run.py", "src/pkg/core.py"),
    }
    assert _pairs(graph.symbol_edges) == {
        ("src/pkg/sub/deep.py::a", "src/pkg/core.py::engine"),
        ("src/pkg/sub/deep.py::b", "src/pkg/core.py::engine"),
        ("tools/run.py::go", "src/pkg/core.py::engine"),
    }


def test_typescript_reexports_defaults_and_inherited_this_calls(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "lib/base.ts": "export class Base {\n  hello(): string { return 'hi'; }\n}\n",
            "lib/index.ts": 'export { Base } from "./base";\nexport * from "./tools";\n',
            "lib/tools.ts": "export function tool(): number { return 1; }\n",
            "main.tsx": 'import { Base, tool } from "./lib";\nimport def from "./d.js";\n'
            "class Child extends Base {\n  go() { return this.hello() + tool() + def(); }\n}\n",
            "d.ts": "export default function () { return 2; }\n",
        },
    )
    graph = build_graph(root)
    assert _pairs(graph.file_edges) == {
        ("lib/index.ts", "lib/base.ts"),
        ("lib/index.ts", "lib/tools.ts"),
        ("main.tsx", "lib/index.ts"),
        ("main.tsx", "d.ts"),
    }
    assert _pairs(graph.symbol_edges) == {
        ("main.tsx::Child", "lib/base.ts::Base"),
        ("main.tsx::Child.go", "lib/base.ts::Base.hello"),
        ("main.tsx::Child.go", "lib/tools.ts::tool"),
        ("main.tsx::Child.go", "d.ts::default"),
    }


def test_typescript_syntax_error_is_skipped(tmp_path: Path) -> None:
    root = _write(tmp_path, {"ok.ts": "export const a = 1;\n", "bad.ts": "export const = ;\n"})
    graph = build_graph(root)
    assert [f.path for f in graph.files] == ["ok.ts"]
    assert [(s.path, s.reason) for s in graph.skipped] == [("bad.ts", "typescript syntax error at line 1")]


def test_symlinks_and_vendor_directories_are_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside.py"
    outside.write_text("SECRET = 1\n")
    root = _write(tmp_path / "repo", {"a.py": "x = 1\n", "node_modules/m/index.js": "var y = 1;\n"})
    (root / "link.py").symlink_to(outside)
    (root / "linkdir").symlink_to(tmp_path)
    assert list_source_files(root) == ["a.py"]


def test_oversized_and_undecodable_files_are_skipped(tmp_path: Path) -> None:
    root = _write(tmp_path, {"big.py": "x = 1\n" * 200_000})
    (root / "bin.py").write_bytes(b"\x00\xff\xfe")
    graph = build_graph(root)
    reasons = {s.path: s.reason for s in graph.skipped}
    assert reasons["big.py"] == "larger than 1000000 bytes"
    assert reasons["bin.py"].startswith("python syntax error")


def test_generated_repository_has_the_computed_shape(tmp_path: Path) -> None:
    expected = generate_large_repo(tmp_path / "large", files=120, commit=False)
    counts = build_graph(expected.path).counts()
    assert counts["files"] == expected.files
    assert counts["symbols"] == expected.symbols
    assert counts["fileEdges"] == expected.file_edges
    assert counts["symbolEdges"] == expected.symbol_edges
    assert counts["skipped"] == 0
