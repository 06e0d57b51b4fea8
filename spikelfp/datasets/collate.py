"""Batching of variable-length frame sequences into time-first tensors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


def pad_collate(
    batch: Sequence[tuple[Any, Any]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack ``(frames (T_i, ...), label)`` samples into a time-first, zero-padded batch.

    Returns ``(frames (T_max, B, ...), labels (B,), lengths (B,))``: float32 frames padded
    with zeros after each sample's end, int64 labels and int64 lengths in time bins. Frames may
    be tensors or numpy arrays (e.g. straight from tonic).

    >>> a, b = torch.ones(3, 2, 4, 4), torch.ones(5, 2, 4, 4)
    >>> x, y, n = pad_collate([(a, 1), (b, 7)])
    >>> tuple(x.shape), y.tolist(), n.tolist()
    ((5, 2, 2, 4, 4), [1, 7], [3, 5])
    >>> float(x[3:, 0].abs().sum())
    0.0
    """
    if len(batch) == 0:
        raise ValueError("pad_collate got an empty batch.")
    frames: list[np.ndarray] = []
    labels = []
    for i, item in enumerate(batch):
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise TypeError(
                f"pad_collate expects (frames, label) pairs; item {i} is {type(item).__name__}."
            )
        x = item[0]
        # Padding is done in numpy: single-threaded and fast even on a busy machine, where
        # torch's multi-threaded copies can stall.
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if x.ndim < 1:
            raise ValueError(f"sample {i} has no time axis (shape {tuple(x.shape)}).")
        frames.append(x)
        labels.append(int(item[1]))
    inner = frames[0].shape[1:]
    for i, x in enumerate(frames):
        if x.shape[1:] != inner:
            raise ValueError(
                f"pad_collate: sample {i} has frames of shape {tuple(x.shape[1:])}, sample 0 "
                f"{tuple(inner)}; all samples need the same (P, H, W). Use the same crop / "
                "downsample for every sample."
            )
    lengths = np.array([x.shape[0] for x in frames], dtype=np.int64)
    out = np.zeros((int(lengths.max()), len(frames), *inner), dtype=np.float32)
    for i, x in enumerate(frames):
        out[: x.shape[0], i] = x
    return (
        torch.from_numpy(out),
        torch.tensor(labels, dtype=torch.int64),
        torch.from_numpy(lengths),
    )


def _seed_worker(worker_id: int) -> None:
    # tonic's random transforms draw from numpy's global generator: seed it per worker.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002 (tonic uses the legacy global generator)


def make_loader(
    dataset: Dataset,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    *,
    num_workers: int = 0,
    drop_last: bool = False,
    collate_fn: Callable[[Sequence[Any]], Any] = pad_collate,
    **kwargs: Any,
) -> DataLoader:
    """A ``DataLoader`` yielding ``(frames (T, B, P, H, W), labels (B,), lengths (B,))``.

    The shuffling order is fixed by ``seed`` (a dedicated ``torch.Generator``), workers are
    seeded from it, and workers persist across epochs. Extra keyword arguments go to
    ``DataLoader``.

    >>> data = [(torch.ones(2, 1, 3, 3), i) for i in range(5)]
    >>> x, y, n = next(iter(make_loader(data, batch_size=2)))
    >>> tuple(x.shape), y.tolist(), n.tolist()
    ((2, 2, 1, 3, 3), [0, 1], [2, 2])
    >>> def order(seed):
    ...     return [y.tolist() for _, y, _ in make_loader(data, 2, shuffle=True, seed=seed)]
    >>> order(1) == order(1)
    True
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    if num_workers > 0:
        kwargs.setdefault("persistent_workers", True)
        kwargs.setdefault("worker_init_fn", _seed_worker)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=drop_last,
        collate_fn=collate_fn,
        generator=generator,
        **kwargs,
    )
