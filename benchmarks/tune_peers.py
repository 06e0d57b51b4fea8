"""How compare_peers.py's N-MNIST learning rates and network size were chosen.

Every method is tuned on a *tuning split* carved from the 800 training recordings (600 to train,
200 to score, stratified, seed 7); the 200 validation recordings that compare_peers.py reports
on are never looked at here. Each grid point runs 3 seeds; the table gives the median final
accuracy on the tuning split.

Usage::

    python benchmarks/tune_peers.py     # the grid that was run (~20 min, 1 thread)
    python benchmarks/tune_peers.py --methods snntorch-bptt --lrs 2.5e-4,5e-4 --hidden 512

Writes ``benchmarks/results/tune_peers.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare_peers as cp  # noqa: E402
from _common import markdown_table, write_json  # noqa: E402

#: (method, hidden sizes, learning rates) that were tried, all at T=30 and 20 epochs.
GRID = [
    ("spikelfp-lfp", [256, 512, 1024], [1e-3, 2e-3, 3e-3]),
    ("snntorch-bptt", [256, 512, 1024], [2.5e-4, 5e-4, 1e-3, 2e-3]),
    ("norse-bptt", [512], [1e-3, 2e-3, 5e-3]),
]


def tuning_split(data: cp.Data, n_score: int = 200, seed: int = 7) -> cp.Data:
    """The training recordings split again: ``n_score`` of them to score, the rest to train."""
    tr, sc = cp.stratified_split(data.y_train.numpy(), n_score, seed=seed)
    return cp.Data(
        "nmnist-tuning",
        data.x_train[tr],
        data.y_train[tr],
        data.x_train[sc],
        data.y_train[sc],
        data.T,
        data.rate_coded,
        f"{data.source} (training part only: {len(tr)} train / {len(sc)} tuning)",
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=cp.default_data_dir(), help="shared data folder")
    ap.add_argument("--methods", default=None, help="comma-separated (default: the grid)")
    ap.add_argument("--hidden", default=None, help="comma-separated hidden sizes")
    ap.add_argument("--lrs", default=None, help="comma-separated learning rates")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default="tune_peers.json", help="file name under results/")
    args = ap.parse_args(argv)
    data_dir = cp.require_data_dir(args.data)
    if data_dir is None:
        return 2
    torch.set_num_threads(args.threads)
    grid = GRID
    if args.methods or args.hidden or args.lrs:
        methods = args.methods.split(",") if args.methods else [g[0] for g in GRID]
        hidden = [int(h) for h in args.hidden.split(",")] if args.hidden else [512]
        lrs = [float(v) for v in args.lrs.split(",")] if args.lrs else [1e-3]
        grid = [(m, hidden, lrs) for m in methods]
    data = tuning_split(cp.load_nmnist(data_dir, 30))
    xv = cp.val_inputs(data)
    rows, points = [], []
    started = time.time()
    for method, hiddens, lrs in grid:
        for hidden, lr in itertools.product(hiddens, lrs):
            cfg = cp.Config(T=30, hidden=hidden, epochs=args.epochs, lr=lr)
            accs = [cp.run(method, data, cfg, s, xv).val_accuracy for s in range(args.seeds)]
            med = statistics.median(accs)
            points.append(
                {"method": method, "hidden": hidden, "lr": lr, "accuracy": accs, "median": med}
            )
            rows.append(
                [method, hidden, f"{lr:g}", f"{100 * med:.1f}"]
                + [", ".join(f"{100 * a:.1f}" for a in accs)]
            )
            print(f"[{time.time() - started:.0f}s] {rows[-1]}", file=sys.stderr, flush=True)
    table = markdown_table(
        ["method", "hidden", "Adam lr", "median tuning acc. %", "per seed"], rows
    )
    best = {}
    for p in points:
        if p["median"] > best.get(p["method"], {"median": -1})["median"]:
            best[p["method"]] = p
    path = write_json(
        args.json,
        {
            "source": data.source,
            "epochs": args.epochs,
            "seeds": args.seeds,
            "points": points,
            "best": best,
            "table": table,
            "wall_s": time.time() - started,
        },
    )
    print(table)
    chosen = "; ".join(f"{m}: hidden {p['hidden']}, lr {p['lr']:g}" for m, p in best.items())
    print(f"\nbest: {chosen}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
