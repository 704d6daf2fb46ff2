"""Walks a checkout, parses each source file and links names to files and symbols.

Parsing is per file and independent (the job runs it in chunks off the event loop); linking
needs every file at once. A file that cannot be read or parsed is recorded with its reason and
skipped: one broken file must not fail a whole repository. Symlinks are never followed, so a
hostile repository cannot make the worker read outside its checkout.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from service.graph.model import (
    Edge,
    FileNode,
    ImportSpec,
    ParsedFile,
    ParseError,
    Reference,
    RepositoryGraph,
    SkippedFile,
    SymbolDef,
    SymbolNode,
    symbol_id,
)
from service.graph.python_parser import parse_python
from service.graph.treesitter_parser import LANGUAGE_OF_SUFFIX, parse_script

MAX_FILE_BYTES = 1_000_000
SKIPPED_DIRECTORIES = frozenset(
    {".git", "node_modules", "__pycache__", ".venv", "venv", ".tox", ".mypy_cache", ".pytest_cache"}
)
_SCRIPT_EXTENSIONS = (".ts", ".tsx", ".d.ts", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts")
_SELF_NAMES = frozenset({"self", "cls", "this"})
_MAX_DEPTH = 12


def is_source_file(name: str) -> bool:
    return name.endswith(".py") or PurePosixPath(name).suffix in LANGUAGE_OF_SUFFIX


def list_source_files(root: Path) -> list[str]:
    """Repository-relative POSIX paths of every parsable file, sorted, symlinks excluded."""
    found: list[str] = []
    for directory, subdirectories, names in os.walk(root, followlinks=False):
        subdirectories[:] = sorted(d for d in subdirectories if d not in SKIPPED_DIRECTORIES)
        for name in names:
            full = Path(directory, name)
            if is_source_file(name) and not full.is_symlink():
                found.append(full.relative_to(root).as_posix())
    return sorted(found)


def parse_file(root: Path, relative: str) -> ParsedFile | SkippedFile:
    """Parses one file; every failure becomes a SkippedFile with a reason a person can read."""
    full = root / relative
    try:
        if full.stat().st_size > MAX_FILE_BYTES:
            return SkippedFile(relative, f"larger than {MAX_FILE_BYTES} bytes")
        source = full.read_bytes()
    except OSError as error:
        return SkippedFile(relative, f"unreadable: {error.strerror or error}")
    try:
        if relative.endswith(".py"):
            return parse_python(relative, source)
        return parse_script(relative, source, LANGUAGE_OF_SUFFIX[PurePosixPath(relative).suffix])
    except ParseError as error:
        return SkippedFile(relative, str(error))
    except RecursionError:
        return SkippedFile(relative, "nesting too deep to parse")


def parse_files(root: Path, relatives: Iterable[str]) -> list[ParsedFile | SkippedFile]:
    """One chunk of parsing work; pure, so it can run in a thread or another process."""
    return [parse_file(root, relative) for relative in relatives]


def build_graph(root: Path) -> RepositoryGraph:
    """The whole pipeline in one call, for tests and benchmarks."""
    results = parse_files(root, list_source_files(root))
    return link(results)


def link(results: Sequence[ParsedFile | SkippedFile]) -> RepositoryGraph:
    parsed = [result for result in results if isinstance(result, ParsedFile)]
    skipped = [result for result in results if isinstance(result, SkippedFile)]
    graph = _Linker(parsed).link()
    graph.skipped = sorted(skipped, key=lambda item: item.path)
    return graph


@dataclass(frozen=True, slots=True)
class _Binding:
    """A local name bound by an import: a whole module (`name` None) or one of its members."""

    path: str
    name: str | None


class _Linker:
    """Resolves imports to files and references to symbols across all parsed files."""

    def __init__(self, parsed: list[ParsedFile]) -> None:
        self.files = {item.path: item for item in parsed}
        self.symbols: dict[str, dict[str, SymbolDef]] = {
            item.path: {symbol.name: symbol for symbol in item.symbols} for item in parsed
        }
        self.modules = _python_module_index(self.files)
        self.bindings: dict[str, dict[str, _Binding]] = {path: {} for path in self.files}
        self.stars: dict[str, list[str]] = {path: [] for path in self.files}
        self.file_edges: set[Edge] = set()
        self.symbol_edges: set[Edge] = set()
        self.external: dict[str, set[str]] = {}
        self.class_bases: dict[str, list[str]] = {}
        self._exports: dict[tuple[str, str], str | None] = {}

    def link(self) -> RepositoryGraph:
        for item in self.files.values():
            for spec in item.imports:
                self._bind(item.path, spec)
        for item in self.files.values():
            self._link_bases(item)
        for item in self.files.values():
            for reference in item.references:
                self._link_reference(item.path, reference)
        return self._graph()

    def _graph(self) -> RepositoryGraph:
        ordered = sorted(self.files.items())
        files = [FileNode(path, item.language, len(item.symbols)) for path, item in ordered]
        symbols = [
            SymbolNode(symbol_id(path, symbol.name), symbol.name, symbol.kind, path, symbol.line)
            for path, item in ordered
            for symbol in item.symbols
        ]
        return RepositoryGraph(
            files=files,
            symbols=sorted({node.id: node for node in symbols}.values(), key=lambda node: node.id),
            file_edges=sorted(self.file_edges),
            symbol_edges=sorted(self.symbol_edges),
            external_imports={path: sorted(names) for path, names in sorted(self.external.items())},
        )

    # imports -------------------------------------------------------------------------------

    def _bind(self, path: str, spec: ImportSpec) -> None:
        python = path.endswith(".py")
        binding = self._python_binding(path, spec) if python else self._script_binding(path, spec)
        if binding is None:
            self.external.setdefault(path, set()).add("." * spec.level + spec.module)
            return
        if binding.path != path:
            self.file_edges.add(Edge(path, binding.path))
        if spec.name == "*":
            self.stars[path].append(binding.path)
        elif spec.alias:
            self.bindings[path][spec.alias] = binding

    def _python_binding(self, path: str, spec: ImportSpec) -> _Binding | None:
        module = _absolute_module(path, spec)
        if module is None:
            return None
        target = self._python_module(path, module, relative=spec.level > 0)
        if spec.name is None or spec.name == "*":
            return _Binding(target, None) if target else None
        submodule = self._python_module(
            path, f"{module}.{spec.name}" if module else spec.name, relative=spec.level > 0
        )
        defined_here = target is not None and spec.name in self.symbols[target]
        if submodule and not defined_here:
            return _Binding(submodule, None)
        return _Binding(target, spec.name) if target else None

    def _python_module(self, path: str, module: str, *, relative: bool) -> str | None:
        """Absolute lookup first; then a sibling module, as a script directory imports it."""
        found = self.modules.get(module)
        if found is not None or relative or not module:
            return found
        sibling = posixpath.join(posixpath.dirname(path), *module.split("."))
        for candidate in (f"{sibling}.py", f"{sibling}/__init__.py"):
            if candidate in self.files:
                return candidate
        return None

    def _script_binding(self, path: str, spec: ImportSpec) -> _Binding | None:
        target = _script_module(path, spec.module, self.files)
        if target is None:
            return None
        return _Binding(target, None if spec.name in (None, "*") else spec.name)

    # references ----------------------------------------------------------------------------

    def _link_bases(self, item: ParsedFile) -> None:
        for class_name, chains in item.bases.items():
            resolved = [self._resolve(item.path, Reference(class_name, chain, 0)) for chain in chains]
            self.class_bases[symbol_id(item.path, class_name)] = [base for base in resolved if base]

    def _link_reference(self, path: str, reference: Reference) -> None:
        if reference.source not in self.symbols[path]:
            return
        target = self._resolve(path, reference)
        source = symbol_id(path, reference.source)
        if target is not None and target != source:
            self.symbol_edges.add(Edge(source, target))

    def _resolve(self, path: str, reference: Reference) -> str | None:
        chain = reference.chain
        if chain[0] in _SELF_NAMES:
            owner = self._enclosing_class(path, reference.source)
            return self._member(owner, chain[1]) if owner and len(chain) > 1 else None
        if chain[0] in self.symbols[path]:
            return self._with_member(symbol_id(path, chain[0]), chain[1:])
        found = self._resolve_binding(path, chain)
        if found is not None:
            return found
        for star in self.stars[path]:
            exported = self._export(star, chain[0])
            if exported:
                return self._with_member(exported, chain[1:])
        return None

    def _resolve_binding(self, path: str, chain: tuple[str, ...]) -> str | None:
        """The longest bound prefix wins: `import a.b` binds "a.b", so `a.b.f` finds f in a/b."""
        bindings = self.bindings[path]
        for size in range(len(chain), 0, -1):
            binding = bindings.get(".".join(chain[:size]))
            if binding is None:
                continue
            rest = chain[size:]
            if binding.name is not None:
                exported = self._export(binding.path, binding.name)
            elif rest:
                exported, rest = self._export(binding.path, rest[0]), rest[1:]
            else:
                return None
            return self._with_member(exported, rest) if exported else None
        return None

    def _export(self, path: str, name: str, depth: int = 0) -> str | None:
        """The symbol a module offers under `name`: its own, re-exported, or via a star import."""
        key = (path, name)
        if key not in self._exports:
            self._exports[key] = None
            self._exports[key] = self._find_export(path, name, depth)
        return self._exports[key]

    def _find_export(self, path: str, name: str, depth: int) -> str | None:
        if name in self.symbols[path]:
            return symbol_id(path, name)
        if depth >= _MAX_DEPTH:
            return None
        binding = self.bindings[path].get(name)
        if binding is not None and binding.name is not None:
            return self._export(binding.path, binding.name, depth + 1)
        for star in self.stars[path]:
            found = self._export(star, name, depth + 1)
            if found:
                return found
        return None

    def _with_member(self, base: str, rest: tuple[str, ...]) -> str:
        """`K.m` resolves to the method when K defines (or inherits) m, else to K itself."""
        if rest:
            member = self._member(base, rest[0])
            if member:
                return member
        return base

    def _member(self, owner: str, attribute: str, depth: int = 0) -> str | None:
        path, _, name = owner.partition("::")
        qualified = f"{name}.{attribute}"
        if qualified in self.symbols.get(path, {}):
            return symbol_id(path, qualified)
        if depth >= _MAX_DEPTH:
            return None
        for base in self.class_bases.get(owner, []):
            found = self._member(base, attribute, depth + 1)
            if found:
                return found
        return None

    def _enclosing_class(self, path: str, source: str) -> str | None:
        owner = source.split(".", 1)[0]
        symbol = self.symbols[path].get(owner)
        return symbol_id(path, owner) if symbol is not None and symbol.kind == "class" else None


def _python_module_index(files: dict[str, ParsedFile]) -> dict[str, str]:
    """Dotted module name to file, also without a leading `src/` (the src layout)."""
    index: dict[str, str] = {}
    for path in sorted(files):
        if not path.endswith(".py"):
            continue
        parts = list(PurePosixPath(path).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts:
            index.setdefault(".".join(parts), path)
        if len(parts) > 1 and parts[0] == "src":
            index.setdefault(".".join(parts[1:]), path)
    return index


def _absolute_module(path: str, spec: ImportSpec) -> str | None:
    """`from ..a import b` in pkg/sub/m.py is `pkg.a`; None when it climbs above the root."""
    if spec.level == 0:
        return spec.module
    package = list(PurePosixPath(path).parent.parts)
    climb = spec.level - 1
    if climb > len(package):
        return None
    base = package[: len(package) - climb]
    return ".".join([*base, *([spec.module] if spec.module else [])])


def _script_module(path: str, specifier: str, files: dict[str, ParsedFile]) -> str | None:
    """Relative specifiers only; bare ones are packages from outside the repository."""
    if not specifier.startswith(("./", "../")) and specifier not in {".", ".."}:
        return None
    base = posixpath.normpath(posixpath.join(posixpath.dirname(path), specifier))
    if base.startswith("../") or base == "..":
        return None
    stem = posixpath.splitext(base)[0]
    candidates = [base, *(base + ext for ext in _SCRIPT_EXTENSIONS)]
    candidates += [stem + ext for ext in _SCRIPT_EXTENSIONS]
    candidates += [f"{base}/index{ext}" for ext in _SCRIPT_EXTENSIONS]
    return next((candidate for candidate in candidates if candidate in files), None)
