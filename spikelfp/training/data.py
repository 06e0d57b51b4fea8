"""Datasets for the trainer: open a split by name, hold out a validation part, cache frames.

Splits: ``train`` (the dataset's training recordings minus the held-out part), ``val`` (the
held-out part: ``val_fraction`` of the training recordings, stratified by class and fixed by
the run's seed) and ``test`` (the dataset's test recordings).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .config import SPLITS, ConfigError, TrainConfig, default_data_dir

__all__ = [
    "DATASET_SHAPES",
    "DataError",
    "SplitData",
    "open_split",
    "MemoryCache",
    "EpochSampler",
    "epoch_permutation",
    "collate",
    "stack_samples",
    "sparse_batch",
    "SparseLoader",
]


#: one frame's shape ``(P, H, W)`` and the number of classes of each dataset, as the trainer
#: opens it (DVS128 Gesture downsampled to 32x32)
DATASET_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "digits-events": ((2, 34, 34), 10),
    "nmnist": ((2, 34, 34), 10),
    "dvsgesture": ((2, 32, 32), 11),
    "mnist": ((1, 28, 28), 10),
    "braille": ((24,), 27),  # signals (C,): ON/OFF sigma-delta of 12 taxels, all letters
}


class DataError(ValueError):
    """A dataset could not be opened (missing folder, wrong layout, unreadable files)."""


class MemoryCache(Dataset):
    """Keeps every sample's frames in memory after the first read (compact form).

    Event counts that fit ``uint8`` are stored as the flat indices (``int32``) and counts
    (``uint8``) of their non-zero entries when that is smaller (event frames are mostly zeros:
    N-MNIST at 1 ms bins is >99.9 % zeros), else as a dense ``uint8`` array; other frames as
    ``float32``. So the memory of the cache grows with the number of events, not with the
    number of time bins. ``targets`` are passed through. :meth:`sparse` gives a sample's
    stored indices without making its dense frames.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.targets = list(getattr(dataset, "targets", []))
        self._frames: dict[int, tuple] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def _store(self, index: int) -> tuple:
        frames, _ = self.dataset[index]
        arr = np.asarray(frames)
        shape = arr.shape
        if arr.size and arr.min() >= 0 and arr.max() <= 255 and np.array_equal(arr, np.rint(arr)):
            flat = arr.reshape(-1)
            where = np.flatnonzero(flat)
            if where.size * 5 < flat.size and flat.size < 2**31:
                item = ("sparse", shape, where.astype(np.int32), flat[where].astype(np.uint8))
            else:
                item = ("dense", shape, arr.astype(np.uint8))
        else:
            item = ("dense", shape, np.array(arr, dtype=np.float32))
        self._frames[index] = item
        return item

    def sparse(self, index: int) -> tuple[tuple[int, ...], np.ndarray, np.ndarray, int]:
        """Sample ``index`` as ``(shape (T, P, H, W), flat indices, counts, label)``: the
        non-zero entries of its frames in C order (so sorted by time bin)."""
        index = int(index)
        item = self._frames.get(index) or self._store(index)
        if item[0] == "sparse":
            _, shape, where, counts = item
            return shape, where, counts, int(self.targets[index])
        flat = item[2].reshape(-1)
        where = np.flatnonzero(flat)
        return item[1], where, flat[where], int(self.targets[index])

    def __getitem__(self, index: int):
        index = int(index)
        item = self._frames.get(index) or self._store(index)
        if item[0] == "sparse":
            _, shape, where, counts = item
            out = np.zeros(int(np.prod(shape)), dtype=np.float32)
            out[where] = counts
            return torch.from_numpy(out.reshape(shape)), int(self.targets[index])
        # numpy's conversion: torch's is multi-threaded and slow for small tensors on a busy CPU
        return torch.from_numpy(item[2].astype(np.float32)), int(self.targets[index])


class _Subset(Dataset):
    def __init__(self, dataset: Dataset, indices: np.ndarray):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        parent = np.asarray(dataset.targets, dtype=np.int64)
        self.targets = parent[self.indices].tolist()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.dataset[int(self.indices[index])]


@dataclass
class SplitData:
    """One split, ready for the trainer.

    Attributes:
        dataset: yields ``(frames (T, P, H, W) float32, label)``.
        frame_shape: ``(P, H, W)``.
        classes: class names (``len(classes)`` output neurons).
        name: ``"train"``, ``"val"`` or ``"test"``.
    """

    dataset: Dataset
    frame_shape: tuple[int, int, int]
    classes: tuple[str, ...]
    name: str

    @property
    def targets(self) -> list[int]:
        return list(self.dataset.targets)


