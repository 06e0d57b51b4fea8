"""Issue 17: a truncated or garbage recording inside an N-MNIST folder is reported as one line
naming the file, before any training (every file's header is checked when the dataset opens),
and a bad recording found by a DataLoader worker (``--num-workers 2``) is one line too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import _cli
import numpy as np
import pytest

pytest.importorskip("tonic")

TINY = ["--dataset", "nmnist", "--model", "mlp", *_cli.TINY]


def _event_bytes(x: int, y: int, t: int, p: int = 1) -> bytes:
    return bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])


def _tree(root: Path) -> Path:
    """A small valid N-MNIST folder: 3 training and 1 test recording per digit."""
    from spikelfp.datasets import images_to_events, write_nmnist_bin

    rng = np.random.default_rng(3)
    for split, per_class in (("Train", 3), ("Test", 1)):
        images = (rng.random((10 * per_class, 8, 8)) > 0.6).astype(np.uint8) * 255
        for k, ev in enumerate(images_to_events(images, seed=1, saccade_us=20_000)):
            write_nmnist_bin(root / "NMNIST" / split / str(k % 10) / f"{k}.bin", ev)
    return root


def _spikelfp(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = (
        str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    )
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run(
        [sys.executable, "-m", "spikelfp", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def _error_line(res: subprocess.CompletedProcess, code: int = 2) -> str:
    assert res.returncode == code, res.stderr[-2000:]
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    errors = [line for line in res.stderr.splitlines() if ": error:" in line]
    assert len(errors) == 1 and errors[0] == res.stderr.splitlines()[-1], res.stderr[-2000:]
    assert errors[0].startswith("spikelfp train: error: "), errors[0]
    return errors[0]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"\x01\x02\x03\x04\x05\x06\x07", "is 7 bytes, not a multiple of 5"),
        (bytes(range(200, 250)), "outside the 34x34 sensor"),  # garbage, 10 "events"
    ],
)
def test_bad_recording_outside_the_trained_subset_is_found_up_front(tmp_path, content, needle):
    root = _tree(tmp_path / "data")
    bad = root / "NMNIST" / "Train" / "9" / "29.bin"
    bad.write_bytes(content)
    # --max-train-samples 5: the bad file would never be read in training
    flags = [a if a != "40" else "5" for a in TINY]
    res = _spikelfp("train", "--data-dir", str(root), *flags, "--out", str(tmp_path / "run"))
    line = _error_line(res)
    assert f"error: {bad} " in line and needle in line, line
    assert res.stderr.count("\n") == 1  # before any status line: nothing was trained
    assert not (tmp_path / "run").exists()


def test_bad_recording_read_by_a_worker_is_one_line(tmp_path):
    """A bad event in the middle of a file passes the header check; the DataLoader worker that
    reads it fails, and its error arrives as one line, not as the worker's traceback."""
    root = _tree(tmp_path / "data")
    bad = root / "NMNIST" / "Test" / "3" / "3.bin"
    bad.write_bytes(_event_bytes(3, 4, 10) + _event_bytes(90, 4, 15) + _event_bytes(3, 4, 20))
    res = _spikelfp(
        "train",
        "--data-dir",
        str(root),
        *TINY,
        "--eval-split",
        "test",
        "--num-workers",
        "2",
        "--out",
        str(tmp_path / "run"),
    )
    line = _error_line(res)
    assert line == (
        f"spikelfp train: error: {bad} has events outside the 34x34 sensor (x up to 90, y up "
        "to 4): not an N-MNIST recording, or corrupted. Restore it from the original download "
        "(or delete it)."
    ), line
    assert "DataLoader" not in res.stderr and "Caught" not in res.stderr


def test_worker_error_message_unwraps_torch_text():
    from spikelfp.cli._common import worker_error_message

    try:
        raise ValueError("first\nsecond line")
    except ValueError:
        from torch._utils import ExceptionWrapper

        wrapped = ExceptionWrapper(where="in DataLoader worker process 1")
    with pytest.raises(ValueError) as info:
        wrapped.reraise()
    assert worker_error_message(str(info.value)) == "first\nsecond line"
    assert worker_error_message("not from a worker") == "not from a worker"
