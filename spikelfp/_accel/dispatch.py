r"""Native dispatch: which implementation of an operation runs, and the fused-kernel calls.

The fused C kernels of :mod:`spikelfp._native` repeat the eager operations in the same order and
give the same bits (``tests/test_native.py``); they apply to float32/float64 CPU tensors of one
dtype when a compiler was found (:func:`spikelfp._native.usable`). The rules ask here, never
``_native`` directly.

>>> divide(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([0.0, -1.0, 4.0]), 0.0)
tensor([ 0.0000, -1.0000,  0.5000])
"""

from __future__ import annotations

import enum

import torch

from .. import _native as native
from .recurrence import inplace_ok

__all__ = ["divide", "LIFPath", "lif_path", "lif_forward_fused", "lif_backward_fused"]


def divide(num: torch.Tensor, den: torch.Tensor, epsilon: float) -> torch.Tensor:
    r"""The stabilised division :math:`a / (b + \varepsilon\,\mathrm{sign}(b))` with
    :math:`\mathrm{sign}(0) = +1`; with :math:`\varepsilon = 0`, 0 where :math:`b = 0`.

    The values of :func:`spikelfp.lfp._tensor.stabilized_divide`, with fewer full-size
    temporaries: the native kernel where usable, else in-place torch operations.

    Args:
        num: the numerator :math:`a`.
        den: the denominator :math:`b` (broadcast against ``num`` if the shapes differ).
        epsilon: the stabiliser ε ≥ 0.

    Returns:
        The quotient.
    """
    if num.shape != den.shape or num.dtype != den.dtype:
        # broadcasting or mixed dtypes: the reference formula as written
        if epsilon == 0:
            safe = torch.where(den == 0, torch.ones_like(den), den)
            return torch.where(den == 0, torch.zeros_like(num), num / safe)
        sign = torch.where(den >= 0, torch.ones_like(den), -torch.ones_like(den))
        return num / (den + epsilon * sign)
    if native.usable(num, den):
        return native.divide(num, den, epsilon)
    if epsilon == 0:
        return torch.div(num, den).masked_fill_(den == 0, 0)
    return num / torch.where(den >= 0, den + epsilon, den - epsilon)


class LIFPath(enum.Enum):
    """How a LIF/LI rule runs its recursion (see :func:`lif_path`)."""

    #: the fused native kernels (forward, and the backward with its replay)
    NATIVE = "native"
    #: the neuron kernels writing into preallocated tensors (:mod:`spikelfp._accel.recurrence`)
    INPLACE = "inplace"
    #: the neuron kernels out of place, keeping every step (any shapes, dtypes and devices)
    GENERAL = "general"


def lif_path(z, v0, beta, threshold) -> LIFPath:
    """The fastest path that applies to a LIF/LI rule's recursion over ``z``.

    In place when :func:`~spikelfp._accel.recurrence.inplace_ok`; native when also
    :func:`spikelfp._native.usable`.

    Args:
        z: the synaptic input, ``(T, ...)``.
        v0: the initial membrane.
        beta, threshold: the decay and the threshold.

    Returns:
        A :class:`LIFPath`.
    """
    if not inplace_ok(z, v0, beta, threshold):
        return LIFPath.GENERAL
    return LIFPath.NATIVE if native.usable(z, v0, beta, threshold) else LIFPath.INPLACE


def lif_forward_fused(z, v0, beta, threshold, reset, reset_delay, readout):
    """The LIF (or, with ``readout``, LI) recursion in one native pass -> ``(outputs, U_T)``."""
    return native.lif_forward(z, v0, beta, threshold, reset, reset_delay, readout)


def lif_backward_fused(r, q_last, z, v0, beta, threshold, epsilon, reset, delay, readout, keep_n):
    """The LIF rule's backward in one native pass, replay included.

    Returns ``(ρ, q_0, n, U_{t-1})``; ``n`` and ``U_{t-1}`` are ``None`` unless ``keep_n``.
    """
    return native.lif_backward(
        r, q_last, z, v0, beta, threshold, epsilon, reset, delay, readout, keep_n
    )
