"""What a user gets from ``spikelfp train --dataset X`` with no other flag: the recipe's
accuracy on the held-out validation split, over seeds, through the command line itself.

For each seed the script runs, as a user would (a subprocess under ``/usr/bin/time -v``)::

    spikelfp train --dataset X --data-dir D --seed S --out RUN [--method M] [EXTRA...]
    spikelfp eval RUN --split val --json RUN/eval_val.json

and reports the validation accuracy median [min, max], the training wall time, the training
throughput (samples/s, the trainer's own measure) and the whole process's peak resident
memory. The validation split is the recipe's ``--val-fraction`` hold-out, fixed by
``--split-seed`` (not by ``--seed``), so every seed is scored on the same recordings; nothing
is chosen on it (the recipes were chosen with ``--tune-fraction``, see
``spikelfp/training/recipes``).

Usage::

    python benchmarks/default_recipes.py --dataset nmnist --seeds 0 1 2 --parallel 2
    python benchmarks/default_recipes.py --dataset nmnist --method bptt
    python benchmarks/default_recipes.py --dataset nmnist --tag speck -- --channels 16 16 8
    python benchmarks/default_recipes.py --dataset mnist --data-dir ../shared/data/mnist
    python benchmarks/default_recipes.py --dataset nmnist --tag speck_target \
        --export-target speck -- --model speck-cnn --target speck

Writes ``benchmarks/results/default_recipes_<dataset>_<method>[_<tag>].json`` and prints a
markdown table.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import default_data_root, environment, markdown_table, write_json  # noqa: E402

DATA_SUBDIR = {"nmnist": "nmnist", "mnist": "mnist", "braille": "braille", "digits-events": None}


def _peak_rss_mb(stderr: str) -> float | None:
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    return int(m.group(1)) / 1024 if m else None


def run_seed(args: argparse.Namespace, seed: int, extra: list[str]) -> dict:
    run_dir = Path(args.runs) / f"{args.dataset}_{args.method}{_tag(args)}_seed{seed}"
    cmd = [sys.executable, "-m", "spikelfp", "train", "--dataset", args.dataset]
    if args.data_dir:
        cmd += ["--data-dir", str(args.data_dir)]
    cmd += ["--seed", str(seed), "--out", str(run_dir), "--overwrite", "--no-progress"]
    if args.method != "lfp":
        cmd += ["--method", args.method]
    cmd += extra
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"seed {seed}: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    out_json = run_dir / "eval_val.json"
    ev = subprocess.run(
        [sys.executable, "-m", "spikelfp", "eval", str(run_dir), "--split", "val"]
        + ["--json", str(out_json)],
        capture_output=True,
        text=True,
        check=False,
    )
    if ev.returncode != 0:
        raise RuntimeError(f"seed {seed}: eval failed: {ev.stderr[-2000:]}")
    result = json.loads(out_json.read_text())
    exported = _strict_export(args, run_dir) if args.export_target else {}
    return {
        **exported,
        "seed": seed,
        "command": " ".join(cmd[1:]).replace(sys.executable, "python"),
        "val_accuracy": result["accuracy"],
        "n_val": result["n_samples"],
        "train_wall_s": wall,
        "samples_per_s": statistics.median(m["samples_per_s"] for m in metrics),
        "peak_rss_mb": _peak_rss_mb(proc.stderr),
        "epochs": len(metrics),
        "final_train_acc": metrics[-1]["train_acc"],
        "eval_acc_per_epoch": [m.get("eval_acc") for m in metrics],
    }


def _strict_export(args: argparse.Namespace, run_dir: Path) -> dict:
    """``spikelfp export RUN --target T --strict --split val``: its exit code, the exported
    network's validation accuracy, violations/warnings and the simulator check."""
    rep_path = run_dir / f"export_{Path(args.export_target).stem}.json"
    cmd = [sys.executable, "-m", "spikelfp", "export", str(run_dir), "--target", args.export_target]
    cmd += ["--strict", "--dataset", args.dataset, "--split", "val"]
    cmd += ["--data-dir", str(args.data_dir)] if args.data_dir else []
    cmd += ["-o", str(run_dir / "net.nir"), "--json", str(rep_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    out = {"export_exit": proc.returncode}
    if proc.returncode != 0:
        return {**out, "export_error": proc.stderr.strip()[-400:]}
    rep = json.loads(rep_path.read_text())["report"]
    return {
        **out,
        "exported_val_accuracy": rep["accuracy_quantized"],
        "export_violations": len(rep["constraints"]["violations"]),
        "export_warnings": [w["constraint"] for w in rep["constraints"]["warnings"]],
        "simulator_identical": rep["simulator_identical"],
    }


def _tag(args: argparse.Namespace) -> str:
    return f"_{args.tag}" if args.tag else ""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="nmnist", choices=sorted(DATA_SUBDIR))
    ap.add_argument("--data-dir", default=None, help="default: $SPIKELFP_DATA/<dataset>")
    ap.add_argument("--method", default="lfp", choices=("lfp", "bptt"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--parallel", type=int, default=1, help="runs at once (one thread each)")
    ap.add_argument("--runs", default="runs/default_recipes", help="where the runs go")
    ap.add_argument("--tag", default="", help="suffix of the result name (with extra flags)")
    ap.add_argument(
        "--export-target",
        default=None,
        metavar="T",
        help="also run `spikelfp export RUN --target T --strict --split val` per seed",
    )
    args = ap.parse_args(argv)
    if args.data_dir is None and DATA_SUBDIR[args.dataset]:
        args.data_dir = default_data_root() / DATA_SUBDIR[args.dataset]
        if not args.data_dir.is_dir():
            print(f"no data at {args.data_dir}: set SPIKELFP_DATA or --data-dir", file=sys.stderr)
            return 2
    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        runs = list(pool.map(lambda s: run_seed(args, s, extra), args.seeds))
    accs = [r["val_accuracy"] for r in runs]
    summary = {
        "dataset": args.dataset,
        "method": args.method,
        "extra_flags": extra,
        "val_accuracy_median": statistics.median(accs),
        "val_accuracy_min": min(accs),
        "val_accuracy_max": max(accs),
        "train_wall_s_median": statistics.median(r["train_wall_s"] for r in runs),
        "samples_per_s_median": statistics.median(r["samples_per_s"] for r in runs),
        "peak_rss_mb_median": statistics.median(r["peak_rss_mb"] or 0 for r in runs),
        "parallel_runs": args.parallel,
    }
    if args.export_target:
        exported = [r.get("exported_val_accuracy") for r in runs]
        summary["export_target"] = args.export_target
        summary["strict_export_exits"] = [r["export_exit"] for r in runs]
        if all(a is not None for a in exported):
            summary["exported_val_accuracy_median"] = statistics.median(exported)
    name = f"default_recipes_{args.dataset}_{args.method}{_tag(args)}.json"
    path = write_json(name, {"summary": summary, "runs": runs, "environment": environment()})
    header = ["seed", "val acc %", "train s", "samples/s", "peak RSS MB", "epochs"]
    if args.export_target:
        header += ["strict export exit", "exported val acc %", "simulator identical"]
    rows = [
        [
            r["seed"],
            f"{100 * r['val_accuracy']:.1f}",
            f"{r['train_wall_s']:.0f}",
            f"{r['samples_per_s']:.0f}",
            f"{r['peak_rss_mb']:.0f}",
            r["epochs"],
        ]
        + (
            [
                r["export_exit"],
                "-"
                if r.get("exported_val_accuracy") is None
                else f"{100 * r['exported_val_accuracy']:.1f}",
                r.get("simulator_identical", "-"),
            ]
            if args.export_target
            else []
        )
        for r in runs
    ]
    print(markdown_table(header, rows))
    print(
        f"\n{args.dataset} {args.method} {' '.join(extra)}: val accuracy median "
        f"{100 * summary['val_accuracy_median']:.1f} % "
        f"[{100 * min(accs):.1f}, {100 * max(accs):.1f}] over seeds {args.seeds}; wrote {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
