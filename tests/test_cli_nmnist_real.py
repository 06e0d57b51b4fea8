"""``spikelfp train --dataset nmnist`` on the real recordings ($SPIKELFP_DATA/nmnist).

The shared copy has 1,000 training recordings and no test folder: a stratified part is held
out with ``--val-fraction`` and evaluated with ``eval --split val``. Tiny budget; skipped with
a reason when SPIKELFP_DATA is not set (see tests/conftest.py).
"""

from __future__ import annotations

import json

import pytest

from spikelfp.cli import main

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def nmnist_dir(shared_data):
    path = shared_data / "nmnist"
    if not (path / "NMNIST" / "Train").is_dir():
        pytest.skip(f"no N-MNIST recordings at {path}/NMNIST/Train")
    return path


def test_train_and_eval_on_real_nmnist(nmnist_dir, tmp_path, capsys):
    run = tmp_path / "run"
    rc = main(
        [
            "train",
            "--dataset",
            "nmnist",
            "--data-dir",
            str(nmnist_dir),
            "--val-fraction",
            "0.2",
            "--max-train-samples",
            "60",
            "--max-eval-samples",
            "30",
            "--epochs",
            "1",
            "--time-bins",
            "8",
            "--hidden",
            "32",
            "--no-progress",
            "--out",
            str(run),
        ]
    )
    assert rc == 0
    m = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert m["n_train"] == 60 and m["eval_split"] == "val"
    assert m["train_spike_rate"]["hidden1"] > 0.0
    out = tmp_path / "val.json"
    rc = main(["eval", str(run), "--split", "val", "--max-samples", "30", "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["dataset"] == "nmnist" and r["n_samples"] == 30
    # the held-out recordings never overlap the training ones (same seed -> same split)
    from spikelfp.training.config import TrainConfig
    from spikelfp.training.data import open_split

    cfg = TrainConfig(dataset="nmnist", data_dir=str(nmnist_dir), val_fraction=0.2, time_bins=8)
    train = open_split(cfg, "train", memory_cache=False).dataset
    val = open_split(cfg, "val", memory_cache=False).dataset
    assert len(train) == 800 and len(val) == 200
    assert not set(train.indices.tolist()) & set(val.indices.tolist())
    assert sorted(set(val.targets)) == list(range(10))


def test_missing_test_folder_is_a_clear_error(nmnist_dir, capsys, tmp_path):
    rc = main(
        [
            "train",
            "--dataset",
            "nmnist",
            "--data-dir",
            str(nmnist_dir),
            "--epochs",
            "1",
            "--max-train-samples",
            "10",
            "--val-fraction",
            "0",  # the recipe holds out 20 %: without it, the test split is needed
            "--no-progress",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "test" in err.lower() and "Traceback" not in err
