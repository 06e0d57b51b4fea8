"""Lines of code per ``spikelfp`` subpackage, for the working tree and any git revisions.

Counts every line (docstrings and comments included) of the ``.py`` files under each
subpackage (``spikelfp/<name>/``; modules directly in ``spikelfp/`` are "(top level)"). A
revision is read with ``git show`` (the working tree is not touched).

    python benchmarks/code_census.py --rev b0710c0 a2bae55

Writes ``benchmarks/results/code_census.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _key(path: str) -> str:
    parts = Path(path).relative_to("spikelfp").parts
    return parts[0] if len(parts) > 1 else "(top level)"


def census(rev: str | None) -> dict[str, int]:
    """``{subpackage: lines}`` of the working tree (``rev=None``) or of ``rev``."""
    out: dict[str, int] = {}
    if rev is None:
        for p in sorted((ROOT / "spikelfp").rglob("*.py")):
            key = _key(str(p.relative_to(ROOT)))
            out[key] = out.get(key, 0) + len(p.read_text(encoding="utf-8").splitlines())
        return out
    git = ["git", "-C", str(ROOT)]
    names = subprocess.run(
        [*git, "ls-tree", "-r", "--name-only", rev, "spikelfp/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in (n for n in names if n.endswith(".py")):
        text = subprocess.run(
            [*git, "show", f"{rev}:{name}"], capture_output=True, text=True, check=True
        ).stdout
        out[_key(name)] = out.get(_key(name), 0) + len(text.splitlines())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", nargs="*", default=[], help="git revisions to count too")
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/code_census.json"))
    args = ap.parse_args(argv)
    columns = {rev: census(rev) for rev in args.rev}
    columns["working tree"] = census(None)
    keys = sorted(set().union(*columns.values()))
    print("| subpackage | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for k in keys:
        print(f"| {k} | " + " | ".join(str(c.get(k, 0)) for c in columns.values()) + " |")
    print("| total | " + " | ".join(str(sum(c.values())) for c in columns.values()) + " |")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"lines": columns}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
