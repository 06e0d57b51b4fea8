"""The layers of the house (docs/architecture.md): a package imports only the layers below it,
plus the same-layer imports the table allows; lazy (function-level) imports count too."""

from __future__ import annotations

import ast
from pathlib import Path

import spikelfp

ROOT = Path(spikelfp.__file__).parent

LAYER = {
    "_io": 0,
    "events": 0,
    "allocator": 0,
    "_native": 0,
    "layers": 0,
    "_accel": 0,
    "neurons": 1,
    "sequential": 1,
    "lfp": 2,
    "datasets": 3,
    "hw_export": 3,
    "interop": 3,
    "explain": 3,
    "training": 4,
    "cli": 5,
    "__main__": 5,
}
#: imports within a layer that the table allows (importer -> imported)
SAME_LAYER = {
    ("allocator", "_accel"),
    ("_native", "_accel"),
    ("_accel", "_native"),
    ("sequential", "neurons"),
    ("explain", "interop"),
    ("explain", "datasets"),
    ("__main__", "cli"),
}
#: the one documented exception: explain's surrogate-gradient baseline
EXCEPTIONS = {("explain/core.py", "training")}


def _package(path: Path) -> str:
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def spikelfp_imports(path: Path):
    """``(imported package, line)`` of every import of another spikelfp package in ``path``."""
    rel = path.relative_to(ROOT.parent).with_suffix("").parts
    base = list(rel[:-1])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base[: len(base) - node.level + 1] + (node.module or "").split(".")
                parts = [p for p in parts if p]
                names = [parts + [a.name] for a in node.names] if not node.module else [parts]
            elif (node.module or "").split(".")[0] == "spikelfp":
                names = [node.module.split(".")]
            else:
                continue
        elif isinstance(node, ast.Import):
            names = [a.name.split(".") for a in node.names if a.name.split(".")[0] == "spikelfp"]
        else:
            continue
        for parts in names:
            if len(parts) >= 2:
                yield parts[1], node.lineno


def violations() -> list[str]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        src = _package(path)
        if src == "__init__":
            continue  # spikelfp/__init__.py re-exports the public names of layers 1-3
        for dst, line in spikelfp_imports(path):
            if dst == src or dst not in LAYER:
                continue
            rel = str(path.relative_to(ROOT))
            below = LAYER[dst] < LAYER[src]
            if below or (src, dst) in SAME_LAYER or (rel, dst) in EXCEPTIONS:
                continue
            found.append(f"{rel}:{line} imports spikelfp.{dst}")
    return found


def test_every_package_imports_only_the_layers_below_it():
    assert violations() == []


def test_every_package_has_a_layer():
    packages = {_package(p) for p in ROOT.rglob("*.py")} - {"__init__"}
    assert packages <= set(LAYER), sorted(packages - set(LAYER))


def test_the_scan_sees_lazy_and_relative_imports(tmp_path, monkeypatch):
    fake = tmp_path / "spikelfp"
    (fake / "lfp").mkdir(parents=True)
    (fake / "lfp" / "x.py").write_text(
        "def f():\n    from ..training import models\n    import spikelfp.cli\n"
    )
    monkeypatch.setattr(__import__(__name__), "ROOT", fake)
    assert violations() == [
        "lfp/x.py:2 imports spikelfp.training",
        "lfp/x.py:3 imports spikelfp.cli",
    ]
