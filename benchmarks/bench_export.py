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

Train for the chip (``--train-target int8,loihi2,speck,xylo``)::

    python benchmarks/bench_export.py --train-target int8,loihi2,speck,xylo --epochs 3

runs, for each target, the user's path through the command line on the built-in
digits-events data: ``spikelfp train --target T --epochs 3``, ``spikelfp eval RUN`` (the
trained accuracy: the integer network trained on) and ``spikelfp export RUN --target T
--strict --dataset digits-events --json R.json``; it reports the exit codes, violations and
warnings, trained vs exported accuracy and whether the integer simulator reproduced the
exported network, writes ``benchmarks/results/bench_export_targets.json``, and exits non-zero
unless every target that is not refused up front exports with exit 0, no violation or warning,
and the exported accuracy within 1 point of the trained one. ``--models conv,speck-cnn,...``
does the same for each zoo model on every target (``--train-flags`` adds train flags), e.g.::

    python benchmarks/bench_export.py --models conv,speck-cnn,nmnist-cnn,dvsgesture-cnn \
        --train-target int8,loihi2,speck --epochs 3 --json bench_export_targets_models.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
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
from spikelfp.training.bptt import surrogate  # the BPTT baseline (bit-identical to the old copy)

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
        help="shared data folder holding nmnist/ (default: $SPIKELFP_DATA)",
    )
    ap.add_argument(
        "--train-target",
        default=None,
        metavar="T1,T2",
        help="instead: train --target T then export --strict on the built-in data, per target",
    )
    ap.add_argument(
        "--models",
        default="mlp",
        metavar="M1,M2",
        help="with --train-target: the zoo models (spikelfp info --models), each on every target",
    )
    ap.add_argument("--work", default="runs/bench_export_targets", help="run folders")
    ap.add_argument(
        "--stochastic-rounding",
        default=None,
        metavar="T",
        help="instead: train --target T twice (built-in data): float shadow weights vs shadow "
        "weights snapped to the integer grid by stochastic rounding after every step",
    )
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="with --compare-bits: keep finished runs in --work (only re-export them)",
    )
    ap.add_argument(
        "--compare-bits",
        default=None,
        metavar="B1,B2",
        help="instead: trained-for-target vs post-training quantisation at these weight bits "
        "(int8-like profiles with B-bit weights, built-in data)",
    )
    ap.add_argument(
        "--bits-dataset",
        default="digits-events",
        choices=("digits-events", "nmnist", "mnist"),
        help="with --compare-bits: the dataset (its recipe; nmnist/mnist from --data, scored on "
        "the validation split)",
    )
    ap.add_argument(
        "--train-flags",
        default="",
        help="with --compare-bits or --train-target: extra spikelfp train flags",
    )
    ap.add_argument(
        "--target-flags",
        default="",
        help="with --compare-bits: extra flags of the trained-for-target runs only (e.g. the "
        "learning rate their summed pools need)",
    )
    ap.add_argument("--bits-tag", default="", help="with --compare-bits: suffix of the JSON name")
    ap.add_argument("--seeds", default=None, help="with --compare-bits: comma-separated seeds")
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
    if args.train_target:
        return train_target_main(args, argv)
    if args.compare_bits:
        return compare_bits_main(args, argv)
    if args.stochastic_rounding:
        return stochastic_rounding_main(args, argv)
    if args.data is None:
        ap.error("--data (or $SPIKELFP_DATA) is required")
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


def _cli(*args: str) -> tuple[int, str, str, float]:
    import subprocess

    t0 = time.time()
    res = subprocess.run(
        [sys.executable, "-m", "spikelfp", *args], capture_output=True, text=True, check=False
    )
    return res.returncode, res.stdout, res.stderr, time.time() - t0


def train_target_main(args, argv) -> int:
    """``train --target T --epochs E`` then ``export --strict`` per model and target (see the
    docstring)."""
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    extra = shlex.split(args.train_flags or "")
    rows = []
    for model in args.models.split(","):
        for target in args.train_target.split(","):
            rows.append(_train_target_row(args, work, model, target, extra))
            print(f"{model} x {target}: {rows[-1]}", flush=True)
    return _train_target_table(args, argv, rows)


