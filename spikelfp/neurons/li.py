r"""Leaky integrator (LI): the non-spiking readout.

Per step, :math:`U_t = \beta U_{t-1} + Z_t`; the output is the membrane :math:`U_t` itself
(read it out as logits: mean over time, last step, or maximum).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .base import NeuronModule, check_time_first, make_parameter, resolve_beta

__all__ = ["LI", "LIParameters", "LIState", "li_step", "li_sequence"]


class LIParameters(NamedTuple):
    """Parameters of a leaky integrator: the decay ``beta``."""

    beta: torch.Tensor


class LIState(NamedTuple):
    """State of a leaky integrator: the membrane ``v``."""

    v: torch.Tensor


def li_step(z: torch.Tensor, state: LIState, p: LIParameters) -> tuple[torch.Tensor, LIState]:
    """One step: ``U_t = beta U_{t-1} + Z_t``; returns ``(U_t, state)``.

    >>> p = LIParameters(torch.tensor(0.5))
    >>> u, st = li_step(torch.tensor([1.0]), LIState(torch.tensor([2.0])), p)
    >>> u
    tensor([2.])
    """
    v = p.beta * state.v + z
    return v, LIState(v)


def li_sequence(z: torch.Tensor, state: LIState, p: LIParameters) -> tuple[torch.Tensor, LIState]:
    """Run over ``(T, B, ...)``; returns the membrane trace and the final state."""
    v = state.v
    out = []
    for z_t in z.unbind(0):
        v = p.beta * v + z_t
        out.append(v)
    return torch.stack(out), LIState(v)


class LI(NeuronModule):
    r"""Leaky integrator readout layer (no spikes).

    >>> u, state = LI(beta=0.5)(torch.ones(3, 1, 2))
    >>> u[:, 0, 0].tolist()
    [1.0, 1.5, 1.75]
    """

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

    def forward(
        self, x: torch.Tensor, state: LIState | None = None
    ) -> tuple[torch.Tensor, LIState]:
        check_time_first(x, "LI")
        self._check_features(x, "beta", self.beta)
        if state is None:
            state = self.initial_state(x)
        return li_sequence(x, state, self.parameters_tuple)

    def extra_repr(self) -> str:
        b = self.beta
        return f"beta={b.item() if b.dim() == 0 else tuple(b.shape)}"
