"""Bad input to the N-MNIST loader fails with errors that name the file or folder and say what
to do; good input in unusual places is accepted."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from spikelfp.datasets import (
    EVENT_DTYPE,
    NMNIST,
    CorruptRecordingError,
    Crop,
    DatasetLayoutError,
    DatasetNotFoundError,
    FrameSpec,
    images_to_events,
    write_nmnist_bin,
)

pytest.importorskip("tonic")


def write_small_nmnist(root: Path, per_class: int = 1, split: str = "Train") -> Path:
    """A tiny, valid N-MNIST tree: per_class recordings of random blobs for each digit."""
    rng = np.random.default_rng(7)
    images = (rng.random((10 * per_class, 8, 8)) > 0.6).astype(np.uint8) * 255
    events = images_to_events(images, seed=1, saccade_us=20_000)
    for k, ev in enumerate(events):
        write_nmnist_bin(root / "NMNIST" / split / str(k % 10) / f"{k}.bin", ev)
    return root


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    return write_small_nmnist(tmp_path / "data")


def test_valid_tree_loads(root: Path) -> None:
    ds = NMNIST(root, "train", frames=FrameSpec(n_time_bins=4))
    assert len(ds) == 10
    assert ds.targets == list(range(10))
    assert ds[0][0].shape == (4, 2, 34, 34)


def test_missing_root_explains_layout_and_download(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        NMNIST(tmp_path / "nowhere", "train")
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "NMNIST" / "Train") in message
    assert "<root>/NMNIST/Train/<digit 0-9>/<index>.bin" in message
    assert "download=True" in message and "tonic" in message and "DigitsEvents" in message
    assert isinstance(info.value, FileNotFoundError)


def test_bad_split_name(root: Path) -> None:
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        NMNIST(root, "validation")


def test_empty_split_folder(tmp_path: Path) -> None:
    (tmp_path / "NMNIST" / "Train").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="No .bin recordings under") as info:
        NMNIST(tmp_path)
    assert str(tmp_path / "NMNIST" / "Train") in str(info.value)


def test_empty_label_folders(tmp_path: Path) -> None:
    (tmp_path / "NMNIST" / "Train" / "3").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="No .bin recordings"):
        NMNIST(tmp_path)


def test_label_folder_that_is_not_a_digit(root: Path) -> None:
    odd = root / "NMNIST" / "Train" / "ten"
    odd.mkdir()
    with pytest.raises(DatasetLayoutError, match="label folders must be named by a single digit"):
        NMNIST(root)
    with pytest.raises(DatasetLayoutError, match=str(odd)):
        NMNIST(root)


def test_recordings_directly_in_split_folder(tmp_path: Path) -> None:
    ev = np.zeros(1, dtype=EVENT_DTYPE)
    write_nmnist_bin(tmp_path / "NMNIST" / "Train" / "0.bin", ev)
    with pytest.raises(DatasetLayoutError, match="directly in the split folder"):
        NMNIST(tmp_path)


def test_hidden_entries_and_other_files_are_ignored(root: Path) -> None:
    train = root / "NMNIST" / "Train"
    (train / ".ipynb_checkpoints").mkdir()
    (train / "README.txt").write_text("notes")
    (train / "4" / "notes.txt").write_text("notes")
    assert len(NMNIST(root)) == 10


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\x01\x02\x03\x04\x05\x06\x07", "not a multiple of 5"),
        (b"", "is empty"),
        (bytes([40, 3, 0, 0, 1]), "outside the 34x34 sensor"),
    ],
)
def test_corrupt_bin_names_the_file(root: Path, content: bytes, match: str) -> None:
    ds = NMNIST(root)
    bad = ds.files[5]
    bad.write_bytes(content)
    with pytest.raises(CorruptRecordingError, match=match) as info:
        ds[5]
    assert str(bad) in str(info.value)
    assert isinstance(info.value, ValueError)
    ds[4]  # the other recordings still load


def test_corrupt_bin_while_building_cache_is_reported(root: Path, tmp_path: Path) -> None:
    bad = root / "NMNIST" / "Train" / "2" / "2.bin"
    bad.write_bytes(b"\x00" * 12)  # truncated: found by the header check, before any cache
    with pytest.raises(CorruptRecordingError, match="2.bin"):
        NMNIST(root, cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists()
    # a bad event in the middle passes the header check and is found while caching
    bad.write_bytes(_event_bytes(3, 4, 10) + _event_bytes(90, 4, 15) + _event_bytes(3, 4, 20))
    with pytest.raises(CorruptRecordingError, match="2.bin"):
        NMNIST(root, cache_dir=tmp_path / "cache", progress=False)
    assert not [p for p in (tmp_path / "cache").iterdir() if p.suffix in (".tmp", ".raw")]


def test_crop_larger_than_sensor(root: Path) -> None:
    with pytest.raises(ValueError, match="larger than the 34x34 sensor"):
        NMNIST(root, crop=Crop(40, 40))


def test_wrong_argument_types(root: Path) -> None:
    with pytest.raises(TypeError, match="frames= expects a spikelfp.datasets.FrameSpec"):
        NMNIST(root, frames=30)  # type: ignore[arg-type]


def test_missing_tonic_gives_install_hint(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tonic", None)
    ds = NMNIST(root)  # listing files does not need tonic
    with pytest.raises(ImportError, match=r"pip install 'spikelfp\[datasets\]'"):
        ds[0]


class _FakeTonicNMNIST:
    """Stands in for tonic.datasets.NMNIST: 'downloads' by writing a tiny tree."""

    calls: list[tuple[str, bool]] = []

    def __init__(self, save_to: str, train: bool = True) -> None:
        type(self).calls.append((save_to, train))
        write_small_nmnist(Path(save_to), split="Train" if train else "Test")


@pytest.fixture()
def fake_download(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    import tonic

    _FakeTonicNMNIST.calls = []
    monkeypatch.setattr(tonic.datasets, "NMNIST", _FakeTonicNMNIST)
    return _FakeTonicNMNIST.calls


def test_download_goes_through_tonic_only_when_asked(tmp_path: Path, fake_download) -> None:
    with pytest.raises(DatasetNotFoundError):
        NMNIST(tmp_path, "test")
    assert fake_download == []
    ds = NMNIST(tmp_path, "test", download=True)
    assert fake_download == [(str(tmp_path), False)]
    assert len(ds) == 10 and ds.files[0].parts[-3] == "Test"
    # Present now: download=True does not download again.
    NMNIST(tmp_path, "test", download=True)
    assert len(fake_download) == 1


def test_download_into_named_nmnist_folder_uses_its_parent(tmp_path: Path, fake_download) -> None:
    NMNIST(tmp_path / "NMNIST", "train", download=True)
    assert fake_download == [(str(tmp_path), True)]


def test_extracted_copy_is_used_as_it_is(root: Path, fake_download) -> None:
    # No zip files and only 10 recordings: accepted without any download.
    assert len(NMNIST(root, "train", download=True)) == 10
    assert fake_download == []


def _event_bytes(x: int, y: int, t: int, p: int = 1) -> bytes:
    return bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\x01\x02\x03\x04\x05\x06\x07", "is 7 bytes, not a multiple of 5"),
        (b"", "is empty"),
        (_event_bytes(3, 4, 10) + _event_bytes(200, 9, 20), "last event is at x=200, y=9"),
        (_event_bytes(3, 4, 5000) + _event_bytes(3, 4, 20), "earlier than its first"),
    ],
)
def test_bad_recording_is_found_when_the_dataset_opens(
    root: Path, content: bytes, match: str
) -> None:
    """Every file's header is checked up front, not only the samples that get read."""
    bad = root / "NMNIST" / "Train" / "7" / "7.bin"
    bad.write_bytes(content)
    with pytest.raises(CorruptRecordingError, match=match) as info:
        NMNIST(root)
    message = str(info.value)
    assert message.startswith(str(bad)) and "\n" not in message
    assert "Restore it from the original download" in message or "Delete it" in message


