"""Killing ``spikelfp train`` mid-epoch and resuming gives exactly the uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from spikelfp.cli import main
from spikelfp.training.trainer import TIMING_KEYS

ARGS = [
    "--epochs",
    "3",
    "--time-bins",
    "6",
    "--hidden",
    "24",
    "--max-train-samples",
    "200",
    "--max-eval-samples",
    "30",
    "--batch-size",
    "4",
    "--seed",
    "3",
    "--no-progress",
]


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "spikelfp", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = (
        str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    )
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        for key in TIMING_KEYS:
            row.pop(key)
    return rows


def test_kill_mid_epoch_then_resume_matches_uninterrupted(digits_root, tmp_path):
    full = tmp_path / "full"
    killed = tmp_path / "killed"
    common = ["train", "--data-dir", str(digits_root), *ARGS]

    proc = subprocess.Popen(
        _cmd(*common, "--out", str(killed)),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    ckpt = killed / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert ckpt.exists(), proc.communicate()[1].decode()[-2000:]
    proc.send_signal(signal.SIGKILL)  # in epoch 2: no chance to clean up
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in done] == [1], "the kill did not land in epoch 2"

    # an uninterrupted run with the same seed (in-process)
    assert main([*common, "--out", str(full)]) == 0

    res = subprocess.run(
        _cmd("train", "--resume", str(killed), "--no-progress"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming" in res.stderr
    assert _metrics(killed) == _metrics(full)

    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


def test_resume_of_finished_run_is_a_no_op(digits_root, tmp_path, capsys):
    run = tmp_path / "run"
    args = [
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
        str(run),
    ]
    assert main(args) == 0
    before = (run / "metrics.jsonl").read_text()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert (run / "metrics.jsonl").read_text() == before
