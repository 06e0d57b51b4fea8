r"""Leaky integrator (LI): the non-spiking readout.

Per step, :math:`U_t = \beta U_{t-1} + Z_t`; the output is the membrane :math:`U_t` itself
(read it out as logits: mean over time, last step, or maximum).
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
    resolve_beta,
    threshold_spike,
)

__all__ = ["LI", "LIParameters", "LIState", "li_update", "li_step", "li_sequence"]


class LIParameters(NamedTuple):
    """Parameters of a leaky integrator: the decay ``beta``."""

    beta: torch.Tensor


class LIState(NamedTuple):
    """State of a leaky integrator: the membrane ``v``."""

    v: torch.Tensor


def li_update(
    z: torch.Tensor,
    v: torch.Tensor,
    p: LIParameters,
    *,
    decay: DecayFn | None = None,
    saturate: SaturateFn | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""The LI kernel: :math:`U_t = \mathrm{sat}(\beta U_{t-1} + Z_t)`, the one place it is
    written (module, LFP rule and the LIF rule's readout mode call it).

    Args:
        z: input of one step ``(B, ...)``.
        v: the membrane after the previous step :math:`U_{t-1}`.
        p: the parameters (a :class:`LIParameters`).
        decay: optional hook ``decay(v, beta)`` replacing :math:`\beta v` (integer decay).
        saturate: optional hook ``saturate(v)``.
        out: optional preallocated destination (the in-place fast paths).

    Returns:
        :math:`U_t`.

    >>> li_update(torch.tensor([1.0]), torch.tensor([2.0]), LIParameters(torch.tensor(0.5)))
    tensor([2.])
    """
    return leaky_integrate(z, v, p.beta, decay=decay, saturate=saturate, out=out)


def li_step(z: torch.Tensor, state: LIState, p: LIParameters) -> tuple[torch.Tensor, LIState]:
    r"""One step of a leaky integrator: :math:`U_t = \beta\, U_{t-1} + Z_t` (pure function).

    Args:
        z: synaptic input of one step ``(B, ...)``.
        state: the state before the step (a :class:`LIState`; zeros to start).
        p: the parameters (a :class:`LIParameters`).

    Returns:
        ``(membrane, state)``: membrane of the shape of ``z`` and the LIState after the step.

    >>> p = LIParameters(torch.tensor(0.5))
    >>> u, st = li_step(torch.tensor([1.0]), LIState(torch.tensor([2.0])), p)
    >>> u
    tensor([2.])
    """
    v = li_update(z, state.v, p)
    return v, LIState(v)


def li_sequence(z: torch.Tensor, state: LIState, p: LIParameters) -> tuple[torch.Tensor, LIState]:
    """Run a leaky integrator over a time-first input (pure function).

    Args:
        z: synaptic input ``(T, B, ...)`` (time first).
        state: the state before the first step (a :class:`LIState`; zeros to start).
        p: the parameters (a :class:`LIParameters`).

    Returns:
        ``(membrane, state)``: membrane ``(T, B, ...)`` and the LIState after the last step.

    >>> p = LIParameters(torch.tensor(0.5))
    >>> u, st = li_sequence(torch.ones(3, 1), LIState(torch.zeros(1)), p)
    >>> u.flatten().tolist()
    [1.0, 1.5, 1.75]
    """
    v = state.v
    out = []
    for z_t in z.unbind(0):
        v = li_update(z_t, v, p)
        out.append(v)
    return torch.stack(out), LIState(v)


class LI(NeuronModule):
    r"""Leaky integrator readout layer (no spikes): its output is the membrane itself.

    .. math::

        U_t = \beta\, U_{t-1} + Z_t

    Read :math:`U_t` out as logits: mean over time, last step, or maximum.

    Args:
        beta: decay :math:`\beta` in [0, 1] (default 0.9), or give ``tau`` and ``dt`` instead
            (:math:`\beta = e^{-dt/\tau}`), not both.
        shape: feature shape for a per-neuron ``beta``; ``None`` shares one value.
        learn_beta: make ``beta`` an ``nn.Parameter`` (LFP gives it feedback).
        tau, dt: time constant and time step, instead of ``beta``.

    Raises:
        ValueError: a decay outside [0, 1], or ``beta`` together with ``tau``/``dt``.

    Returns ``(membrane, LIState(v))`` when called on ``x`` of shape ``(T, B, ...)``.

    >>> u, state = LI(beta=0.5)(torch.ones(3, 1, 2))
    >>> u[:, 0, 0].tolist()
    [1.0, 1.5, 1.75]
    """

    per_neuron = ("beta",)

    def __init__(
        self,
        beta: float | torch.Tensor | None = None,
        shape: tuple[int, ...] | None = None,
        learn_beta: bool = False,
        tau: float | None = None,
        dt: float | None = None,
    ):
        super().__init__()
        if beta is None and tau is None and dt is None:
            beta = 0.9  # the default decay
        beta = resolve_beta(beta, tau, dt)  # refuses beta together with tau/dt
        make_parameter(self, "beta", beta, shape, learn_beta, valid="decay")

    @property
    def parameters_tuple(self) -> LIParameters:
        return LIParameters(self.beta)

    def initial_state(self, x: torch.Tensor) -> LIState:
        return LIState(torch.zeros(x.shape[1:], dtype=x.dtype, device=x.device))

    def sequence(
        self, x: torch.Tensor, state: LIState | None = None, spike_fn: SpikeFn = threshold_spike
    ) -> tuple[torch.Tensor, LIState]:
        """``(membrane, state)`` over ``x`` ``(T, B, ...)``; no spike, ``spike_fn`` is unused."""
        self.check_input(x)
        if state is None:
            state = self.initial_state(x)
        return li_sequence(x, state, self.parameters_tuple)

    def extra_repr(self) -> str:
        b = self.beta
        return f"beta={b.item() if b.dim() == 0 else tuple(b.shape)}"
