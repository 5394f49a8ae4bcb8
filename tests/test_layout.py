"""The package's folders are its architecture: the imports between tfprune's modules have no cycle,
and no module of the library imports the experiment harness (tfprune/experiments)."""

import ast
from pathlib import Path

import tfprune

PACKAGE = Path(tfprune.__file__).parent


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path):
    """The tfprune modules a file imports, anywhere in it (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("tfprune")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tfprune"):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
    return {m for m in found if m in MODULES and m != "tfprune"}  # the package face re-exports only


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _cycles(graph):
    """Strongly connected components of more than one module, or with a self-import (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_imports_have_no_cycles():
    assert _cycles(GRAPH) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_library_never_imports_the_harness():
    library = {name: deps for name, deps in GRAPH.items()
               if name != "tfprune" and not name.startswith("tfprune.experiments")}
    offending = {name: sorted(d for d in deps if d.startswith("tfprune.experiments"))
                 for name, deps in library.items()}
    assert {k: v for k, v in offending.items() if v} == {}
    assert any(d.startswith("tfprune.experiments") for d in GRAPH["tfprune.experiments.cli"])  # the scan sees imports
