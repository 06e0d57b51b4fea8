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

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .. import _accel as accel
from .._accel import sparse as accel_sparse
from ..layers import SequenceDropout
from ._tensor import stabilized_divide, sum_to
from .rules import nonnegative

__all__ = [
    "EpsilonRule",
    "ZPlusRule",
    "GammaRule",
    "AvgPoolRule",
    "MaxPoolRule",
    "BatchNormRule",
    "DropoutRule",
]


def _modified(w: torch.Tensor | None, mode: str, gamma: float) -> torch.Tensor | None:
    if w is None or mode == "epsilon":
        return w
    if mode == "zplus":
        return w.clamp(min=0)
    return w + gamma * w.clamp(min=0)


def _affine(x, w, b, conv):
    """``z = x W^T + b`` (Linear) or ``z = x ⋆ W + b`` (convolution, over chunks of samples)."""
    return F.linear(x, w, b) if conv is None else accel.conv_forward_chunked(x, w, b, conv)


def _outputs(x, weight, bias, conv, mode, gamma):
    """``(z, z')``: the layer's output and the rule's :math:`z' = \\sum_i w'_{ji} x_i + b'_j`
    (the same tensor for ε). ``x`` may be a CSR matrix of events (Linear only)."""
    z = _affine(x, weight, bias, conv)
    if mode == "epsilon":
        return z, z
    return z, _affine(x, _modified(weight, mode, gamma), _modified(bias, mode, gamma), conv)


def _parameter_feedback(nx, n_sum, w2, b2):
    """``(-F(w), -F(b))`` from the sums :math:`\\sum x_i n_j` and :math:`\\sum n_j` and the
    rule's weights ``w2`` :math:`= w'`, ``b2`` :math:`= b'`: :math:`F(w_{ji}) = |w'_{ji}|
    \\sum x_i n_j`, :math:`F(b_j) = |b'_j| \\sum n_j` (``None`` where the sum was not
    computed)."""
    grad_w = None if nx is None else nx.mul_(w2.abs()).neg_()
    grad_b = None if n_sum is None else -(b2.abs() * n_sum)
    return grad_w, grad_b


class _SynapseLFP(torch.autograd.Function):
    """Forward: the layer. Backward: the ε / z⁺ / γ decomposition (see module docstring)."""

    @staticmethod
    def forward(ctx, x, weight, bias, conv, epsilon, mode, gamma):
        z, zmod = _outputs(x, weight, bias, conv, mode, gamma)
        ctx.save_for_backward(x, weight, bias, zmod)
        ctx.conv, ctx.epsilon, ctx.mode, ctx.gamma = conv, epsilon, mode, gamma
        return z

    @staticmethod
    def backward(ctx, rho):
        x, weight, bias, zmod = ctx.saved_tensors
        w2 = _modified(weight, ctx.mode, ctx.gamma)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        need_b = need_b and bias is not None
        # n_j = ρ_j / (z'_j + ε sign(z'_j)); r_i = x_i Σ_j w'_ji n_j, Σ n_j x_i and Σ n_j over
        # all T·B samples (in chunks: the full-size n is never formed)
        if ctx.conv is None:
            r_in, nx, n_sum = accel.linear_backward_chunked(
                rho, x, w2, zmod, ctx.epsilon, need_x, need_w, need_b
            )
        else:
            r_in, nx, n_sum = accel.conv_backward_chunked(
                rho, x, w2, zmod, ctx.conv, ctx.epsilon, need_x, need_w, need_b
            )
        b2 = _modified(bias, ctx.mode, ctx.gamma)
        grad_w, grad_b = _parameter_feedback(nx, n_sum, w2, b2)
        return r_in, grad_w, grad_b, None, None, None, None


