"""The non-spiking reference on compare_peers.py's N-MNIST split: a count-image MLP.

Each recording's events are summed over time into one 2x17x17 count image (the same binning
and 2x2 pooling as compare_peers.py, the same 800 / 200 split), standardised with the training
statistics, and classified by a ReLU MLP ``578-512-10`` trained with Adam and cross-entropy
(30 epochs, batch 32, lr 1e-3, cosine schedule). This is what a spiking network has to beat to
show that it uses more than the total event counts.

Usage::

    python benchmarks/static_nmnist.py        # 3 seeds, < 1 min

Writes ``benchmarks/results/static_nmnist.json`` and prints the accuracies.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare_peers as cp  # noqa: E402
from _common import write_json  # noqa: E402

EPOCHS, BATCH, LR, HIDDEN = 30, 32, 1e-3, 512


def run(data: cp.Data, seed: int) -> float:
    """Train the count-image MLP with ``seed``; its final validation accuracy."""
    xt = data.x_train.sum(1).flatten(1)
    xv = data.x_val.sum(1).flatten(1)
    mean, std = xt.mean(0), xt.std(0).clamp(min=1e-6)
    xt, xv = (xt - mean) / std, (xv - mean) / std
    torch.manual_seed(seed)
    mlp = nn.Sequential(nn.Linear(xt.shape[1], HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 10))
    opt = torch.optim.Adam(mlp.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, EPOCHS)
    g = torch.Generator().manual_seed(seed)
    for _ in range(EPOCHS):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(perm), BATCH):
            idx = perm[i : i + BATCH]
            opt.zero_grad()
            F.cross_entropy(mlp(xt[idx]), data.y_train[idx]).backward()
            opt.step()
        sched.step()
    with torch.no_grad():
        return (mlp(xv).argmax(1) == data.y_val).float().mean().item()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=cp.default_data_dir(), help="shared data folder")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", default="static_nmnist.json", help="file name under results/")
    args = ap.parse_args(argv)
    data_dir = cp.require_data_dir(args.data)
    if data_dir is None:
        return 2
    torch.set_num_threads(1)
    data = cp.load_nmnist(data_dir, 30)
    accs = [run(data, s) for s in range(args.seeds)]
    med = statistics.median(accs)
    path = write_json(
        args.json,
        {
            "model": f"count image {data.input_dim}-{HIDDEN}-10 ReLU MLP",
            "epochs": EPOCHS,
            "train": len(data.y_train),
            "val": len(data.y_val),
            "val_accuracy": accs,
            "median": med,
        },
    )
    per_seed = ", ".join(f"{100 * a:.1f}" for a in accs)
    print(f"static count-image MLP: median {100 * med:.1f} % (seeds: {per_seed}); wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
