"""LFP for unmodified snntorch models, and converters between snntorch and spikelfp.

**Train an snntorch model with LFP**::

    import snntorch as snn
    from spikelfp.interop import snntorch_composite
    from spikelfp.lfp import rate_coded_reward

    comp = snntorch_composite()
    with comp.context(net):                       # net: any nn.Module of snntorch neurons
        spk_rec, mem_rec = net(x)                  # your usual per-step loop inside forward
        reward = rate_coded_reward(spk_rec.detach(), y)
        opt.zero_grad()
        spk_rec.backward(reward)                   # param.grad = -feedback
        opt.step()

or ``spikelfp.lfp.lfp_step(net, x, y, rate_coded_reward, opt, composite=comp)`` when ``net(x)``
returns the output spikes ``(T, B, C)`` first.

Inside the context every ``snn.Leaky``, ``snn.Synaptic`` and ``snn.RLeaky`` (and
``nn.Linear``/``ConvNd``/pooling, as in :func:`spikelfp.lfp.default_composite`) computes its
usual forward (the spikes are bit-identical; tested) through an LFP rule. Each call is one time
step, so the rule's reward flows back through time along the state tensors (``mem``, ``syn``,
``spk``) through autograd; this reproduces the sequence-level rule exactly. Both of snntorch's
conventions work: states passed explicitly (``spk, mem = lif(cur, mem)``) and
``init_hidden=True`` (state on the module; ``output=True``, ``reset_hidden()``,
``snntorch.utils.reset`` and ``detach_hidden()`` behave as usual). On exit the hidden states are
put back to what they were on entry; ``snntorch.SpikingNeuron.instances`` is never touched.

Options with no LFP rule (``inhibition=True``, ``state_quant``, a spike function whose forward
is not the Heaviside step, a subclass with its own ``forward``) and neuron types without a rule
raise :class:`~spikelfp.lfp.UnsupportedModuleError` when the context is entered, listing the
offending modules and the supported types.

Two differences from snntorch's own forward, both only visible in float64 models: the spikes
come out in the membrane's dtype (snntorch always returns float32 spikes), and nothing here is
differentiable by a surrogate gradient (use the model outside the context for BPTT).
"""

from __future__ import annotations

import copy
import importlib
import math
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import ClassVar

import torch
from torch import nn

from ..lfp.composites import Composite, default_composite
from ..lfp.rules import nonnegative
from ..neurons import LI, LIF, RLIF, CubaLIF
from ..neurons.alif import ALIF
from ..sequential import Sequential
from ._functions import OneToOneLFP, SnnLeakyLFP, SnnSynapticLFP
from ._stateless import STATELESS_LAYERS

__all__ = [
    "snntorch_composite",
    "LeakyRule",
    "SynapticRule",
    "RLeakyRule",
    "RecurrentOneToOneRule",
    "to_snntorch",
    "from_snntorch",
    "snntorch_forward",
    "reset_snntorch_state",
]

INSTALL_HINT = "pip install 'spikelfp[baselines]'  (or: pip install snntorch)"


def require_snntorch() -> ModuleType:
    """The ``snntorch`` module, or an ImportError that says how to install it."""
    try:
        return importlib.import_module("snntorch")
    except ImportError as exc:
        raise ImportError(
            f"spikelfp.interop.snntorch needs the optional package 'snntorch' ({exc}). "
            f"Install it with: {INSTALL_HINT}"
        ) from exc


_STATE_FUNCTIONS = {"_base_sub": "subtract", "_base_zero": "zero", "_base_int": "none"}
_RESET_NAMES = ("subtract", "zero", "none")


def _modes(module) -> tuple[str, bool]:
    """(reset, reset_delay) of a snntorch neuron, as its forward will apply them."""
    return _RESET_NAMES[int(module.reset_mechanism_val)], bool(module.reset_delay)


def _probe_heaviside(module) -> bool:
    probe = torch.tensor([-1.0, -1e-6, 0.0, 1e-6, 1.0])
    with torch.no_grad():
        try:
            out = module.spike_grad(probe)
        except Exception:  # noqa: BLE001 - any failure means we cannot vouch for it
            return False
    return isinstance(out, torch.Tensor) and torch.equal(
        out.float(), torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0])
    )


