"""DVS128 Gesture (Amir et al. 2017) from tonic's preprocessed .npy files: 128x128x2, 11 classes."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._optional import require_tonic
from .errors import CorruptRecordingError, DatasetLayoutError, DatasetNotFoundError
from .event_dataset import DEFAULT_TIME_BINS, EventFrameDataset, check_split
from .nmnist import locate_split
from .transforms import Crop, Denoise, Downsample, FrameSpec

GESTURE_URL = "https://research.ibm.com/interactive/dvsgesture/"
GESTURE_CLASSES = (
    "hand clapping",
    "right hand wave",
    "left hand wave",
    "right arm clockwise",
    "right arm counter-clockwise",
    "left arm clockwise",
    "left arm counter-clockwise",
    "arm roll",
    "air drums",
    "air guitar",
    "other gestures",
)
_SPLIT_FOLDERS = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}
_USER_FOLDER = re.compile(r"^user(\d+)_(.+)$")
_LAYOUT = "<root>/DVSGesture/{split}/userNN_<lighting>/<label 0-10>.npy"


def list_gesture_split(split_dir: Path) -> tuple[list[Path], list[int], list[int], list[str]]:
    """Recordings, labels, users and lighting conditions of a split folder, sorted by
    (user, lighting, label). Raises a :class:`DatasetLayoutError` naming what is wrong."""
    expected = f"expected {split_dir}/userNN_<lighting>/<label 0-10>.npy"
    rows: list[tuple[int, str, int, Path]] = []
    for entry in sorted(split_dir.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            if entry.suffix == ".npy":
                raise DatasetLayoutError(f"Found {entry} directly in the split folder; {expected}.")
            continue
        match = _USER_FOLDER.match(entry.name)
        if match is None:
            raise DatasetLayoutError(
                f"Unexpected folder {entry} in a DVS Gesture split: folders must be named "
                f"userNN_<lighting>, e.g. user01_fluorescent ({expected}). Move or remove it."
            )
        user, lighting = int(match.group(1)), match.group(2)
        for f in entry.iterdir():
            if f.suffix != ".npy" or f.name.startswith("."):
                continue
            label = int(f.stem) if f.stem.isdigit() else -1
            if not 0 <= label < len(GESTURE_CLASSES):
                raise DatasetLayoutError(
                    f"Unexpected recording {f}: DVS Gesture files are named by their label, "
                    f"0.npy to {len(GESTURE_CLASSES) - 1}.npy ({expected})."
                )
            rows.append((user, lighting, label, f))
    if not rows:
        raise DatasetLayoutError(
            f"No .npy recordings under {split_dir} ({expected}). The folder is empty or the "
            "archive was not extracted; re-extract it or pass download=True."
        )
    rows.sort(key=lambda r: (r[0], r[1], r[2], r[3].name))
    return (
        [r[3] for r in rows],
        [r[2] for r in rows],
        [r[0] for r in rows],
        [r[1] for r in rows],
    )


def read_gesture_npy(path: Path, sensor_size: tuple[int, int] = (128, 128)) -> np.ndarray:
    """Read one preprocessed DVS Gesture recording the way ``tonic.datasets.DVSGesture`` does.

    The file holds an ``N x 4`` array with columns ``x, y, p, t`` and ``t`` in milliseconds;
    like tonic, ``t`` is multiplied by 1000 (to µs) and the rows become a structured array of
    ``tonic.datasets.DVSGesture.dtype`` (``x, y`` int16, ``p`` bool, ``t`` int64). Integer
    columns are widened to int64 first, so the conversion cannot overflow.
    """
    tonic = require_tonic()
    from numpy.lib import recfunctions

    hint = "Restore it from the original download (or delete it)."
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise CorruptRecordingError(
            f"{path} is not a readable .npy file ({exc}): truncated or corrupted. {hint}"
        ) from exc
    if arr.ndim != 2 or arr.shape[1] != 4 or not np.issubdtype(arr.dtype, np.number):
        raise CorruptRecordingError(
            f"{path} holds a {arr.dtype} array of shape {arr.shape}; a DVS Gesture recording "
            f"is a numeric N x 4 array with columns x, y, p, t (ms). {hint}"
        )
    arr = arr.astype(np.int64) if np.issubdtype(arr.dtype, np.integer) else arr.copy()
    width, height = sensor_size
    x, y, p = arr[:, 0], arr[:, 1], arr[:, 2]
    if len(arr) and (x.min() < 0 or x.max() >= width or y.min() < 0 or y.max() >= height):
        raise CorruptRecordingError(
            f"{path} has events outside the {width}x{height} sensor (x {x.min()}..{x.max()}, "
            f"y {y.min()}..{y.max()}); is the column order x, y, p, t? {hint}"
        )
    if len(arr) and not np.all((p == 0) | (p == 1)):
        raise CorruptRecordingError(
            f"{path} has polarities other than 0/1 in column 2; the column order must be "
            f"x, y, p, t. {hint}"
        )
    arr[:, 3] *= 1000  # ms -> µs, as tonic does
    events = recfunctions.unstructured_to_structured(arr, tonic.datasets.DVSGesture.dtype)
    if len(events) > 1 and np.any(np.diff(events["t"]) < 0):
        events = events[np.argsort(events["t"], kind="stable")]
    return events


class DVSGesture(EventFrameDataset):
    """DVS128 Gesture as a torch ``Dataset`` of ``(frames, label)``; frames float32
    ``(T, 2, 128, 128)`` (smaller with ``crop``/``downsample``), 11 classes.

    Reads tonic's preprocessed layout ``DVSGesture/ibmGestureTrain/userNN_<lighting>/<label>.npy``
    (and ``ibmGestureTest``) as it is, from ``root`` being the folder that contains
    ``DVSGesture/`` or the ``DVSGesture`` folder itself. Samples are sorted by user, lighting
    and label (tonic's own order depends on the file system). ``users`` and ``lighting`` give
    each sample's subject and lighting condition.

    Arguments are those of :class:`spikelfp.datasets.NMNIST` (without the saccade options).
    tonic's ``Denoise`` is a Python loop over events, slow on these long recordings: combine
    it with ``cache_dir=`` so it runs once.

    Example (needs the data)::

        ds = DVSGesture("data", "train", frames=FrameSpec(n_time_bins=20),
                        downsample=Downsample(0.25), cache_dir="cache")
        frames, label = ds[0]           # frames.shape == (20, 2, 32, 32)
    """

    sensor_size = (128, 128, 2)
    classes = GESTURE_CLASSES
    folder_name = "DVSGesture"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        frames: FrameSpec | None = None,
        *,
        denoise: Denoise | None = None,
        crop: Crop | None = None,
        downsample: Downsample | None = None,
        download: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        transform: Callable[[torch.Tensor], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        progress: bool = True,
    ) -> None:
        check_split(split, type(self).__name__)
        root = Path(root).expanduser()
        split_folder = _SPLIT_FOLDERS[split]
        data_dir = locate_split(root, self.folder_name, split_folder)
        if data_dir is None and download:
            tonic = require_tonic()
            save_to = root.parent if root.name == self.folder_name else root
            save_to.mkdir(parents=True, exist_ok=True)
            tonic.datasets.DVSGesture(save_to=str(save_to), train=split == "train")
            data_dir = locate_split(root, self.folder_name, split_folder)
        if data_dir is None:
            looked = f"{root / self.folder_name / split_folder} and {root / split_folder}"
            raise DatasetNotFoundError(
                f"DVS Gesture {split} split not found: looked in {looked}. Expected tonic's "
                f"preprocessed layout {_LAYOUT.format(split=split_folder)} (root may also be "
                f"the DVSGesture folder itself). Get it with DVSGesture(root, split={split!r}, "
                f"download=True), which downloads it through tonic (~2.5 GB; dataset page "
                f"{GESTURE_URL})."
            )
        files, labels, users, lighting = list_gesture_split(data_dir / split_folder)
        self.users = users
        self.lighting = lighting
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

    def _read(self, path: Path) -> np.ndarray:
        return read_gesture_npy(path, sensor_size=self.sensor_size[:2])
