"""LFP for unmodified norse models, and converters between norse and spikelfp.

**Train a norse model with LFP**::

    from spikelfp.interop import norse_composite

    comp = norse_composite()
    with comp.context(net):            # e.g. norse.torch.SequentialState(Linear, LIFCell(), ...)
        state, outs = None, []
        for t in range(x.shape[0]):
            out, state = net(x[t], state)
            outs.append(out)
        out = torch.stack(outs)
        out.backward(reward_fn(out.detach(), y))     # param.grad = -feedback
        opt.step()

Inside the context ``LIFCell``, ``LIF`` (whole sequences), ``LIFBoxCell``, ``LICell``, ``LI``
and ``LIBoxCell`` compute norse's own update (bit-identical outputs and states; tested) through
an LFP rule; states are norse's explicit state tuples (``LIFFeedForwardState(v, i)`` etc.), and
reward flows back through time along them. The rule works relative to the resting potential
``v_leak`` and treats ``v_reset`` as a constant (see
:class:`spikelfp.interop._functions.NorseLFP`); with ``v_leak = v_reset = 0`` it is spikelfp's
CubaLIF / LIF / LI rule on a membrane scaled by ``dt·τ_mem⁻¹``.

Unsupported, reported when the context is entered: ``method="adjoint"`` or a threshold method
whose forward is not the Heaviside step, neuron parameters that require grad (norse's
parameters are constants here), recurrent cells (``LIFRecurrentCell``, ...) and every other
norse neuron type.
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import ClassVar

import torch
from torch import nn

from ..lfp.composites import Composite, default_composite
from ..lfp.rules import nonnegative
from ..neurons import LI, LIF, CubaLIF
from ..sequential import Sequential
from ._functions import NorseLFP
from ._stateless import STATELESS_LAYERS

__all__ = [
    "norse_composite",
    "LIFCellRule",
    "LIFBoxCellRule",
    "LICellRule",
    "LIBoxCellRule",
    "LIFSequenceRule",
    "LISequenceRule",
    "to_norse",
    "from_norse",
    "norse_forward",
]

INSTALL_HINT = "pip install 'spikelfp[baselines]'  (or: pip install norse)"
#: norse threshold methods whose forward is the Heaviside step (they differ in the surrogate).
HEAVISIDE_METHODS = ("super", "heaviside", "triangle", "tanh", "circ", "heavi_erfc")


def require_norse() -> ModuleType:
    """``norse.torch``, or an ImportError that says how to install norse."""
    try:
        return importlib.import_module("norse.torch")
    except ImportError as exc:
        raise ImportError(
            f"spikelfp.interop.norse needs the optional package 'norse' ({exc}). "
            f"Install it with: {INSTALL_HINT}"
        ) from exc


def _f():
    """norse's functional step functions (for identity checks)."""
    from norse.torch.functional import leaky_integrator as li
    from norse.torch.functional import leaky_integrator_box as libox
    from norse.torch.functional import lif, lif_box, reset

    return {
        "lif": lif.lif_feed_forward_step,
        "box": lif_box.lif_box_feed_forward_step,
        "li": li.li_feed_forward_step,
        "libox": libox.li_box_feed_forward_step,
        "reset_value": reset.reset_value,
        "reset_subtract": reset.reset_subtract,
    }


@dataclass(frozen=True)
class _NorseRule:
    """Shared checks and forward of the norse neuron rules (frozen dataclasses:
    :class:`~spikelfp.lfp.Rule` with a ``check`` hook).

    Args:
        epsilon: the stabiliser (>= 0) of the neuron rule's denominators.
    """

    epsilon: float = 1e-6
    #: the norse step function the rule reproduces (a key of ``_f()``)
    kind: ClassVar[str] = ""
    #: the norse base class whose forward the module must keep: "SNNCell" or "SNN"
    base: ClassVar[str] = ""

    def __post_init__(self):
        nonnegative(self, "epsilon", "1e-6")

    def check(self, module) -> str | None:
        from norse.torch.module import snn as snn_mod

        base = getattr(snn_mod, self.base)
        if type(module).forward is not base.forward:
            return f"{type(module).__name__} overrides forward; the rule reproduces norse's own"
        expected = _f()[self.kind]
        if module.activation is not expected:
            name = getattr(module.activation, "__name__", repr(module.activation))
            return (
                f"its activation is {name}, not {expected.__name__} (method='adjoint' and "
                "custom activations have no LFP rule)"
            )
        p = module.p
        method = getattr(p, "method", None)
        if method is not None and method not in HEAVISIDE_METHODS:
            return (
                f"threshold method {method!r} is not a Heaviside step forward (supported: "
                f"{', '.join(HEAVISIDE_METHODS)})"
            )
        reset = getattr(p, "reset_method", None)
        if reset is not None and reset not in (_f()["reset_value"], _f()["reset_subtract"]):
            return "its reset_method is neither norse's reset_value nor reset_subtract"
        learn = [
            f
            for f in getattr(p, "_fields", ())
            if isinstance(getattr(p, f), torch.Tensor) and getattr(p, f).requires_grad
        ]
        if learn:
            return (
                f"parameters {learn} require grad; norse's neuron parameters are constants "
                "for LFP (detach them, or train them with a surrogate gradient)"
            )
        return None

    def _params(self, module):
        p = module.p
        zero = 0.0
        return (
            getattr(p, "tau_syn_inv", zero),
            p.tau_mem_inv,
            getattr(p, "v_leak", zero),
            getattr(p, "v_th", zero),
            getattr(p, "v_reset", zero),
        )

    def _reset(self, module) -> str:
        rm = getattr(module.p, "reset_method", None)
        return "subtract" if rm is not None and rm is _f()["reset_subtract"] else "value"

    def _run(self, module, x, v0, i0):
        if x.is_sparse:
            raise TypeError(
                f"{type(module).__name__}: sparse inputs have no LFP rule; use x.to_dense()"
            )
        ts, tm, vl, vt, vr = self._params(module)
        if i0 is None:
            i0 = torch.zeros((), dtype=x.dtype, device=x.device)
        return NorseLFP.apply(
            x, v0, i0, ts, tm, vl, vt, vr, module.dt, self.kind, self._reset(module), self.epsilon
        )


