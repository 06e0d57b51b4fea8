"""How the recipes were chosen: a table of tuning runs (``spikelfp train --tune-fraction F``).

Every run was trained on the training part minus a tuning hold-out and scored on that
hold-out only (split ``tune``); the validation split that ``default_recipes.py`` reports on
is never looked at. Give the run folders; the script reads each run's ``config.yaml`` and
``metrics.jsonl`` and prints, per dataset and method, how each run's settings differ from
the others' and its tuning accuracy (the last epoch's, and the best epoch's for reference:
nothing is selected by epoch).

Usage::

    python benchmarks/tune_recipes.py runs/tune_*          # table + results/tune_recipes.json

Runs that differ only in ``--seed`` are also summarised together (median [min, max] of the
seeds), the form in which a recipe is chosen over several seeds.
    # a tuning run, e.g.:
    spikelfp train --dataset nmnist --data-dir D --tune-fraction 0.25 --epochs 40 \\
        --out runs/tune_e40
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import markdown_table, write_json  # noqa: E402

from spikelfp.training import TrainConfig  # noqa: E402

#: the configuration fields' defaults (runs saved before a field existed lack it)
DEFAULTS = dataclasses.asdict(TrainConfig())

#: settings that never describe the recipe (paths, runtime)
IGNORED = {"out", "data_dir", "cache_dir", "progress", "threads", "num_workers", "nproc", "device"}


def read_run(folder: Path) -> dict | None:
    cfg_path, metrics_path = folder / "config.yaml", folder / "metrics.jsonl"
    if not (cfg_path.is_file() and metrics_path.is_file()):
        return None
    cfg = yaml.safe_load(cfg_path.read_text())
    metrics = [json.loads(line) for line in metrics_path.read_text().splitlines() if line]
    if not metrics or cfg.get("tune_fraction", 0) <= 0:
        return None
    accs = [m.get("eval_acc") for m in metrics if m.get("eval_split") == "tune"]
    # a field added after the run was made has its default, as the run had
    cfg = {**DEFAULTS, **cfg}
    return {
        "run": folder.name,
        "config": {k: v for k, v in cfg.items() if k not in IGNORED},
        "epochs_done": len(metrics),
        "epochs": cfg["epochs"],
        "complete": len(metrics) == cfg["epochs"],
        "tune_acc_last": accs[-1] if accs else None,
        "tune_acc_best": max(a for a in accs if a is not None) if accs else None,
        "train_acc_last": metrics[-1]["train_acc"],
    }


def differences(runs: list[dict]) -> list[dict]:
    """Each run's settings that are not the same in every run of its group."""
    keys = sorted({k for r in runs for k in r["config"]})
    varying = [
        k for k in keys if len({json.dumps(r["config"].get(k), sort_keys=True) for r in runs}) > 1
    ]
    return [{k: r["config"].get(k) for k in varying} for r in runs]


def by_settings(runs: list[dict]) -> list[dict]:
    """The runs grouped by their settings apart from ``seed`` (one candidate recipe, several
    seeds): each candidate's settings that differ, its seeds, and the median, min and max of
    its complete runs' last tuning accuracy (a stopped run counts as a failure: 0)."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        key = json.dumps({k: v for k, v in r["config"].items() if k != "seed"}, sort_keys=True)
        groups.setdefault(key, []).append(r)
    reps = [members[0] for members in groups.values()]
    out = []
    for members, diff in zip(groups.values(), differences(reps), strict=True):
        ordered = sorted(members, key=lambda r: r["config"].get("seed", 0))
        seen = [r["tune_acc_last"] or 0.0 for r in ordered]
        complete = [r["complete"] for r in ordered]
        accs = [a if done else 0.0 for a, done in zip(seen, complete, strict=True)]
        out.append(
            {
                "settings": {k: v for k, v in diff.items() if k != "seed"},
                "seeds": sorted(r["config"].get("seed", 0) for r in members),
                "tune_acc": accs,
                "tune_acc_seen": seen,
                "complete": complete,
                "median": statistics.median(accs),
                "min": min(accs),
                "max": max(accs),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders of tuning runs")
    ap.add_argument("--name", default="tune_recipes.json", help="result file name")
    args = ap.parse_args(argv)
    runs = [r for r in (read_run(p) for p in args.runs) if r is not None]
    if not runs:
        print("no tuning runs (config.yaml with tune_fraction > 0 and metrics.jsonl) given")
        return 2
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["config"]["dataset"], r["config"]["method"]), []).append(r)
    candidates: list[dict] = []
    for (dataset, method), members in sorted(groups.items()):
        print(f"\n{dataset}, {method}:")
        rows = []
        for r, diff in zip(members, differences(members), strict=True):
            rows.append(
                [
                    r["run"],
                    ", ".join(f"{k}={v}" for k, v in diff.items()) or "-",
                    f"{r['epochs_done']}/{r['epochs']}" + ("" if r["complete"] else " (stopped)"),
                    f"{100 * r['tune_acc_last']:.1f}" if r["tune_acc_last"] is not None else "-",
                    f"{100 * r['tune_acc_best']:.1f}" if r["tune_acc_best"] is not None else "-",
                    f"{100 * r['train_acc_last']:.1f}",
                ]
            )
        header = ["run", "settings that differ", "epochs", "tune % (last)", "(best)", "train %"]
        print(markdown_table(header, rows))
        cands = by_settings(members)
        candidates += [{"dataset": dataset, "method": method, **c} for c in cands]
        if any(len(c["seeds"]) > 1 for c in cands):
            print(f"\n{dataset}, {method}, by settings over seeds (last epoch's tune %):")
            rows = [
                [
                    ", ".join(f"{k}={v}" for k, v in c["settings"].items()) or "-",
                    " ".join(str(x) for x in c["seeds"]),
                    " / ".join(
                        f"{100 * a:.1f}" if done else f"stopped (counted 0; {100 * a:.1f})"
                        for a, done in zip(c["tune_acc_seen"], c["complete"], strict=True)
                    ),
                    f"{100 * c['median']:.2f} [{100 * c['min']:.1f}, {100 * c['max']:.1f}]",
                ]
                for c in cands
            ]
            header = ["settings", "seeds", "tune % per seed", "median [min, max]"]
            print(markdown_table(header, rows))
    path = write_json(args.name, {"runs": runs, "candidates": candidates})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
