"""Python files through the standard `ast` module: definitions, imports and dotted-name uses.

Only what a reverse-dependency query needs: top-level functions, classes, their methods and
top-level variables; every import (also nested ones, which still make the file depend on the
module); and each loaded name or attribute chain, attributed to the top-level symbol whose code
contains it. Local scopes are not analysed, so a local variable that shadows a global name can
add a spurious edge; that errs on the side of reporting more impact, not less.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator

from service.graph.model import ImportSpec, ParsedFile, ParseError, Reference, SymbolDef

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_BLOCKS = (ast.If, ast.Try, ast.With, ast.AsyncWith)


def parse_python(path: str, source: bytes) -> ParsedFile:
    """Raises ParseError for a file `ast` rejects (syntax error, NUL bytes, bad encoding)."""
    try:
        tree = ast.parse(source, filename=path)
    except (SyntaxError, ValueError, UnicodeDecodeError) as error:
        line = getattr(error, "lineno", None)
        where = f" at line {line}" if line else ""
        raise ParseError(f"python syntax error{where}: {getattr(error, 'msg', error)}") from None
    parsed = ParsedFile(path=path, language="python")
    parsed.imports.extend(_imports(tree))
    for statement in _top_level(tree.body):
        _define(parsed, statement)
    return parsed


def _top_level(body: Iterable[ast.stmt]) -> Iterator[ast.stmt]:
    """Module statements, looking through `if`/`try`/`with` blocks (TYPE_CHECKING, fallbacks)."""
    for statement in body:
        if isinstance(statement, _BLOCKS):
            for block in _blocks_of(statement):
                yield from _top_level(block)
        else:
            yield statement


def _blocks_of(statement: ast.stmt) -> list[list[ast.stmt]]:
    if isinstance(statement, ast.If):
        return [statement.body, statement.orelse]
    if isinstance(statement, ast.Try):
        handlers = [handler.body for handler in statement.handlers]
        return [statement.body, *handlers, statement.orelse, statement.finalbody]
    assert isinstance(statement, ast.With | ast.AsyncWith)
    return [statement.body]


def _define(parsed: ParsedFile, statement: ast.stmt) -> None:
    if isinstance(statement, _FUNCTIONS):
        parsed.symbols.append(SymbolDef(statement.name, "function", statement.lineno))
        parsed.references.extend(_references(statement.name, [statement]))
    elif isinstance(statement, ast.ClassDef):
        _define_class(parsed, statement)
    elif isinstance(statement, ast.Assign | ast.AnnAssign | ast.AugAssign):
        _define_variables(parsed, statement)


def _define_class(parsed: ParsedFile, node: ast.ClassDef) -> None:
    parsed.symbols.append(SymbolDef(node.name, "class", node.lineno))
    parsed.bases[node.name] = [chain for base in node.bases if (chain := _chain(base))]
    header: list[ast.AST] = [*node.bases, *node.keywords, *node.decorator_list]
    body_rest: list[ast.AST] = []
    for item in node.body:
        if isinstance(item, _FUNCTIONS):
            qualified = f"{node.name}.{item.name}"
            parsed.symbols.append(SymbolDef(qualified, "method", item.lineno))
            parsed.references.extend(_references(qualified, [item]))
        else:
            body_rest.append(item)
    parsed.references.extend(_references(node.name, header + body_rest))


def _define_variables(parsed: ParsedFile, node: ast.Assign | ast.AnnAssign | ast.AugAssign) -> None:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    names = [name.id for target in targets for name in ast.walk(target) if isinstance(name, ast.Name)]
    known = {symbol.name for symbol in parsed.symbols}
    values: list[ast.AST] = [node.value] if node.value is not None else []
    for name in names:
        if name not in known:
            parsed.symbols.append(SymbolDef(name, "variable", node.lineno))
            known.add(name)
        parsed.references.extend(_references(name, values))


def _imports(tree: ast.Module) -> Iterator[ImportSpec]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield ImportSpec(alias.name, None, alias.asname or alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                bound = None if alias.name == "*" else alias.asname or alias.name
                yield ImportSpec(node.module or "", alias.name, bound, node.lineno, node.level)


def _references(source: str, nodes: Iterable[ast.AST]) -> list[Reference]:
    collector = _ReferenceCollector(source)
    for node in nodes:
        collector.visit(node)
    return collector.found


class _ReferenceCollector(ast.NodeVisitor):
    """Collects loaded names and the longest attribute chain rooted at a name."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.found: list[Reference] = []

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.found.append(Reference(self.source, (node.id,), node.lineno))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = _chain(node)
        if chain and isinstance(node.ctx, ast.Load):
            self.found.append(Reference(self.source, chain, node.lineno))
        elif chain:
            self.found.append(Reference(self.source, chain[:-1], node.lineno))
        else:
            self.generic_visit(node)


def _chain(node: ast.AST) -> tuple[str, ...]:
    """`a.b.c` as ("a", "b", "c"); empty when the chain is not rooted at a plain name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ()
    parts.append(node.id)
    return tuple(reversed(parts))
