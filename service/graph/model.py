"""The repository graph: what parsers report per file, and the linked graph that is stored.

Parsers produce `ParsedFile` (names as written in the source); the builder links them into a
`RepositoryGraph` whose nodes have stable ids (`path` for a file, `path::Qual.name` for a
symbol) so an artifact written by one worker is read back identically by another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GRAPH_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class SymbolDef:
    """A definition: `name` is qualified within its file (`Class.method`)."""

    name: str
    kind: str
    line: int


@dataclass(frozen=True, slots=True)
class ImportSpec:
    """One imported binding as written: `module` is a dotted name or a JS specifier.

    `level` counts Python's leading dots; `name` is the imported member (None for a whole
    module, "*" for a star import); `alias` is the local name it binds (None when it binds none,
    as in a JS re-export).
    """

    module: str
    name: str | None
    alias: str | None
    line: int
    level: int = 0


@dataclass(frozen=True, slots=True)
class Reference:
    """A use of a dotted name (`helper`, `self.greet`, `ns.f`) inside the symbol `source`."""

    source: str
    chain: tuple[str, ...]
    line: int


@dataclass(slots=True)
class ParsedFile:
    """Everything one parser learned from one file, unresolved."""

    path: str
    language: str
    symbols: list[SymbolDef] = field(default_factory=list)
    imports: list[ImportSpec] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)
    bases: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)


class ParseError(Exception):
    """A file that cannot be parsed; the builder records it and skips the file."""


@dataclass(frozen=True, slots=True)
class SymbolNode:
    id: str
    name: str
    kind: str
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class FileNode:
    path: str
    language: str
    symbols: int


@dataclass(frozen=True, slots=True, order=True)
class Edge:
    """`source` depends on `target`: it imports it (files) or references it (symbols)."""

    source: str
    target: str


@dataclass(frozen=True, slots=True)
class SkippedFile:
    path: str
    reason: str


@dataclass(slots=True)
class RepositoryGraph:
    files: list[FileNode] = field(default_factory=list)
    symbols: list[SymbolNode] = field(default_factory=list)
    file_edges: list[Edge] = field(default_factory=list)
    symbol_edges: list[Edge] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    external_imports: dict[str, list[str]] = field(default_factory=dict)

    def counts(self) -> dict[str, Any]:
        languages: dict[str, int] = {}
        for node in self.files:
            languages[node.language] = languages.get(node.language, 0) + 1
        return {
            "files": len(self.files),
            "symbols": len(self.symbols),
            "edges": len(self.file_edges) + len(self.symbol_edges),
            "fileEdges": len(self.file_edges),
            "symbolEdges": len(self.symbol_edges),
            "skipped": len(self.skipped),
            "languages": dict(sorted(languages.items())),
        }

    def to_json(self) -> dict[str, Any]:
        """A plain, sorted JSON form: equal graphs give equal bytes, hence equal digests."""
        return {
            "version": GRAPH_FORMAT_VERSION,
            "files": [[f.path, f.language, f.symbols] for f in sorted(self.files, key=lambda f: f.path)],
            "symbols": [
                [s.id, s.name, s.kind, s.file, s.line] for s in sorted(self.symbols, key=lambda s: s.id)
            ],
            "fileEdges": [[e.source, e.target] for e in sorted(self.file_edges)],
            "symbolEdges": [[e.source, e.target] for e in sorted(self.symbol_edges)],
            "skipped": [[s.path, s.reason] for s in sorted(self.skipped, key=lambda s: s.path)],
            "externalImports": {k: sorted(v) for k, v in sorted(self.external_imports.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RepositoryGraph:
        if data.get("version") != GRAPH_FORMAT_VERSION:
            raise ValueError(f"unsupported graph format version {data.get('version')!r}")
        return cls(
            files=[FileNode(path, language, int(count)) for path, language, count in data["files"]],
            symbols=[SymbolNode(i, n, k, f, int(line)) for i, n, k, f, line in data["symbols"]],
            file_edges=[Edge(s, t) for s, t in data["fileEdges"]],
            symbol_edges=[Edge(s, t) for s, t in data["symbolEdges"]],
            skipped=[SkippedFile(p, r) for p, r in data["skipped"]],
            external_imports={k: list(v) for k, v in data.get("externalImports", {}).items()},
        )


def symbol_id(path: str, name: str) -> str:
    return f"{path}::{name}"
