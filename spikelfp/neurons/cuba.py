r"""Current-based LIF (CubaLIF): a synaptic current with its own decay feeds the membrane.

Per step, with synaptic decay :math:`\alpha` and membrane decay :math:`\beta`::

    I_t = α I_{t-1} + Z_t                 synaptic current
    V_t = β U_{t-1} + I_t                 membrane before the reset
    S_t, U_t                              as in LIF (immediate or delayed reset)
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
from .lif import LIFParameters, _check_reset, lif_update

__all__ = [
    "CubaLIF",
    "CubaLIFParameters",
    "CubaLIFState",
    "cuba_update",
    "cuba_step",
    "cuba_sequence",
]


class CubaLIFParameters(NamedTuple):
    """Parameters: synaptic decay ``alpha``, membrane decay ``beta``, ``threshold``, reset."""

    alpha: torch.Tensor
    beta: torch.Tensor
    threshold: torch.Tensor
    reset: str = "zero"
    reset_delay: bool = False

    @property
    def lif(self) -> LIFParameters:
        return LIFParameters(self.beta, self.threshold, self.reset, self.reset_delay)


class CubaLIFState(NamedTuple):
    """State: synaptic current ``i`` and membrane ``v``."""

    i: torch.Tensor
    v: torch.Tensor


def cuba_update(
    z: torch.Tensor,
    state: CubaLIFState,
    p: CubaLIFParameters,
    spike_fn: SpikeFn = threshold_spike,
    *,
    decay: DecayFn | None = None,
    saturate: SaturateFn | None = None,
) -> tuple[torch.Tensor, CubaLIFState, torch.Tensor]:
    r"""The CubaLIF kernel: :math:`I_t = \mathrm{sat}(\alpha I_{t-1} + Z_t)`, then the LIF
    kernel (:func:`~spikelfp.neurons.lif_update`) with input :math:`I_t`.

    Args:
        z: synaptic input of one step ``(B, ...)``.
        state: the state before the step (a :class:`CubaLIFState`).
        p: the parameters (a :class:`CubaLIFParameters`).
        spike_fn: the spike function (see :func:`~spikelfp.neurons.lif_update`).
        decay: optional hook ``decay(v, decay_factor)`` for both decays (integer decay).
        saturate: optional hook ``saturate(v)`` (current and membrane).

    Returns:
        ``(S_t, CubaLIFState(I_t, U_t), V_t)``: spikes, the state, the membrane before the reset.

    >>> p = CubaLIFParameters(torch.tensor(0.5), torch.tensor(0.5), torch.tensor(1.0))
    >>> state = CubaLIFState(torch.ones(1), torch.ones(1))
    >>> s, st, v_pre = cuba_update(torch.tensor([1.0]), state, p)
    >>> s.item(), st.i.item(), v_pre.item()
    (1.0, 1.5, 2.0)
    """
    i = leaky_integrate(z, state.i, p.alpha, decay=decay, saturate=saturate)
    s, v, v_pre = lif_update(i, state.v, p.lif, spike_fn, decay=decay, saturate=saturate)
    return s, CubaLIFState(i, v), v_pre


def cuba_step(
    z: torch.Tensor,
    state: CubaLIFState,
    p: CubaLIFParameters,
    spike_fn: SpikeFn = threshold_spike,
) -> tuple[torch.Tensor, CubaLIFState]:
    """One step of a current-based LIF population (pure function; equations in
    :class:`CubaLIF`).

    Args:
        z: synaptic input of one step ``(B, ...)``.
        state: the state before the step (a :class:`CubaLIFState`; zeros to start).
        p: the parameters (a :class:`CubaLIFParameters`).
        spike_fn: the spike function (see :func:`~spikelfp.neurons.lif_update`).

    Returns:
        ``(spikes, state)``: spikes of the shape of ``z`` and the CubaLIFState after the step.

    >>> p = CubaLIFParameters(torch.tensor(0.5), torch.tensor(0.5), torch.tensor(1.0))
    >>> s, st = cuba_step(torch.tensor([1.0]), CubaLIFState(torch.tensor([1.0]), torch.zeros(1)), p)
    >>> s.item(), st.i.item()
    (1.0, 1.5)
    """
    s, state, _ = cuba_update(z, state, p, spike_fn)
    return s, state


def cuba_sequence(
    z: torch.Tensor,
    state: CubaLIFState,
    p: CubaLIFParameters,
    spike_fn: SpikeFn = threshold_spike,
) -> tuple[torch.Tensor, CubaLIFState]:
    """Run a current-based LIF population over a time-first input (pure function).

    Args:
        z: synaptic input ``(T, B, ...)`` (time first).
        state: the state before the first step (a :class:`CubaLIFState`; zeros to start).
        p: the parameters (a :class:`CubaLIFParameters`).
        spike_fn: the spike function (see :func:`~spikelfp.neurons.lif_update`).

    Returns:
        ``(spikes, state)``: spikes ``(T, B, ...)`` and the CubaLIFState after the last step.

    >>> p = CubaLIFParameters(torch.tensor(0.5), torch.tensor(0.5), torch.tensor(1.0))
    >>> s, st = cuba_sequence(torch.ones(3, 1), CubaLIFState(torch.zeros(1), torch.zeros(1)), p)
    >>> s.flatten().tolist(), st.i.item()   # I = 1, 1.5, 1.75; V = 1, 2 -> spike, 1.75 -> spike
    ([0.0, 1.0, 1.0], 1.75)
    """
    out = []
    for z_t in z.unbind(0):
        s, state, _ = cuba_update(z_t, state, p, spike_fn)
        out.append(s)
    return torch.stack(out), state


class CubaLIF(NeuronModule):
    r"""Current-based LIF layer: a synaptic current with its own decay feeds the membrane.

    Per step, with synaptic decay :math:`\alpha` and membrane decay :math:`\beta`:

    .. math::

        I_t &= \alpha\, I_{t-1} + Z_t \\
        V_t &= \beta\, U_{t-1} + I_t \\
        S_t &= H(V_t - \theta)

    and the reset of :math:`U_t` as in :class:`LIF` (immediate or delayed).

    Args:
        alpha: synaptic decay :math:`\alpha` in [0, 1].
        beta: membrane decay :math:`\beta` in [0, 1].
        threshold: firing threshold :math:`\theta` (> 0).
        reset: ``"zero"`` (default), ``"subtract"`` or ``"none"``.
        reset_delay: compute the reset from the previous membrane (see :class:`LIF`).
        shape: feature shape for per-neuron parameters; ``None`` shares one value.
        learn_alpha, learn_beta, learn_threshold: make them ``nn.Parameter`` s.

    Raises:
        ValueError: a decay outside [0, 1], a threshold that is not positive, an unknown
            ``reset``, or a non-finite value.

    Returns ``(spikes, CubaLIFState(i, v))`` when called on ``x`` of shape ``(T, B, ...)``.

    >>> spikes, state = CubaLIF(alpha=0.8, beta=0.9)(torch.rand(10, 4, 16))
    >>> spikes.shape, state.i.shape
    (torch.Size([10, 4, 16]), torch.Size([4, 16]))
    """

    per_neuron = ("alpha", "beta", "threshold")

    def __init__(
        self,
        alpha: float | torch.Tensor = 0.8,
        beta: float | torch.Tensor = 0.9,
        threshold: float | torch.Tensor = 1.0,
        reset: str = "zero",
        reset_delay: bool = False,
        shape: tuple[int, ...] | None = None,
        learn_alpha: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
    ):
        super().__init__()
        _check_reset(reset)
        make_parameter(self, "alpha", alpha, shape, learn_alpha, valid="decay")
        make_parameter(self, "beta", beta, shape, learn_beta, valid="decay")
        make_parameter(self, "threshold", threshold, shape, learn_threshold, valid="positive")
        self.reset = reset
        self.reset_delay = bool(reset_delay)

    @property
    def parameters_tuple(self) -> CubaLIFParameters:
        return CubaLIFParameters(
            self.alpha, self.beta, self.threshold, self.reset, self.reset_delay
        )

    def initial_state(self, x: torch.Tensor) -> CubaLIFState:
        zeros = torch.zeros(x.shape[1:], dtype=x.dtype, device=x.device)
        return CubaLIFState(zeros, zeros.clone())

    def sequence(
        self,
        x: torch.Tensor,
        state: CubaLIFState | None = None,
        spike_fn: SpikeFn = threshold_spike,
    ) -> tuple[torch.Tensor, CubaLIFState]:
        """``(spikes, state)`` over ``x`` ``(T, B, ...)`` with the spike function ``spike_fn``."""
        self.check_input(x)
        if state is None:
            state = self.initial_state(x)
        return cuba_sequence(x, state, self.parameters_tuple, spike_fn)

    def extra_repr(self) -> str:
        return f"reset={self.reset!r}, reset_delay={self.reset_delay}"
