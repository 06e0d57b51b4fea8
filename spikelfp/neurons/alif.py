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

from .base import NeuronModule, check_time_first, heaviside, make_parameter

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


def alif_update(z: torch.Tensor, state: ALIFState, p: ALIFParameters):
    """One step; returns ``(S_t, state_t, V_t, θ_t)``."""
    theta = p.threshold + p.kappa * state.a
    v_pre = p.beta * state.v + z
    s = heaviside(v_pre - theta)
    if p.reset == "zero":
        v = v_pre * (1 - s)
    elif p.reset == "subtract":
        v = v_pre - theta * s
    else:
        v = v_pre
    a = p.rho * state.a + (1 - p.rho) * s
    return s, ALIFState(v, a), v_pre, theta


def alif_step(z: torch.Tensor, state: ALIFState, p: ALIFParameters):
    """Advance an ALIF population by one step (pure function; equations in :class:`ALIF`).

    Args:
        z: synaptic input of one step ``(B, ...)``.
        state: the state before the step (a :class:`ALIFState`; zeros to start).
        p: the parameters (a :class:`ALIFParameters`).

    Returns:
        ``(spikes, state)``: spikes of the shape of ``z`` and the ALIFState after the step.

    >>> p = ALIFParameters(*map(torch.tensor, (1.0, 1.0, 0.5, 2.0)))
    >>> s, st = alif_step(torch.tensor([1.5]), ALIFState(torch.zeros(1), torch.zeros(1)), p)
    >>> s.item(), st.a.item()
    (1.0, 0.5)
    """
    s, state, _, _ = alif_update(z, state, p)
    return s, state


def alif_sequence(z: torch.Tensor, state: ALIFState, p: ALIFParameters):
    """Run an ALIF population over a time-first input (pure function).

    Args:
        z: synaptic input ``(T, B, ...)`` (time first).
        state: the state before the first step (a :class:`ALIFState`; zeros to start).
        p: the parameters (a :class:`ALIFParameters`).

    Returns:
        ``(spikes, state)``: spikes ``(T, B, ...)`` and the ALIFState after the last step.

    >>> p = ALIFParameters(*map(torch.tensor, (1.0, 1.0, 0.5, 2.0)))
    >>> s, st = alif_sequence(torch.full((3, 1), 1.5), ALIFState(torch.zeros(1), torch.zeros(1)), p)
    >>> s.flatten().tolist()   # the raised threshold (1 + 2 * 0.5) silences the second step
    [1.0, 0.0, 1.0]
    """
    out = []
    for z_t in z.unbind(0):
        s, state, _, _ = alif_update(z_t, state, p)
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

    def forward(self, x: torch.Tensor, state: ALIFState | None = None):
        check_time_first(x, "ALIF")
        for name in ("beta", "threshold", "rho", "kappa"):
            self._check_features(x, name, getattr(self, name))
        if state is None:
            state = self.initial_state(x)
        return alif_sequence(x, state, self.parameters_tuple)

    def extra_repr(self) -> str:
        return f"reset={self.reset!r}"
