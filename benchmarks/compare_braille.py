"""LFP against snntorch BPTT on the same recurrent network: tactile Braille letters.

Data: the real Braille recordings in ``$SPIKELFP_DATA/braille`` (``train.npz``: 27 letters x 40
repetitions, 12 taxels), sigma-delta encoded (``θ = 1``, ON and OFF channels: 24 inputs, event
counts per step, not clipped), the recipe's split: 8 of the 40 repetitions of every letter held
out for validation (``validation_split(fraction=0.2, seed=0)``, what ``spikelfp train --dataset
braille`` holds out). ``--tune`` scores BPTT's learning rates on a tuning split of the remaining
training recordings (a quarter, seed 7, as ``--tune-fraction 0.25``), never on the validation
split.

Network (both methods, the same initial weights): the zoo's ``braille-rsnn``, ``Linear(24, H)
→ RLIF(H, all-to-all recurrent) → Linear(H, 27) → LIF``, β 0.9, θ 1, subtract reset, weights
calibrated to fire 15 % / 10 % at initialisation. LFP trains spikelfp's network with the
recipe's softmax reward on the output spike counts; BPTT trains the same network converted to
snntorch (``spikelfp.interop.to_snntorch``: ``RLeaky`` / ``Leaky``, atan surrogate, snntorch's
default) with cross-entropy on the spike counts. Both: Adam, cosine schedule over the epochs,
batches of 32 in the same order, prediction = most output spikes.

snntorch's subtract reset tests the threshold after its own (delayed) reset, spikelfp's before
it; both are the standard form of each library, identical unless an input exceeds 2θ in one
step (``to_snntorch`` warns; silenced here).

Usage::

    python benchmarks/compare_braille.py --tune            # choose BPTT's lr (tuning split)
    python benchmarks/compare_braille.py                    # 3 seeds, both methods
    python benchmarks/compare_braille.py --quick            # smoke run (~1 min)

Prints a markdown table and writes ``benchmarks/results/compare_braille.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from spikelfp._io import atomic_write
from spikelfp.datasets import Braille, SigmaDelta, validation_split
from spikelfp.interop.snntorch import snntorch_forward, to_snntorch
from spikelfp.lfp import lfp_step, spike_count_softmax_reward
from spikelfp.training.models import ModelSpec, build_model, calibrate_firing

ROOT = Path(__file__).resolve().parents[1]
#: LFP's learning rate: the recipe's (spikelfp/training/recipes/braille.yaml)
LFP_LR = 5e-3
#: BPTT's learning rate, chosen with --tune on the tuning split (compare_braille_tune.json)
BPTT_LR = 2e-3
TUNE_LRS = (1e-3, 2e-3, 5e-3, 1e-2)


def load(letters: str):
    root = Path(os.environ.get("SPIKELFP_DATA", ROOT.parent / "shared" / "data")) / "braille"
    if not (root / "train.npz").is_file():
        sys.exit(f"compare_braille: no Braille recordings in {root}; set SPIKELFP_DATA")
    ds = Braille(root, letters=letters, encoding=SigmaDelta(1.0))
    t_max = int(ds.lengths.max())
    x = torch.zeros(len(ds), t_max, ds.frame_shape[0])
    for i in range(len(ds)):
        f = ds[i][0]
        x[i, : len(f)] = f
    return x, torch.tensor(ds.targets), ds.classes


def splits(y: torch.Tensor, tune: bool):
    parts = validation_split(y.numpy(), fraction=0.2, seed=0)
    if not tune:
        return parts.train, parts.val
    inner = validation_split(y[parts.train].numpy(), fraction=0.25, seed=7)
    return parts.train[inner.train], parts.train[inner.val]


def accuracy(run, x, y) -> float:
    with torch.no_grad():
        correct = 0
        for i in range(0, len(y), 256):
            out = run(x[i : i + 256].transpose(0, 1))
            correct += int((out.sum(0).argmax(-1) == y[i : i + 256]).sum())
    return correct / len(y)


def train_recipe(seed: int, args) -> dict:
    """``spikelfp train --dataset braille --seed S`` (the recipe, in-process), then its
    validation accuracy as ``spikelfp eval RUN --split val`` reports it."""
    import tempfile

    from spikelfp.cli import main as cli

    root = Path(os.environ.get("SPIKELFP_DATA", ROOT.parent / "shared" / "data")) / "braille"
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        argv = ["train", "--dataset", "braille", "--data-dir", str(root), "--seed", str(seed)]
        argv += ["--letters", args.letters, "--out", str(run), "--no-progress"]
        if args.epochs != 40:
            argv += ["--epochs", str(args.epochs)]
        t0 = time.perf_counter()
        if cli(argv) != 0:
            raise SystemExit("compare_braille: spikelfp train failed")
        wall = time.perf_counter() - t0
        if cli(["eval", str(run), "--split", "val", "--json", str(run / "val.json")]) != 0:
            raise SystemExit("compare_braille: spikelfp eval failed")
        acc = json.loads((run / "val.json").read_text())["accuracy"]
    return {
        "method": "spikelfp train (recipe)",
        "seed": seed,
        "lr": LFP_LR,
        "acc": acc,
        "train_s": wall,
    }


def train(method: str, seed: int, data, args, lr: float) -> dict:
    if method == "recipe":
        return train_recipe(seed, args)
    x, y, n_classes, tr, ev = data
    torch.manual_seed(seed)
    spec = ModelSpec("braille-rsnn", (x.shape[2],), n_classes, hidden=args.hidden, reset="subtract")
    net = build_model(spec)
    g = torch.Generator().manual_seed(seed)
    calib = tr[torch.randperm(len(tr), generator=g)[:256].numpy()]
    calibrate_firing(net, x[calib].transpose(0, 1), [0.15, 0.1])
    if method == "snntorch-bptt":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = to_snntorch(net)

        def run(xb):
            return snntorch_forward(model, xb)[0]
    else:
        model = net

        def run(xb):
            return model(xb)[0]

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, args.epochs))
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(len(tr), generator=torch.Generator().manual_seed(seed + epoch))
        for i in range(0, len(tr), 32):
            idx = tr[order[i : i + 32].numpy()]
            xb, yb = x[idx].transpose(0, 1).contiguous(), y[idx]
            if method == "spikelfp-lfp":
                lfp_step(net, xb, yb, spike_count_softmax_reward, opt)
            else:
                opt.zero_grad()
                nn.functional.cross_entropy(run(xb).sum(0), yb).backward()
                opt.step()
        sched.step()
    wall = time.perf_counter() - t0
    return {
        "method": method,
        "seed": seed,
        "lr": lr,
        "acc": accuracy(run, x[ev], y[ev]),
        "train_s": wall,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--letters", default="all")
    p.add_argument(
        "--methods",
        default="spikelfp-lfp,snntorch-bptt,recipe",
        help="spikelfp-lfp, snntorch-bptt (this script's loop, same initial weights) and "
        "recipe (spikelfp train --dataset braille, then spikelfp eval --split val)",
    )
    p.add_argument("--bptt-lr", type=float, default=BPTT_LR)
    p.add_argument("--tune", action="store_true", help="score BPTT's lrs on the tuning split")
    p.add_argument("--quick", action="store_true", help="1 seed, 3 epochs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=str(ROOT / "benchmarks/results/compare_braille.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.seeds, args.epochs = 1, 3
    x, y, classes = load(args.letters)
    tr, ev = splits(y, args.tune)
    data = (x, y, len(classes), tr, ev)
    runs = []
    if args.tune:
        split = "tune"
        for lr in TUNE_LRS:
            runs.append(train("snntorch-bptt", 0, data, args, lr))
            print(f"bptt lr {lr:g}: tune acc {runs[-1]['acc']:.4f}", flush=True)
    else:
        split = "val"
        for method in args.methods.split(","):
            lr = LFP_LR if method == "spikelfp-lfp" else args.bptt_lr
            for seed in range(args.seeds):
                runs.append(train(method, seed, data, args, lr))
                r = runs[-1]
                print(
                    f"{r['method']} seed {seed}: {split} acc {r['acc']:.4f} ({r['train_s']:.0f} s)",
                    flush=True,
                )
    rows = {}
    for r in runs:
        rows.setdefault((r["method"], r["lr"]), []).append(r)
    print(f"\n| method | lr | seeds | {split} accuracy % median [min, max] | train s (median) |")
    print("|---|---|---|---|---|")
    for (method, lr), rs in rows.items():
        accs = [100 * r["acc"] for r in rs]
        print(
            f"| {method} | {lr:g} | {len(rs)} | {statistics.median(accs):.1f} "
            f"[{min(accs):.1f}, {max(accs):.1f}] | "
            f"{statistics.median(r['train_s'] for r in rs):.0f} |"
        )
    out = {
        "command": " ".join(["python", "benchmarks/compare_braille.py", *(argv or sys.argv[1:])]),
        "split": split,
        "letters": list(classes),
        "n_train": len(tr),
        "n_eval": len(ev),
        "epochs": args.epochs,
        "hidden": args.hidden,
        "runs": runs,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
