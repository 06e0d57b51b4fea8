"""Learning evidence: LFP against snntorch surrogate-gradient BPTT on real N-MNIST recordings.

Usage::

    python benchmarks/learn_nmnist.py                 # full: 3 seeds (~15 min on 2 cores)
    python benchmarks/learn_nmnist.py --quick         # 1 seed, 2 epochs: checks that it runs
    python benchmarks/learn_nmnist.py --data /path/with/nmnist

Data: the N-MNIST recordings under ``$SPIKELFP_DATA/nmnist/NMNIST/Train/<digit>/<idx>.bin``
(40-bit events, read with tonic, binned here into ``T`` binary frames of 2x34x34). 200 of them
are held out for validation (stratified by digit, deterministic); the rest are for training.

Compared, each with 3 seeds (mean / min / max of the final validation accuracy):

* ``static MLP``: the event-count image (2x34x34 counts) through a 2312-256-10 ReLU MLP;
* ``LFP``: the conv LIF net of ``bench_step`` trained by ``spikelfp.lfp.lfp_step``;
* ``BPTT``: the same net (same initial weights) in snntorch, surrogate-gradient BPTT;
* ``digits``: sklearn's 8x8 digits, rate-coded (Bernoulli spikes), a 64-128-10 LIF MLP, LFP
  and BPTT.

LFP and BPTT get the same budget: epochs, batch size, Adam with a cosine schedule, shift
augmentation, initialisation; the learning rate is tuned for each (see
``docs/training_tips.md``). Runs go to ``--workers`` processes (one thread each). Writes
``benchmarks/results/learn_nmnist.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    SnnTorchNet,
    calibrate_init,
    conv_layers,
    copy_synapses,
    default_data_root,
    environment,
    fc_layers,
    load_nmnist_frames,
    markdown_table,
    spikelfp_net,
    stratified_split,
    write_json,
)

#: What was found to work (tuning notes in docs/training_tips.md).
NMNIST = {
    "T": 30,  # frames per recording (~10 ms each)
    "batch": 32,
    "epochs": 10,
    "beta": 0.9,  # LIF decay per frame
    "threshold": 1.0,
    "reset": "subtract",  # snntorch Leaky's defaults (delayed subtract reset)
    "reset_delay": True,
    "init_rate": 0.1,  # hidden layers scaled to fire ~10 % at init
    "shift": 0,  # random translation augmentation, pixels (hurt in 10 epochs)
    "lr": {"lfp": 3e-3, "bptt": 2e-3},  # Adam, cosine decay to 0
    "reward": "softmax",  # LFP: spike_count_softmax_reward (BPTT: cross-entropy on counts)
    "n_val": 200,
}
DIGITS = {
    "T": 20,
    "batch": 32,
    "epochs": 15,
    "hidden": 128,
    "beta": 0.9,
    "threshold": 1.0,
    "init_rate": 0.1,
    "lr": {"lfp": 3e-3, "bptt": 3e-3},
    "reward": "softmax",
    "n_val": 360,
}
STATIC = {"hidden": 256, "epochs": 30, "batch": 32, "lr": 1e-3}


# --------------------------------------------------------------------------------------------
# training loops (one run = one method, one seed)
# --------------------------------------------------------------------------------------------


def _reward(name: str):
    """The LFP reward: ``softmax`` (cross-entropy on spike counts, as BPTT's loss) or ``rate``."""
    from spikelfp.lfp import rate_coded_reward, spike_count_softmax_reward

    if name == "softmax":
        return spike_count_softmax_reward
    if name == "rate":
        return lambda out, target: rate_coded_reward(out, target, 1.0 / out.shape[0])
    raise ValueError(f"unknown reward {name!r}")


def _train(model, method, batches, epochs, steps_per_epoch, lr, evaluate, reward="softmax"):
    """Adam + cosine schedule; LFP via ``lfp_step``, BPTT via cross-entropy on spike counts."""
    from spikelfp.lfp import lfp_step

    reward_fn = _reward(reward)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    history = []
    for epoch in range(epochs):
        correct = total = 0
        for x, y in batches(epoch):
            if method == "lfp":
                out = lfp_step(model, x, y, reward_fn, opt).output
            else:
                opt.zero_grad(set_to_none=True)
                out, _ = model(x)
                F.cross_entropy(out.sum(0), y).backward()
                opt.step()
                out = out.detach()
            sched.step()
            correct += (out.sum(0).argmax(-1) == y).sum().item()
            total += len(y)
        history.append({"epoch": epoch, "train_acc": correct / total, "val_acc": evaluate()})
    return history


def _shift(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each sample of ``x (T, B, C, H, W)`` by a random offset in ``[-k, k]``^2."""
    if k <= 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (k, k, k, k))
    out = torch.empty_like(x)
    offsets = torch.randint(0, 2 * k + 1, (x.shape[1], 2), generator=gen).tolist()
    for j, (dy, dx) in enumerate(offsets):
        out[:, j] = padded[:, j, :, dy : dy + h, dx : dx + w]
    return out


def nmnist_run(
    method: str, seed: int, data: str, epochs: int, threads: int = 1, hp: dict | None = None
) -> dict:
    """Train the conv LIF net on N-MNIST with ``method`` (``lfp`` or ``bptt``) for one seed."""
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    hp = {**NMNIST, **(hp or {})}
    started = time.time()
    frames, labels = load_nmnist_frames(data, hp["T"])
    train_idx, val_idx = stratified_split(labels, hp["n_val"], seed=0)
    gen = torch.Generator().manual_seed(seed)

    def batch_of(idx):
        return frames[idx].transpose(0, 1).float(), labels[idx]

    torch.manual_seed(seed)
    net = spikelfp_net(
        conv_layers(),
        beta=hp["beta"],
        threshold=hp["threshold"],
        reset=hp["reset"],
        reset_delay=hp["reset_delay"],
    )
    rates = calibrate_init(net, batch_of(train_idx[:64])[0], rate=hp["init_rate"])
    model = net
    if method == "bptt":
        model = SnnTorchNet(
            conv_layers(),
            beta=hp["beta"],
            threshold=hp["threshold"],
            reset=hp["reset"],
            reset_delay=hp["reset_delay"],
        )
        copy_synapses(net, model)

    def batches(epoch):
        perm = train_idx[torch.randperm(len(train_idx), generator=gen)]
        for i in range(0, len(perm), hp["batch"]):
            x, y = batch_of(perm[i : i + hp["batch"]])
            yield _shift(x, hp["shift"], gen), y

    def evaluate():
        correct = 0
        with torch.no_grad():
            for i in range(0, len(val_idx), 100):
                x, y = batch_of(val_idx[i : i + 100])
                correct += (model(x)[0].sum(0).argmax(-1) == y).sum().item()
        return correct / len(val_idx)

    steps = math.ceil(len(train_idx) / hp["batch"])
    history = _train(
        model, method, batches, epochs, steps, hp["lr"][method], evaluate, hp["reward"]
    )
    return {
        "task": "nmnist",
        "method": method,
        "seed": seed,
        "val_acc": history[-1]["val_acc"],
        "best_val_acc": max(h["val_acc"] for h in history),
        "history": history,
        "init_rates": rates,
        "seconds": time.time() - started,
        "n_train": len(train_idx),
        "n_val": len(val_idx),
    }


def digits_run(method: str, seed: int, epochs: int, threads: int = 1) -> dict:
    """sklearn digits, rate-coded, a 64-128-10 LIF MLP trained by ``method``."""
    from sklearn.datasets import load_digits

    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    hp = DIGITS
    started = time.time()
    d = load_digits()
    pixels = torch.tensor(d.data, dtype=torch.float32) / 16.0
    labels = torch.tensor(d.target)
    train_idx, val_idx = stratified_split(labels, hp["n_val"], seed=0)
    gen = torch.Generator().manual_seed(seed)

    def encode(idx, g):
        p = pixels[idx]
        return (torch.rand((hp["T"], *p.shape), generator=g) < p).float()

    torch.manual_seed(seed)
    layers = lambda: fc_layers([64, hp["hidden"], 10])  # noqa: E731
    net = spikelfp_net(layers(), beta=hp["beta"], threshold=hp["threshold"])
    rates = calibrate_init(net, encode(train_idx[:128], gen), rate=hp["init_rate"])
    model = net
    if method == "bptt":
        model = SnnTorchNet(layers(), beta=hp["beta"], threshold=hp["threshold"])
        copy_synapses(net, model)

    def batches(epoch):
        perm = train_idx[torch.randperm(len(train_idx), generator=gen)]
        for i in range(0, len(perm), hp["batch"]):
            idx = perm[i : i + hp["batch"]]
            yield encode(idx, gen), labels[idx]

    def evaluate():
        with torch.no_grad():
            out = model(encode(val_idx, torch.Generator().manual_seed(1234)))[0]
        return (out.sum(0).argmax(-1) == labels[val_idx]).float().mean().item()

    steps = math.ceil(len(train_idx) / hp["batch"])
    history = _train(
        model, method, batches, epochs, steps, hp["lr"][method], evaluate, hp["reward"]
    )
    return {
        "task": "digits",
        "method": method,
        "seed": seed,
        "val_acc": history[-1]["val_acc"],
        "best_val_acc": max(h["val_acc"] for h in history),
        "history": history,
        "init_rates": rates,
        "seconds": time.time() - started,
    }


def static_run(seed: int, data: str, threads: int = 1) -> dict:
    """The event-count image of each recording through a 2312-256-10 ReLU MLP (Adam)."""
    torch.set_num_threads(threads)
    hp = STATIC
    started = time.time()
    frames, labels = load_nmnist_frames(data, NMNIST["T"], binary=False)
    train_idx, val_idx = stratified_split(labels, NMNIST["n_val"], seed=0)
    counts = frames.float().sum(1).flatten(1)
    x = counts / counts[train_idx].max()
    x = x / x[train_idx].std()
    torch.manual_seed(seed)
    mlp = nn.Sequential(nn.Linear(x.shape[1], hp["hidden"]), nn.ReLU(), nn.Linear(hp["hidden"], 10))
    opt = torch.optim.Adam(mlp.parameters(), lr=hp["lr"])
    gen = torch.Generator().manual_seed(seed)
    for _ in range(hp["epochs"]):
        perm = train_idx[torch.randperm(len(train_idx), generator=gen)]
        for i in range(0, len(perm), hp["batch"]):
            idx = perm[i : i + hp["batch"]]
            opt.zero_grad()
            F.cross_entropy(mlp(x[idx]), labels[idx]).backward()
            opt.step()
    with torch.no_grad():
        acc = (mlp(x[val_idx]).argmax(1) == labels[val_idx]).float().mean().item()
    return {
        "task": "static",
        "method": "mlp",
        "seed": seed,
        "val_acc": acc,
        "seconds": time.time() - started,
    }


def _job(spec: dict) -> dict:
    kind = spec.pop("kind")
    fn = {"nmnist": nmnist_run, "digits": digits_run, "static": static_run}[kind]
    return fn(**spec)


# --------------------------------------------------------------------------------------------


def summarize(runs: list[dict]) -> dict:
    accs = [r["val_acc"] for r in runs]
    return {
        "mean": statistics.mean(accs),
        "min": min(accs),
        "max": max(accs),
        "seeds": [r["seed"] for r in runs],
        "val_acc": accs,
        "seconds": sum(r["seconds"] for r in runs),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data",
        default=str(default_data_root()),
        help="folder holding nmnist/NMNIST/Train (default $SPIKELFP_DATA)",
    )
    ap.add_argument("--quick", action="store_true", help="1 seed, 2 epochs (a smoke run)")
    ap.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2)")
    ap.add_argument("--epochs", type=int, default=None, help="N-MNIST epochs (default 10)")
    ap.add_argument("--workers", type=int, default=2, help="parallel runs (1 thread each)")
    ap.add_argument("--skip-digits", action="store_true")
    ap.add_argument("--json", default="learn_nmnist.json", help="file name under results/")
    args = ap.parse_args(argv)
    seeds = (
        [int(s) for s in args.seeds.split(",")]
        if args.seeds
        else ([0] if args.quick else [0, 1, 2])
    )
    epochs = args.epochs or (2 if args.quick else NMNIST["epochs"])
    digit_epochs = 3 if args.quick else DIGITS["epochs"]
    try:
        load_nmnist_frames(args.data, NMNIST["T"])
    except FileNotFoundError as err:
        print(f"N-MNIST not available: {err}", file=sys.stderr)
        return 2

    jobs = []
    for seed in seeds:  # longest first
        for method in ("lfp", "bptt"):
            jobs.append(
                {
                    "kind": "nmnist",
                    "method": method,
                    "seed": seed,
                    "data": args.data,
                    "epochs": epochs,
                }
            )
    if not args.skip_digits:
        for seed in seeds:
            for method in ("lfp", "bptt"):
                jobs.append(
                    {"kind": "digits", "method": method, "seed": seed, "epochs": digit_epochs}
                )
    jobs += [{"kind": "static", "seed": s, "data": args.data} for s in seeds]

    started = time.time()
    load_before = os.getloadavg()
    if args.workers > 1:
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(args.workers, mp_context=ctx) as pool:
            runs = list(pool.map(_job, [dict(j) for j in jobs]))
    else:
        runs = [_job(dict(j)) for j in jobs]
    wall = time.time() - started

    groups = {}
    for r in runs:
        groups.setdefault((r["task"], r["method"]), []).append(r)
    summary = {f"{t}/{m}": summarize(rs) for (t, m), rs in groups.items()}
    rows = []
    labels = [
        ("static/mlp", "N-MNIST", "static count-image MLP (2312-256-10, ReLU)"),
        ("nmnist/lfp", "N-MNIST", "conv LIF net, LFP"),
        ("nmnist/bptt", "N-MNIST", "conv LIF net, snntorch BPTT"),
        ("digits/lfp", "digits", "64-128-10 LIF MLP, LFP"),
        ("digits/bptt", "digits", "64-128-10 LIF MLP, snntorch BPTT"),
    ]
    for key, task, what in labels:
        if key in summary:
            s = summary[key]
            rows.append(
                [
                    task,
                    what,
                    f"{100 * s['mean']:.1f}",
                    f"{100 * s['min']:.1f}",
                    f"{100 * s['max']:.1f}",
                    len(s["seeds"]),
                    f"{s['seconds']:.0f}",
                ]
            )
    table = markdown_table(
        [
            "data",
            "model / training",
            "val acc % (mean)",
            "min",
            "max",
            "seeds",
            "run time s (sum over seeds)",
        ],
        rows,
    )
    checks = {}
    if "nmnist/lfp" in summary and "nmnist/bptt" in summary:
        lfp, bptt = summary["nmnist/lfp"]["mean"], summary["nmnist/bptt"]["mean"]
        checks = {
            "lfp_at_least_88": lfp >= 0.88,
            "lfp_within_2_of_bptt": lfp >= bptt - 0.02,
            "lfp_minus_bptt_points": 100 * (lfp - bptt),
        }
    payload = {
        "environment": environment(),
        "quick": args.quick,
        "seeds": seeds,
        "epochs": epochs,
        "hyperparameters": {"nmnist": NMNIST, "digits": DIGITS, "static": STATIC},
        "summary": summary,
        "checks": checks,
        "runs": runs,
        "wall_s": wall,
        "workers": args.workers,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "table": table,
    }
    path = write_json(args.json, payload)
    n_train = next((r["n_train"] for r in runs if r["task"] == "nmnist"), None)
    print(
        f"## Validation accuracy (N-MNIST: {n_train} train / {NMNIST['n_val']} val recordings,"
        f" T={NMNIST['T']}, {epochs} epochs; digits: {DIGITS['n_val']} val)\n"
    )
    print(table)
    if checks:
        print(
            f"\nLFP >= 88 %: {checks['lfp_at_least_88']}; LFP within 2 points of BPTT: "
            f"{checks['lfp_within_2_of_bptt']} ({checks['lfp_minus_bptt_points']:+.1f} points)"
        )
    print(f"\n{wall:.0f} s wall with {args.workers} workers; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
