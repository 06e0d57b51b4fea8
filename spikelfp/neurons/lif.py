r"""Leaky integrate-and-fire neurons (LIF) and their no-leak special case (IF).

Per step ``t``, with synaptic input :math:`Z_t` (already computed for all steps by the
preceding Linear/Conv layer), decay :math:`\beta`, threshold :math:`\theta` and
:math:`H(v) = 1[v > 0]`:

**Immediate reset** (``reset_delay=False``, the default; what NIR and most hardware do)::

    V_t = β U_{t-1} + Z_t                 membrane before the reset
    S_t = H(V_t - θ)                      spike
    U_t = V_t (1 - S_t)                   reset="zero"
    U_t = V_t - θ S_t                     reset="subtract"
    U_t = V_t                             reset="none"

**Delayed reset** (``reset_delay=True``; with ``reset="subtract"`` this is snntorch ``Leaky``'s
default and lfprop's model; snntorch's zero-reset ``Leaky`` spikes like the immediate reset
above, its ``Synaptic``/``RLeaky`` zero reset like this delayed one)::

    R_t = H(U_{t-1} - θ)                  reset from the previous membrane
    V_t = β U_{t-1} + Z_t
    U_t = V_t (1 - R_t)  |  V_t - θ R_t  |  V_t
    S_t = H(U_t - θ)

``U_0 = 0`` unless a state is given. ``IF`` is LIF with ``β = 1``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .. import _accel as accel
from .base import (
    DecayFn,
    NeuronModule,
    SaturateFn,
    SpikeFn,
    StepBuffers,
    leaky_integrate,
    make_parameter,
    resolve_beta,
    threshold_spike,
)

__all__ = [
    "LIF",
    "IF",
    "LIFParameters",
    "LIFState",
    "lif_reset",
    "lif_update",
    "lif_step",
    "lif_sequence",
    "RESETS",
]

RESETS = ("zero", "subtract", "none")


class LIFParameters(NamedTuple):
    """Parameters of a LIF population (tensors broadcast against the features)."""

    beta: torch.Tensor
    threshold: torch.Tensor
    reset: str = "zero"
    reset_delay: bool = False


class LIFState(NamedTuple):
    """State of a LIF population: the membrane potential ``v`` (``U_t`` above)."""

    v: torch.Tensor


def _check_reset(reset: str) -> None:
    if reset not in RESETS:
        raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")


def _reset_mask(v, threshold, reset, spikes, out):
    """What the reset multiplies or subtracts: ``1 - H(v - θ)`` (zero) or ``H(v - θ)``.

    Both are exact 0/1 values, computed without autograd (the reset is a constant of the
    decomposition and detached in the BPTT baseline, as in snntorch); ``spikes`` are reused
    for the subtractive reset when given.
    """
    if reset == "zero":
        return torch.le(v, threshold, out=out) if out is not None else (v <= threshold).to(v.dtype)
    if spikes is not None:
        return spikes.detach()
    return torch.gt(v, threshold, out=out) if out is not None else (v > threshold).to(v.dtype)


def lif_reset(
    v_pre: torch.Tensor,
    v_prev: torch.Tensor,
    threshold: torch.Tensor,
    reset: str = "zero",
    reset_delay: bool = False,
    spike_fn: SpikeFn = threshold_spike,
    *,
    saturate: SaturateFn | None = None,
    out: StepBuffers | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The spike and reset of every LIF-type neuron, given the membrane before the reset.

    Immediate reset: :math:`S_t = H(V_t - \theta)`, :math:`U_t = V_t (1 - S_t)` (zero),
    :math:`\mathrm{sat}(V_t - \theta S_t)` (subtract) or :math:`V_t` (none). Delayed reset:
    :math:`R_t = H(U_{t-1} - \theta)`, :math:`U_t` as above with :math:`R_t`, then
    :math:`S_t = H(U_t - \theta)`. The zero reset is computed as :math:`V_t \cdot [V_t \le
    \theta]` and the subtractive one as :math:`V_t + (-1 \cdot S_t)\,\theta`: the same bits
    as the formulas (a spike is exactly 0 or 1), and the native kernel's order.

    Args:
        v_pre: the membrane before the reset :math:`V_t`.
        v_prev: the membrane after the previous step :math:`U_{t-1}` (delayed reset only).
        threshold: :math:`\theta` (a tensor; ALIF passes its adaptive :math:`\theta_t`).
        reset: ``"zero"``, ``"subtract"`` or ``"none"``.
        reset_delay: reset from the previous membrane.
        spike_fn: the spike function ``spike_fn(v, threshold, out=None)``.
        saturate: optional hook applied to the subtractive reset's result.
        out: preallocated destinations (:class:`~spikelfp.neurons.base.StepBuffers`) for the
            in-place fast paths; ``out.v`` may be ``v_pre`` itself.

    Returns:
        ``(S_t, U_t)``.

    >>> lif_reset(torch.tensor([0.5, 1.5]), torch.zeros(2), torch.tensor(1.0), "subtract")
    (tensor([0., 1.]), tensor([0.5000, 0.5000]))
    """
    o_v, o_s, o_k = (None, None, None) if out is None else out
    if reset_delay:  # R_t = H(U_{t-1} - θ), before v_pre may be overwritten
        mask = None if reset == "none" else _reset_mask(v_prev, threshold, reset, None, o_k)
    else:
        s = spike_fn(v_pre, threshold, out=o_s)
        mask = None if reset == "none" else _reset_mask(v_pre, threshold, reset, s, o_k)
    if reset == "zero":
        v_new = torch.mul(v_pre, mask, out=o_v)  # V_t (1 - S_t)
    elif reset == "subtract":
        v_new = torch.addcmul(v_pre, mask, threshold, value=-1, out=o_v)  # V_t - θ S_t
        v_new = v_new if saturate is None else saturate(v_new)
    else:
        v_new = v_pre if o_v is None or o_v is v_pre else o_v.copy_(v_pre)
    if reset_delay:
        s = spike_fn(v_new, threshold, out=o_s)  # S_t = H(U_t - θ)
    return s, v_new


