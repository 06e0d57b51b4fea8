"""The built-in offline dataset: N-MNIST-format recordings of scikit-learn's digits."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from spikelfp.datasets import (
    EVENT_DTYPE,
    NMNIST,
    DatasetLayoutError,
    DigitsEvents,
    FrameSpec,
    images_to_events,
    make_digits_events,
    write_nmnist_bin,
)
from spikelfp.datasets.digits import digits_as_uint8
from spikelfp.datasets.nmnist_format import encode_nmnist

tonic = pytest.importorskip("tonic")
pytest.importorskip("sklearn")


def read_with_tonic(path: Path) -> np.ndarray:
    return tonic.io.read_mnist_file(str(path), dtype=tonic.datasets.NMNIST.dtype)


# -- the binary format --------------------------------------------------------------------------
def test_write_then_tonic_reads_back_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 5000
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["x"] = rng.integers(0, 256, n)
    y = rng.integers(0, 255, n)
    ev["y"] = np.where(y >= 240, y + 1, y)  # every value but 240, the overflow marker
    ev["t"] = np.sort(rng.integers(0, 2**23, n))
    ev["t"][-1] = 2**23 - 1  # the largest timestamp the format holds
    ev["p"] = rng.integers(0, 2, n)
    path = write_nmnist_bin(tmp_path / "a" / "1.bin", ev)
    assert path.stat().st_size == 5 * n
    back = read_with_tonic(path)
    assert back.dtype == ev.dtype
    assert np.array_equal(back, ev)
    assert [p.name for p in path.parent.iterdir()] == ["1.bin"]  # no temporary file left


def test_bit_layout_of_one_event() -> None:
    ev = np.zeros(1, dtype=EVENT_DTYPE)
    ev[0] = (33, 17, (5 << 16) | (6 << 8) | 7, 1)
    assert encode_nmnist(ev) == bytes([33, 17, 0x80 | 5, 6, 7])


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("x", 256, "x must be in 0..255"),
        ("y", 240, "overflow marker"),
        ("t", 2**23, "23 bit"),
        ("t", -1, "23 bit"),
        ("p", 2, "p must be 0 or 1"),
    ],
)
def test_unencodable_events_are_rejected(field: str, value: int, match: str, tmp_path) -> None:
    ev = np.zeros(3, dtype=EVENT_DTYPE)
    ev["t"] = [1, 2, 3]
    ev[field][1] = value
    if field == "t":
        ev["t"][2] = max(value, 3)
        ev["t"][0] = min(value, 1)
    with pytest.raises(ValueError, match=match):
        write_nmnist_bin(tmp_path / "x.bin", ev)
    assert not (tmp_path / "x.bin").exists()


def test_unsorted_times_are_rejected(tmp_path: Path) -> None:
    ev = np.zeros(2, dtype=EVENT_DTYPE)
    ev["t"] = [5, 4]
    with pytest.raises(ValueError, match="sorted"):
        write_nmnist_bin(tmp_path / "x.bin", ev)


def test_missing_fields_are_rejected(tmp_path: Path) -> None:
    ev = np.zeros(2, dtype=[("x", int), ("t", int)])
    with pytest.raises(ValueError, match="missing"):
        write_nmnist_bin(tmp_path / "x.bin", ev)


# -- the event simulation ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def few_digits() -> tuple[np.ndarray, np.ndarray]:
    images, labels = digits_as_uint8()
    return images[:12], labels[:12]


def test_events_are_deterministic_given_seed(few_digits) -> None:
    images, _ = few_digits
    a = images_to_events(images, seed=3)
    b = images_to_events(images, seed=3)
    c = images_to_events(images, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not any(np.array_equal(x, z) for x, z in zip(a, c, strict=True))
    # A recording does not depend on the other images in the call.
    assert np.array_equal(images_to_events(images[:3], seed=3)[2], a[2])


def test_events_look_like_nmnist(few_digits) -> None:
    images, _ = few_digits
    for ev in images_to_events(images, seed=0):
        assert ev.dtype == EVENT_DTYPE
        assert np.all(np.diff(ev["t"]) >= 0)
        assert ev["t"].min() >= 0 and ev["t"].max() <= 300_000
        assert ev["x"].max() < 34 and ev["y"].max() < 34 and ev["x"].min() >= 0
        assert 1500 < len(ev) < 12_000  # N-MNIST recordings hold a few thousand events
        assert 0.35 < ev["p"].mean() < 0.65  # ON and OFF balanced
        # Every saccade moves the digit, so every third of the recording has signal.
        thirds = np.bincount(np.minimum(ev["t"] // 100_000, 2), minlength=3)
        assert thirds.min() > 0.15 * len(ev)


def test_noise_rate_controls_background_activity(few_digits) -> None:
    blank = np.zeros((2, 8, 8), dtype=np.uint8)
    quiet = images_to_events(blank, seed=0, noise_rate_hz=0.0)
    noisy = images_to_events(blank, seed=0, noise_rate_hz=10.0)
    assert [len(e) for e in quiet] == [0, 0]  # a blank screen produces no signal events
    expected = 10.0 * 34 * 34 * 0.3
    assert all(abs(len(e) - expected) < 5 * np.sqrt(expected) for e in noisy)


def test_bad_images_are_rejected() -> None:
    with pytest.raises(ValueError, match="uint8"):
        images_to_events(np.zeros((2, 8, 8), dtype=np.float32))
    with pytest.raises(ValueError, match=r"images\[None\]"):
        images_to_events(np.zeros((8, 8), dtype=np.uint8))


# -- the generated dataset ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_digits_events(tmp_path_factory.mktemp("digits"), seed=0)


def test_layout_split_and_marker(generated: Path) -> None:
    _, labels = digits_as_uint8()
    train = sorted(generated.glob("Train/*/*.bin"))
    test = sorted(generated.glob("Test/*/*.bin"))
    assert len(train) + len(test) == len(labels) == 1797
    indices = [int(p.stem) for p in train + test]
    assert sorted(indices) == list(range(1797))
    for p in train + test:
        assert int(p.parent.name) == labels[int(p.stem)]
    per_class = Counter(labels.tolist())
    test_per_class = Counter(int(p.parent.name) for p in test)
    for digit, total in per_class.items():
        assert test_per_class[digit] == round(0.2 * total)
    marker = json.loads((generated / "spikelfp-digits.json").read_text())
    assert marker["complete"] is True
    assert marker["counts"] == {"Train": len(train), "Test": len(test)}


def test_files_decode_to_exactly_the_generated_events(generated: Path) -> None:
    images, _ = digits_as_uint8()
    expected = images_to_events(images[:15], seed=0)
    for index in range(15):
        (path,) = generated.glob(f"*/*/{index}.bin")
        assert np.array_equal(read_with_tonic(path), expected[index])


def test_generation_is_idempotent(generated: Path) -> None:
    files = sorted(generated.glob("*/*/*.bin"))
    stamps = [f.stat().st_mtime_ns for f in files[:50]]
    assert make_digits_events(generated.parent, seed=0) == generated
    assert [f.stat().st_mtime_ns for f in files[:50]] == stamps


def test_foreign_recordings_are_never_overwritten(tmp_path: Path) -> None:
    real = tmp_path / "NMNIST" / "Train" / "3"
    real.mkdir(parents=True)
    (real / "1.bin").write_bytes(bytes(5))
    with pytest.raises(DatasetLayoutError, match="did not generate"):
        make_digits_events(tmp_path)
    assert (real / "1.bin").read_bytes() == bytes(5)


def test_digits_events_dataset_uses_the_nmnist_loader(generated: Path) -> None:
    train = DigitsEvents(generated.parent, "train", frames=FrameSpec(n_time_bins=10))
    test = DigitsEvents(generated.parent, "test", frames=FrameSpec(n_time_bins=10))
    assert isinstance(train, NMNIST)
    assert len(train) + len(test) == 1797
    assert abs(len(test) / 1797 - 0.2) < 0.01
    frames, label = test[0]
    assert frames.shape == (10, 2, 34, 34)
    assert label == test.targets[0] == int(test.files[0].parent.name)


def test_learnable_by_a_linear_classifier(generated: Path) -> None:
    """Sanity check: logistic regression on summed event counts beats 90 % on the test split."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    def features(ds: NMNIST) -> tuple[np.ndarray, np.ndarray]:
        x = np.zeros((len(ds), 2, 34, 34))
        for i in range(len(ds)):
            ev = ds.events(i)
            np.add.at(x[i], (ev["p"], ev["y"], ev["x"]), 1)
        return x.reshape(len(ds), -1), np.asarray(ds.targets)

    x_train, y_train = features(NMNIST(generated, "train"))
    x_test, y_test = features(NMNIST(generated, "test"))
    mean, scale = x_train.mean(axis=0), x_train.std(axis=0) + 1.0
    with threadpool_limits(1):  # a single BLAS thread is faster on a busy machine
        clf = LogisticRegression(max_iter=200).fit((x_train - mean) / scale, y_train)
    assert clf.score((x_test - mean) / scale, y_test) > 0.9
