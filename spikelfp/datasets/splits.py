"""Deterministic, stratified train/validation splits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np


class SplitIndices(NamedTuple):
    """Sorted sample indices of the two parts of a split (use with ``torch.utils.data.Subset``)."""

    train: np.ndarray
    val: np.ndarray


def _labels_of(dataset: Any) -> np.ndarray:
    if isinstance(dataset, np.ndarray) or (
        isinstance(dataset, Sequence) and len(dataset) and isinstance(dataset[0], (int, np.integer))
    ):
        return np.asarray(dataset, dtype=np.int64)
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return np.asarray(targets, dtype=np.int64)
    indices = getattr(dataset, "indices", None)
    parent = getattr(dataset, "dataset", None)
    if indices is not None and parent is not None:  # torch.utils.data.Subset
        return _labels_of(parent)[np.asarray(indices, dtype=np.int64)]
    return np.asarray([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)


def validation_split(
    dataset: Any,
    n_val: int | None = None,
    fraction: float | None = None,
    seed: int = 0,
) -> SplitIndices:
    """Split sample indices into train and validation parts, stratified by label.

    ``dataset`` is a dataset with ``targets`` (all spikelfp datasets), a ``Subset`` of one, any
    dataset of ``(x, label)`` pairs, or a sequence of labels. Give the validation size as a
    count ``n_val`` or a ``fraction`` (default 0.1). Each class contributes in proportion to
    its size (largest remainders; ties go to the smaller label), drawn at random with ``seed``:
    the same inputs always give the same split.

    >>> labels = [0] * 8 + [1] * 4
    >>> split = validation_split(labels, n_val=3, seed=0)
    >>> len(split.train), len(split.val), sorted(int(labels[i]) for i in split.val)
    (9, 3, [0, 0, 1])
    >>> bool(np.array_equal(split.val, validation_split(labels, n_val=3, seed=0).val))
    True
    """
    labels = _labels_of(dataset)
    n = len(labels)
    if n_val is not None and fraction is not None:
        raise ValueError("Give either n_val or fraction, not both.")
    if n_val is None:
        fraction = 0.1 if fraction is None else fraction
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must be in (0, 1), got {fraction!r}.")
        n_val = int(round(fraction * n))
    if not isinstance(n_val, (int, np.integer)) or not 0 < n_val < n:
        raise ValueError(
            f"n_val must be an int between 1 and {n - 1} (the dataset has {n} samples), "
            f"got {n_val!r}."
        )
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * (n_val / n)
    take = np.floor(quota).astype(np.int64)
    remainder = quota - take
    order = np.lexsort((classes, -remainder))  # largest remainder first, then smaller label
    for k in order[: n_val - int(take.sum())]:
        take[k] += 1
    rng = np.random.default_rng(seed)
    val: list[np.ndarray] = []
    for cls, k in zip(classes, take, strict=True):
        members = np.flatnonzero(labels == cls)
        val.append(rng.permutation(members)[:k])
    val_idx = np.sort(np.concatenate(val)).astype(np.int64)
    mask = np.ones(n, dtype=bool)
    mask[val_idx] = False
    return SplitIndices(train=np.flatnonzero(mask).astype(np.int64), val=val_idx)
