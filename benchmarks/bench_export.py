"""Export benchmark: prune + quantise an LFP-trained and a BPTT-trained N-MNIST network.

Usage::

    python benchmarks/bench_export.py --data $SPIKELFP_DATA

Trains the same spikelfp architecture (2312-256-10 LIF MLP, reset to zero, T time bins) on the
real N-MNIST recordings in ``<data>/nmnist/NMNIST/Train/<digit>/<idx>.bin`` twice — with LFP
(:func:`spikelfp.lfp.lfp_step`) and with surrogate-gradient BPTT (fast-sigmoid surrogate
swapped into a local copy of the LIF forward, cross-entropy on spike counts) — holding out
200 recordings (20 per class, deterministic) for validation. Then, for both models, for
magnitude and LFP-feedback pruning at 0/50/80/90 % sparsity and 8/4/2-bit quantisation
(``--target`` profile, default int8), it reports float and quantised accuracy, the accuracy
drop and the spike agreement (share of identical neuron-steps, all spiking layers) between the
quantised and the float network, and checks the integer simulator against the quantised torch
model bit for bit. Prints a markdown table, writes JSON, and exits non-zero unless the
LFP-trained network loses at most 1 point at 8 bits and 80 % sparsity (feedback pruning).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spikelfp import LIF, Sequential
from spikelfp.hw_export import (
    FeedbackAccumulator,
    feedback_prune,
    magnitude_prune,
    neuron_outputs,
    quantize,
    simulate,
    sparsity_report,
)
from spikelfp.lfp import lfp_step, rate_coded_reward
from spikelfp.neurons.lif import LIFState

GATE_BITS, GATE_SPARSITY, GATE_POINTS = 8, 0.8, 1.0
_EVENT_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])


# ----------------------------------------------------------------------------- data


def _frames_numpy(files: list[Path], steps: int, duration_us: int) -> np.ndarray:
    """Bin events into binary frames ``(N, T, 2, 34, 34)`` (1 = at least one event)."""
    from tonic.io import read_mnist_file

    out = np.zeros((len(files), steps, 2, 34, 34), np.uint8)
    for i, f in enumerate(files):
        ev = read_mnist_file(str(f), dtype=_EVENT_DTYPE)
        tb = np.clip(ev["t"] * steps // duration_us, 0, steps - 1)
        keep = (ev["x"] < 34) & (ev["y"] < 34)
        out[i, tb[keep], ev["p"][keep], ev["y"][keep], ev["x"][keep]] = 1
    return out


def load_nmnist(root: Path, steps: int, duration_us: int = 300_000):
    """All training recordings as binary frames and labels, and which loader was used."""
    split = root / "nmnist" / "NMNIST" / "Train"
    if not split.is_dir():
        raise SystemExit(f"N-MNIST not found: expected {split}/<digit>/<idx>.bin")
    try:
        from spikelfp.datasets import NMNIST, FrameSpec

        ds = NMNIST(root / "nmnist", split="train", frames=FrameSpec(n_time_bins=steps))
        xs, ys = [], []
        for i in range(len(ds)):
            frames, label = ds[i]
            frames = torch.as_tensor(np.asarray(frames))
            if tuple(frames.shape) != (steps, 2, 34, 34):
                raise ValueError(f"unexpected frame shape {tuple(frames.shape)}")
            xs.append((frames > 0).to(torch.uint8).numpy())
            ys.append(int(label))
        return np.stack(xs), np.asarray(ys, np.int64), "spikelfp.datasets.NMNIST"
    except Exception as err:  # the datasets package is optional here: fall back to numpy
        print(
            f"(spikelfp.datasets.NMNIST not used: {type(err).__name__}: {err}; binning with numpy)",
            file=sys.stderr,
        )
    files = sorted(split.glob("[0-9]/*.bin"), key=lambda p: (p.parent.name, int(p.stem)))
    labels = np.asarray([int(f.parent.name) for f in files], np.int64)
    return _frames_numpy(files, steps, duration_us), labels, "numpy (tonic.io.read_mnist_file)"


def stratified_split(labels: np.ndarray, per_class: int, seed: int):
    rng = np.random.default_rng(seed)
    val = np.concatenate(
        [
            np.sort(rng.permutation(np.flatnonzero(labels == c))[:per_class])
            for c in np.unique(labels)
        ]
    )
    train = np.setdiff1d(np.arange(len(labels)), val)
    return train, val


# ----------------------------------------------------------------------------- models


def make_net(hidden: int, seed: int) -> Sequential:
    torch.manual_seed(seed)
    return Sequential(
        nn.Flatten(start_dim=1),
        nn.Linear(2 * 34 * 34, hidden),
        LIF(beta=0.9, threshold=0.5),
        nn.Linear(hidden, 10),
        LIF(beta=0.9, threshold=0.5),
    )


class _FastSigmoidSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, slope):
        ctx.save_for_backward(v)
        ctx.slope = slope
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        return grad / (ctx.slope * v.abs() + 1.0) ** 2, None


def _surrogate_lif_forward(module: LIF, slope: float):
    """A local copy of LIF's forward (reset to zero, immediate) with a surrogate spike."""

    def forward(x, state=None):
        v = torch.zeros(x.shape[1:], dtype=x.dtype) if state is None else state.v
        out = []
        for z in x.unbind(0):
            v_pre = module.beta * v + z
            s = _FastSigmoidSpike.apply(v_pre - module.threshold, slope)
            v = v_pre * (1.0 - s.detach())  # detached reset, as snntorch does by default
            out.append(s)
        return torch.stack(out), LIFState(v)

    return forward