class _EventLinearLFP(torch.autograd.Function):
    """:class:`_SynapseLFP` for a Linear whose input is a CSR matrix of events (rows ``T·B``).

    The same sums from the non-zeros only: ``z = X W^T + b`` and ``Σ n^T x = (X^T n)^T``
    (:mod:`spikelfp._accel.sparse`). The input is data, so no reward is sent to it."""

    @staticmethod
    def forward(ctx, x, weight, bias, epsilon, mode, gamma):
        z, zmod = _outputs(x, weight, bias, None, mode, gamma)
        ctx.save_for_backward(weight, bias, zmod)
        ctx.x = x  # the sparse input (kept by the context, as a saved tensor would be)
        ctx.epsilon, ctx.mode, ctx.gamma = epsilon, mode, gamma
        return z

    @staticmethod
    def backward(ctx, rho):
        weight, bias, zmod = ctx.saved_tensors
        need_w, need_b = ctx.needs_input_grad[1], ctx.needs_input_grad[2] and bias is not None
        n = accel.divide(rho.contiguous(), zmod, ctx.epsilon)  # n_j = ρ_j / (z'_j + ε sign z'_j)
        nx = accel_sparse.csr_weight_sum(ctx.x, n) if need_w else None
        w2, b2 = (_modified(t, ctx.mode, ctx.gamma) for t in (weight, bias))
        grad_w, grad_b = _parameter_feedback(nx, n.sum(0) if need_b else None, w2, b2)
        del ctx.x
        return None, grad_w, grad_b, None, None, None


def _conv_spec(module: nn.Module) -> accel.ConvSpec:
    if isinstance(module.padding, str) or module.padding_mode != "zeros":
        raise ValueError(
            f"{type(module).__name__} with padding={module.padding!r}, padding_mode="
            f"{module.padding_mode!r} is not supported by the LFP rules; use numeric zero padding"
        )
    return accel.ConvSpec(
        tuple(module.stride), tuple(module.padding), tuple(module.dilation), module.groups
    )


