r"""Adaptive LIF (ALIF): every spike raises the neuron's threshold, which then decays back.

Per step, with adaptation decay :math:`\rho` and strength :math:`\kappa` (immediate reset)::

    θ_t = θ_0 + κ a_{t-1}                 adaptive threshold
    V_t = β U_{t-1} + Z_t
    S_t = H(V_t - θ_t)
    U_t = V_t (1 - S_t)  |  V_t - θ_t S_t  reset="zero" | "subtract"
    a_t = ρ a_{t-1} + (1 - ρ) S_t         adaptation trace
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .base import (
    DecayFn,
    NeuronModule,
    SaturateFn,
    SpikeFn,
    leaky_integrate,
    make_parameter,
    threshold_spike,
)
from .lif import lif_reset

__all__ = ["ALIF", "ALIFParameters", "ALIFState", "alif_update", "alif_step", "alif_sequence"]


class ALIFParameters(NamedTuple):
    """Parameters: ``beta``, base ``threshold`` θ₀, adaptation decay ``rho``, strength ``kappa``."""

    beta: torch.Tensor
    threshold: torch.Tensor
    rho: torch.Tensor
    kappa: torch.Tensor
    reset: str = "zero"


class ALIFState(NamedTuple):
    """State: membrane ``v`` and adaptation trace ``a``."""

    v: torch.Tensor
    a: torch.Tensor


def alif_update(
    z: torch.Tensor,
    state: ALIFState,
    p: ALIFParameters,
    spike_fn: SpikeFn = threshold_spike,
    *,
    decay: DecayFn | None = None,
    saturate: SaturateFn | None = None,
) -> tuple[torch.Tensor, ALIFState, torch.Tensor, torch.Tensor]:
    r"""The ALIF kernel: :math:`\theta_t = \theta_0 + \kappa a_{t-1}`, the LIF integration
    and immediate reset against :math:`\theta_t` (:func:`~spikelfp.neurons.lif.lif_reset`),
    then :math:`a_t = \rho a_{t-1} + (1 - \rho) S_t`.

    Args:
        z: synaptic input of one step ``(B, ...)``.
        state: the state before the step (a :class:`ALIFState`).
        p: the parameters (a :class:`ALIFParameters`).
        spike_fn: the spike function (see :func:`~spikelfp.neurons.lif_update`).
        decay: optional hook ``decay(v, beta)`` replacing :math:`\beta v`.
        saturate: optional hook ``saturate(v)``.

    Returns:
        ``(S_t, ALIFState(U_t, a_t), V_t, θ_t)``.

    >>> p = ALIFParameters(*map(torch.tensor, (1.0, 1.0, 0.5, 2.0)))
    >>> s, st, v_pre, theta = alif_update(torch.tensor([1.5]), ALIFState(*torch.zeros(2, 1)), p)
    >>> s.item(), st.a.item(), theta.item()
    (1.0, 0.5, 1.0)
    """
    theta = p.threshold + p.kappa * state.a
    v_pre = leaky_integrate(z, state.v, p.beta, decay=decay, saturate=saturate)
    s, v = lif_reset(v_pre, state.v, theta, p.reset, False, spike_fn, saturate=saturate)
    a = p.rho * state.a + (1 - p.rho) * s
    return s, ALIFState(v, a), v_pre, theta


def alif_step(
    z: torch.Tensor, state: ALIFState, p: ALIFParameters, spike_fn: SpikeFn = threshold_spike
):
    """Advance an ALIF population by one step (pure function; equations in :class:`ALIF`).

    Args:
        z: synaptic input of one step ``(B, ...)``.
        state: the state before the step (a :class:`ALIFState`; zeros to start).
        p: the parameters (a :class:`ALIFParameters`).
        spike_fn: the spike function (see :func:`~spikelfp.neurons.lif_update`).

    Returns:
        ``(spikes, state)``: spikes of the shape of ``z`` and the ALIFState after the step.

    >>> p = ALIFParameters(*map(torch.tensor, (1.0, 1.0, 0.5, 2.0)))
    >>> s, st = alif_step(torch.tensor([1.5]), ALIFState(torch.zeros(1), torch.zeros(1)), p)
    >>> s.item(), st.a.item()
    (1.0, 0.5)
    """
    s, state, _, _ = alif_update(z, state, p, spike_fn)
    return s, state


def alif_sequence(
    z: torch.Tensor, state: ALIFState, p: ALIFParameters, spike_fn: SpikeFn = threshold_spike
):
    """Run an ALIF population over a time-first input (pure function).

    Args:
        z: synaptic input ``(T, B, ...)`` (time first).
        state: the state before the first step (a :class:`ALIFState`; zeros to start).
        p: the parameters (a :class:`ALIFParameters`).
        spike_fn: the spike function (see :func:`~spikelfp.neurons.lif_update`).

    Returns:
        ``(spikes, state)``: spikes ``(T, B, ...)`` and the ALIFState after the last step.

    >>> p = ALIFParameters(*map(torch.tensor, (1.0, 1.0, 0.5, 2.0)))
    >>> s, st = alif_sequence(torch.full((3, 1), 1.5), ALIFState(torch.zeros(1), torch.zeros(1)), p)
    >>> s.flatten().tolist()   # the raised threshold (1 + 2 * 0.5) silences the second step
    [1.0, 0.0, 1.0]
    """
    out = []
    for z_t in z.unbind(0):
        s, state, _, _ = alif_update(z_t, state, p, spike_fn)
        out.append(s)
    return torch.stack(out), state


class ALIF(NeuronModule):
    r"""Adaptive-threshold LIF layer: every spike raises the threshold, which then decays back.

    Per step, with membrane decay :math:`\beta`, base threshold :math:`\theta_0`, adaptation
    decay :math:`\rho` and strength :math:`\kappa` (immediate reset):

    .. math::

        \theta_t &= \theta_0 + \kappa\, a_{t-1} \\
        V_t &= \beta\, U_{t-1} + Z_t \\
        S_t &= H(V_t - \theta_t) \\
        U_t &= V_t\,(1 - S_t) \;\text{ (reset zero) or }\; V_t - \theta_t\, S_t
               \;\text{ (reset subtract)} \\
        a_t &= \rho\, a_{t-1} + (1 - \rho)\, S_t

    Args:
        beta: membrane decay :math:`\beta` in [0, 1].
        threshold: base threshold :math:`\theta_0` (> 0).
        rho: adaptation decay :math:`\rho` in [0, 1].
        kappa: adaptation strength :math:`\kappa` (>= 0).
        reset: ``"zero"`` (default), ``"subtract"`` or ``"none"``.
        shape: feature shape for per-neuron parameters; ``None`` shares one value.
        learn_beta, learn_threshold, learn_kappa: make them ``nn.Parameter`` s.

    Raises:
        ValueError: a decay outside [0, 1], a threshold that is not positive, an unknown
            ``reset``, or a non-finite value.

    Returns ``(spikes, ALIFState(v, a))`` when called on ``x`` of shape ``(T, B, ...)``.

    >>> spikes, state = ALIF(beta=0.9, rho=0.95, kappa=0.5)(torch.rand(10, 2, 8) * 2)
    >>> spikes.shape, state.a.shape
    (torch.Size([10, 2, 8]), torch.Size([2, 8]))
    """

    per_neuron = ("beta", "threshold", "rho", "kappa")

    def __init__(
        self,
        beta: float | torch.Tensor = 0.9,
        threshold: float | torch.Tensor = 1.0,
        rho: float | torch.Tensor = 0.95,
        kappa: float | torch.Tensor = 0.5,
        reset: str = "zero",
        shape: tuple[int, ...] | None = None,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        learn_kappa: bool = False,
    ):
        super().__init__()
        if reset not in ("zero", "subtract", "none"):
            raise ValueError(f"reset must be 'zero', 'subtract' or 'none', got {reset!r}")
        make_parameter(self, "beta", beta, shape, learn_beta, valid="decay")
        make_parameter(self, "threshold", threshold, shape, learn_threshold, valid="positive")
        make_parameter(self, "rho", rho, shape, False, valid="decay")
        make_parameter(self, "kappa", kappa, shape, learn_kappa, valid="nonnegative")
        self.reset = reset

    @property
    def parameters_tuple(self) -> ALIFParameters:
        return ALIFParameters(self.beta, self.threshold, self.rho, self.kappa, self.reset)

    def initial_state(self, x: torch.Tensor) -> ALIFState:
        zeros = torch.zeros(x.shape[1:], dtype=x.dtype, device=x.device)
        return ALIFState(zeros, zeros.clone())

    def sequence(
        self, x: torch.Tensor, state: ALIFState | None = None, spike_fn: SpikeFn = threshold_spike
    ):
        """``(spikes, state)`` over ``x`` ``(T, B, ...)`` with the spike function ``spike_fn``."""
        self.check_input(x)
        if state is None:
            state = self.initial_state(x)
        return alif_sequence(x, state, self.parameters_tuple, spike_fn)

    def extra_repr(self) -> str:
        return f"reset={self.reset!r}"
