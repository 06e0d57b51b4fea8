"""Bad input on the command line: one ``spikelfp: error: ...`` line on stderr, exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _cli import one_line_error

from spikelfp.cli import main


@pytest.fixture(scope="module")
def small_run(digits_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("errors") / "run"
    rc = main(
        [
            "train",
            "--data-dir",
            str(digits_root),
            "--epochs",
            "1",
            "--time-bins",
            "4",
            "--hidden",
            "8",
            "--max-train-samples",
            "20",
            "--max-eval-samples",
            "10",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    return out


def test_unknown_dataset(capsys, tmp_path):
    line = one_line_error(capsys, ["train", "--dataset", "cifar", "--out", str(tmp_path)])
    assert "cifar" in line and "digits-events" in line


def test_missing_data_dir(capsys, tmp_path):
    line = one_line_error(
        capsys,
        [
            "train",
            "--dataset",
            "nmnist",
            "--data-dir",
            str(tmp_path / "nowhere"),
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert "nowhere" in line


def test_data_dir_required(capsys, tmp_path):
    line = one_line_error(
        capsys, ["train", "--dataset", "dvsgesture", "--out", str(tmp_path / "r")]
    )
    assert "--data-dir" in line


def test_wrong_layout(capsys, tmp_path):
    (tmp_path / "NMNIST" / "Train").mkdir(parents=True)
    line = one_line_error(
        capsys,
        ["train", "--dataset", "nmnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r")],
    )
    assert ".bin" in line


def test_bad_values(capsys, tmp_path):
    one_line_error(capsys, ["train", "--epochs", "-1", "--out", str(tmp_path)])
    one_line_error(capsys, ["train", "--lr", "abc", "--out", str(tmp_path)])
    one_line_error(capsys, ["train", "--val-fraction", "1.5", "--out", str(tmp_path)])
    one_line_error(capsys, ["train", "--eval-split", "val", "--out", str(tmp_path)])
    one_line_error(capsys, ["frobnicate"])


def test_bad_config_file(capsys, tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 2\nnot_a_setting: 1\n")
    line = one_line_error(capsys, ["train", "--config", str(f), "--out", str(tmp_path)])
    assert "not_a_setting" in line
    f.write_text("epochs: [unclosed\n")
    one_line_error(capsys, ["train", "--config", str(f), "--out", str(tmp_path)])
    one_line_error(capsys, ["train", "--config", str(tmp_path / "missing.toml")])


@pytest.mark.parametrize("command", ["eval", "info", "export"])
def test_bad_checkpoint(capsys, tmp_path, command):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    line = one_line_error(capsys, [command, str(junk)])
    assert "junk.pt" in line
    line = one_line_error(capsys, [command, str(tmp_path / "missing.pt")])
    assert "missing.pt" in line
    one_line_error(capsys, [command, str(tmp_path)])  # a folder without a checkpoint


def test_foreign_torch_file(capsys, tmp_path):
    import torch

    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    line = one_line_error(capsys, ["info", str(path)])
    assert "not a spikelfp checkpoint" in line


def test_incompatible_resume(capsys, small_run):
    line = one_line_error(capsys, ["train", "--resume", str(small_run), "--lr", "0.5"])
    assert "incompatible resume" in line and "--lr" in line
    line = one_line_error(capsys, ["train", "--resume", str(small_run), "--epochs", "5"])
    assert "incompatible resume" in line
    line = one_line_error(capsys, ["train", "--resume", str(small_run), "--model", "conv"])
    assert "--model" in line


def test_resume_without_checkpoint(capsys, tmp_path):
    line = one_line_error(capsys, ["train", "--resume", str(tmp_path)])
    assert "checkpoint.pt" in line
    one_line_error(capsys, ["train", "--resume", str(tmp_path / "nope")])


def test_existing_run_is_not_overwritten(capsys, small_run):
    line = one_line_error(capsys, ["train", "--out", str(small_run)])
    assert "--resume" in line


def test_eval_val_split_without_holdout(capsys, small_run):
    line = one_line_error(capsys, ["eval", str(small_run), "--split", "val"])
    assert "val" in line


def test_eval_incompatible_dataset(capsys, small_run, tmp_path):
    line = one_line_error(capsys, ["eval", str(small_run), "--dataset", "dvsgesture"])
    assert "--data-dir" in line


def test_subprocess_exit_code_and_single_line(tmp_path):
    """The installed entry point (``python -m spikelfp``) behaves the same."""
    env = dict(os.environ)
    env["PYTHONPATH"] = (
        str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    )
    res = subprocess.run(
        [sys.executable, "-m", "spikelfp", "eval", str(tmp_path / "none.pt")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("spikelfp eval: error:")
    assert "Traceback" not in res.stderr