@dataclass(frozen=True)
class _SnnRule:
    """Shared checks and hidden-state handling of the snntorch neuron rules (frozen
    dataclasses: :class:`~spikelfp.lfp.Rule` with its ``check`` and ``hidden_state``
    hooks).

    Args:
        epsilon: the stabiliser (>= 0) of the neuron rule's denominators.
    """

    epsilon: float = 1e-6
    #: the snntorch class whose own dynamics the rule reproduces
    cls_name: ClassVar[str] = ""
    #: snntorch's hidden-state attributes the forward updates
    states: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        nonnegative(self, "epsilon", "1e-6")

    def check(self, module) -> str | None:
        snn = require_snntorch()
        base = getattr(snn, self.cls_name)
        if type(module).forward is not base.forward:
            return (
                f"{type(module).__name__} overrides {self.cls_name}.forward; the LFP rule "
                f"reproduces {self.cls_name}'s own dynamics only"
            )
        if getattr(module, "inhibition", False):
            return "inhibition=True (winner-take-all across neurons) has no LFP rule"
        if getattr(module, "state_quant", False):
            return "state_quant (quantised state) has no LFP rule"
        state_fn = getattr(getattr(module, "state_function", None), "__name__", "")
        if _STATE_FUNCTIONS.get(state_fn) != _modes(module)[0]:
            return (
                f"reset_mechanism was changed after construction (the forward uses "
                f"{state_fn} but reset_mechanism is {module.reset_mechanism!r}); "
                "re-create the neuron with the reset you want"
            )
        if not _probe_heaviside(module):
            return "its spike function's forward is not the Heaviside step 1[mem > threshold]"
        return None

    def hidden_state(self, module) -> tuple[str, ...]:
        return (*self.states, "reset")


def _load_state(module, name: str, value, input_):
    """snntorch's state handling: an explicit value replaces the stored one; a stored state of
    another shape than the input is replaced by zeros."""
    if value is not None:
        setattr(module, name, value)
    cur = getattr(module, name)
    if cur.shape != input_.shape:
        setattr(module, name, torch.zeros_like(input_, device=cur.device))
    return getattr(module, name)


def _check_hidden(module, passed: bool, message: str) -> None:
    if module.init_hidden and passed:
        raise TypeError(message)


def _returns(module, spk, *states):
    if module.output or not module.init_hidden:
        return (spk, *states)
    return spk


@dataclass(frozen=True)
class LeakyRule(_SnnRule):
    """LFP rule for ``snntorch.Leaky`` (any reset, delayed or immediate, learnable β/θ/gain).

    See :class:`spikelfp.interop._functions.SnnLeakyLFP` for the equations.
    """

    cls_name: ClassVar[str] = "Leaky"
    states: ClassVar[tuple[str, ...]] = ("mem",)

    def forward(self, module, input_, mem=None):
        _check_hidden(
            module,
            mem is not None,
            "`mem` should not be passed as an argument while `init_hidden=True`",
        )
        v0 = _load_state(module, "mem", mem, input_)
        reset, delay = _modes(module)
        spk, v, r = SnnLeakyLFP.apply(
            input_.unsqueeze(0),
            None,
            v0,
            module.beta.clamp(0, 1),
            module.threshold,
            module.graded_spikes_factor,
            reset,
            delay,
            reset == "zero",
            self.epsilon,
        )
        module.reset = r
        module.mem = v
        return _returns(module, spk[0], module.mem)


