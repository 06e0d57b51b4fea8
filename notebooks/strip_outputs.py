"""Strip outputs, execution counts and run metadata from the tutorial notebooks.

The notebooks are kept in git without outputs (``tests/test_notebooks_clean.py`` checks it);
CI executes them with ``pytest --nbmake notebooks``. After running a notebook locally::

    python notebooks/strip_outputs.py            # strip every notebook in notebooks/
    python notebooks/strip_outputs.py a.ipynb    # or the ones given
    python notebooks/strip_outputs.py --check    # exit 1 if any notebook has outputs

Needs ``nbformat`` (``pip install 'spikelfp[dev]'``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: cell metadata written by Jupyter/nbclient while running, not part of the source
RUN_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")


def strip_notebook(nb) -> bool:
    """Remove outputs, execution counts and run metadata in place; True if anything changed."""
    changed = False
    for cell in nb.cells:
        for key in RUN_METADATA:
            if key in cell.get("metadata", {}):
                del cell.metadata[key]
                changed = True
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            cell.outputs = []
            changed = True
        if cell.get("execution_count") is not None:
            cell.execution_count = None
            changed = True
    for key in ("widgets",):
        if key in nb.metadata:
            del nb.metadata[key]
            changed = True
    return changed


def main(argv: list[str] | None = None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--check", action="store_true", help="only report; exit 1 if not clean")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(HERE.glob("*.ipynb"))
    dirty = []
    for path in paths:
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        if strip_notebook(nb):
            dirty.append(path)
            if not args.check:
                nbformat.write(nb, path)
    verb = "has outputs" if args.check else "stripped"
    for path in dirty:
        print(f"{path}: {verb}")
    return 1 if (args.check and dirty) else 0


if __name__ == "__main__":
    sys.exit(main())
