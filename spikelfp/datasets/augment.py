r"""Augmentation of spike-frame batches ``(T, B, P, H, W)``, for the training split only.

Each augmentation is a small frozen dataclass called on a batch with a ``torch.Generator``
(the trainer seeds it from the run's seed and epoch, so a resumed run draws the same).
They act on frames, after binning, because the trainer keeps binned frames in memory; each is
the frame form of an event-level transform:

* :class:`RandomShift`: every sample translated by its own integer offset
  :math:`(d_x, d_y) \sim \mathcal{U}\{-s..s\}^2`, pixels shifted out are lost and the new
  border is empty. On events this is exactly translating every event of the recording by
  :math:`(d_x, d_y)` and dropping those that leave the sensor (a ``RandomCrop`` of a padded
  sensor in tonic's terms).
* :class:`DropSpikes`: each non-zero pixel-bin is zeroed with probability ``p``. On binary
  frames this is tonic's ``DropEvent`` applied to the *first* event of each pixel and bin
  (the others were clamped away already).

>>> g = torch.Generator().manual_seed(0)
>>> x = torch.zeros(2, 3, 1, 5, 5); x[:, :, :, 2, 2] = 1
>>> y = RandomShift(1)(x, g)
>>> y.shape == x.shape and bool(y.sum() == x.sum())   # one pixel moved by at most 1
True
>>> make_augmentation({"shift": 2, "drop": 0.1})
Compose(steps=(RandomShift(max_shift=2), DropSpikes(p=0.1)))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["RandomShift", "DropSpikes", "Compose", "make_augmentation"]


@dataclass(frozen=True)
class RandomShift:
    """Translate each sample by a random integer offset of at most ``max_shift`` pixels."""

    max_shift: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.max_shift, bool) or not isinstance(self.max_shift, int):
            raise ValueError(f"RandomShift: max_shift must be an integer, got {self.max_shift!r}")
        if self.max_shift < 0:
            raise ValueError(f"RandomShift: max_shift must be >= 0, got {self.max_shift}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.max_shift == 0 or x.numel() == 0:
            return x
        if x.dim() < 4:
            raise ValueError(f"RandomShift expects frames (T, B, ..., H, W), got {tuple(x.shape)}")
        s = self.max_shift
        b, h, w = x.shape[1], x.shape[-2], x.shape[-1]
        shifts = torch.randint(-s, s + 1, (b, 2), generator=generator).tolist()
        out = torch.zeros_like(x)
        for i, (dy, dx) in enumerate(shifts):
            if abs(dy) >= h or abs(dx) >= w:
                continue
            src = x[:, i, ..., max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
            out[:, i, ..., max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)] = src
        return out


@dataclass(frozen=True)
class DropSpikes:
    """Zero each entry with probability ``p`` (spikes lost by the sensor)."""

    p: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= float(self.p) < 1:
            raise ValueError(f"DropSpikes: p must be in [0, 1), got {self.p!r}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.p == 0 or x.numel() == 0:
            return x
        keep = torch.rand(x.shape, generator=generator, device="cpu") >= self.p
        return x * keep.to(device=x.device, dtype=x.dtype)


@dataclass(frozen=True)
class Compose:
    """Apply ``steps`` in order."""

    steps: tuple[Any, ...] = ()

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for step in self.steps:
            x = step(x, generator)
        return x


_BY_NAME = {"shift": RandomShift, "drop": DropSpikes}


def make_augmentation(settings: dict[str, Any] | None) -> Compose | None:
    """The augmentation a config's ``augment`` mapping describes (``None`` for none)."""
    steps = []
    for name, value in (settings or {}).items():
        if name not in _BY_NAME:
            raise ValueError(f"unknown augmentation {name!r}; choose from {', '.join(_BY_NAME)}")
        if value:
            steps.append(_BY_NAME[name](value))
    return Compose(tuple(steps)) if steps else None