@dataclass(frozen=True)
class RLeakyRule(_SnnRule):
    """LFP rule for ``snntorch.RLeaky``; its ``recurrent`` synapse keeps its own rule."""

    cls_name: ClassVar[str] = "RLeaky"
    states: ClassVar[tuple[str, ...]] = ("spk", "mem")

    def forward(self, module, input_, spk=None, mem=None):
        _check_hidden(
            module,
            mem is not None or spk is not None,
            "When `init_hidden=True`,RLeaky expects 1 input argument.",
        )
        s0 = _load_state(module, "spk", spk, input_)
        v0 = _load_state(module, "mem", mem, input_)
        rec = module.recurrent(s0)
        reset, delay = _modes(module)
        out, v, r = SnnLeakyLFP.apply(
            input_.unsqueeze(0),
            rec.unsqueeze(0),
            v0,
            module.beta.clamp(0, 1),
            module.threshold,
            module.graded_spikes_factor,
            reset,
            delay,
            False,
            self.epsilon,
        )
        module.reset = r
        module.mem = v
        module.spk = out[0].clone()  # not a view: snntorch's detach_hidden() detaches in place
        return _returns(module, module.spk, module.mem)


@dataclass(frozen=True)
class SynapticRule(_SnnRule):
    """LFP rule for ``snntorch.Synaptic`` (spikelfp's CubaLIF rule on snntorch's update)."""

    cls_name: ClassVar[str] = "Synaptic"
    states: ClassVar[tuple[str, ...]] = ("syn", "mem")

    def forward(self, module, input_, syn=None, mem=None):
        _check_hidden(
            module,
            mem is not None or syn is not None,
            "`mem` or `syn` should not be passed as an argument while `init_hidden=True`",
        )
        i0 = _load_state(module, "syn", syn, input_)
        v0 = _load_state(module, "mem", mem, input_)
        reset, delay = _modes(module)
        spk, i, v, r = SnnSynapticLFP.apply(
            input_.unsqueeze(0),
            i0,
            v0,
            module.alpha.clamp(0, 1),
            module.beta.clamp(0, 1),
            module.threshold,
            module.graded_spikes_factor,
            reset,
            delay,
            self.epsilon,
        )
        module.reset = r
        module.syn = i
        module.mem = v
        return _returns(module, spk[0], module.syn, module.mem)


@dataclass(frozen=True)
class RecurrentOneToOneRule:
    """ε-rule of RLeaky's one-to-one recurrent synapse ``spk * V``."""

    def forward(self, module, x):
        return OneToOneLFP.apply(
            x,
            torch.as_tensor(module.V, dtype=x.dtype, device=x.device)
            if not isinstance(module.V, torch.Tensor)
            else module.V,
        )


def snntorch_composite(
    neuron_epsilon: float = 1e-6, synapse_epsilon: float = 0.0, synapse_rule=None
) -> Composite:
    """spikelfp's default composite plus rules for snntorch's ``Leaky``, ``Synaptic``, ``RLeaky``.

    The arguments are those of :func:`spikelfp.lfp.default_composite`. The result is a
    :class:`~spikelfp.lfp.Composite` with ``leaf_types=(snntorch.SpikingNeuron,)``: every
    other snntorch neuron (``Alpha``, ``Lapicque``, ``RSynaptic``, ``SLSTM``, ...) is reported
    as unsupported when the context is entered, and the rules' ``check`` hooks refuse options
    they cannot reproduce.

    Returns:
        The composite; ``with comp.context(net): ...`` restores snntorch's hidden state too.
    """
    snn = require_snntorch()
    from snntorch._neurons.rleaky import RecurrentOneToOne

    base = default_composite(neuron_epsilon, synapse_epsilon, synapse_rule)
    rules = {
        snn.Leaky: LeakyRule(neuron_epsilon),
        snn.Synaptic: SynapticRule(neuron_epsilon),
        snn.RLeaky: RLeakyRule(neuron_epsilon),
        RecurrentOneToOne: RecurrentOneToOneRule(),
    }
    return Composite({**base.rules, **rules}, leaf_types=(snn.SpikingNeuron,))


# --------------------------------------------------------------------------------------------
# Running and resetting snntorch networks


def reset_snntorch_state(net: nn.Module) -> None:
    """Zero the hidden state of every snntorch neuron in ``net`` (and only those).

    Unlike ``snntorch.utils.reset`` this does not walk the global
    ``snntorch.SpikingNeuron.instances`` list, so other models keep their state.
    """
    snn = require_snntorch()
    for m in net.modules():
        if isinstance(m, snn.SpikingNeuron):
            for name in ("mem", "syn", "spk"):
                buf = m._buffers.get(name)
                if buf is not None:
                    m._buffers[name] = torch.zeros(0, dtype=buf.dtype, device=buf.device)


