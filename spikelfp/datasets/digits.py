"""The built-in offline dataset: scikit-learn's digits recorded like N-MNIST.

``make_digits_events`` converts the 1,797 real 8x8 digit images bundled with scikit-learn into
event recordings (:func:`~spikelfp.datasets.images_to_events`), written in N-MNIST's binary
format and folder layout, so the very same :class:`~spikelfp.datasets.NMNIST` loader reads
them. No download, deterministic given the seed.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_write
from ._optional import require_sklearn_datasets
from .errors import DatasetLayoutError
from .nmnist import NMNIST
from .nmnist_format import write_nmnist_bin
from .saccade_events import images_to_events, simulation_params
from .transforms import Crop, Denoise, Downsample, FrameSpec

MARKER_NAME = "spikelfp-digits.json"
GENERATOR_VERSION = 1
SPLIT_SEED = 0


def default_root() -> Path:
    """Where :class:`DigitsEvents` keeps its files when no root is given:
    ``$SPIKELFP_HOME/datasets`` or ``~/.cache/spikelfp/datasets``."""
    home = os.environ.get("SPIKELFP_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".cache" / "spikelfp"
    return base / "datasets"


def digits_as_uint8() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 images ``(1797, 8, 8)`` (0..16 scaled to 0..255) and
    their labels."""
    digits = require_sklearn_datasets().load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return images, np.asarray(digits.target, dtype=np.int64)


def stratified_test_mask(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the test samples: ``round(test_fraction * n_c)`` random members of each
    class ``c``, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        n_test = int(round(test_fraction * len(members)))
        mask[rng.permutation(members)[:n_test]] = True
    return mask


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_marker(path: Path, data: dict[str, Any]) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))


def _count_bins(folder: Path) -> int:
    return sum(1 for _ in folder.glob("*/*.bin")) if folder.is_dir() else 0


def make_digits_events(
    root: str | os.PathLike[str] | None = None,
    seed: int = 0,
    *,
    test_fraction: float = 0.2,
    **params: Any,
) -> Path:
    """Generate the built-in dataset under ``root/NMNIST`` (if not already there); return that
    folder.

    Layout and format are N-MNIST's: ``NMNIST/Train/<digit>/<index>.bin`` and
    ``NMNIST/Test/...``, ``index`` being the row of ``sklearn.datasets.load_digits``. The split
    is stratified (``test_fraction`` of each digit, fixed: it does not depend on ``seed``).
    ``params`` go to :func:`~spikelfp.datasets.images_to_events`.

    Idempotent: a marker file ``NMNIST/spikelfp-digits.json`` records the parameters and is
    completed last; a later call with the same parameters returns at once, one with other
    parameters regenerates the files. A folder holding ``.bin`` files without the marker (e.g.
    real N-MNIST) is never overwritten.
    """
    root = Path(root).expanduser() if root is not None else default_root() / f"digits-seed{seed}"
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}.")
    folder = root / "NMNIST"
    marker = folder / MARKER_NAME
    settings = {
        "generator": "spikelfp.datasets.make_digits_events",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "test_fraction": float(test_fraction),
        "simulation": simulation_params(**params),
    }
    existing = _read_marker(marker) if marker.exists() else None
    if existing is not None and existing.get("complete") and existing.get("settings") == settings:
        counts = existing.get("counts", {})
        if counts.get("Train") == _count_bins(folder / "Train") and counts.get(
            "Test"
        ) == _count_bins(folder / "Test"):
            return folder
    if existing is None and (_count_bins(folder / "Train") or _count_bins(folder / "Test")):
        raise DatasetLayoutError(
            f"{folder} already holds N-MNIST recordings that spikelfp did not generate (no "
            f"{MARKER_NAME}); refusing to overwrite them. Pass another root to "
            "make_digits_events / DigitsEvents."
        )
    folder.mkdir(parents=True, exist_ok=True)
    _write_marker(marker, {"settings": settings, "complete": False})
    for split in ("Train", "Test"):  # ours (the marker says so): start from scratch
        for label_dir in (folder / split).glob("[0-9]"):
            shutil.rmtree(label_dir)

    images, labels = digits_as_uint8()
    events = images_to_events(images, seed=seed, **params)
    is_test = stratified_test_mask(labels, test_fraction, SPLIT_SEED)
    for index, (ev, label, test) in enumerate(zip(events, labels, is_test, strict=True)):
        split = "Test" if test else "Train"
        write_nmnist_bin(folder / split / str(int(label)) / f"{index}.bin", ev, fsync=False)
    if hasattr(os, "sync"):
        os.sync()  # one flush for all files instead of an fsync per file
    counts = {"Train": int((~is_test).sum()), "Test": int(is_test.sum())}
    _write_marker(marker, {"settings": settings, "complete": True, "counts": counts})
    return folder


class DigitsEvents(NMNIST):
    """The built-in offline event dataset (scikit-learn digits recorded like N-MNIST).

    Generates the recordings on first use (:func:`make_digits_events`, ~10 s), then reads them
    with the :class:`NMNIST` loader: ``(frames (T, 2, 34, 34), label)``, 1,438 training and 359
    test samples. All :class:`NMNIST` arguments apply.

    Example (generates ~36 MB on first use)::

        train = DigitsEvents("data", "train", frames=FrameSpec(n_time_bins=30))
        frames, label = train[0]        # frames.shape == (30, 2, 34, 34)
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        split: str = "train",
        frames: FrameSpec | None = None,
        *,
        seed: int = 0,
        denoise: Denoise | None = None,
        crop: Crop | None = None,
        downsample: Downsample | None = None,
        first_saccade_only: bool = False,
        stabilize: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        transform: Callable[[torch.Tensor], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        progress: bool = True,
    ) -> None:
        self.seed = int(seed)
        folder = make_digits_events(root, seed=seed)
        super().__init__(
            folder,
            split,
            frames,
            denoise=denoise,
            crop=crop,
            downsample=downsample,
            first_saccade_only=first_saccade_only,
            stabilize=stabilize,
            cache_dir=cache_dir,
            transform=transform,
            target_transform=target_transform,
            progress=progress,
        )