@dataclass(frozen=True)
class _CellRule(_NorseRule):
    base: ClassVar[str] = "SNNCell"

    def forward(self, module, input_tensor, state=None):
        state = state if state is not None else module.state_fallback(input_tensor)
        i0 = state.i if "i" in state._fields else None
        out, v, i = self._run(module, input_tensor.unsqueeze(0), state.v, i0)
        return out[0], self._state(module, v, i)


@dataclass(frozen=True)
class LIFCellRule(_CellRule):
    """``norse.torch.LIFCell`` (current-based LIF, reset to ``v_reset``)."""

    kind: ClassVar[str] = "lif"

    def _state(self, module, v, i):
        from norse.torch.functional.lif import LIFFeedForwardState

        return LIFFeedForwardState(v=v, i=i)


@dataclass(frozen=True)
class LIFBoxCellRule(_CellRule):
    """``norse.torch.LIFBoxCell`` (LIF without synaptic current; value or subtract reset)."""

    kind: ClassVar[str] = "box"

    def _state(self, module, v, i):
        from norse.torch.functional.lif_box import LIFBoxFeedForwardState

        return LIFBoxFeedForwardState(v=v)


@dataclass(frozen=True)
class LICellRule(_CellRule):
    """``norse.torch.LICell`` (current-based leaky integrator readout; output = membrane)."""

    kind: ClassVar[str] = "li"

    def _state(self, module, v, i):
        from norse.torch.functional.leaky_integrator import LIState

        return LIState(v=v, i=i)


@dataclass(frozen=True)
class LIBoxCellRule(_CellRule):
    """``norse.torch.LIBoxCell`` (leaky integrator readout without current)."""

    kind: ClassVar[str] = "libox"

    def _state(self, module, v, i):
        from norse.torch.functional.leaky_integrator_box import LIBoxState

        return LIBoxState(v=v)


@dataclass(frozen=True)
class _SequenceRule(_NorseRule):
    base: ClassVar[str] = "SNN"

    def forward(self, module, input_tensor, state=None):
        state = state if state is not None else module.state_fallback(input_tensor)
        if not module.record_states:
            out, v, i = self._run(module, input_tensor, state.v, state.i)
            return out, type(state)(v=v, i=i)
        # record_states: one T=1 call per step (exactly the sequence rule), states stacked.
        outs, vs, is_ = [], [], []
        v, i = state.v, state.i
        for t in range(input_tensor.shape[0]):
            o, v, i = self._run(module, input_tensor[t : t + 1], v, i)
            outs.append(o[0])
            vs.append(v)
            is_.append(i)
        return torch.stack(outs), type(state)(v=torch.stack(vs), i=torch.stack(is_))


@dataclass(frozen=True)
class LIFSequenceRule(_SequenceRule):
    """``norse.torch.LIF`` (``LIFCell`` over a whole time-first sequence)."""

    kind: ClassVar[str] = "lif"


@dataclass(frozen=True)
class LISequenceRule(_SequenceRule):
    """``norse.torch.LI`` (``LICell`` over a whole time-first sequence)."""

    kind: ClassVar[str] = "li"


