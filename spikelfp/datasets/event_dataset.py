"""Shared machinery of the event-camera datasets: preprocessing, frame cache, statistics."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from ._optional import require_tonic
from ._sample import check_index, transformed
from .errors import CorruptRecordingError
from .frame_cache import (
    CACHE_VERSION,
    FrameCache,
    cache_file_name,
    key_json,
    open_or_build,
    source_fingerprint,
)
from .stats import EventStats, columns_to_table, event_stats, stats_table
from .transforms import Crop, Denoise, Downsample, EventsToFrames, FrameSpec

SPLITS = ("train", "test")
#: Frames per recording when no ``frames=`` is given: the same as ``spikelfp train``'s
#: ``--time-bins`` default (``TrainConfig.time_bins``) and the N-MNIST recipe's.
DEFAULT_TIME_BINS = 16


def check_split(split: str, dataset: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"{dataset}: split must be 'train' or 'test', got {split!r}.")
    return split


class EventFrameDataset(Dataset):
    """Base class: a sorted list of recordings, each turned into a float32 frame tensor.

    Subclasses set :attr:`sensor_size` and :attr:`classes`, fill ``files`` and ``targets``
    and implement :meth:`_read` (file -> structured events).

    ``dataset[i]`` returns ``(frames, label)``: ``frames`` a float32 tensor ``(T, P, H, W)`` of
    event counts, ``label`` an int.
    """

    #: Sensor size ``(width, height, polarities)``, tonic's convention.
    sensor_size: ClassVar[tuple[int, int, int]]
    #: Class names, indexed by label.
    classes: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        *,
        data_dir: Path,
        split: str,
        files: Sequence[Path],
        targets: Sequence[int],
        frames: FrameSpec,
        denoise: Denoise | None,
        crop: Crop | None,
        downsample: Downsample | None,
        cache_dir: str | os.PathLike[str] | None,
        transform: Callable[[torch.Tensor], Any] | None,
        target_transform: Callable[[int], Any] | None,
        progress: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.split = split
        self.files: list[Path] = list(files)
        self.targets: list[int] = [int(t) for t in targets]
        self.preprocessing = EventsToFrames(frames, denoise, crop, downsample)
        self.frame_shape: tuple[int, int, int] = self.preprocessing.frame_shape(self.sensor_size)
        self.transform = transform
        self.target_transform = target_transform
        self._pipeline: Callable[[np.ndarray], np.ndarray] | None = None
        self.cache: FrameCache | None = None
        self.cache_path: Path | None = None
        self._check_recordings()
        if cache_dir is not None:
            self._attach_cache(Path(cache_dir).expanduser(), progress)

    # -- subclass hooks ---------------------------------------------------------------------
    def _read(self, path: Path) -> np.ndarray:
        raise NotImplementedError

    def _check_file(self, path: Path) -> str | None:
        """Why ``path`` cannot be one of this dataset's recordings, judged cheaply (its size
        and a few bytes), or ``None``. Run on every file when the dataset opens, so that a
        truncated or garbage file is reported before any training, not when it is read."""
        return None

    def _check_recordings(self) -> None:
        """Raise :class:`CorruptRecordingError` naming the first file that fails
        :meth:`_check_file` (and how many others do)."""
        problems = []
        for path in self.files:
            problem = self._check_file(path)
            if problem is not None:
                problems.append((path, problem))
        if not problems:
            return
        message = problems[0][1]
        if len(problems) > 1:
            message += (
                f" ({len(problems) - 1} more of the {len(self.files)} {self.split} recordings "
                f"fail this check too, e.g. {problems[1][0]})"
            )
        raise CorruptRecordingError(message)

    def _options(self) -> dict[str, Any]:
        """Dataset-level options that change the events (part of the cache key)."""
        return {}

    def _postprocess_events(self, events: np.ndarray) -> np.ndarray:
        return events

    # -- events, frames, samples --------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.files)

    def events(self, index: int) -> np.ndarray:
        """The events of recording ``index`` (structured array ``x, y, t, p``; times in µs),
        after the dataset options (e.g. ``first_saccade_only``) but before any transform."""
        return self._postprocess_events(self._read(self.files[index]))

    def compute_frames(self, index: int) -> np.ndarray:
        """Run the preprocessing on recording ``index`` (no cache): int16 counts (T, P, H, W)."""
        return self._frames_and_stats(index)[0]

    def _frames_and_stats(self, index: int) -> tuple[np.ndarray, EventStats]:
        if self._pipeline is None:
            self._pipeline = self.preprocessing.build(self.sensor_size)
        events = self.events(index)
        stats = event_stats(events)
        return self._pipeline(events), stats

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        index = self._check_index(index)
        if self.cache is not None:
            counts = self.cache.read(index)
        else:
            counts = self.compute_frames(index)
        frames = torch.from_numpy(np.asarray(counts, dtype=np.float32))
        return transformed(frames, self.targets[index], self.transform, self.target_transform)

    def _check_index(self, index: int) -> int:
        return check_index(index, len(self.files), self)

    # -- statistics ---------------------------------------------------------------------------
    def sample_stats(self, index: int) -> EventStats:
        """Event count, ON count, duration and rate of recording ``index`` (before transforms)."""
        index = self._check_index(index)
        if self.cache is not None:
            return self.cache.stats(index)
        return event_stats(self.events(index))

    def statistics(self) -> dict[str, np.ndarray]:
        """Per-sample statistics of every recording as columns ``n_events``, ``n_on``,
        ``n_off``, ``duration_us``, ``rate_hz`` (read from the cache when there is one)."""
        if self.cache is not None:
            return columns_to_table(self.cache.n_events, self.cache.n_on, self.cache.duration_us)
        return stats_table([event_stats(self.events(i)) for i in range(len(self))])

    # -- cache ------------------------------------------------------------------------------------
    def cache_key(self) -> dict[str, Any]:
        """Everything that determines the frames, except the source files themselves."""
        tonic = require_tonic()
        return {
            "cache_version": CACHE_VERSION,
            "dataset": type(self).__name__,
            "split": self.split,
            "sensor_size": list(self.sensor_size),
            "options": self._options(),
            "preprocessing": self.preprocessing.describe(),
            "tonic": getattr(tonic, "__version__", "unknown"),
        }

    def _attach_cache(self, cache_dir: Path, progress: bool) -> None:
        key = key_json(self.cache_key())
        path = cache_dir / cache_file_name(type(self).__name__, self.split, key, self.data_dir)
        source = source_fingerprint(self.data_dir, self.files, self.targets)
        relpaths = [os.path.relpath(f, self.data_dir) for f in self.files]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            def bar(it: range) -> Any:
                return tqdm(it, desc=f"Caching {type(self).__name__} {self.split}", disable=None)

        self.cache_path = path
        self.cache = open_or_build(
            path,
            key=key,
            source=source,
            labels=self.targets,
            relpaths=relpaths,
            frame_shape=self.frame_shape,
            compute=self._frames_and_stats,
            progress=bar,
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pipeline"] = None  # tonic callables are rebuilt in each worker
        return state

    def __repr__(self) -> str:
        cached = f", cache={str(self.cache_path)!r}" if self.cache is not None else ""
        return (
            f"{type(self).__name__}(root={str(self.data_dir)!r}, split={self.split!r}, "
            f"samples={len(self)}, frames={self.preprocessing.frames}{cached})"
        )
