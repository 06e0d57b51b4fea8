"""The tutorial notebooks are stored without outputs (strip them with notebooks/strip_outputs.py).

CI executes them separately with ``pytest --nbmake notebooks``; here we only check the files as
they are in git: no outputs, no execution counts, and the conventions every tutorial follows.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def test_there_are_notebooks():
    assert len(PATHS) >= 6, [p.name for p in PATHS]


@pytest.mark.parametrize("path", PATHS, ids=[p.name for p in PATHS])
def test_notebook_is_stripped(path: Path):
    for i, cell in enumerate(_cells(path)):
        if cell["cell_type"] != "code":
            continue
        assert cell.get("outputs") == [], (
            f"{path.name} cell {i} has outputs; run `python notebooks/strip_outputs.py`"
        )
        assert cell.get("execution_count") is None, (
            f"{path.name} cell {i} has an execution count; run `python notebooks/strip_outputs.py`"
        )
        assert "execution" not in cell.get("metadata", {}), f"{path.name} cell {i}: run metadata"


@pytest.mark.parametrize("path", PATHS, ids=[p.name for p in PATHS])
def test_notebook_conventions(path: Path):
    """Inline plots whatever MPLBACKEND says, a fixed seed, the python3 kernel."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = "\n".join(_source(c) for c in nb["cells"] if c["cell_type"] == "code")
    assert "%matplotlib inline" in code, path.name
    assert "torch.manual_seed(" in code, path.name
    assert nb["metadata"]["kernelspec"]["name"] == "python3", path.name
    assert "import torchvision" not in code and "from torchvision" not in code, path.name


def test_strip_outputs_script(tmp_path: Path):
    nbformat = pytest.importorskip("nbformat")
    spec = importlib.util.spec_from_file_location("strip_outputs", NOTEBOOKS / "strip_outputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(1)")
    cell.execution_count = 3
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    cell.metadata["execution"] = {"iopub.status.idle": "2025-01-01T00:00:00Z"}
    nb.cells = [nbformat.v4.new_markdown_cell("# title"), cell]
    path = tmp_path / "dirty.ipynb"
    nbformat.write(nb, path)

    assert module.main(["--check", str(path)]) == 1
    assert module.main([str(path)]) == 0
    assert module.main(["--check", str(path)]) == 0
    clean = nbformat.read(path, as_version=4)
    assert clean.cells[1].outputs == [] and clean.cells[1].execution_count is None
    assert "execution" not in clean.cells[1].metadata
    assert _source(clean.cells[1]) == "print(1)"


def _spikelfp_imports(code: str) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every ``import spikelfp...`` / ``from spikelfp... import``."""
    import ast

    lines = [line for line in code.splitlines() if not line.lstrip().startswith(("%", "!"))]
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("spikelfp"):
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("spikelfp")]
    return found


@pytest.mark.parametrize("path", PATHS, ids=[p.name for p in PATHS])
def test_notebooks_import_only_the_public_api(path: Path):
    """Tutorials import from ``spikelfp`` or its subpackages (``spikelfp.training``, not
    ``spikelfp.training.models``), only names those list in ``__all__``, nothing private."""
    import importlib

    nb = json.loads(path.read_text(encoding="utf-8"))
    code = "\n".join(_source(c) for c in nb["cells"] if c["cell_type"] == "code")
    for module, names in _spikelfp_imports(code):
        parts = module.split(".")
        assert not any(p.startswith("_") for p in parts), f"{path.name}: private module {module}"
        assert len(parts) <= 2, f"{path.name}: import from {parts[0]}.{parts[1]}, not {module}"
        public = getattr(importlib.import_module(module), "__all__", None)
        for name in names:
            assert not name.startswith("_"), f"{path.name}: private name {module}.{name}"
            assert public is None or name in public, f"{path.name}: {module}.{name} not public"
