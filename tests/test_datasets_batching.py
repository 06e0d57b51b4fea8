"""Batching, splitting, statistics and preprocessing descriptions (no recordings needed)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from spikelfp.datasets import (
    EVENT_DTYPE,
    Crop,
    Denoise,
    Downsample,
    EventsToFrames,
    FrameSpec,
    event_stats,
    make_loader,
    pad_collate,
    validation_split,
)


# -- pad_collate / make_loader -----------------------------------------------------------------
def test_pad_collate_pads_with_zeros_time_first() -> None:
    a = torch.rand(4, 2, 5, 6) + 1
    b = torch.rand(7, 2, 5, 6) + 1
    c = np.ones((1, 2, 5, 6), dtype=np.int16)  # numpy frames, e.g. from tonic
    x, y, n = pad_collate([(a, 3), (b, 1), (c, 9)])
    assert x.shape == (7, 3, 2, 5, 6) and x.dtype == torch.float32
    assert y.tolist() == [3, 1, 9] and y.dtype == torch.int64
    assert n.tolist() == [4, 7, 1] and n.dtype == torch.int64
    assert torch.equal(x[:4, 0], a) and torch.equal(x[:, 1], b)
    assert x[4:, 0].abs().sum() == 0 and x[1:, 2].abs().sum() == 0


def test_pad_collate_rejects_mixed_frame_shapes() -> None:
    with pytest.raises(ValueError, match=r"sample 1 has frames of shape \(2, 4, 4\)"):
        pad_collate([(torch.zeros(3, 2, 5, 5), 0), (torch.zeros(3, 2, 4, 4), 1)])
    with pytest.raises(ValueError, match="empty batch"):
        pad_collate([])
    with pytest.raises(TypeError, match=r"\(frames, label\) pairs"):
        pad_collate([torch.zeros(3)])


def test_make_loader_is_deterministic_per_seed() -> None:
    data = [(torch.full((2, 1, 2, 2), float(i)), i) for i in range(20)]

    def order(seed: int) -> list[int]:
        return [v for _, y, _ in make_loader(data, 4, shuffle=True, seed=seed) for v in y.tolist()]

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert sorted(order(0)) == list(range(20))
    plain = [v for _, y, _ in make_loader(data, 4) for v in y.tolist()]
    assert plain == list(range(20))
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(data, 0)


# -- validation_split ---------------------------------------------------------------------------
LABELS = np.repeat(np.arange(5), [30, 20, 10, 25, 15])


def test_split_is_stratified_disjoint_and_complete() -> None:
    split = validation_split(LABELS, fraction=0.2, seed=0)
    assert len(split.val) == 20
    assert set(split.train).isdisjoint(split.val)
    assert sorted(np.concatenate([split.train, split.val]).tolist()) == list(range(len(LABELS)))
    assert Counter(LABELS[split.val].tolist()) == {0: 6, 1: 4, 2: 2, 3: 5, 4: 3}
    assert np.all(np.diff(split.train) > 0) and np.all(np.diff(split.val) > 0)


def test_split_is_deterministic_and_seeded() -> None:
    a = validation_split(LABELS, n_val=13, seed=4)
    b = validation_split(LABELS, n_val=13, seed=4)
    c = validation_split(LABELS, n_val=13, seed=5)
    assert np.array_equal(a.val, b.val) and np.array_equal(a.train, b.train)
    assert not np.array_equal(a.val, c.val)
    assert len(a.val) == 13
    counts = Counter(LABELS[a.val].tolist())
    for k, total in Counter(LABELS.tolist()).items():
        assert abs(counts[k] - 13 * total / len(LABELS)) < 1


class _Pairs(torch.utils.data.Dataset):
    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.zeros(1), int(self.labels[i])


def test_split_accepts_datasets_and_subsets() -> None:
    pairs = _Pairs(LABELS)
    assert np.array_equal(
        validation_split(pairs, n_val=10, seed=1).val,
        validation_split(LABELS, n_val=10, seed=1).val,
    )
    subset = Subset(pairs, list(range(0, 100, 2)))
    split = validation_split(subset, n_val=5, seed=0)
    assert len(split.val) == 5 and max(split.val) < 50


def test_split_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="between 1 and 99"):
        validation_split(LABELS, n_val=100)
    with pytest.raises(ValueError, match="fraction must be in"):
        validation_split(LABELS, fraction=1.5)
    with pytest.raises(ValueError, match="not both"):
        validation_split(LABELS, n_val=3, fraction=0.1)


# -- statistics -----------------------------------------------------------------------------------
def test_event_stats() -> None:
    ev = np.zeros(5, dtype=EVENT_DTYPE)
    ev["t"] = [100, 200, 300, 400, 50_100]
    ev["p"] = [1, 1, 0, 1, 0]
    s = event_stats(ev)
    assert (s.n_events, s.n_on, s.n_off, s.duration_us) == (5, 3, 2, 50_000)
    assert s.rate_hz == pytest.approx(100.0)
    empty = event_stats(ev[:0])
    assert (empty.n_events, empty.duration_us, empty.rate_hz) == (0, 0, 0.0)
    assert event_stats(ev[:1]).rate_hz == 0.0


# -- preprocessing descriptions ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one of n_time_bins or time_window_us"),
        ({"n_time_bins": 3, "time_window_us": 10}, "got both"),
        ({"n_time_bins": 0}, "positive int"),
        ({"n_time_bins": 2.5}, "positive int"),
        ({"time_window_us": -1}, "positive number"),
        ({"n_time_bins": 3, "overlap": 1.0}, "fraction of a bin"),
        ({"time_window_us": 10, "overlap": 10}, "smaller than the window"),
        ({"n_time_bins": 3, "start_time_us": 0}, "only applies to time_window_us"),
        ({"time_window_us": 10, "start_time_us": 5, "end_time_us": 5}, "must be after"),
    ],
)
def test_frame_spec_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FrameSpec(**kwargs)  # type: ignore[arg-type]


def test_other_step_validation() -> None:
    with pytest.raises(ValueError, match="filter_time_us"):
        Denoise(0)
    with pytest.raises(ValueError, match="Crop.width"):
        Crop(0, 3)
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        Downsample(2)


def test_specs_are_frozen_hashable_and_described() -> None:
    spec = FrameSpec(n_time_bins=30)
    with pytest.raises(AttributeError):
        spec.n_time_bins = 5  # type: ignore[misc]
    assert hash(spec) == hash(FrameSpec(n_time_bins=30))
    pipeline = EventsToFrames(spec, Denoise(), Crop(32, 30), Downsample(0.5))
    assert pipeline.describe()["crop"] == {"type": "Crop", "width": 32, "height": 30}
    assert pipeline.frame_shape((34, 34, 2)) == (2, 15, 16)
    assert pipeline.sensor_size_after((128, 128, 2)) == (16, 15, 2)
    assert Downsample(0.25).output_size(128) == 32


def test_pipeline_handles_recordings_emptied_by_preprocessing() -> None:
    pytest.importorskip("tonic")
    ev = np.zeros(3, dtype=EVENT_DTYPE)
    ev["x"] = [0, 20, 33]
    ev["y"] = [0, 10, 33]
    ev["t"] = [0, 100_000, 200_000]
    frames = EventsToFrames(FrameSpec(n_time_bins=4), denoise=Denoise(10)).build((34, 34, 2))(ev)
    assert frames.shape == (4, 2, 34, 34) and frames.sum() == 0
    single = EventsToFrames(FrameSpec(time_window_us=1_000), crop=Crop(8, 6)).build((34, 34, 2))
    assert single(ev[:0]).shape == (1, 2, 6, 8)
