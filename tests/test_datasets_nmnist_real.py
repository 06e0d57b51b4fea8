"""spikelfp.datasets.NMNIST on real N-MNIST recordings (1,000 from the training set).

Needs SPIKELFP_DATA pointing at the shared data folder (with nmnist/NMNIST/Train/...); skipped
otherwise.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from spikelfp.datasets import (
    NMNIST,
    DatasetNotFoundError,
    FrameSpec,
    make_loader,
    pad_collate,
    validation_split,
)

tonic = pytest.importorskip("tonic")

pytestmark = pytest.mark.data

# Per-class counts of the shared subset (data/README.md).
EXPECTED_COUNTS = [97, 116, 99, 93, 105, 92, 94, 117, 87, 100]
FILES_TO_CHECK = [0, 1, 96, 97, 450, 998, 999]


@pytest.fixture(scope="module")
def nmnist_root() -> Path:
    data = os.environ.get("SPIKELFP_DATA")
    if not data:
        pytest.skip("SPIKELFP_DATA is not set (point it at the shared data folder)")
    root = Path(data) / "nmnist"
    if not (root / "NMNIST" / "Train").is_dir():
        pytest.skip(f"no real N-MNIST recordings under {root} (SPIKELFP_DATA={data})")
    return root


@pytest.fixture(scope="module")
def train(nmnist_root: Path) -> NMNIST:
    return NMNIST(nmnist_root, "train", frames=FrameSpec(n_time_bins=30))


def test_labels_match_folders_and_counts(train: NMNIST) -> None:
    assert len(train) == 1000
    for path, label in zip(train.files, train.targets, strict=True):
        assert path.parent.name == str(label)
        assert path.suffix == ".bin"
    assert [Counter(train.targets)[d] for d in range(10)] == EXPECTED_COUNTS


def test_order_is_sorted_by_label_then_index(train: NMNIST) -> None:
    keys = [(label, int(p.stem)) for p, label in zip(train.files, train.targets, strict=True)]
    assert keys == sorted(keys)


def test_root_may_be_the_nmnist_folder_itself(nmnist_root: Path, train: NMNIST) -> None:
    inner = NMNIST(nmnist_root / "NMNIST", "train")
    assert inner.files == train.files


def test_sample_shape_and_dtype(train: NMNIST) -> None:
    frames, label = train[3]
    assert frames.shape == (30, 2, 34, 34)
    assert frames.dtype == torch.float32
    assert isinstance(label, int) and label == train.targets[3]
    assert frames.sum() > 1000  # real recordings have thousands of events


def test_events_and_counts_equal_tonics_reader(train: NMNIST) -> None:
    to_frame = tonic.transforms.ToFrame(sensor_size=(34, 34, 2), n_time_bins=30)
    for i in FILES_TO_CHECK:
        reference = tonic.io.read_mnist_file(str(train.files[i]), dtype=tonic.datasets.NMNIST.dtype)
        ours = train.events(i)
        assert np.array_equal(ours, reference)
        assert train.sample_stats(i).n_events == len(reference)
        assert train.sample_stats(i).n_on == int(reference["p"].sum())
        np.testing.assert_array_equal(train[i][0].numpy(), to_frame(reference))


def test_matches_tonics_own_nmnist_class(
    nmnist_root: Path, train: NMNIST, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tonic's class wants the zip files and >= 10,000 recordings; skip only that check.
    monkeypatch.setattr(tonic.datasets.NMNIST, "_check_exists", lambda self: True)
    to_frame = tonic.transforms.ToFrame(sensor_size=(34, 34, 2), n_time_bins=30)
    theirs = tonic.datasets.NMNIST(str(nmnist_root), train=True, transform=to_frame)
    assert len(theirs) == len(train)
    where = {Path(p).resolve(): j for j, p in enumerate(theirs.data)}
    for i in FILES_TO_CHECK:
        j = where[train.files[i].resolve()]
        frames, label = theirs[j]
        assert label == train.targets[i]
        np.testing.assert_array_equal(train[i][0].numpy(), frames)
    # The collate function also batches tonic's numpy frames.
    x, y, n = next(iter(make_loader(theirs, batch_size=4)))
    assert x.shape == (30, 4, 2, 34, 34) and n.tolist() == [30] * 4 and y.shape == (4,)


def test_time_window_frames_vary_in_length_and_pad(nmnist_root: Path) -> None:
    ds = NMNIST(nmnist_root, "train", frames=FrameSpec(time_window_us=20_000))
    a, b = ds[0][0], ds[500][0]
    x, y, n = pad_collate([ds[0], ds[500]])
    assert n.tolist() == [a.shape[0], b.shape[0]]
    assert x.shape == (max(n.tolist()), 2, 2, 34, 34)
    assert torch.equal(x[: a.shape[0], 0], a)


def test_first_saccade_only_keeps_first_100_ms(nmnist_root: Path, train: NMNIST) -> None:
    ds = NMNIST(nmnist_root, "train", first_saccade_only=True)
    ev = ds.events(10)
    assert ev["t"].max() < 100_000
    assert 0 < len(ev) < len(train.events(10))


def test_validation_split_on_real_labels(train: NMNIST) -> None:
    split = validation_split(train, fraction=0.1, seed=3)
    assert len(split.val) == 100
    val_counts = Counter(np.asarray(train.targets)[split.val].tolist())
    for digit, total in enumerate(EXPECTED_COUNTS):
        assert abs(val_counts[digit] - total / 10) <= 1


def test_statistics_are_plausible(train: NMNIST) -> None:
    stats = train.statistics()
    assert stats["n_events"].shape == (1000,)
    assert 250_000 < np.median(stats["duration_us"]) < 350_000  # three ~100 ms saccades
    assert np.all(stats["rate_hz"] > 0)
    assert np.array_equal(stats["n_on"] + stats["n_off"], stats["n_events"])


def test_missing_test_split_says_where_and_how(nmnist_root: Path) -> None:
    # The shared subset has no Test folder.
    with pytest.raises(DatasetNotFoundError) as info:
        NMNIST(nmnist_root, "test")
    message = str(info.value)
    assert str(nmnist_root / "NMNIST" / "Test") in message
    assert "download=True" in message and "<digit 0-9>/<index>.bin" in message