def test_several_bad_recordings_are_counted(root: Path) -> None:
    for digit in (2, 5, 8):
        (root / "NMNIST" / "Train" / str(digit) / f"{digit}.bin").write_bytes(b"\x00" * 3)
    with pytest.raises(CorruptRecordingError) as info:
        NMNIST(root)
    message = str(info.value)
    assert message.startswith(str(root / "NMNIST" / "Train" / "2" / "2.bin"))
    assert "2 more of the 10 train recordings fail this check too" in message
    assert str(root / "NMNIST" / "Train" / "5" / "5.bin") in message


def test_header_check_passes_the_generated_and_real_layouts(root: Path) -> None:
    from spikelfp.datasets.nmnist_format import check_nmnist_header

    ds = NMNIST(root)
    assert [check_nmnist_header(f) for f in ds.files] == [None] * len(ds)
    # a bad event in the middle passes the cheap check; reading the file finds it
    mid = _event_bytes(3, 4, 10) + _event_bytes(90, 4, 15) + _event_bytes(3, 4, 20)
    ds.files[3].write_bytes(mid)
    assert check_nmnist_header(ds.files[3]) is None
    with pytest.raises(CorruptRecordingError, match="outside the 34x34 sensor"):
        ds[3]


def test_real_nmnist_recordings_pass_the_header_check(shared_data: Path) -> None:
    from spikelfp.datasets.nmnist_format import check_nmnist_header

    files = sorted((shared_data / "nmnist" / "NMNIST" / "Train").rglob("*.bin"))
    assert files
    assert [f for f in files if check_nmnist_header(f) is not None] == []
