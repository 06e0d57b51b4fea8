r"""Max pooling that remembers each window's arg-max in little memory, and gives reward to it.

:func:`max_pool_argmax` keeps, per output, only the arg-max's offset inside its window, in the
smallest integer type that holds it (``uint8`` for small kernels), instead of torch's ``int64``
index, and not the input at all: the fused native kernel for ordinary 2-d pooling, else torch's
max pooling over chunks of the samples (:func:`~spikelfp._accel.chunking.rows_per_chunk`).
:func:`scatter_to_argmax` rebuilds the indices and scatter-adds the reward like max pooling's
own gradient.

>>> x = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])
>>> y, saved, winners = max_pool_argmax(x, 2, (2, 2), (2, 2), (0, 0), (1, 1), False)
>>> y.flatten().tolist()
[1.0]
>>> scatter_to_argmax(torch.tensor([[[[2.0]]]]), saved, winners).flatten().tolist()
[0.0, 2.0, 0.0, 0.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import _native as native
from . import chunking
from .allocator import empty_large_like

__all__ = ["Winners", "max_pool_argmax", "scatter_to_argmax"]


def _window_starts(out_shape, in_shape, stride, padding, device) -> torch.Tensor:
    """Flat input index (over the spatial dims) at which each output window starts."""
    flat = torch.zeros((), dtype=torch.int64, device=device)
    step = 1
    for o, n, s, p in reversed(list(zip(out_shape, in_shape, stride, padding, strict=True))):
        pos = torch.arange(o, dtype=torch.int64, device=device) * s - p
        flat = flat.unsqueeze(0) + (pos * step).reshape((-1,) + (1,) * flat.dim())
        step *= n
    return flat


def _largest_offset(spatial, kernel, dilation) -> int:
    """The largest flat offset of an element from its window's start."""
    largest, mul = 0, 1
    for n, k, d in reversed(list(zip(spatial, kernel, dilation, strict=True))):
        largest += (k - 1) * d * mul
        mul *= n
    return largest


def _offset_dtype(largest: int) -> torch.dtype:
    for dtype in (torch.uint8, torch.int16, torch.int32):
        if largest <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


def _pool_out_size(size, k, s, p, d, ceil_mode) -> int:
    """Output length of a max-pooling dimension (torch's formula)."""
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _native_pool_shape(xb, dims, kernel, stride, padding, dilation, ceil_mode):
    """The output's spatial shape if the native 2-d kernel applies, else ``None``.

    Unusual or invalid settings go to torch's own max-pooling (and its error messages).
    """
    if dims != 2 or xb.dim() != 4 or not native.usable(xb):
        return None
    if min(stride) < 1 or min(dilation) < 1 or min(kernel) < 1:
        return None
    if any(2 * p > k for p, k in zip(padding, kernel, strict=True)):
        return None
    if _offset_dtype(_largest_offset(xb.shape[2:], kernel, dilation)) != torch.uint8:
        return None
    out = tuple(
        _pool_out_size(n, k, s, p, d, ceil_mode)
        for n, k, s, p, d in zip(xb.shape[2:], kernel, stride, padding, dilation, strict=True)
    )
    return out if min(out) > 0 else None


@dataclass(frozen=True)
class Winners:
    """How to find each window's arg-max again (the tensors travel separately, as ``saved``).

    Attributes:
        in_shape: the pooled input's shape ``(N, C, ...)``.
        native: whether the native kernel pooled (``saved`` is ``(offsets,)``; else
            ``(offsets, window starts)``).
        stride, padding: the windows' geometry (native).
        step: samples per chunk (torch).
    """

    in_shape: tuple
    native: bool
    stride: tuple = ()
    padding: tuple = ()
    step: int = 1


def max_pool_argmax(xb, dims, kernel, stride, padding, dilation, ceil_mode):
    """Max pooling of ``xb`` ``(N, C, ...)`` over ``dims`` spatial dims, keeping the arg-max.

    Args:
        xb: the batched input.
        dims: 1, 2 or 3.
        kernel, stride, padding, dilation: per spatial dim.
        ceil_mode: as in :func:`torch.nn.functional.max_pool2d`.

    Returns:
        ``(y, saved, winners)``: the pooled output, the tensors to save for the backward and a
        :class:`Winners`.
    """
    out_hw = _native_pool_shape(xb, dims, kernel, stride, padding, dilation, ceil_mode)
    if out_hw is not None:
        y, off = native.maxpool2d_forward(
            xb.contiguous(), out_hw, kernel, stride, padding, dilation
        )
        return y, (off,), Winners(tuple(xb.shape), True, stride, padding)
    pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[dims - 1]
    spatial = xb.shape[2:]
    row_bytes = xb[0].numel() * xb.element_size() if xb.shape[0] else 1
    step = chunking.rows_per_chunk(row_bytes, chunking.BUDGET.conv)
    out = off = base = None
    for i in range(0, max(1, xb.shape[0]), step):
        y, idx = pool(xb[i : i + step], kernel, stride, padding, dilation, ceil_mode, True)
        if base is None:
            base = _window_starts(y.shape[2:], spatial, stride, padding, y.device)
            shape = (xb.shape[0], *y.shape[1:])
            out = y if step >= xb.shape[0] else empty_large_like(y, shape)
            largest = _largest_offset(spatial, kernel, dilation)
            off = torch.empty(shape, dtype=_offset_dtype(largest), device=y.device)
        if out is not y:
            out[i : i + step] = y
        torch.sub(idx, base, out=idx)
        off[i : i + step] = idx
    return out, (off, base), Winners(tuple(xb.shape), False, step=step)


def scatter_to_argmax(rho, saved, winners: Winners):
    """The reward ``rho`` on the pooled output, each value added to its window's arg-max.

    Args:
        rho: reward on the output of :func:`max_pool_argmax`.
        saved: its saved tensors.
        winners: its :class:`Winners`.

    Returns:
        The reward on the input, shaped ``winners.in_shape``.
    """
    if winners.native:
        (off,) = saved
        return native.maxpool2d_backward(
            rho, off, winners.in_shape, winners.stride, winners.padding
        )
    off, base = saved
    n, c = winners.in_shape[:2]
    r_in = empty_large_like(rho, (n, c, math.prod(winners.in_shape[2:]))).zero_()
    flat_base = base.reshape(-1)
    for i in range(0, n, winners.step):
        sl = slice(i, i + winners.step)
        idx = off[sl].flatten(2).to(torch.int64).add_(flat_base)
        r_in[sl].scatter_add_(2, idx, rho[sl].flatten(2))
    return r_in.reshape(winners.in_shape)
