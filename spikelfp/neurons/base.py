"""Shared pieces of every neuron: the Heaviside spike, parameter handling, input checks.

Every neuron module in :mod:`spikelfp.neurons` is a :class:`NeuronModule`: it takes a
time-first tensor ``(T, B, *features)`` and an optional state, and returns
``(output, state)`` where ``output`` has the same shape as the input and ``state`` is the
neuron's typed state tuple after the last step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "NeuronModule",
    "broadcasts_to",
    "heaviside",
    "make_parameter",
    "check_time_first",
    "resolve_beta",
]


class _Heaviside(torch.autograd.Function):
    """``H(v) = 1[v > 0]`` whose derivative is exactly zero (no surrogate gradient)."""

    @staticmethod
    def forward(v: torch.Tensor) -> torch.Tensor:
        return (v > 0).to(v.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(grad_output)


def heaviside(v: torch.Tensor) -> torch.Tensor:
    """Hard threshold ``H(v) = 1[v > 0]`` with a derivative of exactly zero.

    spikelfp never differentiates through a spike: LFP carries reward across it instead.
    Plain ``loss.backward()`` through a spiking network therefore yields all-zero gradients.

    >>> v = torch.tensor([-1.0, 0.0, 0.5], requires_grad=True)
    >>> s = heaviside(v)
    >>> s
    tensor([0., 0., 1.], grad_fn=<_HeavisideBackward>)
    >>> s.sum().backward(); v.grad
    tensor([0., 0., 0.])
    """
    return _Heaviside.apply(v)


def resolve_beta(beta: float | torch.Tensor | None, tau: float | None, dt: float | None):
    """Decay factor from ``beta`` or from a time constant: ``beta = exp(-dt / tau)``.

    >>> round(resolve_beta(None, tau=10e-3, dt=1e-3), 6)
    0.904837
    """
    if tau is not None or dt is not None:
        if beta is not None:
            raise ValueError(
                f"give either beta or (tau and dt), not both; got beta={beta}, tau={tau}, dt={dt}"
            )
        if tau is None or dt is None:
            raise ValueError(
                "a time constant needs both tau and dt (seconds), e.g. tau=10e-3, dt=1e-3"
            )
        if tau <= 0 or dt <= 0:
            raise ValueError(f"tau and dt must be positive, got tau={tau}, dt={dt}")
        return math.exp(-dt / tau)
    if beta is None:
        raise ValueError("a decay is required: give beta (0..1) or tau and dt")
    return beta


def make_parameter(
    module: nn.Module,
    name: str,
    value: float | torch.Tensor,
    shape: Sequence[int] | None,
    learnable: bool,
    *,
    valid: str | None = None,
) -> None:
    """Register ``name`` on ``module`` as a Parameter (learnable) or a buffer.

    ``shape`` makes the value per-neuron (broadcast over ``(T, B)``); ``None`` keeps a scalar
    unless ``value`` is already a tensor. ``valid`` checks every value: ``"decay"`` (in
    [0, 1]), ``"positive"`` (> 0) or ``"nonnegative"`` (>= 0); ``ValueError`` otherwise.

    >>> make_parameter(nn.Module(), "beta", 1.5, None, False, valid="decay")
    Traceback (most recent call last):
    ...
    ValueError: Module: beta must be in [0, 1], got 1.5
    """
    tensor = torch.as_tensor(value, dtype=torch.get_default_dtype()).clone()
    if shape is not None:
        tensor = tensor.expand(tuple(shape)).clone()
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{type(module).__name__}.{name} must be finite, got {tensor}")
    if valid is not None and tensor.numel():
        _check_range(type(module).__name__, name, tensor.detach(), valid)
    if learnable:
        module.register_parameter(name, nn.Parameter(tensor))
    else:
        module.register_buffer(name, tensor)


_RANGES = {
    "decay": ("in [0, 1]", lambda t: (t >= 0) & (t <= 1)),
    "positive": ("> 0", lambda t: t > 0),
    "nonnegative": (">= 0", lambda t: t >= 0),
}


def _check_range(owner: str, name: str, tensor: torch.Tensor, valid: str) -> None:
    what, ok = _RANGES[valid]
    bad = ~ok(tensor)
    if bool(bad.any()):
        got = tensor[bad].flatten()[0].item()
        where = "" if tensor.dim() == 0 else f" (every neuron's; {int(bad.sum())} are not)"
        raise ValueError(f"{owner}: {name} must be {what}{where}, got {got:g}")


def broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether a tensor of ``shape`` broadcasts to ``target`` without growing it.

    (Plain Python: ``torch.broadcast_shapes`` costs ~1 s on first use, importing torch.fx.)

    >>> broadcasts_to((3, 1, 1), (3, 8, 8)), broadcasts_to((4,), (3,))
    (True, False)
    """
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(reversed(shape), reversed(target), strict=False))


def check_time_first(x: torch.Tensor, who: str, min_dim: int = 2) -> None:
    """Raise a clear error unless ``x`` is a time-first tensor ``(T, B, ...)``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{who} expects a torch.Tensor of shape (T, B, ...), got {type(x).__name__}"
        )
    if x.dim() < min_dim:
        raise ValueError(
            f"{who} expects a time-first tensor (T, B, ...) with at least {min_dim} dims, "
            f"got shape {tuple(x.shape)}; add the missing axes, e.g. x.unsqueeze(0) for one step"
        )
    if not x.is_floating_point():
        raise TypeError(f"{who} expects a floating-point tensor, got {x.dtype}; use x.float()")


class NeuronModule(nn.Module):
    """Base of all stateful neuron layers.

    Subclasses implement :meth:`forward` ``(x: (T, B, ...), state=None) -> (output, state)``
    and :meth:`initial_state`. :class:`spikelfp.Sequential` feeds them whole sequences.
    """

    def initial_state(self, x: torch.Tensor):  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_features(self, x: torch.Tensor, name: str, value: torch.Tensor) -> None:
        if value.dim() == 0:
            return
        feat = tuple(x.shape[2:])
        if not broadcasts_to(tuple(value.shape), feat):
            raise ValueError(
                f"{type(self).__name__}: per-neuron {name} has shape {tuple(value.shape)} but the "
                f"input's features (after T, B) have shape {feat}"
            ) from None
