"""The layering of ``spikelfp.hw_export``: no import cycle between its modules (none hidden
by a function-level import), and nothing from the layers above it (training, cli)."""

from __future__ import annotations

import ast
from pathlib import Path

import spikelfp.hw_export

PACKAGE = "spikelfp.hw_export"
ROOT = Path(spikelfp.hw_export.__file__).parent
#: Layers above hw_export: it may not import them, at module level or inside a function.
FORBIDDEN = ("spikelfp.training", "spikelfp.cli")


def _modules(root: Path, package: str) -> dict[str, Path]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([package, *parts])] = path
    return out


def _imports(name: str, path: Path, known: set[str]):
    """``(target, line, at module level)`` for every import in one file, targets resolved to
    absolute dotted names (``from pkg import sub`` names ``pkg.sub`` when that is a module)."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    top_level = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in known]
            # ``from . import sub`` imports the submodule, not (again) the package itself
            targets = subs + ([mod] if len(subs) < len(node.names) else [])
        else:
            continue
        for t in targets:
            yield t, node.lineno, id(node) in top_level


def import_graph(root: Path, package: str):
    """``(graph, function_level)``: the intra-package import edges (module-level and
    function-level), and the function-level ones with their line numbers."""
    mods = _modules(root, package)
    known = set(mods)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    function_level = []
    for name, path in mods.items():
        for target, line, top in _imports(name, path, known):
            if target in known and target != name:
                graph[name].add(target)
                if not top:
                    function_level.append(f"{path.name}:{line} imports {target}")
    return graph, function_level


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of module names (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_hw_export_import_graph_is_acyclic():
    graph, _ = import_graph(ROOT, PACKAGE)
    assert len(graph) >= 10 and graph[f"{PACKAGE}.export"]  # the graph was really read
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_no_function_level_imports_between_hw_export_modules():
    _, function_level = import_graph(ROOT, PACKAGE)
    assert function_level == []


def test_hw_export_imports_nothing_from_the_layers_above():
    mods = _modules(ROOT, PACKAGE)
    bad = [
        f"{path.name}:{line} imports {t}"
        for name, path in mods.items()
        for t, line, _ in _imports(name, path, set(mods))
        if t.startswith(FORBIDDEN)
    ]
    assert bad == []


def test_the_checker_finds_a_hidden_cycle(tmp_path):
    """The checks above can fail: a cycle hidden by a function-level import is found."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("from .sub.b import g\n\ndef f():\n    return g()\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def g():\n    from ..a import f\n    return f\n")
    graph, function_level = import_graph(pkg, "pkg")
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.a"}
    assert function_level == ["b.py:2 imports pkg.a"]
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]
