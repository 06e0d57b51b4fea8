r"""Recurrent LIF (RLIF): a LIF population with all-to-all recurrent weights.

Per step, with recurrent weights :math:`W_{rec}` (no self-bias)::

    V_t = β U_{t-1} + Z_t + W_rec S_{t-1}
    S_t, U_t                               as in LIF (immediate or delayed reset)

The recurrent term needs the previous step's spikes, so it is the one matmul per step that
cannot be batched over time.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from .base import (
    DecayFn,
    NeuronModule,
    SaturateFn,
    SpikeFn,
    check_time_first,
    make_parameter,
    threshold_spike,
)
from .lif import LIFParameters, _check_reset, lif_update

__all__ = ["RLIF", "RLIFState", "rlif_update", "rlif_step", "rlif_sequence"]


class RLIFState(NamedTuple):
    """State: membrane ``v`` and the last spikes ``s`` (feed the recurrent weights)."""

    v: torch.Tensor
    s: torch.Tensor


def rlif_update(
    z: torch.Tensor,
    state: RLIFState,
    p: LIFParameters,
    w_rec: torch.Tensor,
    spike_fn: SpikeFn = threshold_spike,
    *,
    decay: DecayFn | None = None,
    saturate: SaturateFn | None = None,
) -> tuple[torch.Tensor, RLIFState, torch.Tensor]:
    r"""The RLIF kernel: the LIF kernel (:func:`~spikelfp.neurons.lif_update`) with input
    :math:`Z_t + W_{rec} S_{t-1}`.

    Args:
        z: synaptic input of one step ``(B, N)``.
        state: the state before the step (a :class:`RLIFState`).
        p: the parameters (a :class:`~spikelfp.neurons.LIFParameters`).
        w_rec: recurrent weights ``(N, N)``; neuron ``i`` receives ``w_rec[i] @ s``.
        spike_fn: the spike function (see :func:`~spikelfp.neurons.lif_update`).
        decay: optional hook ``decay(v, beta)`` replacing :math:`\beta v`.
        saturate: optional hook ``saturate(v)``.

    Returns:
        ``(S_t, RLIFState(U_t, S_t), V_t)``.

    >>> p = LIFParameters(torch.tensor(0.5), torch.tensor(1.0))
    >>> w = torch.tensor([[0.0, 2.0], [0.0, 0.0]])
    >>> state = RLIFState(torch.zeros(1, 2), torch.tensor([[0.0, 1.0]]))
    >>> s, st, v_pre = rlif_update(torch.zeros(1, 2), state, p, w)
    >>> s.tolist(), v_pre.tolist()
    ([[1.0, 0.0]], [[2.0, 0.0]])
    """
    s, v, v_pre = lif_update(
        z + state.s @ w_rec.t(), state.v, p, spike_fn, decay=decay, saturate=saturate
    )
    return s, RLIFState(v, s), v_pre


def rlif_step(
    z: torch.Tensor,
    state: RLIFState,
    p: LIFParameters,
    w_rec: torch.Tensor,
    spike_fn: SpikeFn = threshold_spike,
) -> tuple[torch.Tensor, RLIFState]:
    """One step of a recurrent LIF population (pure function; equations in :class:`RLIF`).

    Args:
        z: synaptic input of one step ``(B, N)``.
        state: the state before the step (a :class:`RLIFState`; zeros to start).
        p: the parameters (a :class:`LIFParameters`).
        w_rec: recurrent weights ``(N, N)``; neuron ``i`` receives ``w_rec[i] @ s``.
        spike_fn: the spike function (see :func:`~spikelfp.neurons.lif_update`).

    Returns:
        ``(spikes, state)``: spikes of the shape of ``z`` and the RLIFState after the step.

    >>> p = LIFParameters(torch.tensor(0.5), torch.tensor(1.0))
    >>> w = torch.tensor([[0.0, 2.0], [0.0, 0.0]])
    >>> state = RLIFState(torch.zeros(1, 2), torch.tensor([[0.0, 1.0]]))
    >>> s, st = rlif_step(torch.zeros(1, 2), state, p, w)
    >>> s.tolist()
    [[1.0, 0.0]]
    """
    s, state, _ = rlif_update(z, state, p, w_rec, spike_fn)
    return s, state


def rlif_sequence(
    z: torch.Tensor,
    state: RLIFState,
    p: LIFParameters,
    w_rec: torch.Tensor,
    spike_fn: SpikeFn = threshold_spike,
) -> tuple[torch.Tensor, RLIFState]:
    """Run a recurrent LIF population over a time-first input ``(T, B, N)`` (pure function).

    Args:
        z: synaptic input ``(T, B, ...)`` (time first).
        state: the state before the first step (a :class:`RLIFState`; zeros to start).
        p: the parameters (a :class:`LIFParameters`).
        w_rec: recurrent weights ``(N, N)``; neuron ``i`` receives ``w_rec[i] @ s``.
        spike_fn: the spike function (see :func:`~spikelfp.neurons.lif_update`).

    Returns:
        ``(spikes, state)``: spikes ``(T, B, ...)`` and the RLIFState after the last step.

    >>> p = LIFParameters(torch.tensor(0.5), torch.tensor(1.0))
    >>> w = torch.tensor([[0.0, 2.0], [0.0, 0.0]])   # neuron 1 excites neuron 0
    >>> z = torch.tensor([[[0.0, 1.5]], [[0.0, 0.0]]])
    >>> s, st = rlif_sequence(z, RLIFState(torch.zeros(1, 2), torch.zeros(1, 2)), p, w)
    >>> s[:, 0].tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """
    out = []
    for z_t in z.unbind(0):
        s, state, _ = rlif_update(z_t, state, p, w_rec, spike_fn)
        out.append(s)
    return torch.stack(out), state


class RLIF(NeuronModule):
    r"""Recurrent LIF layer over ``size`` neurons; input ``(T, B, size)``.

    The previous step's spikes feed back through all-to-all weights :math:`W_{rec}`
    (``recurrent_weight``, no bias):

    .. math::

        V_t &= \beta\, U_{t-1} + Z_t + W_{rec}\, S_{t-1} \\
        S_t &= H(V_t - \theta)

    and the reset of :math:`U_t` as in :class:`LIF` (immediate or delayed).

    Args:
        size: number of neurons.
        beta: membrane decay :math:`\beta` in [0, 1].
        threshold: firing threshold :math:`\theta` (> 0).
        reset: ``"zero"`` (default), ``"subtract"`` or ``"none"``.
        reset_delay: compute the reset from the previous membrane (see :class:`LIF`).
        per_neuron: one ``beta`` and ``threshold`` per neuron instead of one shared value.
        learn_beta, learn_threshold: make them ``nn.Parameter`` s.

    Raises:
        ValueError: ``size`` not positive, a decay outside [0, 1], a threshold that is not
            positive or an unknown ``reset``.

    Returns ``(spikes, RLIFState(v, s))`` when called on ``x`` of shape ``(T, B, size)``.

    >>> spikes, state = RLIF(16, beta=0.9)(torch.rand(10, 4, 16) * 2)
    >>> spikes.shape, state.s.shape
    (torch.Size([10, 4, 16]), torch.Size([4, 16]))
    """

    def __init__(
        self,
        size: int,
        beta: float | torch.Tensor = 0.9,
        threshold: float | torch.Tensor = 1.0,
        reset: str = "zero",
        reset_delay: bool = False,
        per_neuron: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
    ):
        super().__init__()
        _check_reset(reset)
        if int(size) <= 0:
            raise ValueError(f"RLIF size must be a positive number of neurons, got {size}")
        self.size = int(size)
        shape = (self.size,) if per_neuron else None
        make_parameter(self, "beta", beta, shape, learn_beta, valid="decay")
        make_parameter(self, "threshold", threshold, shape, learn_threshold, valid="positive")
        self.reset = reset
        self.reset_delay = bool(reset_delay)
        bound = 1.0 / math.sqrt(self.size)
        self.recurrent_weight = nn.Parameter(
            torch.empty(self.size, self.size).uniform_(-bound, bound)
        )

    @property
    def parameters_tuple(self) -> LIFParameters:
        return LIFParameters(self.beta, self.threshold, self.reset, self.reset_delay)

    def initial_state(self, x: torch.Tensor) -> RLIFState:
        zeros = torch.zeros(x.shape[1:], dtype=x.dtype, device=x.device)
        return RLIFState(zeros, zeros.clone())

    def check_input(self, x: torch.Tensor) -> None:
        """Raise the layer's own one-line error unless ``x`` is ``(T, B, size)``."""
        check_time_first(x, "RLIF", min_dim=3)
        if x.shape[-1] != self.size or x.dim() != 3:
            raise ValueError(
                f"RLIF({self.size}) expects input (T, B, {self.size}), got {tuple(x.shape)}"
            )

    def sequence(
        self, x: torch.Tensor, state: RLIFState | None = None, spike_fn: SpikeFn = threshold_spike
    ):
        """``(spikes, state)`` over ``x`` ``(T, B, size)`` with the spike function ``spike_fn``."""
        self.check_input(x)
        if state is None:
            state = self.initial_state(x)
        return rlif_sequence(x, state, self.parameters_tuple, self.recurrent_weight, spike_fn)

    def extra_repr(self) -> str:
        return f"{self.size}, reset={self.reset!r}, reset_delay={self.reset_delay}"
