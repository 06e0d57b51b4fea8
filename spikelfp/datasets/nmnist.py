"""N-MNIST (Orchard et al. 2015): 34x34x2 recordings of MNIST digits seen during 3 saccades."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._optional import require_tonic
from .errors import DatasetLayoutError, DatasetNotFoundError
from .event_dataset import DEFAULT_TIME_BINS, EventFrameDataset, check_split
from .nmnist_format import check_nmnist_header, read_nmnist_bin
from .transforms import Crop, Denoise, Downsample, FrameSpec

NMNIST_URL = "https://www.garrickorchard.com/datasets/n-mnist"
_SPLIT_FOLDERS = {"train": "Train", "test": "Test"}
_LAYOUT = "<root>/NMNIST/{split}/<digit 0-9>/<index>.bin"


def _numeric_key(path: Path) -> tuple[int, int | str]:
    stem = path.stem
    return (0, int(stem)) if stem.isdigit() else (1, stem)


def locate_split(root: Path, folder_name: str, split_folder: str) -> Path | None:
    """The dataset folder (holding ``split_folder``) for ``root`` being either the folder that
    contains ``folder_name`` or that folder itself; ``None`` when neither has the split."""
    for candidate in (root / folder_name, root):
        if (candidate / split_folder).is_dir():
            return candidate
    return None


def list_nmnist_split(split_dir: Path) -> tuple[list[Path], list[int]]:
    """Recordings and labels of an N-MNIST split folder ``.../Train`` (sorted by label, then
    numerically by file name). Raises a :class:`DatasetLayoutError` naming what is wrong."""
    expected = f"expected {split_dir}/<digit 0-9>/<index>.bin"
    files: list[Path] = []
    labels: list[int] = []
    entries = sorted(split_dir.iterdir(), key=lambda p: p.name)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if not (len(entry.name) == 1 and entry.name.isdigit()):
                raise DatasetLayoutError(
                    f"Unexpected folder {entry} in an N-MNIST split: label folders must be "
                    f"named by a single digit 0-9 ({expected}). Move or remove it."
                )
            bins = sorted(
                (f for f in entry.iterdir() if f.suffix == ".bin" and not f.name.startswith(".")),
                key=_numeric_key,
            )
            files.extend(bins)
            labels.extend([int(entry.name)] * len(bins))
        elif entry.suffix == ".bin":
            raise DatasetLayoutError(
                f"Found {entry} directly in the split folder; {expected}. Recordings must sit "
                "in a folder named by their digit."
            )
    if not files:
        raise DatasetLayoutError(
            f"No .bin recordings under {split_dir} ({expected}). The folder is empty or the "
            "archive was not extracted; re-extract it or pass download=True."
        )
    return files, labels


class NMNIST(EventFrameDataset):
    """N-MNIST as a torch ``Dataset`` of ``(frames, label)``; frames are float32 ``(T, 2, 34, 34)``.

    Reads an extracted copy as it is (no zip files, any number of samples), from ``root`` being
    either the folder that contains ``NMNIST/`` or the ``NMNIST`` folder itself, with the layout
    ``NMNIST/Train/<digit>/<index>.bin`` and ``NMNIST/Test/...``. Files are decoded with
    ``tonic.io.read_mnist_file`` and binned with tonic transforms; samples are sorted by label
    and file index, so the order does not depend on the file system.

    Args:
        root: folder containing ``NMNIST/`` (or the ``NMNIST`` folder).
        split: ``"train"`` or ``"test"``.
        frames: how to bin events into frames (default: :data:`DEFAULT_TIME_BINS`, 16
            time bins per recording, as ``spikelfp train --time-bins``).
        denoise, crop, downsample: optional preprocessing, applied in that order.
        first_saccade_only: keep the first saccade only (events with ``t < 100 ms``).
        stabilize: remove the saccade motion (tonic's ``stabilize``).
        download: download through tonic when the split is missing (~1 GB).
        cache_dir: folder for an HDF5 frame cache (built once, reused while the recordings and
            every preprocessing parameter are unchanged).
        transform: callable applied to the frame tensor after the cache (e.g. augmentation).
        target_transform: callable applied to the label.
        progress: show a progress bar while building the cache.

    Example (needs the data)::

        ds = NMNIST("data", split="train", frames=FrameSpec(n_time_bins=30), cache_dir="cache")
        frames, label = ds[0]            # frames.shape == (30, 2, 34, 34)
    """

    sensor_size = (34, 34, 2)
    classes = tuple(str(d) for d in range(10))
    folder_name = "NMNIST"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        frames: FrameSpec | None = None,
        *,
        denoise: Denoise | None = None,
        crop: Crop | None = None,
        downsample: Downsample | None = None,
        first_saccade_only: bool = False,
        stabilize: bool = False,
        download: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        transform: Callable[[torch.Tensor], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        progress: bool = True,
    ) -> None:
        name = type(self).__name__
        check_split(split, name)
        root = Path(root).expanduser()
        self.first_saccade_only = bool(first_saccade_only)
        self.stabilize = bool(stabilize)
        split_folder = _SPLIT_FOLDERS[split]
        data_dir = locate_split(root, self.folder_name, split_folder)
        if data_dir is None and download:
            self._download(root, split)
            data_dir = locate_split(root, self.folder_name, split_folder)
        if data_dir is None:
            raise self._not_found(root, split)
        files, labels = list_nmnist_split(data_dir / split_folder)
        super().__init__(
            data_dir=data_dir,
            split=split,
            files=files,
            targets=labels,
            frames=frames if frames is not None else FrameSpec(n_time_bins=DEFAULT_TIME_BINS),
            denoise=denoise,
            crop=crop,
            downsample=downsample,
            cache_dir=cache_dir,
            transform=transform,
            target_transform=target_transform,
            progress=progress,
        )

    def _not_found(self, root: Path, split: str) -> DatasetNotFoundError:
        split_folder = _SPLIT_FOLDERS[split]
        looked = f"{root / self.folder_name / split_folder} and {root / split_folder}"
        return DatasetNotFoundError(
            f"N-MNIST {split} split not found: looked in {looked}. Expected layout "
            f"{_LAYOUT.format(split=split_folder)} (root may also be the NMNIST folder itself). "
            f"Get it with NMNIST(root, split={split!r}, download=True), which downloads it "
            f"through tonic (~1 GB, see {NMNIST_URL}), or use spikelfp.datasets.DigitsEvents "
            "for an offline stand-in that needs no download."
        )

    def _download(self, root: Path, split: str) -> None:
        tonic = require_tonic()
        save_to = root.parent if root.name == self.folder_name else root
        save_to.mkdir(parents=True, exist_ok=True)
        tonic.datasets.NMNIST(save_to=str(save_to), train=split == "train")

    def _options(self) -> dict[str, Any]:
        return {"first_saccade_only": self.first_saccade_only, "stabilize": self.stabilize}

    def _read(self, path: Path) -> np.ndarray:
        return read_nmnist_bin(path, sensor_size=self.sensor_size[:2])

    def _check_file(self, path: Path) -> str | None:
        return check_nmnist_header(path, sensor_size=self.sensor_size[:2])

    def _postprocess_events(self, events: np.ndarray) -> np.ndarray:
        if self.first_saccade_only:
            events = events[events["t"] < 100_000]
        if self.stabilize:
            require_tonic()
            from tonic.datasets.nmnist import stabilize

            events = stabilize(events)
        return events