@contextlib.contextmanager
def surrogate(net: nn.Module, slope: float):
    lifs = [m for m in net.modules() if isinstance(m, LIF)]
    for m in lifs:
        assert m.reset == "zero" and not m.reset_delay
        m.__dict__["forward"] = _surrogate_lif_forward(m, slope)
    try:
        yield net
    finally:
        for m in lifs:
            m.__dict__.pop("forward", None)


def accuracy_of(out: torch.Tensor, y: torch.Tensor) -> float:
    return float((out.sum(0).argmax(-1) == y).float().mean())


def train(method: str, x, y, xv, yv, args) -> tuple[Sequential, list[float], float]:
    net = make_net(args.hidden, args.seed)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr if method == "lfp" else args.bptt_lr)
    steps = x.shape[0]
    g = torch.Generator().manual_seed(args.seed)
    history = []
    t0 = time.time()
    for _ in range(args.epochs):
        perm = torch.randperm(y.numel(), generator=g)
        for i in range(0, y.numel(), args.batch):
            idx = perm[i : i + args.batch]
            xb, yb = x[:, idx].float(), y[idx]
            if method == "lfp":
                lfp_step(net, xb, yb, lambda o, t: rate_coded_reward(o, t, scale=1 / steps), opt)
            else:
                with surrogate(net, args.slope):
                    out, _ = net(xb)
                loss = F.cross_entropy(out.sum(0), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            history.append(accuracy_of(net(xv.float())[0], yv))
        print(
            f"  {method} epoch {len(history)}: validation accuracy {history[-1]:.3f} "
            f"({time.time() - t0:.0f} s)",
            flush=True,
        )
    return net, history, time.time() - t0


def feedback_scores(net: Sequential, x, y, batch: int) -> FeedbackAccumulator:
    """Accumulated |LFP feedback| over the training set (no update)."""
    acc = FeedbackAccumulator(net)
    steps = x.shape[0]
    for i in range(0, y.numel(), batch):
        lfp_step(
            net,
            x[:, i : i + batch].float(),
            y[i : i + batch],
            lambda o, t: rate_coded_reward(o, t, scale=1 / steps),
        )
        acc.update()
    for p in net.parameters():
        p.grad = None
    return acc


# ----------------------------------------------------------------------------- evaluation


def spiking_agreement(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    same = sum(int((p.double() == q.double()).sum()) for p, q in zip(a, b, strict=True))
    return same / sum(p.numel() for p in a)


def evaluate_model(name, net, train_xy, xv, yv, args) -> list[dict]:
    x, y = train_xy
    with torch.no_grad():
        float_out = neuron_outputs(net, xv.float())
    acc_float = accuracy_of(float_out[-1], yv)
    scores = feedback_scores(net, x, y, 100)
    configs = [("none", 0.0)] + [
        (m, sp) for m in ("magnitude", "feedback") for sp in args.sparsities if sp > 0
    ]
    rows = []
    for method, sp in configs:
        if method == "none":
            pruned = net
        elif method == "magnitude":
            pruned = magnitude_prune(net, sp)
        else:
            pruned = feedback_prune(net, scores, sp)
        with torch.no_grad():
            pr_out = neuron_outputs(pruned, xv.float())
        acc_pruned = accuracy_of(pr_out[-1], yv)
        sparsity = sparsity_report(pruned, (2, 34, 34))
        for bits in args.bits:
            q = quantize(pruned, bits, args.target, input_shape=(2, 34, 34))
            with torch.no_grad():
                q_out = neuron_outputs(q.model, xv.double())
            acc_q = accuracy_of(q_out[-1], yv)
            n_sim = min(args.sim_samples, yv.numel())
            sim = simulate(q, xv[:, :n_sim].double())
            identical = all(
                np.array_equal(o[:, :n_sim].numpy().astype(np.int64), s)
                for o, s in zip(q_out, sim.layer_outputs, strict=True)
            )
            rows.append(
                {
                    "model": name,
                    "pruning": method,
                    "sparsity": sp,
                    "bits": bits,
                    "achieved_sparsity": sparsity.sparsity,
                    "dead_neurons": sum(r.dead_neurons or 0 for r in sparsity.layers),
                    "acc_float": acc_float,
                    "acc_pruned": acc_pruned,
                    "acc_quantized": acc_q,
                    "drop_points": 100 * (acc_float - acc_q),
                    "drop_quantization_points": 100 * (acc_pruned - acc_q),
                    "agreement_vs_float": spiking_agreement(q_out, float_out),
                    "agreement_vs_pruned": spiking_agreement(q_out, pr_out),
                    "max_weight_error": q.report.max_weight_error,
                    "simulator_identical": identical,
                    "saturations": int(sum(sim.saturations.values())),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("SPIKELFP_DATA")
    ap.add_argument(
        "--data",
        default=default,
        required=default is None,
        help="shared data folder holding nmnist/ (default: $SPIKELFP_DATA)",
    )
    ap.add_argument("--steps", type=int, default=25, help="time bins per recording (T)")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3, help="LFP learning rate (Adam)")
    ap.add_argument("--bptt-lr", type=float, default=1e-3, help="BPTT learning rate (Adam)")
    ap.add_argument("--slope", type=float, default=5.0, help="fast-sigmoid surrogate slope")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", default="int8", help="hardware profile for quantisation")
    ap.add_argument("--sparsities", default="0,0.5,0.8,0.9")
    ap.add_argument("--bits", default="8,4,2")
    ap.add_argument(
        "--sim-samples",
        type=int,
        default=50,
        help="validation samples run through the integer simulator per config",
    )
    ap.add_argument("--no-bptt", action="store_true", help="skip the BPTT comparison")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="benchmarks/results/bench_export.json")
    args = ap.parse_args(argv)
    args.sparsities = [float(s) for s in args.sparsities.split(",")]
    args.bits = [int(b) for b in args.bits.split(",")]
    torch.set_num_threads(args.threads)
    t_start = time.time()

    frames, labels, loader = load_nmnist(Path(args.data), args.steps)
    tr, va = stratified_split(labels, per_class=20, seed=args.seed)
    x = torch.from_numpy(frames[tr]).transpose(0, 1)  # (T, N, 2, 34, 34) uint8
    y = torch.from_numpy(labels[tr])
    xv = torch.from_numpy(frames[va]).transpose(0, 1)
    yv = torch.from_numpy(labels[va])
    print(
        f"N-MNIST: {len(tr)} train / {len(va)} validation recordings, T={args.steps}, "
        f"loader: {loader}",
        flush=True,
    )

    models = {}
    for method in ("lfp",) + (() if args.no_bptt else ("bptt",)):
        net, hist, secs = train(method, x, y, xv, yv, args)
        models[method] = {"net": net, "history": hist, "train_seconds": secs}
    rows = []
    for name, m in models.items():
        rows += evaluate_model(name, m["net"], (x, y), xv, yv, args)

    print(
        "\n| model | pruning | sparsity | bits | float acc | pruned acc | quantised acc | "
        "drop (pts) | drop from quantisation (pts) | spike agreement vs float | "
        "simulator identical |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['pruning']} | {100 * r['sparsity']:.0f}% | {r['bits']} | "
            f"{100 * r['acc_float']:.1f} | {100 * r['acc_pruned']:.1f} | "
            f"{100 * r['acc_quantized']:.1f} | {r['drop_points']:+.1f} | "
            f"{r['drop_quantization_points']:+.1f} | {100 * r['agreement_vs_float']:.2f}% | "
            f"{r['simulator_identical']} |"
        )

    gate = [
        r
        for r in rows
        if r["model"] == "lfp"
        and r["pruning"] == "feedback"
        and r["bits"] == GATE_BITS
        and abs(r["sparsity"] - GATE_SPARSITY) < 1e-9
    ]
    passed = bool(gate) and gate[0]["drop_points"] <= GATE_POINTS
    all_identical = all(r["simulator_identical"] for r in rows)
    print("\nprunability (float accuracy after pruning, points lost vs unpruned):")
    for name in models:
        for method in ("magnitude", "feedback"):
            parts = [
                f"{100 * s:.0f}%: {100 * (r['acc_float'] - r['acc_pruned']):+.1f}"
                for s in args.sparsities
                if s > 0
                for r in rows
                if r["model"] == name
                and r["pruning"] == method
                and r["sparsity"] == s
                and r["bits"] == args.bits[0]
            ]
            print(f"  {name:4s} {method:9s} " + ", ".join(parts))
    if gate:
        print(
            f"\ngate: LFP, {GATE_BITS} bits, {100 * GATE_SPARSITY:.0f}% feedback pruning: "
            f"drop {gate[0]['drop_points']:+.1f} points (<= {GATE_POINTS}): "
            f"{'PASS' if passed else 'FAIL'}"
        )
    print(
        f"integer simulator bit-identical to the quantised model in every config: {all_identical}"
    )
    total = time.time() - t_start
    print(f"total time {total:.0f} s")
    result = {
        "command": "python benchmarks/bench_export.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "data": {"train": len(tr), "validation": len(va), "steps": args.steps, "loader": loader},
        "architecture": f"2312-{args.hidden}-10 LIF (beta 0.9, threshold 0.5, reset zero)",
        "target": args.target,
        "training": {
            name: {"validation_accuracy": m["history"], "seconds": m["train_seconds"]}
            for name, m in models.items()
        },
        "rows": rows,
        "gate": {
            "bits": GATE_BITS,
            "sparsity": GATE_SPARSITY,
            "max_drop_points": GATE_POINTS,
            "pruning": "feedback",
            "passed": passed,
            "drop_points": gate[0]["drop_points"] if gate else None,
        },
        "simulator_identical": all_identical,
        "seconds": total,
        "torch_threads": args.threads,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if passed and all_identical else 1


if __name__ == "__main__":
    sys.exit(main())