def snntorch_forward(net: nn.Module, x: torch.Tensor):
    """Run an ``init_hidden=True`` snntorch network over ``x: (T, B, ...)``, one step per call.

    Resets its hidden state first. Returns ``(out (T, B, ...), mem (T, B, ...) or None)``: the
    stacked first output of each step and, when the network returns ``(spk, mem)``
    (``output=True`` on its last neuron), the stacked membrane.
    """
    reset_snntorch_state(net)
    outs, mems = [], []
    for t in range(x.shape[0]):
        y = net(x[t])
        if isinstance(y, tuple):
            outs.append(y[0])
            mems.append(y[-1])
        else:
            outs.append(y)
    return torch.stack(outs), (torch.stack(mems) if mems else None)


# --------------------------------------------------------------------------------------------
# Converters


_QUIRK = (
    "snntorch's reset_delay=False with subtract reset tests a spike against M' = βM + Z - θR "
    "(R = 1 while the previous membrane, after its reset, is still above θ); spikelfp's "
    "immediate subtract reset tests βU + Z. The two networks spike identically unless a "
    "membrane stays above threshold after its reset (one step's input above 2θ)"
)


def _set(module: nn.Module, name: str, value: torch.Tensor, learnable: bool) -> None:
    """Put ``value`` (exact dtype and shape) on ``module`` as parameter or buffer ``name``."""
    value = value.detach().clone()
    module._parameters.pop(name, None)
    module._buffers.pop(name, None)
    if learnable:
        module._parameters[name] = nn.Parameter(value)
    else:
        module._buffers[name] = value


def _learnable(module, name) -> bool:
    return isinstance(getattr(module, name), nn.Parameter)


def _unit_gain(module, who: str) -> None:
    g = module.graded_spikes_factor
    if isinstance(g, nn.Parameter) or not torch.all(g == 1):
        raise ValueError(
            f"{who}: graded_spikes_factor={g.detach().tolist()} has no spikelfp equivalent "
            "(spikelfp spikes are 0/1); fold it into the next layer's weights first"
        )


def from_snntorch(model: nn.Module) -> Sequential:
    """A :class:`spikelfp.Sequential` with the same weights and dynamics as ``model``.

    ``model`` is an ``nn.Sequential`` (the snntorch idiom with ``init_hidden=True`` neurons) of
    Linear/Conv/pooling/Flatten/Dropout/BatchNorm layers and ``snn.Leaky``, ``snn.Synaptic`` or
    ``snn.RLeaky`` (``all_to_all`` linear or one-to-one) neurons. Mapping (spikes identical):

    ===========================================  ==============================================
    snntorch                                     spikelfp
    ===========================================  ==============================================
    Leaky subtract, reset_delay=True             LIF(reset="subtract", reset_delay=True)
    Leaky zero (either delay)                    LIF(reset="zero", reset_delay=False)
    Leaky none, threshold=inf                    LI (membrane readout)
    Leaky none                                   LIF(reset="none")
    Synaptic (any reset and delay)               CubaLIF(same reset and delay)
    RLeaky (any reset and delay)                 RLIF(same); recurrent bias folded into the
                                                 preceding Linear's bias; one-to-one V → diag
    ===========================================  ==============================================

    snntorch's ``reset_delay=False`` with ``reset="subtract"`` is converted to spikelfp's
    immediate subtract reset with a warning: the two spike identically unless a membrane
    stays above threshold after its reset (see the warning's text). Learnable β/α/θ stay
    learnable; snntorch clamps β and α to [0, 1] in its forward, so the clamped values are used.
    """
    snn = require_snntorch()
    if not isinstance(model, nn.Sequential):
        raise TypeError(
            f"from_snntorch converts nn.Sequential models, got {type(model).__name__}; for a "
            "custom nn.Module with a forward loop, build nn.Sequential(...) of its layers in the "
            "order the loop calls them (with init_hidden=True neurons)"
        )
    layers: list[nn.Module] = []
    for idx, m in enumerate(model):
        if isinstance(m, snn.SpikingNeuron):
            problem = (
                _rule_for_convert(m).check(m)
                if type(m) in (snn.Leaky, snn.Synaptic, snn.RLeaky)
                else (
                    f"snntorch.{type(m).__name__} has no spikelfp equivalent (supported: Leaky, "
                    "Synaptic, RLeaky)"
                )
            )
            if problem:
                raise ValueError(f"layer {idx} ({type(m).__name__}): {problem}")
            _unit_gain(m, f"layer {idx} ({type(m).__name__})")
            layers.append(_neuron_from_snntorch(snn, m, idx, layers))
        elif isinstance(m, STATELESS_LAYERS):
            layers.append(copy.deepcopy(m))
        else:
            raise ValueError(
                f"layer {idx} ({type(m).__name__}) has no spikelfp equivalent; supported: "
                "Linear, ConvNd, pooling, Flatten, Dropout, BatchNorm, snn.Leaky, snn.Synaptic, "
                "snn.RLeaky"
            )
    return Sequential(*layers)


