"""The shape of ``spikelfp.hw_export``, before and after a change, in one run.

Per file: lines, lines holding ``isinstance`` (type dispatch) and function-level imports
between ``hw_export`` modules (hidden cycles); and the wall time of one :func:`export` (a
3-layer LIF/CubaLIF network with data: prune, quantise, check, simulate, NIR graph), best of
``--repeats``. ``--rev`` also measures a git revision (its ``spikelfp`` extracted with
``git archive`` into a temporary folder; the working tree is not touched).

    python benchmarks/hw_export_census.py --rev a2bae55

Writes ``benchmarks/results/hw_export_census.json`` and prints markdown tables.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PACKAGE = "spikelfp/hw_export"


def _files_at(rev: str | None) -> dict[str, str]:
    """``{path under spikelfp/hw_export: text}`` of the working tree or of ``rev``."""
    if rev is None:
        base = ROOT / PACKAGE
        return {str(p.relative_to(base)): p.read_text() for p in sorted(base.rglob("*.py"))}
    names = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", rev, PACKAGE + "/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    out = {}
    for name in names:
        if name.endswith(".py"):
            text = subprocess.run(
                ["git", "show", f"{rev}:{name}"], cwd=ROOT, capture_output=True, text=True
            ).stdout
            out[name[len(PACKAGE) + 1 :]] = text
    return out


def _function_level_imports(text: str) -> int:
    """Relative imports (other ``hw_export`` modules) inside functions."""
    tree = ast.parse(text)
    top = {id(n) for n in tree.body}
    return sum(
        1
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.level == 1 and id(n) not in top
    )


def census(rev: str | None) -> dict:
    rows = {}
    for name, text in _files_at(rev).items():
        lines = text.splitlines()
        rows[name] = {
            "lines": len(lines),
            "isinstance": sum("isinstance" in line for line in lines),
            "function_level_imports": _function_level_imports(text),
        }
    total = {k: sum(r[k] for r in rows.values()) for k in next(iter(rows.values()))}
    return {"files": rows, "total": total}


CHILD = r"""
import json, sys, time, warnings
import torch
from torch import nn
from spikelfp import LIF, CubaLIF, Sequential
from spikelfp.hw_export import export, to_nir
import spikelfp.hw_export as hw
torch.manual_seed(0)
net = Sequential(nn.Linear(64, 128), CubaLIF(alpha=0.8, beta=0.9, threshold=0.5),
                 nn.Dropout(0.1), nn.Linear(128, 128), LIF(beta=0.9, threshold=0.5),
                 nn.Linear(128, 10), LIF(beta=0.9, threshold=0.5)).eval()
x = (torch.rand(100, 64, 64) < 0.2).float()
y = torch.randint(0, 10, (64,))
calls = []
cn = getattr(hw, "CanonicalNet", None)
if cn is not None:  # count the canonicalisations of one export
    orig = cn.from_model.__func__
    cn.from_model = classmethod(lambda c, m, s=None: calls.append(1) or orig(c, m, s))
def run():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = export(net, target="int8", bits=8, prune=0.5, data=(x, y), verbose=False)
        to_nir(rep.quantized, 1e-3)
    return rep
run()
calls.clear()
times = []
for _ in range(int(sys.argv[1])):
    t = time.perf_counter(); rep = run(); times.append(time.perf_counter() - t)
print(json.dumps({"export_s": min(times), "simulator_identical": rep.simulator_identical,
                  "canonicalisations_per_export": len(calls) // len(times) if cn else None}))
"""


def timing(path: Path, repeats: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(path), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    res = subprocess.run(
        [sys.executable, "-c", CHILD, str(repeats)],
        cwd=tempfile.gettempdir(),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rev", default=None, help="git revision to measure too (e.g. a2bae55)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default="hw_export_census.json")
    args = ap.parse_args()
    result = {"after": {**census(None), **timing(ROOT, args.repeats)}}
    if args.rev is not None:
        with tempfile.TemporaryDirectory() as tmp:
            archive = subprocess.run(
                ["git", "archive", args.rev, "spikelfp"], cwd=ROOT, capture_output=True, check=True
            ).stdout
            arc = Path(tmp) / "src.tar"
            arc.write_bytes(archive)
            with tarfile.open(arc) as t:
                t.extractall(tmp, filter="data")
            result["before"] = {
                "rev": args.rev,
                **census(args.rev),
                **timing(Path(tmp), args.repeats),
            }
    cols = ["lines", "isinstance", "function_level_imports"]
    names = sorted(set().union(*(r["files"] for r in result.values())))
    head = ["file"] + [f"{c} {w}" for c in cols for w in result]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for n in names + ["(total)"]:
        cells = []
        for c in cols:
            for r in result.values():
                row = r["total"] if n == "(total)" else r["files"].get(n)
                cells.append("" if row is None else str(row[c]))
        print(f"| {n} | " + " | ".join(cells) + " |")
    print()
    for w, r in result.items():
        print(
            f"{w}: export {r['export_s']:.3f} s (best of {args.repeats}), canonicalisations per "
            f"export: {r['canonicalisations_per_export']}, simulator identical: "
            f"{r['simulator_identical']}"
        )
    out = HERE / "results" / args.json
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
