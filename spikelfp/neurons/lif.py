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

from .. import _native as native
from .base import NeuronModule, check_time_first, heaviside, make_parameter, resolve_beta

__all__ = ["LIF", "IF", "LIFParameters", "LIFState", "lif_step", "lif_sequence", "RESETS"]

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


def lif_update(
    z: torch.Tensor, v: torch.Tensor, p: LIFParameters
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step: returns ``(S_t, U_t, V_t)`` (spikes, membrane after and before the reset)."""
    v_pre = p.beta * v + z
    if p.reset_delay:
        r = heaviside(v - p.threshold)
        if p.reset == "zero":
            v_new = v_pre * (1 - r)
        elif p.reset == "subtract":
            v_new = v_pre - p.threshold * r
        else:
            v_new = v_pre
        s = heaviside(v_new - p.threshold)
    else:
        s = heaviside(v_pre - p.threshold)
        if p.reset == "zero":
            v_new = v_pre * (1 - s)
        elif p.reset == "subtract":
            v_new = v_pre - p.threshold * s
        else:
            v_new = v_pre
    return s, v_new, v_pre


def lif_step(z: torch.Tensor, state: LIFState, p: LIFParameters) -> tuple[torch.Tensor, LIFState]:
    """Advance a LIF population by one step (pure function; equations in :class:`LIF`).

    Args:
        z: synaptic input of one step ``(B, ...)``.
        state: the state before the step (a :class:`LIFState`; zeros to start).
        p: the parameters (a :class:`LIFParameters`).

    Returns:
        ``(spikes, state)``: spikes of the shape of ``z`` and the LIFState after the step.

    >>> p = LIFParameters(torch.tensor(0.5), torch.tensor(1.0))
    >>> s, st = lif_step(torch.tensor([0.6, 1.2]), LIFState(torch.zeros(2)), p)
    >>> s, st.v
    (tensor([0., 1.]), tensor([0.6000, 0.0000]))
    """
    s, v, _ = lif_update(z, state.v, p)
    return s, LIFState(v)


def lif_sequence(
    z: torch.Tensor, state: LIFState, p: LIFParameters
) -> tuple[torch.Tensor, LIFState]:
    """Run a LIF population over a time-first input ``z`` of shape ``(T, B, ...)``.

    Args:
        z: synaptic input ``(T, B, ...)`` (time first).
        state: the state before the first step (a :class:`LIFState`; zeros to start).
        p: the parameters (a :class:`LIFParameters`).

    Returns:
        ``(spikes, state)``: spikes ``(T, B, ...)`` and the LIFState after the last step.

    >>> p = LIFParameters(torch.tensor(1.0), torch.tensor(1.0), reset="subtract")
    >>> s, st = lif_sequence(torch.full((4, 1), 0.5), LIFState(torch.zeros(1)), p)
    >>> s.flatten().tolist(), st.v.item()   # V = 0.5, 1.0 (not > θ), 1.5 -> spike, 1.0
    ([0.0, 0.0, 1.0, 0.0], 1.0)
    """
    if _inplace_ok(z, state.v, p):
        return _lif_sequence_inplace(z, state.v, p)
    v = state.v
    out = []
    for z_t in z.unbind(0):
        s, v, _ = lif_update(z_t, v, p)
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


def _lif_sequence_inplace(z: torch.Tensor, v0: torch.Tensor, p: LIFParameters):
    """:func:`lif_sequence` without autograd: outputs preallocated, the membrane updated in place.

    Bit-identical to :func:`lif_update` (a spike is 0 or 1, so the resets are exact); on CPU
    the fused native kernel does the same arithmetic in one pass (``spikelfp._native``).
    """
    if z.is_contiguous() and native.usable(z, v0, p.beta, p.threshold):
        out, v = native.lif_forward(z, v0, p.beta, p.threshold, p.reset, p.reset_delay, False)
        return out, LIFState(v)
    out = torch.empty_like(z)
    v = v0.clone()
    keep = torch.empty_like(v) if p.reset == "zero" else None
    beta, theta = p.beta, p.threshold
    for t in range(z.shape[0]):
        if p.reset_delay:
            r = out[t - 1] if t else (v > theta).to(v.dtype)
            if p.reset == "zero":
                torch.le(v, theta, out=keep)
            v.mul_(beta).add_(z[t])
            if p.reset == "zero":
                v.mul_(keep)
            elif p.reset == "subtract":
                v.addcmul_(r, theta, value=-1)
            torch.gt(v, theta, out=out[t])
        else:
            v.mul_(beta).add_(z[t])
            s = torch.gt(v, theta, out=out[t])
            if p.reset == "zero":
                v.mul_(torch.le(v, theta, out=keep))
            elif p.reset == "subtract":
                v.addcmul_(s, theta, value=-1)
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

    def forward(
        self, x: torch.Tensor, state: LIFState | None = None
    ) -> tuple[torch.Tensor, LIFState]:
        check_time_first(x, type(self).__name__)
        self._check_features(x, "beta", self.beta)
        self._check_features(x, "threshold", self.threshold)
        if state is None:
            state = self.initial_state(x)
        return lif_sequence(x, state, self.parameters_tuple)

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
