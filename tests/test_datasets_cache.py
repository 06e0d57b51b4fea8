"""The HDF5 frame cache: same frames as uncached, never stale, self-healing, atomic."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from spikelfp.datasets import (
    NMNIST,
    Denoise,
    Downsample,
    FrameSpec,
    images_to_events,
    make_loader,
    write_nmnist_bin,
)

pytest.importorskip("tonic")
h5py = pytest.importorskip("h5py")


def write_small_nmnist(root: Path, n: int = 12, seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    images = (rng.random((n, 8, 8)) > 0.6).astype(np.uint8) * 255
    for k, ev in enumerate(images_to_events(images, seed=seed, saccade_us=20_000)):
        write_nmnist_bin(root / "NMNIST" / "Train" / str(k % 10) / f"{k}.bin", ev)
    return root


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    return write_small_nmnist(tmp_path / "data")


def load(root: Path, cache: Path | None, **kwargs: object) -> NMNIST:
    kwargs.setdefault("frames", FrameSpec(n_time_bins=6))
    return NMNIST(root, "train", cache_dir=cache, progress=False, **kwargs)  # type: ignore[arg-type]


def assert_same_samples(a: NMNIST, b: NMNIST) -> None:
    assert len(a) == len(b)
    for i in range(len(a)):
        xa, ya = a[i]
        xb, yb = b[i]
        assert ya == yb
        assert torch.equal(xa, xb), f"sample {i} differs"


def cache_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.h5"))


def no_leftovers(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.suffix in (".tmp", ".raw")]


def test_cached_equals_uncached_and_is_reused(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    plain = load(root, None)
    first = load(root, cache)
    assert first.cache is not None and first.cache_path in cache_files(cache)
    assert_same_samples(plain, first)
    assert first.statistics()["n_events"].tolist() == plain.statistics()["n_events"].tolist()
    assert first.sample_stats(3) == plain.sample_stats(3)
    assert no_leftovers(cache)

    # A second dataset reads the cache: no recording is decoded or binned again.
    mtime = first.cache_path.stat().st_mtime_ns

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("recordings were read although the cache is valid")

    monkeypatch.setattr(NMNIST, "_read", fail)
    second = load(root, cache)
    assert second.cache_path.stat().st_mtime_ns == mtime
    assert torch.equal(second[5][0], first[5][0])


def test_stores_small_counts_as_uint8(root: Path, tmp_path: Path) -> None:
    ds = load(root, tmp_path / "cache")
    with h5py.File(ds.cache_path, "r") as f:
        assert f["frames"].dtype == np.uint8
        assert f["frames"].shape == (6 * len(ds), 2, 34, 34)
        assert f.attrs["format"] == "spikelfp-frame-cache"


@pytest.mark.parametrize(
    "changed",
    [
        {"frames": FrameSpec(n_time_bins=7)},
        {"frames": FrameSpec(n_time_bins=6, overlap=0.5)},
        {"downsample": Downsample(0.5)},
        {"denoise": Denoise(filter_time_us=5_000)},
        {"first_saccade_only": True},
    ],
)
def test_changed_transform_never_serves_stale_frames(
    root: Path, tmp_path: Path, changed: dict[str, object]
) -> None:
    cache = tmp_path / "cache"
    base = load(root, cache)
    other = load(root, cache, **changed)
    assert other.cache_path != base.cache_path
    assert len(cache_files(cache)) == 2
    assert_same_samples(other, load(root, None, **changed))


def test_changed_recording_rebuilds(root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    before = load(root, cache)
    old_frames = before[4][0].clone()
    target = before.files[4]
    shifted = before.events(4)
    shifted["x"] = np.clip(shifted["x"] + 3, 0, 33)
    write_nmnist_bin(target, shifted)
    os.utime(target, ns=(1, 1))  # a different mtime even on coarse file systems
    after = load(root, cache)
    assert after.cache_path == before.cache_path
    assert not torch.equal(after[4][0], old_frames)
    assert_same_samples(after, load(root, None))


def test_added_recording_rebuilds(root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert len(load(root, cache)) == 12
    extra = load(root, None).events(0)
    write_nmnist_bin(root / "NMNIST" / "Train" / "9" / "99.bin", extra)
    grown = load(root, cache)
    assert len(grown) == 13
    assert_same_samples(grown, load(root, None))


def corrupt_garbage(path: Path) -> None:
    path.write_bytes(b"this is not an HDF5 file" * 100)


def corrupt_truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def corrupt_empty(path: Path) -> None:
    path.write_bytes(b"")


def corrupt_bitflip(path: Path) -> None:
    with h5py.File(path, "r") as f:
        offset = f["frames"].id.get_offset()
        nbytes = f["frames"].size
    with open(path, "r+b") as fh:
        fh.seek(offset + nbytes // 2)
        byte = fh.read(1)
        fh.seek(offset + nbytes // 2)
        fh.write(bytes([byte[0] ^ 0x10]))


def corrupt_foreign(path: Path) -> None:
    path.unlink()
    with h5py.File(path, "w") as f:
        f["frames"] = np.arange(10)


def corrupt_other_labels(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        f["labels"][0] = 7


@pytest.mark.parametrize(
    "corrupt",
    [
        corrupt_garbage,
        corrupt_truncate,
        corrupt_empty,
        corrupt_bitflip,
        corrupt_foreign,
        corrupt_other_labels,
    ],
)
def test_corrupt_cache_is_detected_and_rebuilt(root: Path, tmp_path: Path, corrupt) -> None:
    cache = tmp_path / "cache"
    path = load(root, cache).cache_path
    corrupt(path)
    with pytest.warns(RuntimeWarning, match="unusable .* rebuilding"):
        healed = load(root, cache)
    assert healed.cache is not None and healed.cache_path == path
    assert_same_samples(healed, load(root, None))
    assert no_leftovers(cache)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(root, cache)  # healthy again: no warning


def test_unwritable_cache_location_falls_back_to_uncached(root: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.warns(RuntimeWarning, match="continuing without a cache"):
        ds = load(root, blocker / "cache")
    assert ds.cache is None
    assert_same_samples(ds, load(root, None))


def test_cached_dataset_pickles_and_works_in_workers(root: Path, tmp_path: Path) -> None:
    ds = load(root, tmp_path / "cache")
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[3][0], ds[3][0])
    serial = list(make_loader(ds, batch_size=4, shuffle=True, seed=5))
    parallel = list(make_loader(ds, batch_size=4, shuffle=True, seed=5, num_workers=2))
    assert len(serial) == len(parallel) == 3
    for (xa, ya, na), (xb, yb, nb) in zip(serial, parallel, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(na, nb)


def test_variable_length_frames_are_cached(root: Path, tmp_path: Path) -> None:
    shorter = load(root, None).events(2)
    write_nmnist_bin(root / "NMNIST" / "Train" / "2" / "2.bin", shorter[shorter["t"] < 30_000])
    spec = FrameSpec(time_window_us=7_000)
    cached = load(root, tmp_path / "cache", frames=spec)
    plain = load(root, None, frames=spec)
    lengths = {cached[i][0].shape[0] for i in range(len(cached))}
    assert len(lengths) > 1  # recordings end at different times
    assert_same_samples(cached, plain)