def _train_target_row(args, work: Path, model: str, target: str, extra) -> dict:
    # the mlp keeps the folder names of the single-model runs
    name = target if model == "mlp" else f"{model}_{target}"
    run = work / f"run_{name}"
    row: dict = {"model": model, "target": target}
    rc, _, err, secs = _cli(
        "train", "--model", model, "--target", target, "--epochs", str(args.epochs),
        "--seed", str(args.seed), "--out", str(run), "--overwrite", "--no-progress", *extra,
    )  # fmt: skip
    row.update(train_exit=rc, train_seconds=round(secs, 1), train_error=err.strip()[-400:])
    if rc != 0:
        row["refused_up_front"] = "cannot run this model" in err
        return row
    ev = work / f"eval_{name}.json"
    rc, _, err, _ = _cli("eval", str(run), "--split", "test", "--json", str(ev))
    row["trained_accuracy"] = json.loads(ev.read_text())["accuracy"] if rc == 0 else None
    rep_path = work / f"export_{name}.json"
    rc, out, err, secs = _cli(
        "export", str(run), "--target", target, "--strict", "--dataset", "digits-events",
        "-o", str(work / f"{name}.nir"), "--json", str(rep_path),
    )  # fmt: skip
    row.update(export_exit=rc, export_error=err.strip()[-400:])
    if rc == 0:
        rep = json.loads(rep_path.read_text())["report"]
        row.update(
            violations=len(rep["constraints"]["violations"]),
            warnings=len(rep["constraints"]["warnings"]),
            exported_accuracy=rep["accuracy_quantized"],
            float_shadow_accuracy=rep["accuracy_float"],
            simulator_identical=rep["simulator_identical"],
            n_samples=rep["n_samples"],
            neuron_layers=sum(
                q["threshold_int"] is not None for q in rep["quantization"]["layers"]
            ),
            synapses=sum(layer["synapses"] for layer in rep["sparsity"]["layers"]),
        )
    return row


