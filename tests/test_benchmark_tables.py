"""Benchmark scripts that tabulate runs: tune_recipes.py (how the recipes were chosen) and
output_ties.py (ties of the spike-count read-out)."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml


def _script(name: str):
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tune_recipes = _script("tune_recipes")
output_ties = _script("output_ties")


def _run(folder: Path, config: dict, tune_accs: list[float], epochs: int) -> Path:
    folder.mkdir()
    base = {"dataset": "nmnist", "method": "lfp", "tune_fraction": 0.25, "epochs": epochs}
    (folder / "config.yaml").write_text(yaml.safe_dump({**base, **config}))
    lines = [
        json.dumps({"epoch": i + 1, "train_acc": 0.9, "eval_split": "tune", "eval_acc": a})
        for i, a in enumerate(tune_accs)
    ]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_seeds_group_and_missing_fields_take_their_defaults(tmp_path):
    # an older run saved no lr_warmup: it had the default, so it groups with a newer run
    old = _run(tmp_path / "old", {"seed": 0, "augment": {"shift": 2}}, [0.5, 0.9], 2)
    new = {"seed": 1, "augment": {"shift": 2}, "lr_warmup": 0.0}
    runs = [
        tune_recipes.read_run(old),
        tune_recipes.read_run(_run(tmp_path / "new", new, [0.6, 0.8], 2)),
        # a stopped run is a failure of its candidate: it counts 0 in the median
        tune_recipes.read_run(_run(tmp_path / "stop", {"seed": 0}, [0.7], 2)),
    ]
    by = tune_recipes.by_settings(runs)
    assert [c["seeds"] for c in by] == [[0, 1], [0]]
    assert by[0]["settings"] == {"augment": {"shift": 2}} and by[0]["median"] == pytest.approx(0.85)
    assert (by[1]["tune_acc"], by[1]["tune_acc_seen"], by[1]["complete"]) == ([0.0], [0.7], [False])
    # only settings that differ are listed; a run without a tuning split is not a tuning run
    assert tune_recipes.differences(runs[:2]) == [{"seed": 0}, {"seed": 1}]
    assert tune_recipes.read_run(_run(tmp_path / "val", {"tune_fraction": 0.0}, [0.9], 1)) is None


def test_output_ties_counts_ties_and_the_errors_a_tie_break_could_win():
    counts = torch.tensor([[3.0, 3.0, 0.0], [0.0, 1.0, 2.0], [2.0, 2.0, 0.0], [0.0, 4.0, 1.0]])
    # row 0: tied, true class 1 at the top but index 0 wins; row 2: tied, predicted right;
    # row 3: a plain error (true class 2 below the top)
    s = output_ties.tie_stats(counts, torch.tensor([1, 2, 0, 2]))
    assert (s["n"], s["tied"], s["errors"], s["errors_tied_with_true"]) == (4, 2, 2, 1)
    assert s["accuracy"] == 0.5 and s["mean_top_count"] == 2.75
