"""spikelfp.datasets.DVSGesture on small, format-correct recordings written by the tests.

The recordings use tonic's preprocessed layout, ibmGestureTrain/userNN_<lighting>/<label>.npy,
each an N x 4 array with columns x, y, p, t (t in ms), and are read through the same code path
users use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spikelfp.datasets import (
    CorruptRecordingError,
    Crop,
    DatasetLayoutError,
    DatasetNotFoundError,
    Denoise,
    Downsample,
    DVSGesture,
    FrameSpec,
    make_loader,
)

tonic = pytest.importorskip("tonic")

# (user folder, label) pairs, deliberately written in a scrambled order.
RECORDINGS = [
    ("user02_led", 4),
    ("user01_fluorescent", 10),
    ("user01_fluorescent", 0),
    ("user10_natural", 7),
    ("user02_led", 1),
    ("user01_lab", 3),
]


def gesture_events(rng: np.random.Generator, n: int, float_times: bool = True) -> np.ndarray:
    """An N x 4 recording: columns x, y, p, t (ms), time sorted."""
    t = np.sort(rng.uniform(0, 1500, n))
    columns = [rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)]
    if float_times:
        return np.column_stack([*columns, t]).astype(np.float64)
    return np.column_stack([*columns, np.floor(t)]).astype(np.int64)


def write_gesture(root: Path, split: str = "ibmGestureTrain", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for k, (user, label) in enumerate(RECORDINGS):
        folder = root / "DVSGesture" / split / user
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{label}.npy", gesture_events(rng, 800 + 100 * k, float_times=k % 2 == 0))
    return root


@pytest.fixture()
def gesture_root(tmp_path: Path) -> Path:
    return write_gesture(tmp_path / "data")


def test_sorted_by_user_lighting_label(gesture_root: Path) -> None:
    ds = DVSGesture(gesture_root, "train")
    expected = sorted((int(user[4:6]), user.split("_", 1)[1], label) for user, label in RECORDINGS)
    assert list(zip(ds.users, ds.lighting, ds.targets, strict=True)) == expected
    for path, label in zip(ds.files, ds.targets, strict=True):
        assert path.name == f"{label}.npy"
    assert len(ds.classes) == 11


def test_root_may_be_the_dvsgesture_folder(gesture_root: Path) -> None:
    assert DVSGesture(gesture_root / "DVSGesture").files == DVSGesture(gesture_root).files


def test_frames_match_tonics_own_class(gesture_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = DVSGesture(gesture_root, "train", frames=FrameSpec(n_time_bins=12))
    monkeypatch.setattr(tonic.datasets.DVSGesture, "_check_exists", lambda self: True)
    to_frame = tonic.transforms.ToFrame(sensor_size=(128, 128, 2), n_time_bins=12)
    theirs = tonic.datasets.DVSGesture(str(gesture_root), train=True, transform=to_frame)
    where = {Path(p).resolve(): j for j, p in enumerate(theirs.data)}
    assert set(where) == {f.resolve() for f in ds.files}
    for i in range(len(ds)):
        frames, label = theirs[where[ds.files[i].resolve()]]
        assert label == ds.targets[i]
        assert ds[i][0].shape == (12, 2, 128, 128)
        np.testing.assert_array_equal(ds[i][0].numpy(), frames)


def test_events_follow_tonics_conventions(gesture_root: Path) -> None:
    ds = DVSGesture(gesture_root)
    raw = np.load(ds.files[0])
    ev = ds.events(0)
    assert ev.dtype == tonic.datasets.DVSGesture.dtype
    np.testing.assert_array_equal(ev["x"], raw[:, 0])
    np.testing.assert_array_equal(ev["t"], (raw[:, 3] * 1000).astype(np.int64))  # ms -> µs
    assert ds.sample_stats(0).n_events == len(raw)


def test_downsample_crop_and_denoise(gesture_root: Path) -> None:
    spec = FrameSpec(n_time_bins=5)
    small = DVSGesture(gesture_root, frames=spec, downsample=Downsample(0.25))
    assert small[0][0].shape == (5, 2, 32, 32)
    full = DVSGesture(gesture_root, frames=spec)
    # Downsampling adds pixels together, it does not drop events.
    assert small[0][0].sum() == full[0][0].sum()
    cropped = DVSGesture(gesture_root, frames=spec, crop=Crop(64, 48))
    assert cropped[0][0].shape == (5, 2, 48, 64)
    assert cropped[0][0].sum() < full[0][0].sum()
    denoised = DVSGesture(gesture_root, frames=spec, denoise=Denoise(filter_time_us=1_000))
    assert denoised[0][0].sum() < full[0][0].sum()  # random events are mostly isolated


def test_cache_gives_same_frames(gesture_root: Path, tmp_path: Path) -> None:
    spec = FrameSpec(time_window_us=250_000)
    plain = DVSGesture(gesture_root, frames=spec)
    cached = DVSGesture(gesture_root, frames=spec, cache_dir=tmp_path / "cache", progress=False)
    assert cached.cache is not None
    for i in range(len(plain)):
        assert torch.equal(plain[i][0], cached[i][0])
    x, y, n = next(iter(make_loader(cached, batch_size=3)))
    assert x.shape[1:] == (3, 2, 128, 128) and y.tolist() == cached.targets[:3]


def test_test_split_and_missing_split(tmp_path: Path) -> None:
    root = write_gesture(tmp_path, split="ibmGestureTest")
    assert len(DVSGesture(root, "test")) == len(RECORDINGS)
    with pytest.raises(DatasetNotFoundError) as info:
        DVSGesture(root, "train")
    message = str(info.value)
    assert "ibmGestureTrain" in message and "download=True" in message
    assert "userNN_<lighting>/<label 0-10>.npy" in message


@pytest.mark.parametrize(
    ("folder", "name", "match"),
    [
        ("nouser", "1.npy", "Unexpected folder .*nouser"),
        ("user03_led", "11.npy", "Unexpected recording .*11.npy"),
        ("user03_led", "wave.npy", "Unexpected recording .*wave.npy"),
    ],
)
def test_bad_layout_names_the_culprit(
    gesture_root: Path, folder: str, name: str, match: str
) -> None:
    target = gesture_root / "DVSGesture" / "ibmGestureTrain" / folder
    target.mkdir(parents=True, exist_ok=True)
    np.save(target / name, gesture_events(np.random.default_rng(1), 10))
    with pytest.raises(DatasetLayoutError, match=match):
        DVSGesture(gesture_root)


def test_empty_split_folder(tmp_path: Path) -> None:
    (tmp_path / "DVSGesture" / "ibmGestureTrain").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="No .npy recordings under"):
        DVSGesture(tmp_path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\x93NUMPY garbage", "not a readable .npy file"),
        (np.zeros((5, 3)), "N x 4 array"),
        (np.array([[200, 3, 1, 0.5]]), "outside the 128x128 sensor"),
        (np.array([[2, 3, 5, 0.5]]), "polarities other than 0/1"),
    ],
)
def test_corrupt_recording_names_the_file(gesture_root: Path, content: object, match: str) -> None:
    ds = DVSGesture(gesture_root)
    bad = ds.files[2]
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        np.save(bad, content)
    with pytest.raises(CorruptRecordingError, match=match) as info:
        ds[2]
    assert str(bad) in str(info.value)