def _resolve_data_dir(cfg: TrainConfig) -> Path | None:
    if cfg.data_dir is None:
        default = default_data_dir(cfg.dataset)
        if default is None and cfg.dataset != "digits-events":
            raise ConfigError(
                f"--data-dir is required for dataset {cfg.dataset!r} (the folder holding its "
                "recordings)"
            )
        if default is None:  # digits-events, generated in $SPIKELFP_HOME/datasets
            _check_default_home()
        return default
    path = Path(cfg.data_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise DataError(f"--data-dir {path} is a file, not a folder")
    if path.is_dir() and not os.access(path, os.R_OK | os.X_OK):
        raise DataError(
            f"--data-dir {path} is not readable (permission denied); fix its permissions or "
            "choose another --data-dir"
        )
    if cfg.dataset != "digits-events" and not path.is_dir():
        raise DataError(f"data directory {path} does not exist")
    if not path.is_dir():  # digits-events: generated there
        from .checkpoint import output_problem

        problem = output_problem(path)
        if problem is not None:
            raise DataError(f"cannot generate the built-in dataset in --data-dir {path}: {problem}")
    return path


def _home_context() -> str:
    """Where the built-in dataset's default folder comes from, for error messages."""
    home = os.environ.get("SPIKELFP_HOME")
    if home is not None:
        return f"SPIKELFP_HOME={home}"
    return "the default ~/.cache/spikelfp (SPIKELFP_HOME is not set)"


def _check_default_home() -> None:
    """The built-in dataset's default folder must be readable, or creatable."""
    from ..datasets.digits import default_root
    from .checkpoint import output_problem

    root = default_root()
    if root.is_dir() and os.access(root, os.R_OK | os.X_OK):
        return
    problem = output_problem(root)
    if problem is not None:
        raise DataError(
            f"cannot use {root} for the built-in dataset ({_home_context()}): {problem}; set "
            "SPIKELFP_HOME to a writable folder or pass --data-dir"
        )


def _open_raw(cfg: TrainConfig, split: str):
    """The spikelfp dataset object of the train or test recordings."""
    from .. import datasets as ds  # imported lazily: tonic etc. are optional

    root = _resolve_data_dir(cfg)
    kwargs = {"frames": frame_spec(cfg)}
    if cfg.cache_dir is not None:
        kwargs["cache_dir"] = os.fspath(Path(cfg.cache_dir).expanduser())
    try:
        if cfg.dataset == "braille":
            return ds.Braille(root, split, cfg.letters, sensor_encoding(cfg), taxels=cfg.taxels)
        if cfg.dataset == "mnist":
            return ds.MNIST(
                root,
                split=split,
                time_bins=cfg.time_bins,
                encoder=cfg.encoding,
                download=cfg.download,
                seed=cfg.seed,
            )
        if cfg.download and cfg.dataset != "digits-events":  # generated offline, never downloaded
            kwargs["download"] = True
        if cfg.dataset == "digits-events":
            return ds.DigitsEvents(root, split=split, **kwargs)
        if cfg.dataset == "nmnist":
            return ds.NMNIST(root, split=split, **kwargs)
        if cfg.dataset == "dvsgesture":
            # 128x128 is too large for the zoo models on a CPU: downsample to 32x32
            return ds.DVSGesture(root, split=split, downsample=ds.Downsample(0.25), **kwargs)
    except PermissionError as err:  # e.g. a read-only dataset folder without generated files
        where = f" ({_home_context()})" if cfg.data_dir is None else ""
        raise DataError(f"{_one_line(err)}{where}") from None
    except (FileNotFoundError, NotADirectoryError) as err:
        hint = ""
        if split == "test":
            hint = (
                " To evaluate without a test split, hold out part of the training "
                "recordings with --val-fraction (evaluated as --split val)."
            )
        raise DataError(_one_line(err) + hint) from None
    except ValueError as err:  # layout errors, corrupt recordings
        raise DataError(_one_line(err)) from None
    raise ConfigError(f"unknown dataset {cfg.dataset!r}")


def sensor_encoding(cfg: TrainConfig):
    """The sensor encoder a config asks for (braille): ``direct`` is the pressure
    ``(255 - x) / 255`` as a current, ``sigma-delta`` ON/OFF event counts (``2C`` channels),
    ``sigma-delta-or`` ON plus OFF counts (``C`` channels; ``input_clamp=1`` makes them the
    NIR paper's binary OR), both with threshold ``delta_threshold``.

    >>> sensor_encoding(TrainConfig(dataset="braille", encoding="sigma-delta-or"))
    SigmaDelta(threshold=1.0, merge=True, binary=False)
    """
    from ..datasets.sensor_encoders import SensorCurrent, SigmaDelta

    if cfg.encoding == "direct":
        return SensorCurrent(scale=-1.0 / 255.0, offset=255.0)
    return SigmaDelta(cfg.delta_threshold, merge=cfg.encoding == "sigma-delta-or")


def frame_spec(cfg: TrainConfig):
    """How a config bins events: ``time_bins`` frames over each recording's span, or, with
    ``bin_ms``, ``time_bins`` frames of ``bin_ms`` milliseconds from the recording's start
    (later events are dropped, shorter recordings end in empty frames).

    >>> frame_spec(TrainConfig(time_bins=4, bin_ms=10)).end_time_us
    40000.0
    """
    from .. import datasets as ds

    if cfg.bin_ms is None:
        return ds.FrameSpec(n_time_bins=cfg.time_bins)
    window = float(cfg.bin_ms) * 1000.0
    return ds.FrameSpec(
        time_window_us=window, start_time_us=0.0, end_time_us=window * cfg.time_bins
    )


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _subsample(dataset: Dataset, n: int | None, seed: int) -> Dataset:
    """A deterministic, class-stratified subset of at most ``n`` samples."""
    if n is None or n >= len(dataset):
        return dataset
    from ..datasets import validation_split

    idx = validation_split(dataset, n_val=int(n), seed=seed + 7919).val
    return _Subset(dataset, idx)


_RAW_CACHE: dict[tuple, Dataset] = {}


def open_split(cfg: TrainConfig, split: str, memory_cache: bool = True) -> SplitData:
    """Open ``split`` (``train``/``tune``/``val``/``test``) of the configured dataset.

    ``val`` is ``cfg.val_fraction`` of the training recordings (stratified, seed
    ``cfg.split_seed``); ``tune`` is ``cfg.tune_fraction`` of what remains (seed
    ``split_seed + 7``), the part that hyper-parameters are chosen on; ``train`` is the rest.
    So a tuning run (``--tune-fraction``, evaluated on ``tune``) never sees the ``val`` part
    that a final run reports. ``max_train_samples``/``max_eval_samples`` then take a
    stratified subset. Raises :class:`DataError` or :class:`ConfigError`.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose {', '.join(SPLITS)}")
    if split == "val" and cfg.val_fraction <= 0:
        raise ConfigError(
            "split 'val' needs a held-out part: the run was trained without --val-fraction"
        )
    if split == "tune" and cfg.tune_fraction <= 0:
        raise ConfigError("split 'tune' needs --tune-fraction > 0")
    raw_split = "test" if split == "test" else "train"
    key = (
        cfg.dataset,
        str(_resolve_data_dir(cfg)),
        raw_split,
        cfg.time_bins,
        cfg.cache_dir,
        cfg.bin_ms,
        cfg.encoding if cfg.dataset in ("mnist", "braille") else None,
        cfg.seed if cfg.dataset == "mnist" else None,
        (cfg.letters, cfg.delta_threshold, str(cfg.taxels)) if cfg.dataset == "braille" else None,
    )
    raw = _RAW_CACHE.get(key)
    if raw is None:
        raw = _open_raw(cfg, raw_split)
        # datasets held in memory (MNIST) encode every access anew: never freeze their frames
        if memory_cache and not getattr(raw, "in_memory", False):
            raw = MemoryCache(raw)
            # keep the train and test recordings of one configuration, forget any other
            for other in [k for k in _RAW_CACHE if k[:2] + k[3:] != key[:2] + key[3:]]:
                del _RAW_CACHE[other]
            _RAW_CACHE[key] = raw
    base = raw.dataset if isinstance(raw, MemoryCache) else raw
    frame_shape = tuple(int(v) for v in base.frame_shape)
    classes = tuple(str(c) for c in base.classes)
    data: Dataset = raw
    if raw_split == "train" and cfg.val_fraction > 0:
        from ..datasets import validation_split

        try:
            parts = validation_split(raw, fraction=cfg.val_fraction, seed=cfg.split_seed)
        except ValueError as err:
            raise DataError(f"cannot hold out --val-fraction {cfg.val_fraction}: {err}") from None
        data = _Subset(raw, parts.val if split == "val" else parts.train)
    if split in ("train", "tune") and cfg.tune_fraction > 0:
        from ..datasets import validation_split

        try:
            parts = validation_split(data, fraction=cfg.tune_fraction, seed=cfg.split_seed + 7)
        except ValueError as err:
            raise DataError(f"cannot hold out --tune-fraction {cfg.tune_fraction}: {err}") from None
        data = _Subset(data, parts.val if split == "tune" else parts.train)
    limit = cfg.max_train_samples if split == "train" else cfg.max_eval_samples
    data = _subsample(data, limit, cfg.seed)
    if len(data) == 0:
        raise DataError(f"the {split} split of {cfg.dataset} is empty")
    return SplitData(data, frame_shape, classes, split)


def clear_memory_cache() -> None:
    """Forget the in-memory frames (tests, or when switching datasets in one process)."""
    _RAW_CACHE.clear()


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the ``n`` training samples in ``epoch``: a function of (seed, epoch) only
    (``torch.randperm`` seeded with ``seed + epoch``, as ``DistributedSampler`` does).

    >>> epoch_permutation(5, seed=0, epoch=1).tolist() == epoch_permutation(5, 0, 1).tolist()
    True
    """
    g = torch.Generator()
    g.manual_seed(int(seed) + int(epoch))  # DistributedSampler's rule
    return torch.randperm(n, generator=g)


class EpochSampler(Sampler[int]):
    """Single-process sampler whose order is :func:`epoch_permutation` ``(seed, epoch)``.

    Same interface as ``DistributedSampler`` (``set_epoch``), so resuming at an epoch
    boundary replays exactly the order an uninterrupted run would have used.
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = int(n), int(seed), bool(shuffle), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        return epoch_permutation(self.n, self.seed, self.epoch).tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.order())

    def __len__(self) -> int:
        return self.n


def stack_samples(dataset: Dataset, indices, clamp: float | None = None) -> torch.Tensor:
    """Frames ``(T_max, B, P, H, W)`` float32 of ``dataset[i]`` for ``i`` in ``indices``,
    written sample by sample into one zero-padded tensor and clipped at ``clamp`` in place:
    the memory of the batch once (:func:`collate` holds every sample's frames and the batch,
    and clipping out of place a second batch).
    """
    indices = [int(i) for i in indices]
    first = dataset[indices[0]][0]
    lengths = [first.shape[0]]
    if isinstance(dataset, MemoryCache):
        lengths += [dataset.sparse(i)[0][0] for i in indices[1:]]
    else:
        lengths = None
    if lengths is None:  # no cheap lengths: collate as usual
        x, _ = collate([dataset[i] for i in indices])
        return x.clamp_(max=clamp) if clamp is not None else x
    out = torch.zeros((max(lengths), len(indices), *first.shape[1:]), dtype=torch.float32)
    out[: first.shape[0], 0] = first
    del first
    for b, i in enumerate(indices[1:], start=1):
        frames = dataset[i][0]
        out[: frames.shape[0], b] = frames
    return out.clamp_(max=clamp) if clamp is not None else out


def sparse_batch(dataset: Dataset, indices, clamp: float | None = None):
    """Samples ``indices`` of ``dataset`` as :class:`~spikelfp.lfp.SparseFrames` ``(T_max, B,
    P, H, W)`` (counts clipped at ``clamp``) and their labels ``(B,)``.

    Read from the :class:`MemoryCache` under ``dataset`` (through held-out subsets) without
    making any sample's dense frames once it is cached; other datasets are read densely,
    one sample at a time.
    """
    from ..events import SparseFrames

    samples, labels = [], []
    for i in indices:
        base, j = dataset, int(i)
        while isinstance(base, _Subset):
            base, j = base.dataset, int(base.indices[j])
        if isinstance(base, MemoryCache):
            shape, where, counts, label = base.sparse(j)
        else:
            frames, label = base[j]
            flat = np.asarray(frames, dtype=np.float32).reshape(-1)
            where = np.flatnonzero(flat)
            shape, counts = tuple(np.shape(frames)), flat[where]
        samples.append((shape, where, counts))
        labels.append(int(label))
    return SparseFrames.from_samples(samples).clamp(clamp), torch.tensor(labels, dtype=torch.int64)


class SparseLoader:
    """Batches ``(SparseFrames, labels)`` of ``dataset`` in ``sampler``'s order (online LFP).

    What a ``DataLoader`` with :func:`collate` gives, except that each batch's frames stay
    sparse (:func:`sparse_batch`); read in the calling process. ``len()`` is the number of
    batches (the last may be smaller).
    """

    def __init__(self, dataset: Dataset, sampler=None, batch_size: int = 32):
        self.dataset, self.sampler, self.batch_size = dataset, sampler, int(batch_size)

    def __len__(self) -> int:
        n = len(self.sampler) if self.sampler is not None else len(self.dataset)
        return -(-n // self.batch_size)

    def __iter__(self):
        order = list(self.sampler) if self.sampler is not None else range(len(self.dataset))
        order = [int(i) for i in order]
        for start in range(0, len(order), self.batch_size):
            yield sparse_batch(self.dataset, order[start : start + self.batch_size])


def collate(batch):
    """``[(frames (T, P, H, W), label)] -> (frames (T, B, P, H, W), labels (B,))``."""
    from ..datasets import pad_collate

    frames, labels, _ = pad_collate(batch)
    return frames, labels