def _train_target_table(args, argv, rows: list[dict]) -> int:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.2f}"

    print(
        "\n| model | target | train exit | export --strict exit | violations | warnings | "
        "trained acc | exported acc | difference (pts) | simulator identical |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    ok = True
    for r in rows:
        if r["train_exit"] != 0:
            ok &= bool(r.get("refused_up_front"))
            print(
                f"| {r['model']} | {r['target']} | {r['train_exit']} (refused before training) "
                "| | | | | | | |"
            )
            continue
        diff = None
        if r.get("exported_accuracy") is not None and r.get("trained_accuracy") is not None:
            diff = 100 * (r["exported_accuracy"] - r["trained_accuracy"])
        good = (
            r["export_exit"] == 0
            and r.get("violations") == 0
            and r.get("warnings") == 0
            and diff is not None
            and abs(diff) <= 1.0
            and r.get("simulator_identical") is True
        )
        ok &= good
        print(
            f"| {r['model']} | {r['target']} | {r['train_exit']} | {r['export_exit']} | "
            f"{r.get('violations')} | "
            f"{r.get('warnings')} | {pct(r.get('trained_accuracy'))} | "
            f"{pct(r.get('exported_accuracy'))} | "
            f"{'n/a' if diff is None else f'{diff:+.2f}'} | {r.get('simulator_identical')} |"
        )
    print(f"\ngate (exit 0, no violation/warning, within 1 point, identical): {ok}")
    out = Path(args.json)
    if out.name == "bench_export.json":
        out = out.with_name("bench_export_targets.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "command": "python benchmarks/bench_export.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "epochs": args.epochs,
        "seed": args.seed,
        "rows": rows,
        "passed": ok,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if ok else 1


def _export_report(run: Path, work: Path, name: str, *flags: str, data=()) -> dict:
    rep_path = work / f"{name}.json"
    rc, _, err, _ = _cli(
        "export", str(run), *flags, *(data or ("--dataset", "digits-events")),
        "-o", str(work / f"{name}.nir"), "--json", str(rep_path),
    )  # fmt: skip
    if rc != 0:
        return {"exit": rc, "error": err.strip()[-300:]}
    rep = json.loads(rep_path.read_text())["report"]
    return {
        "exit": rc,
        "accuracy": rep["accuracy_quantized"],
        "float_accuracy": rep["accuracy_float"],
        "violations": len(rep["constraints"]["violations"]),
        "warnings": [w["constraint"] for w in rep["constraints"]["warnings"]],
        "simulator_identical": rep["simulator_identical"],
    }


def _bits_one_seed(args, seed: int, work: Path, train_flags, data_flags, split) -> list[dict]:
    """One seed of ``--compare-bits``: a float run exported at each width (post-training
    quantisation) and a run trained with ``--target`` an int8-like B-bit profile."""
    work.mkdir(parents=True, exist_ok=True)
    common = ("--epochs", str(args.epochs), "--seed", str(seed), "--overwrite", "--no-progress")
    common = (*common, *train_flags)
    evaluate = (*data_flags, "--split", split)
    float_run = work / "float"
    if not (args.reuse and (float_run / "checkpoint.pt").is_file()):
        rc, _, err, _ = _cli("train", *common, "--out", str(float_run))
        if rc != 0:
            raise SystemExit(f"float training failed: {err.strip()[-300:]}")
    rows = []
    for bits in (int(b) for b in args.compare_bits.split(",")):
        prof = work / f"int{bits}.json"
        prof.write_text(
            json.dumps(
                {"name": f"int{bits}", "weight_bits": bits, "state_bits": 32, "decay": "mult"}
            )
        )
        ptq = _export_report(
            float_run, work, f"ptq{bits}", "--target", "int8", "--bits", str(bits), data=evaluate
        )
        run = work / f"trained{bits}"
        if args.reuse and (run / "checkpoint.pt").is_file():
            rc, secs = 0, 0.0
        else:
            rc, _, err, secs = _cli(
                "train", *common, *shlex.split(args.target_flags or ""), "--target", str(prof),
                "--out", str(run),
            )  # fmt: skip
        row = {
            "seed": seed,
            "bits": bits,
            "ptq": ptq,
            "train_exit": rc,
            "train_seconds": round(secs, 1),
        }
        if rc == 0:
            row["trained"] = _export_report(
                run, work, f"trained{bits}", "--target", str(prof), "--strict", data=evaluate
            )
        else:
            row["train_error"] = err.strip()[-300:]
        rows.append(row)
        print(f"seed {seed}, {bits} bits: {row}", flush=True)
    return rows


def compare_bits_main(args, argv) -> int:
    """Trained-for-target vs post-training quantisation at several weight widths, per seed: a
    float run exported at B bits (the export's default scale for a float run, ``mse``) against
    a run trained with ``--target`` an int8-like profile with B-bit weights, exported to it
    with ``--strict``. Built-in data (its test split) by default; ``--bits-dataset nmnist``
    trains with the dataset's recipe (plus ``--train-flags``) and scores the validation
    split."""
    import statistics

    dataset = args.bits_dataset
    data_flags: tuple[str, ...] = ("--dataset", dataset)
    if dataset != "digits-events":
        if args.data is None:
            raise SystemExit("--bits-dataset needs --data (or $SPIKELFP_DATA)")
        data_flags += ("--data-dir", str(Path(args.data) / dataset))
    split = "test" if dataset == "digits-events" else "val"
    train_flags = (*data_flags, *shlex.split(args.train_flags or ""))
    seeds = [int(s) for s in (args.seeds or str(args.seed)).split(",")]
    rows = []
    for seed in seeds:
        rows += _bits_one_seed(args, seed, Path(args.work) / f"seed{seed}", train_flags,
                               data_flags, split)  # fmt: skip

    def stats(values):
        values = [100 * v for v in values if v is not None]
        if not values:
            return "n/a"
        if len(values) == 1:
            return f"{values[0]:.2f}"
        return f"{statistics.median(values):.2f} [{min(values):.2f}, {max(values):.2f}]"

    table = [
        f"\n{dataset} ({split} split), {len(seeds)} seed(s), median [min, max] %\n",
        "| bits | float (no quantisation) | post-training quantised | PTQ warnings | "
        "trained for target = exported (--strict) | strict exits | simulator identical |",
        "|---|---|---|---|---|---|---|",
    ]
    for bits in sorted({r["bits"] for r in rows}, reverse=True):
        sel = [r for r in rows if r["bits"] == bits]
        trained = [r.get("trained", {}) for r in sel]
        warns = sorted({w for r in sel for w in r["ptq"].get("warnings", [])})
        table.append(
            f"| {bits} | {stats([r['ptq'].get('float_accuracy') for r in sel])} | "
            f"{stats([r['ptq'].get('accuracy') for r in sel])} | {', '.join(warns) or '-'} | "
            f"{stats([t.get('accuracy') for t in trained])} | "
            f"{', '.join(str(t.get('exit')) for t in trained)} | "
            f"{all(t.get('simulator_identical') for t in trained)} |"
        )
    print("\n".join(table))
    out = Path(args.json)
    if out.name == "bench_export.json":
        tag = "" if dataset == "digits-events" else f"_{dataset}{args.bits_tag}"
        out = out.with_name(f"bench_export_bits{tag}_seeds{'-'.join(map(str, seeds))}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "command": "python benchmarks/bench_export.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "dataset": dataset,
        "split": split,
        "epochs": args.epochs,
        "seeds": seeds,
        "rows": rows,
        "table": "\n".join(table),
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def _snap_stochastically(tt, gen: torch.Generator) -> None:
    """Put every synapse weight on its integer grid ``s * k`` (the current quantisation's row
    scales ``s``) by stochastic rounding: ``k = floor(w/s) + [u < frac(w/s)]``, unbiased."""
    from spikelfp.hw_export._layers import SYNAPSE_TYPES

    q = tt.quantized()
    with torch.no_grad():
        for i, layer in enumerate(tt.model):
            if not isinstance(layer, SYNAPSE_TYPES):
                continue
            s = q.weight_scales[i].to(layer.weight.dtype)
            s = s.reshape(-1, *([1] * (layer.weight.dim() - 1)))
            r = layer.weight / s
            lo = torch.floor(r)
            up = torch.rand(r.shape, generator=gen) < (r - lo)
            layer.weight.copy_(s * (lo + up.to(r.dtype)))


def stochastic_rounding_main(args, argv) -> int:
    """Shadow-float LFP updates vs integer weights updated with stochastic rounding."""
    from spikelfp.training.recipes import resolve_config
    from spikelfp.training.trainer import Trainer

    work = Path(args.work)
    rows = []
    for mode in ("shadow", "stochastic"):
        cfg = resolve_config(
            {
                "target": args.stochastic_rounding,
                "epochs": args.epochs,
                "seed": args.seed,
                "out": str(work / f"sr_{mode}"),
                "progress": False,
            }
        )
        trainer = Trainer(cfg, overwrite=True, log=lambda m: None)
        if mode == "stochastic":
            gen = torch.Generator().manual_seed(args.seed)
            step = trainer.optimizer.step

            def snapped_step(*a, _step=step, _tt=trainer.target_training, _gen=gen, **k):
                out = _step(*a, **k)
                _snap_stochastically(_tt, _gen)
                return out

            trainer.optimizer.step = snapped_step
        t0 = time.time()
        hist = trainer.fit()
        acc = trainer.evaluate("test")["accuracy"]
        row = {
            "updates": mode,
            "test_accuracy_integer_network": acc,
            "per_epoch_eval": [h.get("eval_acc", h.get("test_acc")) for h in hist],
            "seconds": round(time.time() - t0, 1),
        }
        rows.append(row)
        print(row, flush=True)
    print("\n| updates | test accuracy (integer network) |")
    print("|---|---|")
    for r in rows:
        print(f"| {r['updates']} | {100 * r['test_accuracy_integer_network']:.2f} |")
    out = Path(args.json)
    if out.name == "bench_export.json":
        out = out.with_name(f"bench_export_rounding_{args.stochastic_rounding}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "command": "python benchmarks/bench_export.py "
                + " ".join(sys.argv[1:] if argv is None else argv),
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
