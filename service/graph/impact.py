"""What a change reaches: the reverse dependency closure of changed files in a stored graph.

Edges point from the dependent to what it depends on, so impact walks them backwards: a file
that imports a changed file is reached, and so is a symbol that references a reached symbol.
A reached symbol also reaches its own file (at the same distance: the file now holds changed
behaviour), but a reached file does not reach all its symbols, which keeps the answer precise.

Each node is reached by a shortest path; among equally short ones the lexicographically
smallest is chosen, so the same graph and change always give the same answer.
"""

from __future__ import annotations

import heapq
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from service.graph.model import RepositoryGraph, SymbolNode


@dataclass(frozen=True, slots=True)
class ReachedNode:
    id: str
    distance: int
    path: tuple[str, ...]


@dataclass(slots=True)
class ImpactReport:
    changed_files: list[str]
    unknown_files: list[str]
    files: list[ReachedNode]
    symbols: list[ReachedNode]

    def to_json(self, symbols: dict[str, SymbolNode]) -> dict[str, Any]:
        return {
            "changedFiles": self.changed_files,
            "unknownFiles": self.unknown_files,
            "counts": {"files": len(self.files), "symbols": len(self.symbols)},
            "files": [{"file": n.id, "distance": n.distance, "path": list(n.path)} for n in self.files],
            "symbols": [_symbol_json(n, symbols[n.id]) for n in self.symbols],
        }


def _symbol_json(node: ReachedNode, symbol: SymbolNode) -> dict[str, Any]:
    return {
        "id": node.id,
        "name": symbol.name,
        "kind": symbol.kind,
        "file": symbol.file,
        "line": symbol.line,
        "distance": node.distance,
        "path": list(node.path),
    }


class ImpactIndex:
    """The reversed graph, built once per loaded artifact and queried per change."""

    def __init__(self, graph: RepositoryGraph) -> None:
        self.symbols = {symbol.id: symbol for symbol in graph.symbols}
        self.files = {node.path for node in graph.files}
        self.members: dict[str, list[str]] = {path: [] for path in self.files}
        self.dependents: dict[str, list[tuple[str, int]]] = {}
        for symbol in graph.symbols:
            self.members.setdefault(symbol.file, []).append(symbol.id)
            self._add(symbol.id, symbol.file, 0)
        for edge in [*graph.file_edges, *graph.symbol_edges]:
            self._add(edge.target, edge.source, 1)

    def _add(self, dependency: str, dependent: str, weight: int) -> None:
        self.dependents.setdefault(dependency, []).append((dependent, weight))

    def query(self, changed_files: Iterable[str]) -> ImpactReport:
        wanted = sorted({_normalise(path) for path in changed_files})
        known = [path for path in wanted if path in self.files]
        reached = self._walk(known)
        ordered = sorted(reached.values(), key=lambda node: (node.distance, node.id))
        return ImpactReport(
            changed_files=known,
            unknown_files=[path for path in wanted if path not in self.files],
            files=[node for node in ordered if node.id not in self.symbols],
            symbols=[node for node in ordered if node.id in self.symbols],
        )

    def _walk(self, changed: list[str]) -> dict[str, ReachedNode]:
        seeds = [*changed, *(member for path in changed for member in self.members.get(path, []))]
        queue: list[tuple[int, tuple[str, ...], str]] = [(0, (seed,), seed) for seed in seeds]
        heapq.heapify(queue)
        reached: dict[str, ReachedNode] = {}
        while queue:
            distance, path, node = heapq.heappop(queue)
            if node in reached:
                continue
            reached[node] = ReachedNode(node, distance, path)
            for dependent, weight in self.dependents.get(node, ()):
                if dependent not in reached:
                    heapq.heappush(queue, (distance + weight, (*path, dependent), dependent))
        return reached


def analyse_impact(graph: RepositoryGraph, changed_files: Iterable[str]) -> dict[str, Any]:
    """The JSON answer of an impact job for one graph and one change."""
    index = ImpactIndex(graph)
    return index.query(changed_files).to_json(index.symbols)


def _normalise(path: str) -> str:
    """`./a/b.py` and `a//b.py` name the same file as `a/b.py`; `..` never names a graph file."""
    cleaned = posixpath.normpath(path.replace("\\", "/"))
    return cleaned[2:] if cleaned.startswith("./") else cleaned