def norse_composite(
    neuron_epsilon: float = 1e-6, synapse_epsilon: float = 0.0, synapse_rule=None
) -> Composite:
    """spikelfp's default composite plus rules for norse's feed-forward neurons.

    Covers ``LIFCell``, ``LIF``, ``LIFBoxCell``, ``LICell``, ``LI`` and ``LIBoxCell``. The
    result is a :class:`~spikelfp.lfp.Composite` whose ``leaf_types`` are norse's neuron base
    classes: every other norse neuron (recurrent cells, adaptive, refractory, ...) is reported
    as unsupported when the context is entered, and the rules' ``check`` hooks refuse options
    they cannot reproduce.

    Returns:
        The composite (arguments as for :func:`spikelfp.lfp.default_composite`).
    """
    nt = require_norse()
    from norse.torch.module import snn as snn_mod

    base = default_composite(neuron_epsilon, synapse_epsilon, synapse_rule)
    rules = {
        nt.LIFCell: LIFCellRule(neuron_epsilon),
        nt.LIF: LIFSequenceRule(neuron_epsilon),
        nt.LIFBoxCell: LIFBoxCellRule(neuron_epsilon),
        nt.LICell: LICellRule(neuron_epsilon),
        nt.LI: LISequenceRule(neuron_epsilon),
        nt.LIBoxCell: LIBoxCellRule(neuron_epsilon),
    }
    leaf = (snn_mod.SNNCell, snn_mod.SNN, snn_mod.SNNRecurrentCell, snn_mod.SNNRecurrent)
    return Composite({**base.rules, **rules}, leaf_types=leaf)


def norse_forward(net: nn.Module, x: torch.Tensor, state=None):
    """Run a per-step norse network (``out, state = net(x[t], state)``) over ``x: (T, B, ...)``.

    Returns ``(out (T, B, ...), final state)``.
    """
    outs = []
    for t in range(x.shape[0]):
        out, state = net(x[t], state)
        outs.append(out)
    return torch.stack(outs), state


# --------------------------------------------------------------------------------------------
# Converters


def _tensor(x, dtype=None) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(x)
    return t.to(dtype) if dtype is not None else t


def to_norse(seq: nn.Sequential, dt: float = 1e-3):
    """A ``norse.torch.SequentialState`` of cells with the same weights and dynamics.

    Run it one step at a time (``out, state = net(x[t], state)``, or :func:`norse_forward`).
    norse's membranes integrate ``dt·τ_mem⁻¹`` times their input, so with
    ``a = dt·τ_mem⁻¹ = 1 - β`` the norse membrane is ``a`` times spikelfp's and its threshold is
    ``a θ``; the spikes are the same (up to floating-point rounding at the threshold).

    ===========================================  ==============================================
    spikelfp                                     norse
    ===========================================  ==============================================
    CubaLIF(reset="zero", reset_delay=False)     LIFCell(τ_syn⁻¹ = (1-α)/dt, τ_mem⁻¹ = (1-β)/dt,
                                                 v_th = aθ, v_leak = v_reset = 0)
    LIF(reset="zero"|"subtract", no delay)       LIFBoxCell(reset_value | reset_subtract)
    LI                                           LIBoxCell (its ``v`` is ``a`` × spikelfp's)
    ===========================================  ==============================================

    Delayed or no resets, ``IF``/``β = 1`` (norse's membrane would not integrate), ``RLIF``
    and ``ALIF`` raise.
    """
    nt = require_norse()
    from norse.torch.functional.leaky_integrator_box import LIBoxParameters
    from norse.torch.functional.lif import LIFParameters
    from norse.torch.functional.lif_box import LIFBoxParameters

    f = _f()
    layers = []
    for idx, m in enumerate(seq):
        where = f"layer {idx} ({type(m).__name__})"
        if isinstance(m, STATELESS_LAYERS):
            layers.append(copy.deepcopy(m))
            continue
        if not isinstance(m, (LIF, CubaLIF, LI)) or type(m).__name__ in ("ALIF", "RLIF"):
            raise ValueError(f"{where} has no norse equivalent (supported: CubaLIF, LIF, LI)")
        beta = _tensor(m.beta)
        if bool(torch.any(beta >= 1)) or bool(torch.any(beta < 0)):
            raise ValueError(f"{where}: norse needs 0 <= beta < 1 (tau_mem_inv = (1-beta)/dt > 0)")
        tau_mem_inv = (1 - beta) / dt
        a = dt * tau_mem_inv
        if isinstance(m, LI):
            layers.append(
                nt.LIBoxCell(
                    LIBoxParameters(
                        tau_mem_inv=tau_mem_inv, v_leak=torch.zeros((), dtype=beta.dtype)
                    ),
                    dt=dt,
                )
            )
            continue
        if m.reset_delay or m.reset == "none":
            raise ValueError(
                f"{where}: norse resets immediately (to a value or by subtraction); "
                f"reset={m.reset!r}, reset_delay={m.reset_delay} has no equivalent"
            )
        v_th = _tensor(m.threshold) * a
        zero = torch.zeros((), dtype=beta.dtype)
        if isinstance(m, CubaLIF):
            if m.reset != "zero":
                raise ValueError(
                    f"{where}: norse's LIFCell resets to v_reset only; "
                    f"reset={m.reset!r} has no equivalent"
                )
            tau_syn_inv = (1 - _tensor(m.alpha)) / dt
            p = LIFParameters(
                tau_syn_inv=tau_syn_inv,
                tau_mem_inv=tau_mem_inv,
                v_leak=zero,
                v_th=v_th,
                v_reset=zero,
                method="super",
            )
            layers.append(nt.LIFCell(p, dt=dt))
        else:
            reset = f["reset_subtract"] if m.reset == "subtract" else f["reset_value"]
            p = LIFBoxParameters(
                tau_mem_inv=tau_mem_inv,
                v_leak=zero,
                v_th=v_th,
                v_reset=zero,
                method="super",
                reset_method=reset,
            )
            layers.append(nt.LIFBoxCell(p, dt=dt))
    return nt.SequentialState(*layers)


