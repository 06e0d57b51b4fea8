"""Pruning during training vs after it: the int8-exported accuracy on digits-events.

The user's path through the command line (in-process), on the built-in dataset with the CLI's
default network (``mlp``: 256 hidden LIF neurons, 16 time bins, LFP, Adam 2e-3, cosine
schedule) and ``--val-fraction 0.2``. For each seed and each sparsity S:

(a) **after training**: ``spikelfp train`` (dense), then ``spikelfp export RUN --target int8
    --prune S`` (global magnitude pruning of the trained network, no fine-tuning);
(b) **during training, magnitude**: ``spikelfp train --prune-to S --prune-method magnitude
    --prune-start 1 --prune-end E-3 --prune-every 15``, then ``spikelfp export RUN --target
    int8`` (``--prune 0``: the trained sparsity);
(c) **during training, feedback**: the same with ``--prune-method feedback``.

The score is the accuracy of the exported int8 network (the integer simulator's model) on the
*validation* split (a stratified fifth of the training recordings; the test split is never
used). No setting is tuned here: the schedule (start after epoch 1, target reached three epochs
before the end, an event every 15 steps) is fixed a priori.

Usage::

    nice -n 10 python benchmarks/bench_prune_training.py                 # seeds 0 1 2
    nice -n 10 python benchmarks/bench_prune_training.py --seeds 0       # one seed

Prints a markdown table (mean ± standard deviation over the seeds) and writes
``benchmarks/results/bench_prune_training.json`` (every run, and the command).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from spikelfp.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "bench_prune_training.json"


def _cli(*argv: str) -> None:
    """Run ``spikelfp ARGV`` in-process; raise with its stderr if it fails."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli([str(a) for a in argv])
    if rc != 0:
        raise RuntimeError(f"spikelfp {' '.join(map(str, argv))} exited {rc}: {err.getvalue()}")


def _export(run: Path, prune: float, tmp: Path) -> dict:
    report = tmp / f"{run.name}-{prune}.json"
    _cli(
        "export", run, "--target", "int8", "--prune", prune, "-o", tmp / "net.nir",
        "--dataset", "digits-events", "--split", "val", "--json", report,
    )  # fmt: skip
    rep = json.loads(report.read_text())["report"]
    return {
        "val_acc_int8": rep["accuracy_quantized"],
        "val_acc_float": rep["accuracy_float"],
        "sparsity_exported": rep["sparsity"]["sparsity"],
        "simulator_identical": rep["simulator_identical"],
        "violations": len(rep["constraints"]["violations"]),
    }


def _train(out: Path, seed: int, epochs: int, extra: list[str]) -> tuple[dict, float]:
    t0 = time.perf_counter()
    _cli(
        "train", "--epochs", epochs, "--val-fraction", "0.2", "--seed", seed, "--no-progress",
        "--out", out, "--overwrite", *extra,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return rows[-1], wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sparsities", type=float, nargs="+", default=[0.8, 0.9])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--json", default=str(OUT))
    args = ap.parse_args(argv)
    if args.epochs < 4:
        ap.error("--epochs must be >= 4 (pruning from epoch 1 to epochs - 3)")
    end = args.epochs - 3
    schedule = ["--prune-start", "1", "--prune-end", str(end), "--prune-every", "15"]
    rows = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for seed in args.seeds:
            dense = tmp / f"dense-{seed}"
            last, wall = _train(dense, seed, args.epochs, [])
            for s in args.sparsities:
                rows.append(
                    {
                        "seed": seed,
                        "sparsity": s,
                        "how": "after training (export --prune)",
                        "trained_val_acc": last["eval_acc"],
                        "train_wall_s": wall,
                        **_export(dense, s, tmp),
                    }  # fmt: skip
                )
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
                for method in ("magnitude", "feedback"):
                    run = tmp / f"{method}-{s}-{seed}"
                    flags = ["--prune-to", str(s), "--prune-method", method, *schedule]
                    last_p, wall_p = _train(run, seed, args.epochs, flags)
                    rows.append(
                        {
                            "seed": seed,
                            "sparsity": s,
                            "how": f"during training ({method})",
                            "trained_val_acc": last_p["eval_acc"],
                            "trained_sparsity": last_p["sparsity"],
                            "train_wall_s": wall_p,
                            **_export(run, 0.0, tmp),
                        }  # fmt: skip
                    )
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    total = time.perf_counter() - t_start

    def stat(values):
        m = statistics.mean(values)
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return m, sd

    table = [
        f"digits-events, mlp (256 LIF), LFP, {args.epochs} epochs, seeds "
        f"{' '.join(map(str, args.seeds))}; int8 export, validation split (20 % of train)",
        "",
        "| sparsity | pruning | exported sparsity | val acc int8 (%) | val acc float "
        "before export (%) | simulator identical |",
        "|---|---|---|---|---|---|",
    ]
    summary = []
    for s in args.sparsities:
        for how in ("after training (export --prune)", "during training (magnitude)",
                    "during training (feedback)"):  # fmt: skip
            sel = [r for r in rows if r["sparsity"] == s and r["how"] == how]
            acc, acc_sd = stat([100 * r["val_acc_int8"] for r in sel])
            fl, fl_sd = stat([100 * r["trained_val_acc"] for r in sel])
            sp = statistics.mean(r["sparsity_exported"] for r in sel)
            ident = all(r["simulator_identical"] for r in sel)
            summary.append(
                {
                    "sparsity": s,
                    "how": how,
                    "val_acc_int8_mean": acc,
                    "val_acc_int8_sd": acc_sd,
                    "trained_val_acc_mean": fl,
                    "exported_sparsity_mean": sp,
                    "simulator_identical": ident,
                }  # fmt: skip
            )
            table.append(
                f"| {s:.0%} | {how} | {100 * sp:.2f}% | {acc:.2f} ± {acc_sd:.2f} | "
                f"{fl:.2f} ± {fl_sd:.2f} | {'yes' if ident else 'NO'} |"
            )
    text = "\n".join(table)
    print(text)
    cmd = "nice -n 10 python benchmarks/bench_prune_training.py " + " ".join(argv or sys.argv[1:])
    result = {
        "command": cmd.strip(),
        "epochs": args.epochs,
        "schedule": schedule,
        "seeds": args.seeds,
        "summary": summary,
        "runs": rows,
        "wall_s": total,
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
        },
        "table": text,
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_suffix(".json.tmp")
    tmp_path.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp_path, path)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