def _rule_for_convert(m):
    return {"Leaky": LeakyRule, "Synaptic": SynapticRule, "RLeaky": RLeakyRule}[type(m).__name__]()


def _neuron_from_snntorch(snn, m, idx: int, previous: list[nn.Module]) -> nn.Module:
    reset, delay = _modes(m)
    beta = m.beta.detach().clamp(0, 1)
    theta = m.threshold.detach()
    if reset == "subtract" and not delay:
        warnings.warn(f"layer {idx}: {_QUIRK}", stacklevel=3)
    if isinstance(m, snn.Leaky):
        if reset == "none" and bool(torch.all(torch.isinf(theta) & (theta > 0))):
            out = LI(beta=0.5)
            _set(out, "beta", beta, _learnable(m, "beta"))
            return out
        if reset == "zero":
            delay = False
        out = LIF(beta=0.5, reset=reset, reset_delay=delay)
    elif isinstance(m, snn.Synaptic):
        out = CubaLIF(reset=reset, reset_delay=delay)
        _set(out, "alpha", m.alpha.detach().clamp(0, 1), _learnable(m, "alpha"))
    else:
        out = _rleaky_to_rlif(m, idx, previous, reset, delay)
    _set(out, "beta", beta, _learnable(m, "beta"))
    _set(out, "threshold", theta, _learnable(m, "threshold"))
    return out


def _rleaky_to_rlif(m, idx, previous, reset, delay) -> RLIF:
    if m.all_to_all and not isinstance(m.recurrent, nn.Linear):
        raise ValueError(
            f"layer {idx}: RLeaky with a convolutional recurrent connection has no "
            "spikelfp equivalent (RLIF is fully connected)"
        )
    if m.all_to_all:
        w = m.recurrent.weight.detach()
        bias = m.recurrent.bias
        if bias is not None and bool(torch.any(bias != 0)):
            prev = previous[-1] if previous else None
            if not (isinstance(prev, nn.Linear) and prev.bias is not None):
                raise ValueError(
                    f"layer {idx}: RLeaky's recurrent bias is not zero and there is no preceding "
                    "nn.Linear with a bias to fold it into; spikelfp's RLIF has no recurrent bias"
                )
            with torch.no_grad():
                prev.bias.add_(bias.detach())
    else:
        v = torch.as_tensor(m.V).detach()
        n = m.linear_features
        if v.dim() == 0:
            if n is None:
                raise ValueError(
                    f"layer {idx}: one-to-one RLeaky with a scalar V needs "
                    "linear_features to know the layer size"
                )
            v = v.expand(n)
        w = torch.diag(v)
    rlif = RLIF(w.shape[0], reset=reset, reset_delay=delay)
    _set(rlif, "recurrent_weight", w, True)
    return rlif