def from_norse(model: nn.Module) -> Sequential:
    """A :class:`spikelfp.Sequential` with the same weights and dynamics as a norse model.

    ``model`` is a ``norse.torch.SequentialState`` or ``nn.Sequential`` of stateless layers and
    ``LIFCell``/``LIF``, ``LIFBoxCell`` or ``LIBoxCell``. With ``a = dt·τ_mem⁻¹``:
    ``LIFCell``/``LIF`` → ``CubaLIF(α = 1 - dt·τ_syn⁻¹, β = 1 - a, θ = (v_th - v_leak)/a,
    reset="zero")``, ``LIFBoxCell`` → ``LIF`` (zero or subtract reset), ``LIBoxCell`` → ``LI``
    (spikelfp's membrane is ``(v - v_leak)/a``). Spikes are the same (up to floating-point
    rounding at the threshold). A reset potential other than ``v_leak`` (or a subtract reset with
    ``v_leak ≠ 0``), ``LICell``/``LI`` (current-based readout) and other neurons raise.
    """
    nt = require_norse()
    if not isinstance(model, nn.Sequential):
        raise TypeError(
            f"from_norse converts SequentialState / nn.Sequential models, got "
            f"{type(model).__name__}"
        )
    rules = norse_composite()
    layers = []
    for idx, m in enumerate(model):
        where = f"layer {idx} ({type(m).__name__})"
        if isinstance(m, STATELESS_LAYERS):
            layers.append(copy.deepcopy(m))
            continue
        if type(m) in (nt.LICell, nt.LI):
            raise ValueError(
                f"{where}: spikelfp has no current-based leaky integrator; use "
                "LIBoxCell as the readout"
            )
        if type(m) not in (nt.LIFCell, nt.LIF, nt.LIFBoxCell, nt.LIBoxCell):
            raise ValueError(
                f"{where} has no spikelfp equivalent (supported: LIFCell, LIF, "
                "LIFBoxCell, LIBoxCell)"
            )
        problem = rules.rule_for(m).check(m)
        if problem:
            raise ValueError(f"{where}: {problem}")
        p, dt = m.p, m.dt
        a = _tensor(dt * _tensor(p.tau_mem_inv))
        if bool(torch.any(a <= 0)):
            raise ValueError(f"{where}: dt * tau_mem_inv must be > 0")
        v_leak = _tensor(getattr(p, "v_leak", 0.0))
        if type(m) is nt.LIBoxCell:
            out = LI(beta=0.5)
            _put(out, "beta", 1 - a)
            layers.append(out)
            continue
        v_reset, v_th = _tensor(p.v_reset), _tensor(p.v_th)
        subtract = getattr(p, "reset_method", None) is _f()["reset_subtract"]
        if subtract and bool(torch.any(v_leak != 0)):
            raise ValueError(
                f"{where}: a subtract reset with v_leak != 0 has no spikelfp "
                "equivalent (it subtracts v_th, not v_th - v_leak)"
            )
        if not subtract and bool(torch.any(v_reset != v_leak)):
            raise ValueError(
                f"{where}: v_reset != v_leak; spikelfp's zero reset returns the "
                "membrane to the resting potential"
            )
        theta = (v_th - v_leak) / a
        if type(m) in (nt.LIFCell, nt.LIF):
            out = CubaLIF(reset="zero", reset_delay=False)
            _put(out, "alpha", 1 + -dt * _tensor(p.tau_syn_inv))
        else:
            out = LIF(beta=0.5, reset="subtract" if subtract else "zero", reset_delay=False)
        _put(out, "beta", 1 - a)
        _put(out, "threshold", theta)
        layers.append(out)
    return Sequential(*layers)


def _put(module: nn.Module, name: str, value: torch.Tensor) -> None:
    module._buffers[name] = value.detach().clone()
