"""The package's imports, read from its source: the engine never imports the evaluation
harness, the server or the command line, and no module imports itself back through others.

Every import counts, also those inside functions (imported late for speed, they still tie
the modules together).
"""

from __future__ import annotations

import ast
from pathlib import Path

import glimpse

#: The package under test: the checkout, or the installed wheel when the tests run outside the tree.
PACKAGE = Path(glimpse.__file__).resolve().parent
#: Built on the engine; nothing in the engine may import them.
FRONT = ("glimpse.eval", "glimpse.server", "glimpse.cli", "glimpse.demo")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The glimpse modules ``name`` imports (a name imported from a package counts as its
    module when it is one, else as the package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                out.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source)
    return {m for m in out if m in modules}


def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) - {name} for name, path in modules.items()}


def _is_front(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FRONT)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_engine_imports_nothing_built_on_it():
    edges = graph()
    wrong = {m: sorted(i for i in imported if _is_front(i))
             for m, imported in edges.items() if not _is_front(m)}
    assert {m: i for m, i in wrong.items() if i} == {}


def test_no_module_imports_itself_back():
    assert cycles(graph()) == []


def test_the_checks_see_a_cycle_and_a_wrong_way_import():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    edges = graph()
    assert "glimpse.metrics" in edges["glimpse.collection.adapt"]  # imports are read, relative ones resolved
    assert _is_front("glimpse.eval.cli") and not _is_front("glimpse.evaluate")
