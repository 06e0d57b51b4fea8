r"""LFP rules for synapses: Linear, Conv1d/2d/3d, average pooling, batch norm, dropout.

The signal that flows backwards between modules is **reward**: for a tensor of activations it
holds each element's share of the output reward. For a synapse :math:`z_j = \sum_i w_{ji} x_i
+ b_j` receiving reward :math:`\rho_j` on its output, the rules compute (``w'``, ``b'`` are the
weights the rule uses: ε: :math:`w' = w`; z⁺: :math:`w' = w^+`; γ: :math:`w' = w + \gamma w^+`)::

    z'_j    = Σ_i w'_ji x_i + b'_j
    n_j     = ρ_j / (z'_j + ε sign(z'_j))                (ε = 0: n_j = 0 where z'_j = 0)
    r_i     = x_i Σ_j w'_ji n_j                          reward to the input
    F(w_ji) = |w'_ji| x_i n_j                            feedback (share / sign(w))
    F(b_j)  = |b'_j| n_j

summed over all time steps and batch elements in **one** matmul (or one conv backward).
The ε-rule conserves reward: ``Σ_j ρ_j = Σ_i r_i + Σ_j b_j n_j + Σ_j ε sign(z_j) n_j``.

When the synapse feeds a spiking neuron, the neuron's rule already normalises the reward by
its own (ε-stabilised) denominator and hands on ``ρ_j = n_j z_j``; the synapse then uses
ε = 0, which recovers ``n_j`` exactly (this is lfprop's LIF rule, see ``docs/lfp_rules.md``).

Parameter gradients are set to ``-F`` so that any torch optimiser's descent step is an ascent
on the reward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import _native as native
from ..allocator import empty_large_like
from ._tensor import stabilized_divide, sum_to

__all__ = [
    "EpsilonRule",
    "ZPlusRule",
    "GammaRule",
    "AvgPoolRule",
    "MaxPoolRule",
    "BatchNormRule",
    "DropoutRule",
]


def _divide(num: torch.Tensor, den: torch.Tensor, epsilon: float) -> torch.Tensor:
    """:func:`stabilized_divide` with fewer full-size temporaries (same values)."""
    if num.shape != den.shape or num.dtype != den.dtype:
        return stabilized_divide(num, den, epsilon)
    if native.usable(num, den):
        return native.divide(num, den, epsilon)
    if epsilon == 0:
        return torch.div(num, den).masked_fill_(den == 0, 0)
    return num / torch.where(den >= 0, den + epsilon, den - epsilon)


def _modified(w: torch.Tensor | None, mode: str, gamma: float) -> torch.Tensor | None:
    if w is None or mode == "epsilon":
        return w
    if mode == "zplus":
        return w.clamp(min=0)
    return w + gamma * w.clamp(min=0)


class _SynapseLFP(torch.autograd.Function):
    """Forward: the layer. Backward: the ε / z⁺ / γ decomposition (see module docstring)."""

    @staticmethod
    def forward(ctx, x, weight, bias, conv, epsilon, mode, gamma):
        if conv is None:
            z = F.linear(x, weight, bias)
        else:
            z = _conv_chunked(x, weight, bias, conv)
        if mode == "epsilon":
            zmod = z
        else:
            w2, b2 = _modified(weight, mode, gamma), _modified(bias, mode, gamma)
            zmod = F.linear(x, w2, b2) if conv is None else _conv_chunked(x, w2, b2, conv)
        ctx.save_for_backward(x, weight, bias, zmod)
        ctx.conv, ctx.epsilon, ctx.mode, ctx.gamma = conv, epsilon, mode, gamma
        return z

    @staticmethod
    def backward(ctx, rho):
        x, weight, bias, zmod = ctx.saved_tensors
        w2 = _modified(weight, ctx.mode, ctx.gamma)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        need_b = need_b and bias is not None
        r_in = grad_w = grad_b = None
        if ctx.conv is None:
            r_in, gw, grad_b = _linear_backward_chunked(
                rho, x, w2, zmod, ctx.epsilon, need_x, need_w, need_b
            )
            if need_w:
                grad_w = gw.mul_(w2.abs()).neg_()
        else:
            r_in, gw, grad_b = _conv_backward_chunked(
                rho, x, w2, zmod, ctx.conv, ctx.epsilon, need_x, need_w, need_b
            )
            if need_w:
                grad_w = gw.mul_(w2.abs()).neg_()
        if need_b:
            grad_b = -(_modified(bias, ctx.mode, ctx.gamma).abs() * grad_b)
        return r_in, grad_w, grad_b, None, None, None, None


# Rows of a Linear's T·B samples are decomposed in chunks of about this many bytes of ``n``:
# the full-size ``n = ρ / z'`` is never formed (the backward's peak memory is ρ, z' and x).
_ROW_CHUNK_BYTES = 1 << 20


def _linear_backward_chunked(rho, x, w2, zmod, epsilon, need_x, need_w, need_b):
    """ε-rule backward of a Linear layer over row chunks of the ``T·B·...`` samples.

    Per chunk: ``n = ρ / z'`` (stabilised), ``r_in = x · (n W')`` written into one output,
    ``Σ nᵀ x`` and ``Σ n`` accumulated. Returns ``(r_in, Σ nᵀ x, Σ n)`` (``None`` where not
    needed); ``Σ n`` has the shape of the bias.
    """
    n_out, n_in = w2.shape
    rho2, z2, x2 = rho.reshape(-1, n_out), zmod.reshape(-1, n_out), x.reshape(-1, n_in)
    rows = x2.shape[0]
    step = max(256, _ROW_CHUNK_BYTES // max(1, n_out * rho2.element_size()))
    r_in = empty_large_like(x2) if need_x else None
    gw = x2.new_zeros((n_out, n_in)) if need_w else None
    gb = x2.new_zeros((n_out,)) if need_b else None
    for i in range(0, rows, step):
        sl = slice(i, i + step)
        n = _divide(rho2[sl], z2[sl], epsilon)
        if need_x:
            torch.mm(n, w2, out=r_in[sl]).mul_(x2[sl])
        if need_w:
            gw.addmm_(n.t(), x2[sl])
        if need_b:
            gb.add_(n.sum(0))
    return (r_in.reshape(x.shape) if need_x else None), gw, gb


# Convolutions over all T·B samples run in chunks of about this many output bytes: large
# enough for oneDNN to run at full speed (2 MiB chunks were 15-35 % slower on the benchmark
# net's layers), small enough that no full-size scratch tensor is allocated (on CPU, fresh
# large allocations cost page faults).
_CHUNK_BYTES = 1 << 23


def _chunk_size(x: torch.Tensor, per_sample_out: int) -> int:
    if x.device.type != "cpu" or not x.is_contiguous():
        return x.shape[0]
    return max(1, _CHUNK_BYTES // max(1, per_sample_out * x.element_size()))


def _conv_chunked(x, weight, bias, c):
    """``_conv_forward`` over the batch in chunks written into one output tensor."""
    spatial = [
        (size + 2 * p - d * (k - 1) - 1) // s + 1
        for size, k, s, p, d in zip(
            x.shape[2:], weight.shape[2:], c.stride, c.padding, c.dilation, strict=True
        )
    ]
    shape = (x.shape[0], weight.shape[0], *spatial)
    step = _chunk_size(x, math.prod(shape[1:]))
    if step >= x.shape[0] or min(spatial, default=1) <= 0:
        return _conv_forward(x, weight, bias, c)
    out = empty_large_like(x, shape)
    for i in range(0, x.shape[0], step):
        out[i : i + step] = _conv_forward(x[i : i + step], weight, bias, c)
    return out


def _conv_backward_chunked(rho, x, w2, zmod, c, epsilon, need_x, need_w, need_b):
    """ε-rule backward of a convolution, chunk by chunk.

    Per chunk: ``n = ρ / z'`` (stabilised), one ``convolution_backward`` for the input and
    weight parts, ``r_in = x · (W'^T n)``; the weight and bias feedback are summed over chunks.
    Returns ``(r_in, Σ n ⋆ x, Σ n)`` (``None`` where not needed).
    """
    total = x.shape[0]
    step = _chunk_size(x, zmod[0].numel()) if total else 1
    r_in = empty_large_like(x) if need_x and step < total else None
    gw = gb = gi_full = None
    for i in range(0, total, step):
        sl = slice(i, i + step)
        n = _divide(rho[sl], zmod[sl], epsilon)
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
            gb_c = sum_to(n.movedim(1, -1), (n.shape[1],))
            gb = gb_c if gb is None else gb.add_(gb_c)
    return (r_in if gi_full is None else gi_full), gw, gb


@dataclass(frozen=True)
class _ConvSpec:
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int


def _conv_spec(module: nn.Module) -> _ConvSpec:
    if isinstance(module.padding, str) or module.padding_mode != "zeros":
        raise ValueError(
            f"{type(module).__name__} with padding={module.padding!r}, padding_mode="
            f"{module.padding_mode!r} is not supported by the LFP rules; use numeric zero padding"
        )
    return _ConvSpec(
        tuple(module.stride), tuple(module.padding), tuple(module.dilation), module.groups
    )


def _conv_forward(x, weight, bias, c: _ConvSpec):
    return torch.ops.aten.convolution(
        x, weight, bias, c.stride, c.padding, c.dilation, False, [0] * len(c.stride), c.groups
    )


class _SynapseRule:
    mode = "epsilon"

    def __init__(self, epsilon: float = 0.0, gamma: float = 0.25):
        if epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        self.epsilon = float(epsilon)
        self.gamma = float(gamma)

    def forward(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if isinstance(module, nn.Linear):
            conv = None
            if x.shape[-1] != module.in_features:
                raise ValueError(
                    f"Linear(in_features={module.in_features}) got input of shape "
                    f"{tuple(x.shape)}; the last dimension must be {module.in_features}"
                )
        elif isinstance(module, nn.modules.conv._ConvNd) and not module.transposed:
            conv = _conv_spec(module)
            if x.dim() != len(conv.stride) + 2 or x.shape[1] != module.in_channels:
                raise ValueError(
                    f"{type(module).__name__}(in_channels={module.in_channels}) got input of "
                    f"shape {tuple(x.shape)}; expected (T*B, {module.in_channels}, ...)"
                )
        else:
            raise TypeError(f"{type(self).__name__} handles Linear and ConvNd, not {module}")
        return _SynapseLFP.apply(
            x, module.weight, module.bias, conv, self.epsilon, self.mode, self.gamma
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(epsilon={self.epsilon})"


class EpsilonRule(_SynapseRule):
    r"""LFP-ε for Linear / ConvNd: :math:`n = \rho/(z + \varepsilon\,\mathrm{sign}(z))`.

    >>> lin = nn.Linear(3, 2)
    >>> x = torch.rand(4, 3, requires_grad=True)
    >>> z = EpsilonRule(epsilon=1e-6).forward(lin, x)
    >>> z.backward(torch.ones_like(z))   # reward 1 on every output
    >>> lin.weight.grad.shape             # -feedback
    torch.Size([2, 3])
    """

    mode = "epsilon"


class ZPlusRule(_SynapseRule):
    r"""LFP-z⁺: only excitatory contributions (:math:`w^+`, :math:`b^+`) share the reward."""

    mode = "zplus"


class GammaRule(_SynapseRule):
    r"""LFP-γ: :math:`w' = w + \gamma w^+` favours excitatory contributions."""

    mode = "gamma"

    def __repr__(self) -> str:
        return f"GammaRule(gamma={self.gamma}, epsilon={self.epsilon})"


class _LinearMapLFP(torch.autograd.Function):
    """ε-rule for a parameter-free linear map ``f`` (average pooling)."""

    @staticmethod
    def forward(ctx, x, fn, epsilon):
        z = fn(x)
        ctx.save_for_backward(x, z)
        ctx.fn, ctx.epsilon = fn, epsilon
        return z

    @staticmethod
    def backward(ctx, rho):
        x, z = ctx.saved_tensors
        n = stabilized_divide(rho, z, ctx.epsilon)
        with torch.enable_grad():
            xd = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(ctx.fn(xd), xd, n)
        return x * g, None, None


class AvgPoolRule:
    """ε-rule for average pooling (a linear map with fixed positive weights)."""

    def __init__(self, epsilon: float = 0.0):
        self.epsilon = float(epsilon)

    def forward(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return _LinearMapLFP.apply(x, type(module).forward.__get__(module), self.epsilon)


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


class _MaxPoolLFP(torch.autograd.Function):
    """Max-pooling whose backward scatters the reward to each window's arg-max.

    The forward keeps, per output, only the arg-max's offset inside its window in the smallest
    integer type that holds it (``uint8`` for small kernels) instead of torch's ``int64``
    index, and not the input at all; the backward rebuilds the indices and scatter-adds the
    reward like max-pooling's own gradient.
    """

    @staticmethod
    def forward(ctx, x, dims, kernel, stride, padding, dilation, ceil_mode):
        pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[dims - 1]
        unbatched = x.dim() == dims + 1
        xb = x.unsqueeze(0) if unbatched else x
        spatial = xb.shape[2:]
        out_hw = _native_pool_shape(xb, dims, kernel, stride, padding, dilation, ceil_mode)
        ctx.in_shape, ctx.unbatched, ctx.native = tuple(xb.shape), unbatched, out_hw is not None
        if ctx.native:
            y, off = native.maxpool2d_forward(
                xb.contiguous(), out_hw, kernel, stride, padding, dilation
            )
            ctx.save_for_backward(off)
            ctx.window = (stride, padding)
            return y.squeeze(0) if unbatched else y
        per_sample = max(1, xb[0].numel() * xb.element_size()) if xb.shape[0] else 1
        step = max(1, _CHUNK_BYTES // per_sample)
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
        y = out
        ctx.save_for_backward(off, base)
        ctx.step = step
        return y.squeeze(0) if unbatched else y

    @staticmethod
    def backward(ctx, rho):
        rho = rho.unsqueeze(0) if ctx.unbatched else rho
        if ctx.native:
            (off,) = ctx.saved_tensors
            r_in = native.maxpool2d_backward(rho, off, ctx.in_shape, *ctx.window)
            return (r_in.squeeze(0) if ctx.unbatched else r_in), None, None, None, None, None, None
        off, base = ctx.saved_tensors
        n, c = ctx.in_shape[:2]
        r_in = empty_large_like(rho, (n, c, math.prod(ctx.in_shape[2:]))).zero_()
        flat_base = base.reshape(-1)
        for i in range(0, n, ctx.step):
            sl = slice(i, i + ctx.step)
            idx = off[sl].flatten(2).to(torch.int64).add_(flat_base)
            r_in[sl].scatter_add_(2, idx, rho[sl].flatten(2))
        r_in = r_in.reshape(ctx.in_shape)
        return (r_in.squeeze(0) if ctx.unbatched else r_in), None, None, None, None, None, None


_MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)


def _tuple(v, dims: int) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * dims


class MaxPoolRule:
    """Max-pooling (1d/2d/3d): the reward of a window goes to its arg-max (winner takes all).

    Identical to max-pooling's ordinary gradient, with less memory: the input is not kept, and
    the arg-max of each window is kept as a small offset (``uint8`` for small kernels) rather
    than an ``int64`` index.

    >>> pool = nn.MaxPool2d(2)
    >>> x = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]], requires_grad=True)
    >>> MaxPoolRule().forward(pool, x).backward(torch.tensor([[[[2.0]]]]))
    >>> x.grad.tolist()   # the first maximum (row-major) gets the whole reward
    [[[[0.0, 2.0], [0.0, 0.0]]]]
    """

    def forward(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        dims = next((d for d, cls in enumerate(_MAX_POOLS, 1) if isinstance(module, cls)), None)
        if dims is None:
            raise TypeError(f"MaxPoolRule handles MaxPool1d/2d/3d, not {module}")
        if module.return_indices:
            return type(module).forward(module, x)
        if x.dim() not in (dims + 1, dims + 2):
            raise ValueError(
                f"{type(module).__name__} expects a {dims + 1}-D or {dims + 2}-D input "
                f"((N, C, ...) with {dims} spatial dims), got shape {tuple(x.shape)}"
            )
        kernel = _tuple(module.kernel_size, dims)
        stride = _tuple(module.stride if module.stride is not None else kernel, dims)
        return _MaxPoolLFP.apply(
            x,
            dims,
            kernel,
            stride,
            _tuple(module.padding, dims),
            _tuple(module.dilation, dims),
            module.ceil_mode,
        )

    def __repr__(self) -> str:
        return "MaxPoolRule()"


class _BatchNormLFP(torch.autograd.Function):
    """ε-rule for ``y = a x + c`` with the statistics of this forward pass held constant."""

    @staticmethod
    def forward(ctx, x, weight, bias, mean, inv_std, epsilon):
        shape = (1, -1) + (1,) * (x.dim() - 2)
        xhat = (x - mean.reshape(shape)) * inv_std.reshape(shape)
        y = xhat
        if weight is not None:
            y = xhat * weight.reshape(shape)
        if bias is not None:
            y = y + bias.reshape(shape)
        ctx.save_for_backward(x, xhat, y, weight, bias, inv_std)
        ctx.epsilon, ctx.shape = epsilon, shape
        return y

    @staticmethod
    def backward(ctx, rho):
        x, xhat, y, weight, bias, inv_std = ctx.saved_tensors
        n = stabilized_divide(rho, y, ctx.epsilon)
        a = inv_std if weight is None else weight * inv_std
        r_in = x * a.reshape(ctx.shape) * n
        gw = gb = None
        per_channel = n.movedim(1, -1)
        if weight is not None and ctx.needs_input_grad[1]:
            gw = -(weight.abs() * sum_to(xhat.movedim(1, -1) * per_channel, weight.shape))
        if bias is not None and ctx.needs_input_grad[2]:
            gb = -(bias.abs() * sum_to(per_channel, bias.shape))
        return r_in, gw, gb, None, None, None


class BatchNormRule:
    r"""ε-rule for BatchNorm1d/2d/3d as the affine map :math:`y = a x + c` of this pass.

    In training mode the batch statistics are used (and the running statistics updated as
    usual); the statistics are treated as constants in the decomposition.
    """

    def __init__(self, epsilon: float = 1e-6):
        self.epsilon = float(epsilon)

    def forward(self, module: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
        dims = [0] + list(range(2, x.dim()))
        use_batch = module.training or module.running_mean is None
        if use_batch:
            with torch.no_grad():
                mean = x.mean(dim=dims)
                var = x.var(dim=dims, unbiased=False)
                if module.training and module.running_mean is not None:
                    # The running statistics are updated exactly as nn.BatchNorm's forward does.
                    module.num_batches_tracked += 1
                    momentum = module.momentum
                    if momentum is None:  # cumulative moving average
                        momentum = 1.0 / float(module.num_batches_tracked)
                    F.batch_norm(
                        x,
                        module.running_mean,
                        module.running_var,
                        None,
                        None,
                        True,
                        momentum,
                        module.eps,
                    )
        else:
            mean, var = module.running_mean, module.running_var
        inv_std = torch.rsqrt(var + module.eps)
        return _BatchNormLFP.apply(x, module.weight, module.bias, mean, inv_std, self.epsilon)


class _DropoutLFP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p, channelwise):
        shape = x.shape[:2] + (1,) * (x.dim() - 2) if channelwise else x.shape
        keep = (torch.rand(shape, dtype=x.dtype, device=x.device) >= p).to(x.dtype)
        ctx.save_for_backward(keep)
        return x * keep / (1 - p)

    @staticmethod
    def backward(ctx, r):
        (keep,) = ctx.saved_tensors
        return r * keep, None, None


class DropoutRule:
    """Dropout: reward passes to the kept units unscaled (their full contribution)."""

    def forward(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if not module.training or module.p == 0:
            return x
        if module.p >= 1:
            return x * 0
        channelwise = isinstance(module, (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d))
        return _DropoutLFP.apply(x, module.p, channelwise)
