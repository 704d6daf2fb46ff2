"""The content-addressed artifact store: same graph, same name; corruption is detected."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest

from service.graph.model import Edge, FileNode, RepositoryGraph, SkippedFile, SymbolNode
from service.graph.store import ArtifactCorrupt, ArtifactNotFound, ArtifactStore

pytestmark = pytest.mark.unit


def _graph() -> RepositoryGraph:
    return RepositoryGraph(
        files=[FileNode("b.py", "python", 1), FileNode("a.py", "python", 1)],
        symbols=[
            SymbolNode("b.py::g", "g", "function", "b.py", 1),
            SymbolNode("a.py::f", "f", "function", "a.py", 3),
        ],
        file_edges=[Edge("a.py", "b.py")],
        symbol_edges=[Edge("a.py::f", "b.py::g")],
        skipped=[SkippedFile("c.py", "python syntax error at line 1: invalid syntax")],
        external_imports={"a.py": ["os"]},
    )


def test_write_then_read_gives_the_same_graph(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    pointer = store.write_graph(_graph())
    assert Path(pointer.path) == store.path_for(pointer.sha256)
    assert RepositoryGraph.from_json(_graph().to_json()) == store.read_graph(pointer.sha256)


def test_digest_is_the_sha256_of_the_stored_json(tmp_path: Path) -> None:
    pointer = ArtifactStore(tmp_path).write_graph(_graph())
    payload = gzip.decompress(Path(pointer.path).read_bytes())
    assert hashlib.sha256(payload).hexdigest() == pointer.sha256
    assert pointer.size == len(payload)


def test_equal_graphs_share_one_artifact_whatever_their_order(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    shuffled = _graph()
    shuffled.files.reverse()
    shuffled.symbols.reverse()
    first, second = store.write_graph(_graph()), store.write_graph(shuffled)
    assert first == second
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{first.sha256}.json.gz"]


def test_corrupt_artifact_is_detected(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    pointer = store.write_graph(_graph())
    Path(pointer.path).write_bytes(gzip.compress(b'{"version": 1}'))
    with pytest.raises(ArtifactCorrupt, match="does not match"):
        store.read_graph(pointer.sha256)
    Path(pointer.path).write_bytes(b"not gzip")
    with pytest.raises(ArtifactCorrupt, match="not readable"):
        store.read_graph(pointer.sha256)


@pytest.mark.parametrize("digest", ["0" * 64, "../../etc/passwd", "ABC", ""])
def test_unknown_or_malformed_digest_is_not_found(tmp_path: Path, digest: str) -> None:
    with pytest.raises(ArtifactNotFound):
        ArtifactStore(tmp_path).read_graph(digest)
