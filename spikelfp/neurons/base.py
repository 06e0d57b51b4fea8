"""Shared pieces of every neuron: the Heaviside spike, parameter handling, input checks.

Every neuron module in :mod:`spikelfp.neurons` is a :class:`NeuronModule`: it takes a
time-first tensor ``(T, B, *features)`` and an optional state, and returns
``(output, state)`` where ``output`` has the same shape as the input and ``state`` is the
neuron's typed state tuple after the last step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import nn

__all__ = [
    "NeuronModule",
    "StepBuffers",
    "broadcasts_to",
    "heaviside",
    "leaky_integrate",
    "threshold_spike",
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


def threshold_spike(
    v: torch.Tensor, threshold: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    r"""The spike function of every neuron kernel: :math:`S = H(v - \theta)`.

    This is the default ``spike_fn`` of the kernels (:func:`spikelfp.neurons.lif_update` and
    the others); a baseline plugs a different one (the BPTT baseline's surrogate,
    :class:`spikelfp.training.bptt.FastSigmoid`), called as ``spike_fn(v, threshold, out=...)``.
    Where autograd records, it is :func:`heaviside` (derivative exactly zero); otherwise the
    comparison :math:`[v > \theta]`, which is the same bit for bit (for IEEE floats
    :math:`v - \theta > 0 \iff v > \theta`, subnormals included). With ``out`` (the
    in-place fast paths) the spikes are written into ``out``.

    Args:
        v: membrane potential.
        threshold: firing threshold :math:`\theta` (broadcasts against ``v``).
        out: optional preallocated destination (same shape and dtype as ``v``).

    Returns:
        The spikes (0 or 1) in the dtype of ``v``.

    >>> threshold_spike(torch.tensor([0.5, 1.0, 1.5]), torch.tensor(1.0))
    tensor([0., 0., 1.])
    """
    if out is not None:
        return torch.gt(v, threshold, out=out)
    if torch.is_grad_enabled() and (
        v.requires_grad or (isinstance(threshold, torch.Tensor) and threshold.requires_grad)
    ):
        return heaviside(v - threshold)
    return (v > threshold).to(v.dtype)


#: ``spike_fn(v, threshold, out=None) -> spikes``: the spike-function hook of the kernels.
SpikeFn = Callable[..., torch.Tensor]
#: ``decay(v, beta) -> decayed v``: the decay hook (default ``beta * v``; an integer decay).
DecayFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``saturate(v) -> v``: the saturation hook (e.g. clamping to a state's integer range).
SaturateFn = Callable[[torch.Tensor], torch.Tensor]


class StepBuffers(NamedTuple):
    """Preallocated destinations of one in-place kernel step (the fast paths, no autograd).

    ``v`` receives the membrane after the step (it may be the input membrane itself), ``s``
    the spikes and ``scratch`` the reset mask; all have the shape and dtype of one step.
    """

    v: torch.Tensor
    s: torch.Tensor | None = None
    scratch: torch.Tensor | None = None


def leaky_integrate(
    z: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    *,
    decay: DecayFn | None = None,
    saturate: SaturateFn | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""The leaky integration of every neuron: :math:`V_t = \mathrm{sat}(D_\beta(U_{t-1}) + Z_t)`.

    By default :math:`D_\beta(U) = \beta U` and no saturation; an integer neuron passes its
    integer decay and its state range as hooks.

    Args:
        z: input of this step.
        v: the state before the step (membrane :math:`U_{t-1}` or current :math:`I_{t-1}`).
        beta: decay (broadcasts against ``v``).
        decay: optional hook ``decay(v, beta)`` replacing :math:`\beta v`.
        saturate: optional hook ``saturate(v)`` applied to the sum.
        out: optional preallocated destination (may be ``v`` itself); only without hooks.

    Returns:
        :math:`V_t`.

    >>> leaky_integrate(torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor(0.5))
    tensor([2.])
    >>> halve, sat = (lambda v, b: v - torch.floor(v / 2)), (lambda v: v.clamp(max=7))
    >>> leaky_integrate(torch.tensor([9.0]), torch.tensor([8.0]), None, decay=halve, saturate=sat)
    tensor([7.])
    """
    if decay is None:
        v_pre = torch.add(torch.mul(v, beta, out=out), z, out=out)
    else:
        v_pre = decay(v, beta) + z
    return v_pre if saturate is None else saturate(v_pre)


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

    Subclasses implement :meth:`initial_state` and :meth:`sequence` ``(x, state, spike_fn)``,
    which runs the neuron's pure kernel over time; :meth:`forward` ``(x: (T, B, ...),
    state=None) -> (output, state)`` is :meth:`sequence` with the hard spike
    (:func:`threshold_spike`). :class:`spikelfp.Sequential` feeds them whole sequences.
    ``per_neuron`` names the parameters that must broadcast against the input's features and
    :meth:`check_input` gives the layer's own one-line error otherwise (the LFP rules and the
    BPTT baseline call it too).
    """

    #: parameters that may be per-neuron (checked against the input's features)
    per_neuron: tuple[str, ...] = ()
    #: the fewest input dimensions, ``(T, B)`` and the features
    min_dim: int = 2

    def initial_state(self, x: torch.Tensor):  # pragma: no cover - abstract
        raise NotImplementedError

    def sequence(self, x: torch.Tensor, state=None, spike_fn: SpikeFn = threshold_spike):
        """Run the layer over ``x`` ``(T, B, ...)`` with the spike function ``spike_fn``.

        Args:
            x: time-first input ``(T, B, ...)``.
            state: the state before the first step; ``None`` for :meth:`initial_state`.
            spike_fn: the spike function (see :func:`threshold_spike`).

        Returns:
            ``(output, state)``: the output of every step and the state after the last.
        """
        raise NotImplementedError(f"{type(self).__name__} has no kernel sequence")

    def forward(self, x: torch.Tensor, state=None):
        """``(output, state)`` of the layer over ``x`` ``(T, B, ...)`` (see the class)."""
        return self.sequence(x, state)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise the layer's own one-line error unless ``x`` is ``(T, B, *features)`` that
        the per-neuron parameters broadcast against.

        >>> from spikelfp import LIF
        >>> LIF(shape=(4,)).check_input(torch.zeros(2, 1, 3))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: LIF: per-neuron beta has shape (4,) but the input's features ... shape (3,)
        """
        check_time_first(x, type(self).__name__, self.min_dim)
        for name in self.per_neuron:
            value = getattr(self, name, None)
            if isinstance(value, torch.Tensor):
                self._check_features(x, name, value)

    def _check_features(self, x: torch.Tensor, name: str, value: torch.Tensor) -> None:
        if value.dim() == 0:
            return
        feat = tuple(x.shape[2:])
        if not broadcasts_to(tuple(value.shape), feat):
            raise ValueError(
                f"{type(self).__name__}: per-neuron {name} has shape {tuple(value.shape)} but the "
                f"input's features (after T, B) have shape {feat}"
            ) from None
