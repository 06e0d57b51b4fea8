"""Faithfulness of spikelfp's explanations: event-deletion curves and relevance conservation.

Usage::

    SPIKELFP_DATA=/work/shared/data python benchmarks/bench_explain.py \\
        --checkpoint /work/exp/final/nmnist_lfp_seed0 --n 100

For ``--n`` N-MNIST validation recordings (a stratified subset of the validation split, i.e.
``spikelfp.datasets.validation_split(labels, fraction=0.2, seed=0).val`` of the 1,000
training recordings) and a trained run (``--checkpoint``), every method ranks the recording's
events by relevance for the true class:

* ``lfp-*``: :func:`spikelfp.explain_events` with the explanation composites (ε, z⁺, γ, the
  depth preset; reward = the target's spike train), and ε with the uniform reward;
* ``saliency``: surrogate-gradient × input (:func:`spikelfp.explain.surrogate_saliency`,
  fast sigmoid, slope 25), mapped to the events the same way;
* ``random``: a random order (seeded per recording).

Then the most relevant k % of the events (k = 1, 2, 5, 10, 20, 50; ties broken at random) are
removed, the rest re-binned by the dataset's own pipeline, and the model re-run. Reported per
method: the median over recordings of the fraction of the target's output spikes left, the
accuracy, and the area under each curve over k ∈ [0, 50 %] normalised by its width (lower =
the removed events mattered more = more faithful); plus relevance conservation
(:func:`spikelfp.explain.relevance_budget`: the output reward vs what reaches the input, the
bias shares and the ε / neuron-denominator absorption). Prints a table, writes
``benchmarks/results/bench_explain.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from spikelfp.datasets import validation_split
from spikelfp.explain import (
    bin_events,
    depth_composite,
    epsilon_composite,
    explain_events,
    gamma_composite,
    recording,
    relevance_budget,
    surrogate_saliency,
    zplus_composite,
)
from spikelfp.training.checkpoint import load_checkpoint
from spikelfp.training.config import TrainConfig
from spikelfp.training.data import open_split
from spikelfp.training.trainer import build_from_checkpoint

RESULTS = Path(__file__).resolve().parent / "results"
FRACTIONS = (1, 2, 5, 10, 20, 50)


def _lfp(composite, reward="output"):
    def score(model, ev, prep, sensor, label, clamp, bins, x):
        res = explain_events(
            model, ev, prep, sensor, target=label, composite=composite,
            input_clamp=clamp, reward=reward,
        )  # fmt: skip
        return res.relevance

    return score


def _saliency(model, ev, prep, sensor, label, clamp, bins, x):
    sal = surrogate_saliency(model, x, target=label)
    return bins.to_events(sal[:, 0])


def _random(model, ev, prep, sensor, label, clamp, bins, x):
    return np.zeros(len(ev))  # all ties: the random tie-break is the order


def methods(model) -> dict:
    return {
        "lfp-epsilon": _lfp(epsilon_composite()),
        "lfp-epsilon-uniform": _lfp(epsilon_composite(), reward="uniform"),
        "lfp-zplus": _lfp(zplus_composite()),
        "lfp-gamma": _lfp(gamma_composite()),
        "lfp-depth": _lfp(depth_composite(model)),
        "saliency": _saliency,
        "random": _random,
    }


def _auc(fractions: list[float], values: list[float]) -> float:
    """Trapezoid area under ``values`` over ``fractions`` (from 0), divided by the width."""
    xs, ys = np.asarray(fractions, dtype=float), np.asarray(values, dtype=float)
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2) / (xs[-1] - xs[0]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default="/work/exp/final/nmnist_lfp_seed0", metavar="RUN")
    ap.add_argument(
        "--data-dir",
        default=None,
        help="N-MNIST folder (default: $SPIKELFP_DATA/nmnist, else the run's)",
    )
    ap.add_argument("--n", type=int, default=100, help="validation recordings (100)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "bench_explain.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.time()

    ckpt = load_checkpoint(args.checkpoint)
    model = build_from_checkpoint(ckpt)
    cfg = TrainConfig.from_stored(ckpt["config"])
    data_dir = args.data_dir
    if data_dir is None and os.environ.get("SPIKELFP_DATA"):
        data_dir = str(Path(os.environ["SPIKELFP_DATA"]) / "nmnist")
    changes = {
        "val_fraction": 0.2,
        "split_seed": 0,
        "tune_fraction": 0.0,
        "max_train_samples": None,
        "max_eval_samples": None,
    }
    if data_dir is not None:
        changes["data_dir"] = data_dir
    cfg = cfg.replace(**changes)
    val = open_split(cfg, "val").dataset
    picks = np.arange(len(val))
    if args.n < len(val):
        picks = validation_split(val, n_val=args.n, seed=args.seed).val
    prep = sensor = None
    clamp = cfg.input_clamp
    fns = methods(model)
    names = list(fns)
    ks = [0, *FRACTIONS]
    counts = {m: [] for m in names}  # per recording: target spike count at each k
    correct = {m: [] for m in names}
    budgets = []
    t_explain = {m: 0.0 for m in names}
    for n_done, i in enumerate(picks):
        ev, prep, sensor, label = recording(val, int(i))
        pipeline = prep.build(sensor)
        bins = bin_events(ev, prep, sensor)
        x0 = torch.from_numpy(bins.counts()).float().unsqueeze(1)
        x0 = x0.clamp(max=clamp) if clamp is not None else x0
        rng = np.random.default_rng([args.seed, int(i)])
        tiebreak = rng.random(len(ev))
        batch = []
        for m in names:
            t0 = time.perf_counter()
            score = fns[m](model, ev, prep, sensor, label, clamp, bins, x0)
            t_explain[m] += time.perf_counter() - t0
            order = np.lexsort((tiebreak, -score))  # most relevant first, ties at random
            batch.append(x0[:, 0])
            for k in FRACTIONS:
                keep = np.ones(len(ev), dtype=bool)
                keep[order[: int(round(k / 100 * len(ev)))]] = False
                frames = torch.from_numpy(np.asarray(pipeline(ev[keep]), dtype=np.float32))
                batch.append(frames.clamp(max=clamp) if clamp is not None else frames)
        x = torch.stack(batch, dim=1)
        with torch.no_grad():
            out = model(x)
            out = out[0] if isinstance(out, tuple) else out
        total = out.sum(0).reshape(len(names), len(ks), -1)
        for j, m in enumerate(names):
            counts[m].append(total[j, :, label].tolist())
            correct[m].append((total[j].argmax(-1) == label).tolist())
        budgets.append(relevance_budget(model, x0, label))
        if (n_done + 1) % 20 == 0:
            print(f"  {n_done + 1}/{len(picks)} recordings ({time.time() - t_start:.0f} s)")

    results: dict = {}
    for m in names:
        c = np.asarray(counts[m], dtype=float)  # (N, K)
        a = np.asarray(correct[m], dtype=float)
        ok = c[:, 0] > 0
        left = c[ok] / c[ok, :1]
        median_left = [float(np.median(left[:, j])) for j in range(len(ks))]
        mean_left = [float(np.mean(left[:, j])) for j in range(len(ks))]
        acc = [float(np.mean(a[:, j])) for j in range(len(ks))]
        results[m] = {
            "target_spikes_left_median": median_left,
            "target_spikes_left_mean": mean_left,
            "target_spikes_mean": [float(v) for v in c.mean(0)],
            "accuracy": acc,
            "auc_spikes": _auc(ks, mean_left),
            "auc_accuracy": _auc(ks, acc),
            "explain_ms_per_recording": 1000 * t_explain[m] / len(picks),
        }
    out_total = sum(b["output"] for b in budgets)
    conservation = {
        key: sum(b[key] for b in budgets) / out_total
        for key in ("input", "bias", "synapse_absorbed", "neuron_absorbed", "other")
    }
    per_rec = [b["input"] / b["output"] for b in budgets if b["output"] > 0]
    conservation["input_over_output_median"] = float(statistics.median(per_rec))
    conservation["closure_max_abs"] = max(
        abs(b["other"]) / max(abs(b["output"]), 1e-12) for b in budgets
    )
    report = {
        "command": "python benchmarks/bench_explain.py " + " ".join(argv or sys.argv[1:]),
        "checkpoint": str(ckpt["path"]),
        "data_dir": str(cfg.data_dir),
        "epoch": int(ckpt["epoch"]),
        "model": ckpt["model_spec"]["name"],
        "time_bins": cfg.time_bins,
        "n_recordings": len(picks),
        "target": "true label",
        "fractions_percent": ks,
        "methods": results,
        "conservation_lfp_epsilon": conservation,
        "seconds": time.time() - t_start,
    }
    _print_table(report)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


def _print_table(r: dict) -> None:
    ks = r["fractions_percent"]
    print(
        f"\n{r['model']} (epoch {r['epoch']}), {r['n_recordings']} N-MNIST validation "
        f"recordings, T={r['time_bins']}; target = the true class"
    )
    head = " | ".join(f"{k}%" for k in ks[1:])
    print(f"\n| method | target spikes left (median) at {head} | AUC spikes | "
          "accuracy at 5% | AUC accuracy | ms/rec |")  # fmt: skip
    print("|---|" + "---|" * (len(ks) - 1) + "---|---|---|---|")
    i5 = ks.index(5)
    for m, v in r["methods"].items():
        left = " | ".join(f"{x:.3f}" for x in v["target_spikes_left_median"][1:])
        print(
            f"| {m} | {left} | {v['auc_spikes']:.3f} | {v['accuracy'][i5]:.3f} | "
            f"{v['auc_accuracy']:.3f} | {v['explain_ms_per_recording']:.0f} |"
        )
    c = r["conservation_lfp_epsilon"]
    print(
        "\nconservation (lfp-epsilon, shares of the output reward summed over recordings): "
        f"input {c['input']:.4f}, bias {c['bias']:.4f}, synapse ε {c['synapse_absorbed']:.2e}, "
        f"neuron denominators {c['neuron_absorbed']:.4f}, unaccounted {c['other']:.2e} "
        f"(median input/output per recording {c['input_over_output_median']:.4f})"
    )


if __name__ == "__main__":
    raise SystemExit(main())
