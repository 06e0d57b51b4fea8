"""Stateless layers that spikelfp adds to torch's: :class:`SumPool2d` and
:class:`SequenceDropout`.

They live here, outside :mod:`spikelfp.hw_export`, because models, LFP rules and the exporter
all use them (``spikelfp.hw_export.SumPool2d`` is the same class).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SequenceDropout", "SumPool2d"]


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


class SequenceDropout(nn.Dropout):
    r"""Dropout with one mask per sample for the whole sequence (SpikingJelly's convention).

    ``x: (T, B, ...)``. In training, each unit of each sample is kept with probability
    ``1 − p`` for *all* ``T`` steps, and the kept units are scaled by ``1/(1 − p)``:

    .. math:: y_t = \frac{x_t \odot m}{1 - p}, \qquad m_{b,i} \sim \mathrm{Bernoulli}(1 - p)

    ``nn.Dropout`` applied to ``(T·B, ...)`` would draw a new mask at every step, which only
    adds noise to a spike train; a mask that holds over the sequence drops the unit, as dropout
    does in a non-spiking network. In eval mode it is the identity, and the exporters remove
    it (it is an ``nn.Dropout``). :class:`spikelfp.Sequential` hands it the time-first tensor
    (:func:`spikelfp.sequential.apply_over_time`); under LFP the reward of a dropped unit is
    zero and a kept unit passes its reward on unscaled (:class:`spikelfp.lfp.DropoutRule`).
    Online LFP (``--online-window``) draws a new mask per window.

    >>> torch.manual_seed(0) and None
    >>> y = SequenceDropout(0.5)(torch.ones(4, 2, 6))
    >>> bool((y == y[0]).all())  # the same units dropped at every step
    True
    >>> sorted(set(y.flatten().tolist()))
    [0.0, 2.0]
    """

    def __init__(self, p: float = 0.5):
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise ValueError(f"SequenceDropout: p must be a probability in [0, 1), got {p!r}")
        super().__init__(float(p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.dim() < 3:
            raise ValueError(
                f"SequenceDropout expects a time-first tensor (T, B, ...), got shape "
                f"{tuple(x.shape)}"
            )
        keep = torch.rand((1, *x.shape[1:]), dtype=x.dtype, device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1 - self.p)
