"""JavaScript and TypeScript files through tree-sitter: definitions, imports and name uses.

The grammars come from the tree-sitter project's own wheels (`tree-sitter-javascript`,
`tree-sitter-typescript`), which ship compiled parsers: tree-sitter-language-pack 1.x fetches
its grammars over the network at run time, which a worker must not depend on.

Tree-sitter always returns a tree, marking what it could not read as ERROR nodes; a file with
any such node is refused as unparsable, so the graph holds only what the source really says.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

import tree_sitter
import tree_sitter_javascript
import tree_sitter_typescript

from service.graph.model import ImportSpec, ParsedFile, ParseError, Reference, SymbolDef

Node = tree_sitter.Node

LANGUAGE_OF_SUFFIX = {
    ".js": "javascript",
    ".jsx": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
}
_FUNCTION_VALUES = {"arrow_function", "function_expression", "function", "generator_function"}
_CLASS_DECLARATIONS = {"class_declaration", "abstract_class_declaration"}
_FUNCTION_DECLARATIONS = {"function_declaration", "generator_function_declaration"}
_TYPE_DECLARATIONS = {
    "interface_declaration": "interface",
    "type_alias_declaration": "type",
    "enum_declaration": "enum",
}
_NAME_NODES = {"identifier", "type_identifier", "shorthand_property_identifier"}


@cache
def _language(grammar: str) -> tree_sitter.Language:
    if grammar == "javascript":
        return tree_sitter.Language(tree_sitter_javascript.language())
    if grammar == "tsx":
        return tree_sitter.Language(tree_sitter_typescript.language_tsx())
    return tree_sitter.Language(tree_sitter_typescript.language_typescript())


def parse_script(path: str, source: bytes, grammar: str) -> ParsedFile:
    """`grammar` is javascript, typescript or tsx; raises ParseError on a syntax error."""
    tree = tree_sitter.Parser(_language(grammar)).parse(source)
    root = tree.root_node
    if root.has_error:
        raise ParseError(f"{grammar} syntax error at line {_first_error_line(root)}")
    language = "typescript" if grammar == "tsx" else grammar
    parsed = ParsedFile(path=path, language=language)
    for statement in root.named_children:
        _top_level(parsed, statement)
    return parsed


def _first_error_line(root: Node) -> int:
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            return node.start_point.row + 1
        stack.extend(reversed([child for child in node.children if child.has_error or child.is_missing]))
    return root.start_point.row + 1


def _top_level(parsed: ParsedFile, node: Node) -> None:
    kind = node.type
    if kind == "import_statement":
        parsed.imports.extend(_imports(node))
    elif kind == "export_statement":
        _export(parsed, node)
    elif kind == "expression_statement":
        parsed.imports.extend(_requires(node, None))
    else:
        _declaration(parsed, node)


def _declaration(parsed: ParsedFile, node: Node, default_name: str | None = None) -> None:
    kind = node.type
    name = _text(node.child_by_field_name("name")) or default_name
    if kind in _FUNCTION_DECLARATIONS and name:
        _define(parsed, name, "function", node, node)
    elif kind in _CLASS_DECLARATIONS and name:
        _define_class(parsed, name, node)
    elif kind in _TYPE_DECLARATIONS and name:
        _define(parsed, name, _TYPE_DECLARATIONS[kind], node, node)
    elif kind in {"lexical_declaration", "variable_declaration"}:
        for declarator in node.named_children:
            if declarator.type == "variable_declarator":
                _variable(parsed, declarator)


def _define(parsed: ParsedFile, name: str, kind: str, at: Node, body: Node | None) -> None:
    parsed.symbols.append(SymbolDef(name, kind, at.start_point.row + 1))
    if body is not None:
        parsed.references.extend(_references(name, body))


def _variable(parsed: ParsedFile, declarator: Node) -> None:
    target = declarator.child_by_field_name("name")
    value = declarator.child_by_field_name("value")
    if target is None or target.type != "identifier":
        return
    name = _text(target)
    required = list(_requires(value, name)) if value is not None else []
    if required:
        parsed.imports.extend(required)
        return
    kind = "function" if value is not None and value.type in _FUNCTION_VALUES else "variable"
    _define(parsed, name, kind, declarator, value)


def _define_class(parsed: ParsedFile, name: str, node: Node) -> None:
    parsed.symbols.append(SymbolDef(name, "class", node.start_point.row + 1))
    bases: list[tuple[str, ...]] = []
    for child in node.named_children:
        if child.type == "class_heritage":
            parsed.references.extend(_references(name, child))
            bases.extend(_heritage_chains(child))
    parsed.bases[name] = bases
    body = node.child_by_field_name("body")
    for member in body.named_children if body is not None else []:
        _class_member(parsed, name, member)


def _heritage_chains(heritage: Node) -> Iterator[tuple[str, ...]]:
    for clause in heritage.named_children:
        if clause.type != "extends_clause":
            continue
        for value in clause.named_children:
            chain = _chain(value)
            if chain:
                yield chain


def _class_member(parsed: ParsedFile, class_name: str, member: Node) -> None:
    name_node = member.child_by_field_name("name")
    value = member.child_by_field_name("value")
    is_method = member.type == "method_definition" or (
        member.type in {"public_field_definition", "field_definition"}
        and value is not None
        and value.type in _FUNCTION_VALUES
    )
    if is_method and name_node is not None:
        _define(parsed, f"{class_name}.{_text(name_node)}", "method", member, member)
    else:
        parsed.references.extend(_references(class_name, member))


def _export(parsed: ParsedFile, node: Node) -> None:
    source = node.child_by_field_name("source")
    declaration = node.child_by_field_name("declaration")
    value = node.child_by_field_name("value")
    if source is not None:
        parsed.imports.extend(_reexports(node, _string(source)))
    elif declaration is not None:
        _declaration(parsed, declaration)
    elif value is not None and value.type in _FUNCTION_VALUES | {"class"}:
        kind = "class" if value.type == "class" else "function"
        _define(parsed, "default", kind, value, value)


def _imports(node: Node) -> Iterator[ImportSpec]:
    source = node.child_by_field_name("source")
    if source is None:
        return
    module, line = _string(source), node.start_point.row + 1
    clause = next((child for child in node.named_children if child.type == "import_clause"), None)
    if clause is None:
        yield ImportSpec(module, None, None, line)
        return
    for part in clause.named_children:
        if part.type == "identifier":
            yield ImportSpec(module, "default", _text(part), line)
        elif part.type == "namespace_import":
            alias = next((c for c in part.named_children if c.type == "identifier"), None)
            yield ImportSpec(module, None, _text(alias), line)
        elif part.type == "named_imports":
            yield from _specifiers(module, part, line)


def _reexports(node: Node, module: str) -> Iterator[ImportSpec]:
    """`export {a as b} from "m"` binds b as a re-export of m.a; `export * from "m"` is a star."""
    line = node.start_point.row + 1
    clause = next((child for child in node.named_children if child.type == "export_clause"), None)
    if clause is None:
        yield ImportSpec(module, "*", None, line)
        return
    yield from _specifiers(module, clause, line)


def _specifiers(module: str, clause: Node, line: int) -> Iterator[ImportSpec]:
    for specifier in clause.named_children:
        name = _text(specifier.child_by_field_name("name"))
        alias = _text(specifier.child_by_field_name("alias")) or name
        if name:
            yield ImportSpec(module, name, alias, line)


def _requires(node: Node, alias: str | None) -> Iterator[ImportSpec]:
    """`require("./x")` as a whole value (bound to `alias`) or as a bare statement."""
    call = node.named_children[0] if node.type == "expression_statement" and node.named_children else node
    if call.type != "call_expression":
        return
    function = call.child_by_field_name("function")
    arguments = call.child_by_field_name("arguments")
    if _text(function) != "require" or arguments is None:
        return
    strings = [arg for arg in arguments.named_children if arg.type == "string"]
    if len(strings) == 1:
        yield ImportSpec(_string(strings[0]), None, alias, call.start_point.row + 1)


def _references(source: str, root: Node) -> list[Reference]:
    """Every name use below `root`: identifiers, type names and `a.b.c` / `this.m` chains."""
    found: list[Reference] = []
    stack: list[tuple[Node, str, str | None]] = [(root, "", None)]
    while stack:
        node, parent_type, field_name = stack.pop()
        kind = node.type
        if kind == "member_expression":
            chain = _chain(node)
            if chain:
                found.append(Reference(source, chain, node.start_point.row + 1))
                continue
        elif kind in _NAME_NODES:
            if not _is_declared_name(parent_type, field_name):
                found.append(Reference(source, (_text(node),), node.start_point.row + 1))
            continue
        for index, child in enumerate(node.children):
            if child.is_named:
                stack.append((child, kind, node.field_name_for_child(index)))
    return found


def _is_declared_name(parent_type: str, field_name: str | None) -> bool:
    if parent_type.startswith("jsx"):
        return False
    return field_name in {"name", "pattern", "label", "alias"} or parent_type == "formal_parameters"


def _chain(node: Node) -> tuple[str, ...]:
    """`a.b.c` as ("a", "b", "c") and `this.m` as ("this", "m"); empty for any other shape."""
    parts: list[str] = []
    while node.type == "member_expression":
        prop = node.child_by_field_name("property")
        obj = node.child_by_field_name("object")
        if prop is None or obj is None or prop.type != "property_identifier":
            return ()
        parts.append(_text(prop))
        node = obj
    if node.type not in {"identifier", "this"}:
        return ()
    parts.append(_text(node))
    return tuple(reversed(parts))


def _string(node: Node) -> str:
    return "".join(_text(child) for child in node.named_children if child.type == "string_fragment")


def _text(node: Node | None) -> str:
    if node is None or node.text is None:
        return ""
    return node.text.decode("utf-8", errors="replace")
