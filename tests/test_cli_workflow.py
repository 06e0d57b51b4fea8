"""The user's path through the command line: train -> eval -> info -> export, demo pieces.

Everything runs in-process through ``spikelfp.cli.main`` on tiny subsets of the
built-in digits-events dataset (generated once per test session).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from spikelfp.cli import main

TINY = [
    "--time-bins",
    "8",
    "--hidden",
    "32",
    "--max-train-samples",
    "60",
    "--max-eval-samples",
    "40",
    "--batch-size",
    "20",
    "--no-progress",
]


@pytest.fixture(scope="module")
def trained_run(digits_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    rc = main(["train", "--data-dir", str(digits_root), "--epochs", "2", "--out", str(out), *TINY])
    assert rc == 0
    return out


def test_train_writes_run_folder(trained_run, capsys):
    for name in (
        "config.yaml",
        "checkpoint.pt",
        "metrics.jsonl",
        "accuracy.png",
        "spike_rates.png",
    ):
        assert (trained_run / name).is_file(), name
    lines = (trained_run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    m = json.loads(lines[-1])
    assert m["epoch"] == 2 and m["n_train"] == 60 and m["eval_split"] == "test"
    for key in ("train_loss", "train_reward", "train_acc", "eval_acc", "samples_per_s"):
        assert isinstance(m[key], float)
    assert set(m["train_spike_rate"]) == {"hidden1", "output"}
    # LFP needs hidden neurons that spike: the calibration makes sure they do
    assert m["train_spike_rate"]["hidden1"] > 0.01
    ckpt = torch.load(trained_run / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and set(ckpt["rng"]) == {"torch", "numpy", "python"}
    assert ckpt["data_order"]["next_epoch"] == 2
    assert ckpt["config"]["method"] == "lfp"


def test_eval_prints_and_writes_json(trained_run, digits_root, tmp_path, capsys):
    out = tmp_path / "eval.json"
    rc = main(
        [
            "eval",
            str(trained_run / "checkpoint.pt"),
            "--dataset",
            "digits-events",
            "--data-dir",
            str(digits_root),
            "--split",
            "test",
            "--max-samples",
            "40",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "confusion matrix" in text and "hidden1" in text
    r = json.loads(out.read_text())
    assert r["n_samples"] == 40 and 0.0 <= r["accuracy"] <= 1.0
    cm = torch.tensor(r["confusion_matrix"])
    assert cm.shape == (10, 10) and int(cm.sum()) == 40
    assert abs(float(cm.diagonal().sum()) / 40 - r["accuracy"]) < 1e-9
    assert set(r["per_class_accuracy"]) == {str(d) for d in range(10)}
    assert set(r["spike_rates"]) == {"hidden1", "output"}


def test_info(trained_run, capsys):
    assert main(["info", str(trained_run)]) == 0
    text = capsys.readouterr().out
    assert "epoch: 2/2" in text and "parameters:" in text and "1.weight" in text
    assert main(["info", str(trained_run), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_parameters"] == (2 * 34 * 34 * 32 + 32) + (32 * 10 + 10)
    assert info["last_metrics"]["epoch"] == 2


def test_export_writes_nir(trained_run, digits_root, tmp_path, capsys):
    pytest.importorskip("nir")
    pytest.importorskip("spikelfp.hw_export")
    nir_path = tmp_path / "net.nir"
    rc = main(
        [
            "export",
            str(trained_run),
            "--target",
            "int8",
            "--bits",
            "8",
            "--prune",
            "0.8",
            "-o",
            str(nir_path),
            "--dataset",
            "digits-events",
            "--data-dir",
            str(digits_root),
            "--max-samples",
            "20",
            "--json",
            str(tmp_path / "exp.json"),
        ]
    )
    assert rc == 0
    assert nir_path.is_file() and nir_path.stat().st_size > 0
    report = json.loads((tmp_path / "exp.json").read_text())["report"]
    assert report["bits"] == 8 and report["n_samples"] == 20
    assert report["accuracy_float"] is not None and report["accuracy_quantized"] is not None
    assert "spikelfp export" in capsys.readouterr().out


def test_config_file_and_flag_precedence(digits_root, tmp_path):
    import yaml

    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(
        yaml.safe_dump({"train": {"epochs": 1, "hidden": 16, "lr": 0.01, "time-bins": 4}})
    )
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "--config",
            str(cfg_file),
            "--hidden",
            "24",
            "--data-dir",
            str(digits_root),
            "--out",
            str(out),
            "--max-train-samples",
            "20",
            "--max-eval-samples",
            "10",
            "--no-progress",
        ]
    )
    assert rc == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["hidden"] == 24  # the flag wins over the file
    assert saved["lr"] == 0.01 and saved["time_bins"] == 4 and saved["epochs"] == 1
    assert saved["data_dir"] == str(digits_root.resolve())


def test_toml_config(digits_root, tmp_path):
    cfg_file = tmp_path / "cfg.toml"
    cfg_file.write_text(
        'epochs = 1\nhidden = 8\ntime_bins = 4\nmodel = "conv"\nchannels = [2, 4]\n'
    )
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "--config",
            str(cfg_file),
            "--data-dir",
            str(digits_root),
            "--out",
            str(out),
            "--max-train-samples",
            "20",
            "--max-eval-samples",
            "10",
            "--no-progress",
        ]
    )
    assert rc == 0
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["model_spec"]["name"] == "conv" and ckpt["model_spec"]["channels"] == [2, 4]


def test_val_fraction_and_eval_split_val(digits_root, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "--data-dir",
            str(digits_root),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--val-fraction",
            "0.25",
            "--max-eval-samples",
            "30",
            "--time-bins",
            "4",
            "--hidden",
            "16",
            "--max-train-samples",
            "30",
            "--no-progress",
        ]
    )
    assert rc == 0
    m = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert m["eval_split"] == "val"
    rc = main(["eval", str(out), "--split", "val", "--json", str(tmp_path / "v.json")])
    assert rc == 0
    r = json.loads((tmp_path / "v.json").read_text())
    # the whole held-out part: 25 % of the 1,438 training recordings, stratified
    assert r["split"] == "val" and r["n_samples"] == round(0.25 * 1438)
    assert all(n > 0 for n in r["class_support"].values())


def _write_gesture_split(root: Path, split: str, seed: int) -> None:
    """Format-correct DVS Gesture recordings (tonic's .npy layout: x, y, p, t in ms)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for user in ("user01_led", "user02_natural"):
        folder = root / "DVSGesture" / split / user
        folder.mkdir(parents=True, exist_ok=True)
        for label in range(11):
            n = 400
            t = np.sort(rng.uniform(0, 1000, n))
            xy = rng.integers(0, 128, (n, 2))
            p = rng.integers(0, 2, n)
            np.save(folder / f"{label}.npy", np.column_stack([xy, p, t]).astype(np.float64))


def test_dvsgesture_conv_path(tmp_path, capsys):
    pytest.importorskip("tonic")
    root = tmp_path / "gesture"
    _write_gesture_split(root, "ibmGestureTrain", 0)
    _write_gesture_split(root, "ibmGestureTest", 1)
    out = tmp_path / "run"
    args = ["train", "--dataset", "dvsgesture", "--data-dir", str(root), "--model", "conv"]
    args += ["--channels", "2", "4", "--time-bins", "4", "--epochs", "1", "--batch-size", "11"]
    assert main([*args, "--no-progress", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert m["n_train"] == 22 and set(m["train_spike_rate"]) == {"hidden1", "hidden2", "output"}
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["model_spec"]["input_shape"] == [2, 32, 32]  # downsampled 128 -> 32
    assert ckpt["model_spec"]["n_classes"] == 11
    assert main(["eval", str(out), "--json", str(tmp_path / "e.json")]) == 0
    r = json.loads((tmp_path / "e.json").read_text())
    assert r["n_samples"] == 22 and len(r["confusion_matrix"]) == 11
