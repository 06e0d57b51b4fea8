"""spikelfp.datasets.MNIST (idx files, no torchvision) and the image encoders.

Synthetic idx files in tmp_path; the download is tested against a file:// mirror and a
monkeypatched urlopen (no network). The real-data test reads $SPIKELFP_DATA/mnist when set.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from spikelfp.datasets import (
    ENCODERS,
    MNIST,
    CorruptRecordingError,
    DatasetLayoutError,
    DatasetNotFoundError,
    DirectCurrent,
    LatencyEncoder,
    PoissonEncoder,
    RateEncoder,
    download_mnist,
    make_encoder,
    read_idx,
    write_idx,
)
from spikelfp.datasets import mnist as mnist_module

# -- helpers ---------------------------------------------------------------------------------


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def _labels(n: int) -> np.ndarray:
    return (np.arange(n) % 10).astype(np.uint8)


def _make_raw(
    root: Path, split: str = "train", n: int = 12, gz: bool = True, n_labels: int | None = None
) -> Path:
    """Write ``root/MNIST/raw/<prefix>-{images,labels}`` with ``n`` images (and ``n_labels``)."""
    prefix = "train" if split == "train" else "t10k"
    suffix = ".gz" if gz else ""
    raw = root / "MNIST" / "raw"
    write_idx(raw / f"{prefix}-images-idx3-ubyte{suffix}", _images(n))
    write_idx(
        raw / f"{prefix}-labels-idx1-ubyte{suffix}", _labels(n if n_labels is None else n_labels)
    )
    return raw


def _header(magic: int, *dims: int) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)


def _one_line(err: pytest.ExceptionInfo, *names: str) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    for name in names:
        assert name in msg, (name, msg)
    return msg


# -- read_idx ----------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    suffix = ".gz" if gz else ""
    images, labels = _images(5), _labels(5)
    p_img = write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images)
    p_lab = write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels)
    if gz:
        assert p_img.read_bytes()[:2] == b"\x1f\x8b"
    else:
        assert p_img.read_bytes()[:16] == _header(0x803, 5, 28, 28)
    got = read_idx(p_img)
    assert got.dtype == np.uint8 and got.shape == (5, 28, 28)
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(read_idx(p_lab), labels)
    # kind=None with an uninformative name accepts either kind
    other = tmp_path / "blob"
    other.write_bytes(p_lab.read_bytes() if not gz else gzip.decompress(p_lab.read_bytes()))
    np.testing.assert_array_equal(read_idx(other), labels)


def test_read_idx_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with pytest.raises(DatasetNotFoundError) as err:
        read_idx(path)
    _one_line(err, str(path), "MNIST idx image file")
    assert isinstance(err.value, FileNotFoundError)


def test_read_idx_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_header(0x12345678, 1, 28, 28) + bytes(784)))
    with pytest.raises(CorruptRecordingError) as err:
        read_idx(path)
    msg = _one_line(err, str(path))
    assert msg == (f"{path}: not an MNIST idx image file (magic 0x12345678, expected 0x00000803).")
    assert isinstance(err.value, ValueError)


def test_read_idx_foreign_file(tmp_path: Path) -> None:
    """A labels file (or other data) where the images should be."""
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(_header(0x801, 3) + bytes([1, 2, 3]))
    with pytest.raises(CorruptRecordingError) as err:
        read_idx(path)
    msg = _one_line(err, str(path), "0x00000803")
    assert "an idx label file" in msg
    # a gzip file not named .gz
    path.write_bytes(gzip.compress(_header(0x803, 1, 28, 28) + bytes(784)))
    with pytest.raises(CorruptRecordingError) as err:
        read_idx(path)
    assert "gzip data" in _one_line(err, str(path))
    # plain data named .gz, and a cut-off gzip stream
    gz = tmp_path / "train-labels-idx1-ubyte.gz"
    gz.write_bytes(_header(0x801, 1) + b"\x00")
    with pytest.raises(CorruptRecordingError) as err:
        read_idx(gz)
    _one_line(err, str(gz), "gzip")
    gz.write_bytes(gzip.compress(_header(0x801, 100) + bytes(100))[:-12])
    with pytest.raises(CorruptRecordingError) as err:
        read_idx(gz)
    _one_line(err, str(gz), "truncated")
    # an explicit kind overrides the name
    labels = write_idx(tmp_path / "x.gz", _labels(3))
    with pytest.raises(CorruptRecordingError) as err:
        read_idx(labels, kind="images")
    _one_line(err, str(labels), "expected 0x00000803")


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_truncated(tmp_path: Path, gz: bool) -> None:
    path = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    data = _header(0x803, 60000, 28, 28) + bytes(123)
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(CorruptRecordingError) as err:
        read_idx(path)
    msg = _one_line(err, str(path))
    assert msg.startswith(
        f"{path}: truncated: header says 60,000 images of 28x28 (47,040,000 bytes) but the file "
        "holds 123 bytes"
    ), msg


def test_read_idx_bad_headers(tmp_path: Path) -> None:
    empty = tmp_path / "train-labels-idx1-ubyte"
    empty.write_bytes(b"")
    with pytest.raises(CorruptRecordingError) as err:
        read_idx(empty)
    _one_line(err, str(empty), "truncated", "0 bytes")
    short = tmp_path / "t10k-images-idx3-ubyte"
    short.write_bytes(_header(0x803, 10, 28))  # only 2 of the 3 sizes
    with pytest.raises(CorruptRecordingError) as err:
        read_idx(short)
    _one_line(err, str(short), "truncated", "16 bytes")
    extra = tmp_path / "t10k-labels-idx1-ubyte"
    extra.write_bytes(_header(0x801, 2) + bytes(5))
    with pytest.raises(CorruptRecordingError) as err:
        read_idx(extra)
    _one_line(err, str(extra), "trailing data", "2 labels")
    with pytest.raises(ValueError, match="kind must be"):
        read_idx(extra, kind="pixels")


def test_write_idx_refuses_other_arrays(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        write_idx(tmp_path / "a", np.zeros((2, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        write_idx(tmp_path / "a", np.zeros(3, dtype=np.float32))


# -- MNIST: layout and errors ----------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reads_every_root_form(tmp_path: Path, gz: bool) -> None:
    raw = _make_raw(tmp_path, "train", n=12, gz=gz)
    _make_raw(tmp_path, "test", n=5, gz=gz)
    for root in (tmp_path, tmp_path / "MNIST", raw):
        ds = MNIST(root, split="train", time_bins=3)
        assert len(ds) == 12 and ds.data_dir == raw
        assert ds.targets == _labels(12).tolist()
        assert all(isinstance(t, int) for t in ds.targets)
        assert len(MNIST(root, split="test")) == 5
    assert ds.classes == tuple("0123456789")
    assert ds.frame_shape == (1, 28, 28) and ds.sensor_size == (28, 28, 1)
    assert MNIST.in_memory is True
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (12, 28, 28)
    frames, label = ds[-1]
    assert frames.shape == (3, 1, 28, 28) and frames.dtype == torch.float32 and label == 1
    expected = torch.from_numpy(_images(12)[-1]).float() / 255
    torch.testing.assert_close(frames[2, 0], expected)  # DirectCurrent by default
    with pytest.raises(IndexError):
        ds[12]
    clone = pickle.loads(pickle.dumps(ds))
    torch.testing.assert_close(clone[0][0], ds[0][0])


def test_mnist_prefers_uncompressed(tmp_path: Path) -> None:
    raw = _make_raw(tmp_path, n=4, gz=True)
    write_idx(raw / "train-images-idx3-ubyte", _images(4, seed=1))
    write_idx(raw / "train-labels-idx1-ubyte", _labels(4))
    ds = MNIST(tmp_path)
    assert ds.image_file.name == "train-images-idx3-ubyte"
    np.testing.assert_array_equal(ds.images.numpy(), _images(4, seed=1))


def test_mnist_missing_split(tmp_path: Path) -> None:
    _make_raw(tmp_path, "train", n=4)
    with pytest.raises(DatasetNotFoundError) as err:
        MNIST(tmp_path, split="test")
    raw = tmp_path / "MNIST" / "raw"
    _one_line(
        err,
        str(raw / "t10k-images-idx3-ubyte[.gz]"),
        str(raw / "t10k-labels-idx1-ubyte[.gz]"),
        "download=True",
        "--download",
    )


def test_mnist_incomplete_split(tmp_path: Path) -> None:
    raw = _make_raw(tmp_path, n=4)
    (raw / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        MNIST(tmp_path)
    _one_line(err, str(raw / "train-images-idx3-ubyte.gz"), "train-labels-idx1-ubyte", "download")


def test_mnist_count_mismatch(tmp_path: Path) -> None:
    raw = _make_raw(tmp_path, n=6, n_labels=5)
    with pytest.raises(DatasetLayoutError) as err:
        MNIST(tmp_path)
    msg = _one_line(err, str(raw / "train-images-idx3-ubyte.gz"), "train-labels-idx1-ubyte.gz")
    assert "6 images" in msg and "5 labels" in msg


def test_mnist_foreign_and_corrupt_files(tmp_path: Path) -> None:
    raw = _make_raw(tmp_path, n=4)
    images = raw / "train-images-idx3-ubyte.gz"
    write_idx(images, _labels(4))  # a labels file where the images should be
    with pytest.raises(CorruptRecordingError) as err:
        MNIST(tmp_path)
    _one_line(err, str(images), "not an MNIST idx image file", "0x00000803")
    write_idx(images, np.zeros((4, 32, 32), dtype=np.uint8))
    with pytest.raises(CorruptRecordingError) as err:
        MNIST(tmp_path)
    _one_line(err, str(images), "32x32", "28x28")
    write_idx(images, _images(4))
    labels = raw / "train-labels-idx1-ubyte.gz"
    write_idx(labels, np.array([0, 1, 12, 3], dtype=np.uint8))
    with pytest.raises(CorruptRecordingError) as err:
        MNIST(tmp_path)
    _one_line(err, str(labels), "label 12")


def test_mnist_argument_errors(tmp_path: Path) -> None:
    _make_raw(tmp_path, n=2)
    with pytest.raises(ValueError, match="split must be"):
        MNIST(tmp_path, split="val")
    with pytest.raises(ValueError, match="time_bins"):
        MNIST(tmp_path, time_bins=0)
    with pytest.raises(ValueError, match="unknown encoder 'spiky'"):
        MNIST(tmp_path, encoder="spiky")
    with pytest.raises(ValueError, match="seed"):
        MNIST(tmp_path, seed=1.5)  # type: ignore[arg-type]


# -- MNIST: encoders and randomness -----------------------------------------------------------


def test_mnist_random_spikes_are_reproducible(tmp_path: Path) -> None:
    _make_raw(tmp_path, n=4)
    ds = MNIST(tmp_path, time_bins=6, encoder="rate", seed=3)
    first = ds[1][0]
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(ds[1][0], first)  # a function of (seed, epoch, index)
    assert not torch.equal(ds[2][0], first)
    torch.testing.assert_close(MNIST(tmp_path, time_bins=6, encoder="rate", seed=3)[1][0], first)
    ds.set_epoch(1)
    assert not torch.equal(ds[1][0], first)
    ds.set_epoch(0)
    torch.testing.assert_close(ds[1][0], first)
    # seed=None: torch's global generator, fresh spikes every time, reproducible under manual_seed
    free = MNIST(tmp_path, time_bins=6, encoder=RateEncoder())
    torch.manual_seed(5)
    a, b = free[1][0], free[1][0]
    torch.manual_seed(5)
    torch.testing.assert_close(free[1][0], a)
    assert not torch.equal(a, b)


def test_mnist_transforms(tmp_path: Path) -> None:
    _make_raw(tmp_path, n=3)
    ds = MNIST(
        tmp_path,
        time_bins=2,
        encoder=LatencyEncoder(),
        transform=lambda x: x.flatten(1),
        target_transform=lambda y: y + 100,
    )
    frames, label = ds[2]
    assert frames.shape == (2, 784) and label == 102
    assert "LatencyEncoder" in repr(ds)


# -- encoders ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_encoder_shapes(name: str) -> None:
    image = torch.rand(1, 28, 28)
    out = make_encoder(name)(image, 7, torch.Generator().manual_seed(0))
    assert out.shape == (7, 1, 28, 28) and out.dtype == torch.float32
    assert make_encoder(name)(torch.rand(3, 4), 2).shape == (2, 3, 4)
    with pytest.raises(ValueError, match="time_bins must be an integer >= 1"):
        make_encoder(name)(image, 0)


def test_direct_current_is_the_intensity() -> None:
    image = torch.rand(1, 5, 5)
    out = DirectCurrent()(image, 4)
    for t in range(4):
        torch.testing.assert_close(out[t], image)
    torch.testing.assert_close(DirectCurrent(gain=3.0)(image, 1)[0], 3 * image)


def test_rate_encoder_statistics() -> None:
    levels = torch.tensor([0.0, 0.1, 0.25, 0.5, 0.9, 1.0])
    g = torch.Generator().manual_seed(1)
    spikes = RateEncoder()(levels, 20_000, g)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(spikes.mean(0), levels, atol=0.015, rtol=0)
    assert spikes[:, 0].sum() == 0 and spikes[:, -1].min() == 1
    # gain scales the probability, which is clamped to 1
    doubled = RateEncoder(gain=2.0)(levels, 20_000, g).mean(0)
    torch.testing.assert_close(doubled, (2 * levels).clamp(max=1), atol=0.015, rtol=0)
    # the generator decides: same seed, same spikes
    a = RateEncoder()(levels, 50, torch.Generator().manual_seed(7))
    torch.testing.assert_close(RateEncoder()(levels, 50, torch.Generator().manual_seed(7)), a)


def test_poisson_encoder_statistics() -> None:
    levels = torch.tensor([0.0, 0.2, 0.5, 1.0])
    counts = PoissonEncoder(max_rate_per_step=3.0)(levels, 20_000, torch.Generator().manual_seed(2))
    assert torch.equal(counts, counts.round()) and counts.max() > 1  # counts, not clamped
    torch.testing.assert_close(counts.mean(0), 3 * levels, atol=0.05, rtol=0)
    torch.testing.assert_close(counts.var(0), 3 * levels, atol=0.1, rtol=0)


def test_latency_encoder_one_spike_per_bright_pixel() -> None:
    time_bins = 8
    image = torch.tensor([1.0, 0.9, 0.5, 0.3, 0.02, 0.011, 0.009, 0.0]).reshape(1, 2, 4)
    out = LatencyEncoder()(image, time_bins)
    assert out.shape == (time_bins, 1, 2, 4)
    counts = out.sum(0).flatten().tolist()
    assert counts == [1, 1, 1, 1, 1, 1, 0, 0]  # below threshold 0.01: silent
    steps = out.argmax(0).flatten()[:6].tolist()
    expected = torch.round((1 - image.flatten()[:6]) * (time_bins - 1)).long().tolist()
    assert steps == expected == [0, 1, 4, 5, 7, 7]  # 3.5 rounds to even, like torch.round
    # an explicit tau compresses the code: t = tau * (1 - x)
    assert LatencyEncoder(tau=2.0)(image, time_bins).argmax(0).flatten()[:6].tolist() == [
        0,
        0,
        1,
        1,
        2,
        2,
    ]


def test_latency_encoder_log_code() -> None:
    enc = LatencyEncoder(tau=5.0, threshold=0.1, linear=False)
    x = torch.tensor([1.0, 0.5, 0.2, 0.11, 0.1, 0.05])
    t = enc.spike_times(x, 10)
    torch.testing.assert_close(t[:4], 5.0 * torch.log(x[:4] / (x[:4] - 0.1)))
    assert torch.isinf(t[4:]).all()
    out = enc(x, 10)
    # 0.11 would fire at round(11.99) = 12 > 9: dropped
    assert out.sum(0).tolist() == [1, 1, 1, 0, 0, 0]
    assert out.argmax(0)[:3].tolist() == torch.round(t[:3]).long().tolist()


def test_latency_matches_snntorch() -> None:
    spikegen = pytest.importorskip("snntorch.spikegen")
    image = torch.rand(1, 28, 28, generator=torch.Generator().manual_seed(0))
    image[image < 0.2] = 0.0
    ours = LatencyEncoder()(image, 10)
    theirs = spikegen.latency(
        image, num_steps=10, threshold=0.01, clip=True, normalize=True, linear=True
    )
    torch.testing.assert_close(ours, theirs.float())


def test_encoder_validation() -> None:
    bad = [
        (DirectCurrent, {"gain": -1.0}),
        (RateEncoder, {"gain": float("nan")}),
        (PoissonEncoder, {"max_rate_per_step": 0}),
        (LatencyEncoder, {"threshold": 1.5}),
        (LatencyEncoder, {"tau": -2.0}),
        (LatencyEncoder, {"linear": False}),  # the log code needs tau
        (LatencyEncoder, {"linear": "yes"}),
    ]
    for cls, kwargs in bad:
        with pytest.raises(ValueError) as err:
            cls(**kwargs)
        _one_line(err, cls.__name__)
    with pytest.raises(ValueError) as err:
        make_encoder("binary")
    _one_line(err, "'binary'", "direct, rate, poisson, latency")
    with pytest.raises(ValueError, match="encoder 'rate'"):
        make_encoder("rate", rate=3)
    with pytest.raises(AttributeError):
        RateEncoder().gain = 2.0  # type: ignore[misc]  # frozen


# -- download ----------------------------------------------------------------------------------


def _mirror(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A folder holding the four .gz files, and their md5 sums."""
    mirror = tmp_path / "mirror"
    sums = {}
    for prefix, n in (("train", 10), ("t10k", 4)):
        for path in (
            write_idx(mirror / f"{prefix}-images-idx3-ubyte.gz", _images(n)),
            write_idx(mirror / f"{prefix}-labels-idx1-ubyte.gz", _labels(n)),
        ):
            sums[path.name] = hashlib.md5(path.read_bytes()).hexdigest()
    return mirror, sums


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_md5_sums_are_torchvisions() -> None:
    assert mnist_module.MD5SUMS["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert len(mnist_module.MD5SUMS) == 4
    assert mnist_module.MIRRORS[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"


def test_download_from_file_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror, sums = _mirror(tmp_path)
    monkeypatch.setattr(mnist_module, "MIRRORS", (mirror.as_uri() + "/",))
    monkeypatch.setattr(mnist_module, "MD5SUMS", sums)
    root = tmp_path / "data"
    ds = MNIST(root, split="train", download=True)
    raw = root / "MNIST" / "raw"
    assert len(ds) == 10 and ds.data_dir == raw
    assert _listing(raw) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert len(MNIST(root, split="test", download=True)) == 4
    assert len(_listing(raw)) == 4  # no temporary files left
    # present files are not downloaded again
    monkeypatch.setattr(mnist_module, "MIRRORS", ())
    assert len(MNIST(root, split="train", download=True)) == 10


def test_download_falls_back_to_the_next_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror, sums = _mirror(tmp_path)
    urls: list[str] = []

    def fake_urlopen(request, timeout=None):  # noqa: ANN001
        url = request.full_url
        urls.append(url)
        if url.startswith("https://down.example/"):
            raise urllib.error.URLError("Name or service not known")
        return io.BytesIO((mirror / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(mnist_module, "urlopen", fake_urlopen)
    raw = download_mnist(
        tmp_path / "data" / "MNIST",
        ("test",),
        mirrors=("https://down.example/mnist/", "https://up.example/mnist"),
        md5sums=sums,
    )
    assert raw == tmp_path / "data" / "MNIST" / "raw"
    assert _listing(raw) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert urls == [
        "https://down.example/mnist/t10k-images-idx3-ubyte.gz",
        "https://up.example/mnist/t10k-images-idx3-ubyte.gz",
        "https://down.example/mnist/t10k-labels-idx1-ubyte.gz",
        "https://up.example/mnist/t10k-labels-idx1-ubyte.gz",
    ]
    assert len(MNIST(raw, split="test")) == 4


def test_download_refuses_md5_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror, sums = _mirror(tmp_path)
    (mirror / "train-images-idx3-ubyte.gz").write_bytes(b"<html>rate limited</html>")
    monkeypatch.setattr(mnist_module, "MIRRORS", (mirror.as_uri(),))
    monkeypatch.setattr(mnist_module, "MD5SUMS", sums)
    root = tmp_path / "data"
    with pytest.raises(CorruptRecordingError) as err:
        MNIST(root, download=True)
    raw = root / "MNIST" / "raw"
    _one_line(err, "train-images-idx3-ubyte.gz", "md5", sums["train-images-idx3-ubyte.gz"])
    assert _listing(raw) == []  # nothing saved, no temporary file left


def test_download_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(request, timeout=None):  # noqa: ANN001
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))

    monkeypatch.setattr(mnist_module, "urlopen", offline)
    root = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError) as err:
        MNIST(root, split="test", download=True)
    msg = _one_line(err, "t10k-images-idx3-ubyte.gz", "Network is unreachable")
    for mirror in mnist_module.MIRRORS:
        assert mirror in msg
    assert _listing(root / "MNIST" / "raw") == []


# -- real data -------------------------------------------------------------------------------


def test_real_mnist_subset() -> None:
    data = os.environ.get("SPIKELFP_DATA")
    if not data:
        pytest.skip("SPIKELFP_DATA not set: point it at the shared data folder (mnist/MNIST/raw)")
    root = Path(data) / "mnist"
    if not (root / "MNIST" / "raw").is_dir():
        pytest.skip(f"no real MNIST under {root / 'MNIST' / 'raw'}")
    ds = MNIST(root, split="train", time_bins=4, encoder="rate", seed=0)
    assert len(ds) == 22_699
    assert set(ds.targets) == set(range(10))
    assert min(ds.targets) >= 0 and max(ds.targets) <= 9
    assert ds.images.dtype == torch.uint8 and int(ds.images.max()) == 255
    frames, label = ds[0]
    assert frames.shape == (4, 1, 28, 28) and label == ds.targets[0] == 5  # MNIST's first digit
    npz = root / "mnist_train_22699.npz"
    if npz.is_file():
        with np.load(npz) as z:
            np.testing.assert_array_equal(ds.images.numpy(), z["x_train"])
            np.testing.assert_array_equal(np.asarray(ds.targets), z["y_train"])
    with pytest.raises(DatasetNotFoundError, match="t10k-images-idx3-ubyte"):
        MNIST(root, split="test")
