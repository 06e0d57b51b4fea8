"""Stateless layers that spikelfp adds to torch's: :class:`SumPool2d`.

They live here, outside :mod:`spikelfp.hw_export`, because models, LFP rules and the exporter
all use them (``spikelfp.hw_export.SumPool2d`` is the same class).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SumPool2d"]


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(i) for i in v)
    return v if len(v) == 2 else (v[0], v[0])


class SumPool2d(nn.Module):
    """Sum pooling (what integer hardware does instead of averaging): ``k²·AvgPool2d``.

    Computed exactly (``divisor_override=1``), so integer inputs give integer outputs. LFP
    treats it like average pooling (a linear map with positive weights; the decomposition is
    the same, see :func:`spikelfp.lfp.default_composite`).

    >>> SumPool2d(2)(torch.ones(1, 1, 4, 4))[0, 0].tolist()
    [[4.0, 4.0], [4.0, 4.0]]
    """

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride if stride is not None else kernel_size)
        self.padding = _pair(padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            count_include_pad=True,
            divisor_override=1,
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