@dataclass(frozen=True)
class _SynapseRule:
    r"""Shared forward of the Linear/ConvNd rules (a frozen dataclass; see
    :class:`~spikelfp.lfp.Rule`).

    Args:
        epsilon: the stabiliser :math:`\varepsilon \ge 0` of the division by :math:`z'`.
    """

    epsilon: float = 0.0
    #: which weights share the reward: "epsilon" (w), "zplus" (w⁺) or "gamma" (w + γ w⁺)
    mode: ClassVar[str] = "epsilon"
    #: γ of the modified weights (used by mode "gamma" only)
    gamma: ClassVar[float] = 0.0

    def __post_init__(self):
        nonnegative(self, "epsilon")

    def forward(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if isinstance(module, nn.Linear) and x.layout == torch.sparse_csr:  # events (rows T·B)
            if x.dim() != 2 or x.shape[1] != module.in_features:
                raise ValueError(
                    f"Linear(in_features={module.in_features}) got sparse input of shape "
                    f"{tuple(x.shape)}; expected (T*B, {module.in_features})"
                )
            return _EventLinearLFP.apply(
                x, module.weight, module.bias, self.epsilon, self.mode, self.gamma
            )
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


@dataclass(frozen=True)
class EpsilonRule(_SynapseRule):
    r"""LFP-ε for Linear / ConvNd: :math:`n = \rho/(z + \varepsilon\,\mathrm{sign}(z))`.

    >>> lin = nn.Linear(3, 2)
    >>> x = torch.rand(4, 3, requires_grad=True)
    >>> z = EpsilonRule(epsilon=1e-6).forward(lin, x)
    >>> z.backward(torch.ones_like(z))   # reward 1 on every output
    >>> lin.weight.grad.shape             # -feedback
    torch.Size([2, 3])
    """

    mode: ClassVar[str] = "epsilon"


@dataclass(frozen=True)
class ZPlusRule(_SynapseRule):
    r"""LFP-z⁺: only excitatory contributions (:math:`w^+`, :math:`b^+`) share the reward."""

    mode: ClassVar[str] = "zplus"


@dataclass(frozen=True, repr=False)
class GammaRule(_SynapseRule):
    r"""LFP-γ: :math:`w' = w + \gamma w^+` favours excitatory contributions.

    Args:
        epsilon: as for :class:`EpsilonRule`.
        gamma: :math:`\gamma \ge 0` (0 is ε, γ → ∞ is z⁺).

    >>> GammaRule(gamma=0.5) == GammaRule(0.0, 0.5), GammaRule(gamma=0.5)
    (True, GammaRule(gamma=0.5, epsilon=0.0))
    """

    gamma: float = 0.25
    mode: ClassVar[str] = "gamma"

    def __post_init__(self):
        super().__post_init__()
        nonnegative(self, "gamma", "0.25")

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


@dataclass(frozen=True)
class AvgPoolRule:
    """ε-rule for average pooling (a linear map with fixed positive weights).

    Args:
        epsilon: the stabiliser (>= 0) of the division by the pooled output.
    """

    epsilon: float = 0.0

    def __post_init__(self):
        nonnegative(self, "epsilon")

    def forward(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return _LinearMapLFP.apply(x, type(module).forward.__get__(module), self.epsilon)


class _MaxPoolLFP(torch.autograd.Function):
    """Max-pooling whose backward gives each window's reward to its arg-max.

    The arg-max is kept as a small offset inside its window, not as torch's ``int64`` index,
    and the input is not kept (:func:`spikelfp._accel.max_pool_argmax`).
    """

    @staticmethod
    def forward(ctx, x, dims, kernel, stride, padding, dilation, ceil_mode):
        unbatched = x.dim() == dims + 1
        xb = x.unsqueeze(0) if unbatched else x
        y, saved, ctx.winners = accel.max_pool_argmax(
            xb, dims, kernel, stride, padding, dilation, ceil_mode
        )
        ctx.save_for_backward(*saved)
        ctx.unbatched = unbatched
        return y.squeeze(0) if unbatched else y

    @staticmethod
    def backward(ctx, rho):
        rho = rho.unsqueeze(0) if ctx.unbatched else rho
        # r_i = Σ_j [i = argmax of window j] ρ_j
        r_in = accel.scatter_to_argmax(rho, ctx.saved_tensors, ctx.winners)
        return (r_in.squeeze(0) if ctx.unbatched else r_in), None, None, None, None, None, None


_MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)


def _tuple(v, dims: int) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * dims


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class BatchNormRule:
    r"""ε-rule for BatchNorm1d/2d/3d as the affine map :math:`y = a x + c` of this pass.

    In training mode the batch statistics are used (and the running statistics updated as
    usual); the statistics are treated as constants in the decomposition.

    Args:
        epsilon: the stabiliser (>= 0) of the division by the output.
    """

    epsilon: float = 1e-6

    def __post_init__(self):
        nonnegative(self, "epsilon", "1e-6")

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
    def forward(ctx, x, p, shape):
        keep = (torch.rand(shape, dtype=x.dtype, device=x.device) >= p).to(x.dtype)
        ctx.save_for_backward(keep)
        return x * keep / (1 - p)

    @staticmethod
    def backward(ctx, r):
        (keep,) = ctx.saved_tensors
        return r * keep, None, None


@dataclass(frozen=True)
class DropoutRule:
    """Dropout: reward passes to the kept units unscaled (their full contribution).

    A :class:`~spikelfp.layers.SequenceDropout` keeps or drops a unit for all steps.
    """

    def forward(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if not module.training or module.p == 0:
            return x
        if module.p >= 1:
            return x * 0
        if isinstance(module, SequenceDropout):  # x: (T, B, ...), one mask for all steps
            shape = (1, *x.shape[1:])
        elif isinstance(module, (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)):
            shape = x.shape[:2] + (1,) * (x.dim() - 2)
        else:
            shape = x.shape
        return _DropoutLFP.apply(x, module.p, shape)