def lif_update(
    z: torch.Tensor,
    v: torch.Tensor,
    p: LIFParameters,
    spike_fn: SpikeFn = threshold_spike,
    *,
    decay: DecayFn | None = None,
    saturate: SaturateFn | None = None,
    out: StepBuffers | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The LIF kernel: one step, :math:`V_t = \mathrm{sat}(\beta U_{t-1} + Z_t)` then
    :func:`lif_reset`; the one place the LIF/IF recursion is written.

    The module (:class:`LIF`), the LFP rule's forward (:mod:`spikelfp.lfp.neuron_rules`), the
    BPTT baseline (a surrogate ``spike_fn``) and CubaLIF/RLIF call it; an integer neuron
    passes its integer ``decay`` and ``saturate`` hooks.

    Args:
        z: synaptic input of one step ``(B, ...)``.
        v: the membrane after the previous step :math:`U_{t-1}`.
        p: the parameters (a :class:`LIFParameters`).
        spike_fn: the spike function (default :func:`~spikelfp.neurons.base.threshold_spike`).
        decay: optional hook ``decay(v, beta)`` replacing :math:`\beta v`.
        saturate: optional hook ``saturate(v)`` (after the integration and the subtraction).
        out: preallocated destinations for the in-place fast paths (no autograd, no hooks);
            ``out.v`` must not be ``v`` (the delayed reset reads ``v`` after the integration).

    Returns:
        ``(S_t, U_t, V_t)``: spikes, membrane after and before the reset.

    >>> p = LIFParameters(torch.tensor(0.5), torch.tensor(1.0), reset="subtract")
    >>> lif_update(torch.tensor([0.6, 1.2]), torch.tensor([0.0, 1.0]), p)
    (tensor([0., 1.]), tensor([0.6000, 0.7000]), tensor([0.6000, 1.7000]))
    """
    o_v = None if out is None else out.v
    v_pre = leaky_integrate(z, v, p.beta, decay=decay, saturate=saturate, out=o_v)
    s, v_new = lif_reset(
        v_pre, v, p.threshold, p.reset, p.reset_delay, spike_fn, saturate=saturate, out=out
    )
    return s, v_new, v_pre


def lif_step(
    z: torch.Tensor, state: LIFState, p: LIFParameters, spike_fn: SpikeFn = threshold_spike
) -> tuple[torch.Tensor, LIFState]:
    """Advance a LIF population by one step (pure function; equations in :class:`LIF`).

    Args:
        z: synaptic input of one step ``(B, ...)``.
        state: the state before the step (a :class:`LIFState`; zeros to start).
        p: the parameters (a :class:`LIFParameters`).
        spike_fn: the spike function (see :func:`lif_update`).

    Returns:
        ``(spikes, state)``: spikes of the shape of ``z`` and the LIFState after the step.

    >>> p = LIFParameters(torch.tensor(0.5), torch.tensor(1.0))
    >>> s, st = lif_step(torch.tensor([0.6, 1.2]), LIFState(torch.zeros(2)), p)
    >>> s, st.v
    (tensor([0., 1.]), tensor([0.6000, 0.0000]))
    """
    s, v, _ = lif_update(z, state.v, p, spike_fn)
    return s, LIFState(v)


def lif_sequence(
    z: torch.Tensor, state: LIFState, p: LIFParameters, spike_fn: SpikeFn = threshold_spike
) -> tuple[torch.Tensor, LIFState]:
    """Run a LIF population over a time-first input ``z`` of shape ``(T, B, ...)``.

    Without autograd to record, the kernel writes into preallocated outputs and updates the
    membrane in place (on CPU the fused native kernel, :mod:`spikelfp._native`, does the same
    arithmetic in one pass); the results are the same bits.

    Args:
        z: synaptic input ``(T, B, ...)`` (time first).
        state: the state before the first step (a :class:`LIFState`; zeros to start).
        p: the parameters (a :class:`LIFParameters`).
        spike_fn: the spike function (see :func:`lif_update`).

    Returns:
        ``(spikes, state)``: spikes ``(T, B, ...)`` and the LIFState after the last step.

    >>> p = LIFParameters(torch.tensor(1.0), torch.tensor(1.0), reset="subtract")
    >>> s, st = lif_sequence(torch.full((4, 1), 0.5), LIFState(torch.zeros(1)), p)
    >>> s.flatten().tolist(), st.v.item()   # V = 0.5, 1.0 (not > θ), 1.5 -> spike, 1.0
    ([0.0, 0.0, 1.0, 0.0], 1.0)
    """
    if spike_fn is threshold_spike and _inplace_ok(z, state.v, p):
        return _lif_sequence_inplace(z, state.v, p)
    v = state.v
    out = []
    for z_t in z.unbind(0):
        s, v, _ = lif_update(z_t, v, p, spike_fn)
        out.append(s)
    return torch.stack(out), LIFState(v)


def _inplace_ok(z: torch.Tensor, v: torch.Tensor, p: LIFParameters) -> bool:
    """Nothing to record for autograd, and shapes/dtypes that need no broadcasting of the state."""
    tensors = (z, v, p.beta, p.threshold)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    if v.shape != z.shape[1:] or any(t.dtype != z.dtype or t.device != z.device for t in tensors):
        return False
    try:
        return torch.broadcast_shapes(v.shape, p.beta.shape, p.threshold.shape) == v.shape
    except RuntimeError:
        return False


def lif_inplace_step(p: LIFParameters, v0: torch.Tensor):
    """:func:`lif_update` as an in-place step for :mod:`spikelfp._accel.recurrence`:
    ``step(z_t, v, v_next, out)`` writes :math:`U_t` into ``v_next`` and the spikes into ``out``
    (the out-of-place kernel's results, bit for bit); used by the module's no-grad path and the
    LFP rule's forward and replay."""
    scratch = None if p.reset == "none" else torch.empty_like(v0)  # the reset mask

    def step(z_t, v, v_next, out):
        lif_update(z_t, v, p, out=StepBuffers(v_next, out, scratch))

    return step


def _lif_sequence_inplace(z: torch.Tensor, v0: torch.Tensor, p: LIFParameters):
    """:func:`lif_sequence` without autograd: :func:`lif_update` writing into preallocated
    outputs, the membrane updated in place; on CPU the fused native kernel (a verified fast
    path of the same arithmetic, chosen by :func:`spikelfp._accel.lif_path`).
    """
    path = accel.lif_path(z, v0, p.beta, p.threshold)
    if path is accel.LIFPath.NATIVE:
        out, v = accel.lif_forward_fused(z, v0, p.beta, p.threshold, p.reset, p.reset_delay, False)
        return out, LIFState(v)
    out, v = accel.run_inplace(z, v0, lif_inplace_step(p, v0))
    return out, LIFState(v)


class LIF(NeuronModule):
    r"""Leaky integrate-and-fire layer.

    Per step :math:`t`, with synaptic input :math:`Z_t` (computed for all steps at once by the
    preceding Linear/Conv layer), decay :math:`\beta`, threshold :math:`\theta` and
    :math:`H(v) = 1[v > 0]`, the immediate reset (``reset_delay=False``, the default; what NIR
    and most hardware do) is

    .. math::

        V_t &= \beta\, U_{t-1} + Z_t \\
        S_t &= H(V_t - \theta) \\
        U_t &= \begin{cases} V_t\,(1 - S_t) & \text{(reset zero)} \\
                             V_t - \theta\, S_t & \text{(reset subtract)} \\
                             V_t & \text{(reset none)} \end{cases}

    where :math:`V_t` is the membrane before the reset, :math:`S_t` the spike and :math:`U_t`
    the membrane after it (:math:`U_0 = 0` unless a state is given). The delayed reset
    (``reset_delay=True``; with ``reset="subtract"``, snntorch ``Leaky``'s default) resets from
    the previous membrane, :math:`R_t = H(U_{t-1} - \theta)`:

    .. math::

        V_t &= \beta\, U_{t-1} + Z_t \\
        U_t &= V_t\,(1 - R_t) \;\text{ or }\; V_t - \theta\, R_t \;\text{ or }\; V_t \\
        S_t &= H(U_t - \theta)

    Args:
        beta: membrane decay :math:`\beta` in [0, 1] (default 0.9), or give ``tau`` and ``dt``
            instead (:math:`\beta = e^{-dt/\tau}`), not both.
        threshold: firing threshold :math:`\theta` (> 0).
        reset: ``"zero"`` (default), ``"subtract"`` or ``"none"``.
        reset_delay: compute the reset from the previous membrane (snntorch ``Leaky`` with
            subtract reset).
        shape: feature shape for per-neuron ``beta``/``threshold`` (e.g. ``(256,)`` or
            ``(C, 1, 1)``); ``None`` shares one value.
        learn_beta, learn_threshold: make them ``nn.Parameter`` s (LFP gives them feedback).
        tau, dt: membrane time constant and time step, instead of ``beta``.

    Raises:
        ValueError: a decay outside [0, 1], a threshold that is not positive, an unknown
            ``reset``, or a non-finite value.

    Calling the layer on ``x`` of shape ``(T, B, ...)`` (and an optional :class:`LIFState`)
    returns ``(spikes, state)``: spikes of the shape of ``x``, the state after the last step.

    >>> lif = LIF(beta=0.9)
    >>> spikes, state = lif(torch.rand(30, 8, 100))
    >>> spikes.shape, state.v.shape
    (torch.Size([30, 8, 100]), torch.Size([8, 100]))
    """

    per_neuron = ("beta", "threshold")

    def __init__(
        self,
        beta: float | torch.Tensor | None = None,
        threshold: float | torch.Tensor = 1.0,
        reset: str = "zero",
        reset_delay: bool = False,
        shape: tuple[int, ...] | None = None,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        tau: float | None = None,
        dt: float | None = None,
    ):
        super().__init__()
        _check_reset(reset)
        if beta is None and tau is None and dt is None:
            beta = 0.9  # the default decay
        beta = resolve_beta(beta, tau, dt)  # refuses beta together with tau/dt
        make_parameter(self, "beta", beta, shape, learn_beta, valid="decay")
        make_parameter(self, "threshold", threshold, shape, learn_threshold, valid="positive")
        self.reset = reset
        self.reset_delay = bool(reset_delay)

    @property
    def parameters_tuple(self) -> LIFParameters:
        return LIFParameters(self.beta, self.threshold, self.reset, self.reset_delay)

    def initial_state(self, x: torch.Tensor) -> LIFState:
        return LIFState(torch.zeros(x.shape[1:], dtype=x.dtype, device=x.device))

    def sequence(
        self, x: torch.Tensor, state: LIFState | None = None, spike_fn: SpikeFn = threshold_spike
    ) -> tuple[torch.Tensor, LIFState]:
        """``(spikes, state)`` over ``x`` ``(T, B, ...)`` with the spike function ``spike_fn``."""
        self.check_input(x)
        if state is None:
            state = self.initial_state(x)
        return lif_sequence(x, state, self.parameters_tuple, spike_fn)

    def extra_repr(self) -> str:
        beta = self.beta.item() if self.beta.dim() == 0 else f"shape {tuple(self.beta.shape)}"
        th = self.threshold
        th = th.item() if th.dim() == 0 else f"shape {tuple(th.shape)}"
        return f"beta={beta}, threshold={th}, reset={self.reset!r}, reset_delay={self.reset_delay}"


class IF(LIF):
    r"""Integrate-and-fire layer: :class:`LIF` without leak (:math:`\beta = 1`).

    .. math::

        V_t = U_{t-1} + Z_t, \qquad S_t = H(V_t - \theta), \qquad
        U_t = V_t\,(1 - S_t) \;\text{ (reset zero; subtract: } V_t - \theta\, S_t \text{)}

    Args:
        threshold: firing threshold :math:`\theta` (> 0).
        reset: ``"zero"`` (default), ``"subtract"`` or ``"none"``.
        reset_delay: compute the reset from the previous membrane (see :class:`LIF`).
        shape: feature shape for a per-neuron ``threshold``; ``None`` shares one value.
        learn_threshold: make the threshold an ``nn.Parameter`` (LFP gives it feedback).

    Raises:
        ValueError: a threshold that is not positive or an unknown ``reset``.

    >>> spikes, state = IF(threshold=1.0)(torch.full((5, 1, 1), 0.6))
    >>> spikes.flatten().tolist()   # 0.6, 1.2 -> spike, reset to 0, 0.6, 1.2 -> spike, 0.6
    [0.0, 1.0, 0.0, 1.0, 0.0]
    """

    def __init__(
        self,
        threshold: float | torch.Tensor = 1.0,
        reset: str = "zero",
        reset_delay: bool = False,
        shape: tuple[int, ...] | None = None,
        learn_threshold: bool = False,
    ):
        super().__init__(
            beta=1.0,
            threshold=threshold,
            reset=reset,
            reset_delay=reset_delay,
            shape=shape,
            learn_beta=False,
            learn_threshold=learn_threshold,
        )

    def extra_repr(self) -> str:
        th = self.threshold
        th = th.item() if th.dim() == 0 else f"shape {tuple(th.shape)}"
        return f"threshold={th}, reset={self.reset!r}, reset_delay={self.reset_delay}"
