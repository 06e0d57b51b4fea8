r"""Work over the ``T·B`` samples in chunks: one chunk-size policy, and the chunked kernels.

Sequence-level LFP applies a synapse to all ``T·B`` samples at once. Done in one call, the
backward would form full-size temporaries (the normalised reward ``n = ρ / z'``, a convolution's
scratch), and on CPU fresh large allocations cost page faults. Done in chunks written into one
preallocated output, the peak memory is the inputs and outputs only.

**One policy**, :func:`rows_per_chunk`: a chunk holds as many samples (rows) as fit into a byte
budget, at least ``minimum``. The budgets, per kind of work, are in :data:`BUDGET`
(:class:`ChunkBytes`). Chunking never changes a result's bits where a sample's values do not
depend on the others (convolution forward, pooling); where chunks are summed (a weight's
feedback ``Σ nᵀ x``), the summation order is that of the chunks, so a budget is part of the
numbers and is changed only together with the golden tests.

>>> rows_per_chunk(row_bytes=1000, budget=10_000)
10
>>> rows_per_chunk(row_bytes=1000, budget=10_000, minimum=64)
64
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .allocator import empty_large_like
from .dispatch import divide

__all__ = [
    "ChunkBytes",
    "BUDGET",
    "rows_per_chunk",
    "ConvSpec",
    "conv_forward",
    "conv_forward_chunked",
    "linear_backward_chunked",
    "conv_backward_chunked",
    "CHUNKED_MODULES",
    "apply_chunked",
]


@dataclass(frozen=True)
class ChunkBytes:
    """Bytes of one chunk, per kind of work (the sizes :func:`rows_per_chunk` divides).

    Attributes:
        conv: convolutions (forward and the rule's backward) and max pooling, in output (or,
            for pooling, input) bytes: large enough for oneDNN to run at full speed (2 MiB
            chunks were 15-35 % slower on the benchmark net's layers), small enough that no
            full-size scratch tensor is allocated.
        rows: the ``n = ρ / z'`` of one chunk of a Linear rule's backward (at least 256 rows).
        inference: a convolution applied without autograd by
            :func:`~spikelfp.sequential.apply_over_time`, in output bytes.
    """

    conv: int = 1 << 23
    rows: int = 1 << 20
    inference: int = 1 << 21


#: the budgets in use (tests replace it to force small chunks)
BUDGET = ChunkBytes()


def rows_per_chunk(row_bytes: int, budget: int, minimum: int = 1) -> int:
    r"""Samples per chunk: :math:`\max(\text{minimum}, \lfloor \text{budget} /
    \max(1, \text{row\_bytes}) \rfloor)`.

    Args:
        row_bytes: bytes of one sample of the tensor the budget is about.
        budget: bytes of one chunk (a field of :data:`BUDGET`).
        minimum: the fewest samples in a chunk.

    Returns:
        The number of samples (rows) in a chunk.
    """
    return max(minimum, budget // max(1, row_bytes))


@dataclass(frozen=True)
class ConvSpec:
    """A convolution's geometry (numeric zero padding)."""

    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int


def conv_forward(x, weight, bias, c: ConvSpec):
    """The convolution ``x ⋆ weight + bias`` (``torch.ops.aten.convolution``)."""
    return torch.ops.aten.convolution(
        x, weight, bias, c.stride, c.padding, c.dilation, False, [0] * len(c.stride), c.groups
    )


def _conv_rows(x: torch.Tensor, per_sample_out: int) -> int:
    """Samples per chunk of a convolution: all of them unless ``x`` is contiguous on the CPU."""
    if x.device.type != "cpu" or not x.is_contiguous():
        return x.shape[0]
    return rows_per_chunk(per_sample_out * x.element_size(), BUDGET.conv)


def conv_forward_chunked(x, weight, bias, c: ConvSpec):
    """:func:`conv_forward` over the samples in chunks written into one output tensor.

    Args:
        x: ``(N, C_in, ...)`` input.
        weight, bias: the convolution's parameters (``bias`` may be ``None``).
        c: its geometry.

    Returns:
        ``(N, C_out, ...)``, the same values as :func:`conv_forward`.
    """
    spatial = [
        (size + 2 * p - d * (k - 1) - 1) // s + 1
        for size, k, s, p, d in zip(
            x.shape[2:], weight.shape[2:], c.stride, c.padding, c.dilation, strict=True
        )
    ]
    shape = (x.shape[0], weight.shape[0], *spatial)
    step = _conv_rows(x, math.prod(shape[1:]))
    if step >= x.shape[0] or min(spatial, default=1) <= 0:
        return conv_forward(x, weight, bias, c)
    out = empty_large_like(x, shape)
    for i in range(0, x.shape[0], step):
        out[i : i + step] = conv_forward(x[i : i + step], weight, bias, c)
    return out


def linear_backward_chunked(rho, x, w2, zmod, epsilon, need_x, need_w, need_b):
    r"""The ε-rule's sums for a Linear layer, over row chunks of the ``T·B·...`` samples.

    Per chunk: :math:`n = \rho / (z' + \varepsilon\,\mathrm{sign}(z'))` (:func:`divide`),
    :math:`r = x \odot (n W')` written into one output, :math:`\sum n^\top x` and
    :math:`\sum n` accumulated. The full-size ``n`` is never formed.

    Args:
        rho: reward on the output, ``(..., n_out)``.
        x: the input, ``(..., n_in)``.
        w2: the rule's weights :math:`W'`, ``(n_out, n_in)``.
        zmod: :math:`z' = x W'^\top + b'`, shaped like ``rho``.
        epsilon: the stabiliser ε.
        need_x, need_w, need_b: which of the three results to compute.

    Returns:
        ``(r, Σ nᵀ x, Σ n)``, each ``None`` where not needed; ``Σ n`` has the bias' shape.
    """
    n_out, n_in = w2.shape
    rho2, z2, x2 = rho.reshape(-1, n_out), zmod.reshape(-1, n_out), x.reshape(-1, n_in)
    rows = x2.shape[0]
    step = rows_per_chunk(n_out * rho2.element_size(), BUDGET.rows, minimum=256)
    r_in = empty_large_like(x2) if need_x else None
    gw = x2.new_zeros((n_out, n_in)) if need_w else None
    gb = x2.new_zeros((n_out,)) if need_b else None
    for i in range(0, rows, step):
        sl = slice(i, i + step)
        n = divide(rho2[sl], z2[sl], epsilon)
        if need_x:
            torch.mm(n, w2, out=r_in[sl]).mul_(x2[sl])
        if need_w:
            gw.addmm_(n.t(), x2[sl])
        if need_b:
            gb.add_(n.sum(0))
    return (r_in.reshape(x.shape) if need_x else None), gw, gb


def conv_backward_chunked(rho, x, w2, zmod, c: ConvSpec, epsilon, need_x, need_w, need_b):
    r"""The ε-rule's sums for a convolution, chunk by chunk of the samples.

    Per chunk: :math:`n = \rho / (z' + \varepsilon\,\mathrm{sign}(z'))`, one
    ``convolution_backward`` for :math:`W'^\top n` and :math:`n \star x`, and
    :math:`r = x \odot (W'^\top n)`; the weight and bias sums are accumulated over chunks.

    Args:
        rho: reward on the output, ``(N, C_out, ...)``.
        x: the input, ``(N, C_in, ...)``.
        w2: the rule's weights :math:`W'`.
        zmod: :math:`z' = x \star W' + b'`, shaped like ``rho``.
        c: the convolution's geometry.
        epsilon: the stabiliser ε.
        need_x, need_w, need_b: which of the three results to compute.

    Returns:
        ``(r, Σ n ⋆ x, Σ n)``, each ``None`` where not needed; ``Σ n`` is per output channel.
    """
    total = x.shape[0]
    step = _conv_rows(x, zmod[0].numel()) if total else 1
    r_in = empty_large_like(x) if need_x and step < total else None
    gw = gb = gi_full = None
    for i in range(0, total, step):
        sl = slice(i, i + step)
        n = divide(rho[sl], zmod[sl], epsilon)
        gi, gw_c, _ = torch.ops.aten.convolution_backward(
            n,
            x[sl],
            w2,
            None,
            c.stride,
            c.padding,
            c.dilation,
            False,
            [0] * len(c.stride),
            c.groups,
            [need_x, need_w, False],
        )
        if need_x:
            if r_in is None:
                gi_full = x[sl] * gi
            else:
                torch.mul(x[sl], gi, out=r_in[sl])
        if need_w:
            gw = gw_c if gw is None else gw.add_(gw_c)
        if need_b:
            per_channel = n.movedim(1, -1)
            gb_c = per_channel.sum(dim=tuple(range(per_channel.dim() - 1)))
            gb = gb_c if gb is None else gb.add_(gb_c)
    return (r_in if gi_full is None else gi_full), gw, gb


#: the modules :func:`apply_chunked` runs in chunks
CHUNKED_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def apply_chunked(module: nn.Module, flat: torch.Tensor, step: int) -> torch.Tensor:
    """``module(flat)`` over chunks of at least ``step`` samples, without autograd.

    A large single call spends much of its time in fresh full-size buffers (page faults) and
    out-of-cache reorders; the chunks are written into one preallocated output. Results are
    identical.

    Args:
        module: a stateless module applied sample by sample (a convolution).
        flat: its input, ``(N, ...)``.
        step: the first chunk's size and the fewest samples in a chunk.

    Returns:
        ``module(flat)``.
    """
    first = module(flat[:step])
    per_sample = first[0].numel() * first.element_size()
    step = rows_per_chunk(per_sample, BUDGET.inference, minimum=step)
    if step >= flat.shape[0]:
        return module(flat)
    out = first.new_empty((flat.shape[0], *first.shape[1:]))
    out[: first.shape[0]] = first
    for i in range(first.shape[0], flat.shape[0], step):
        out[i : i + step] = module(flat[i : i + step])
    return out