def to_snntorch(seq: nn.Sequential, init_hidden: bool = True) -> nn.Sequential:
    """An snntorch ``nn.Sequential`` with the same weights and dynamics as a spikelfp network.

    Neurons become ``init_hidden=True`` snntorch neurons (run it with
    :func:`snntorch_forward` or ``for t: out = net(x[t])``); the last neuron gets
    ``output=True`` so the network returns ``(spk, mem)``. Mapping (spikes identical):

    =============================================  ============================================
    spikelfp                                       snntorch
    =============================================  ============================================
    LIF/IF subtract, reset_delay=True              Leaky(subtract, reset_delay=True)
    LIF/IF zero, reset_delay=False                 Leaky(zero, reset_delay=True) (its ``mem``
                                                   is the membrane before the reset)
    LIF/IF zero, reset_delay=True                  Synaptic(alpha=0, zero, reset_delay=True)
    LIF/IF none                                    Leaky(none)
    LIF/IF subtract, reset_delay=False             Leaky(subtract, reset_delay=False), with a
                                                   warning (see :func:`from_snntorch`)
    CubaLIF                                        Synaptic(same reset and delay)
    RLIF                                           RLeaky(linear_features=N), recurrent bias 0
                                                   and frozen
    LI                                             Leaky(none, threshold=inf), read ``mem``
    =============================================  ============================================

    ``ALIF`` has no snntorch equivalent and raises.
    """
    snn = require_snntorch()
    if init_hidden is not True:
        raise ValueError(
            "to_snntorch builds the nn.Sequential idiom, which needs "
            "init_hidden=True neurons (nn.Sequential cannot pass states)"
        )
    layers = []
    neurons = []
    for idx, m in enumerate(seq):
        if isinstance(m, ALIF):
            raise ValueError(f"layer {idx}: ALIF (adaptive threshold) has no snntorch equivalent")
        if isinstance(m, (LIF, CubaLIF, RLIF, LI)):
            layers.append(_neuron_to_snntorch(snn, m, idx))
            neurons.append(layers[-1])
        elif isinstance(m, STATELESS_LAYERS):
            layers.append(copy.deepcopy(m))
        else:
            raise ValueError(f"layer {idx} ({type(m).__name__}) has no snntorch equivalent")
    if neurons:
        neurons[-1].output = True
    return nn.Sequential(*layers)


def _clone(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone()


def _neuron_to_snntorch(snn, m, idx):
    common = {"init_hidden": True}
    if isinstance(m, LI):
        out = snn.Leaky(
            beta=_clone(m.beta),
            threshold=torch.tensor(math.inf, dtype=m.beta.dtype),
            reset_mechanism="none",
            learn_beta=_learnable(m, "beta"),
            **common,
        )
        return out
    reset, delay = m.reset, m.reset_delay
    if reset == "subtract" and not delay:
        warnings.warn(f"layer {idx}: {_QUIRK}", stacklevel=3)
    kw = dict(
        threshold=_clone(m.threshold),
        learn_beta=_learnable(m, "beta"),
        learn_threshold=_learnable(m, "threshold"),
        **common,
    )
    if isinstance(m, CubaLIF):
        return snn.Synaptic(
            alpha=_clone(m.alpha),
            beta=_clone(m.beta),
            learn_alpha=_learnable(m, "alpha"),
            reset_mechanism=reset,
            reset_delay=delay,
            **kw,
        )
    if isinstance(m, RLIF):
        out = snn.RLeaky(
            beta=_clone(m.beta),
            linear_features=m.size,
            all_to_all=True,
            reset_mechanism=reset,
            reset_delay=delay,
            **kw,
        )
        out.recurrent = out.recurrent.to(m.recurrent_weight.dtype)
        with torch.no_grad():
            out.recurrent.weight.copy_(m.recurrent_weight)
            out.recurrent.bias.zero_()
        out.recurrent.bias.requires_grad_(False)
        return out
    # LIF / IF
    if reset == "zero" and delay:
        zero = torch.zeros((), dtype=m.beta.dtype)
        return snn.Synaptic(
            alpha=zero, beta=_clone(m.beta), reset_mechanism="zero", reset_delay=True, **kw
        )
    if reset == "zero":
        delay = True
    return snn.Leaky(beta=_clone(m.beta), reset_mechanism=reset, reset_delay=delay, **kw)
