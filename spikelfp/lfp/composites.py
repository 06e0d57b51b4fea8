"""Composites: which LFP rule each module type gets, applied for the duration of a context.

A :class:`Composite` maps module types to rules (looked up along the module's MRO, so a
subclass inherits its base's rule unless it has its own entry). Inside
``with composite.context(model):`` every matched module computes its forward through its rule's
``autograd.Function``; on exit the model is exactly as before (no attribute, hook or
parameter left behind), even if the block raised.

Modules mapped to :data:`NATIVE` keep their own forward: their ordinary gradient already routes
reward correctly (reshapes, adaptive max-pooling to the arg-max, identity).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from collections.abc import Iterator, Mapping

from torch import nn

from ..layers import SumPool2d
from ..neurons import ALIF, IF, LI, LIF, RLIF, CubaLIF
from .neuron_rules import ALIFRule, CubaLIFRule, LIFRule, LIRule, RLIFRule
from .synapse_rules import AvgPoolRule, BatchNormRule, DropoutRule, EpsilonRule, MaxPoolRule

__all__ = ["Composite", "NATIVE", "UnsupportedModuleError", "default_composite"]


class _Native:
    def __repr__(self) -> str:
        return "NATIVE"


#: Marker: the module keeps its own forward (its gradient routes reward as it should).
NATIVE = _Native()

_NATIVE_TYPES = (
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.ReLU,
)


#: The parametrised layers the synapse rules handle (what "depth" counts in a composite).
SYNAPSE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class UnsupportedModuleError(TypeError):
    """A module inside the model has no LFP rule in the composite.

    ``missing`` lists them as ``(name, type name)`` (empty when the composite names modules
    the model does not have)."""

    def __init__(self, message: str, missing: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.missing = tuple(missing)


class Composite:
    """Maps module types to LFP rules.

    Args:
        rules: ``{module type: rule or NATIVE}``. A rule is any object with a
            ``forward(module, *args, **kwargs)`` method.

    >>> import torch
    >>> from spikelfp import Sequential, LIF
    >>> net = Sequential(nn.Linear(4, 3), LIF())
    >>> before = {k: v.clone() for k, v in net.state_dict().items()}
    >>> with default_composite().context(net):
    ...     out, _ = net(torch.rand(5, 2, 4))
    >>> all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    True
    >>> "forward" in vars(net[1])
    False
    """

    def __init__(self, rules: Mapping[type, object], names: Mapping[str, object] | None = None):
        for key in rules:
            if not isinstance(key, type):
                raise TypeError(f"composite keys must be module types, got {key!r}")
        for key in names or {}:
            if not isinstance(key, str):
                raise TypeError(f"composite names must be module names (str), got {key!r}")
        self.rules = dict(rules)
        self.names = dict(names or {})

    def with_rules(self, rules: Mapping[type, object]) -> Composite:
        """A new composite with ``rules`` added to (and taking precedence over) these."""
        return Composite({**self.rules, **rules}, self.names)

    def with_names(self, names: Mapping[str, object]) -> Composite:
        """A new composite where the modules called ``names`` (as in ``named_modules()``) get
        their own rule, before any rule by type: the way to use different rules at different
        depths (e.g. z⁺ in the first convolutions, ε above them, as LRP does for CNNs).

        >>> from spikelfp.lfp.synapse_rules import ZPlusRule
        >>> comp = default_composite().with_names({"0": ZPlusRule()})
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
        >>> comp.rule_for(net[0], "0"), comp.rule_for(net[1], "1")
        (ZPlusRule(epsilon=0.0), EpsilonRule(epsilon=0.0))
        """
        new = copy.copy(self)  # subclasses (interop composites) keep their own settings
        new.names = {**self.names, **names}
        return new

    def with_lower_rule(self, model: nn.Module, rule: object, layers: int) -> Composite:
        """A new composite where the first ``layers`` Linear/Conv modules of ``model`` (input
        side, in ``named_modules()`` order) get ``rule`` by name (:meth:`with_names`).

        >>> from spikelfp.lfp.synapse_rules import GammaRule
        >>> net = nn.Sequential(nn.Conv1d(1, 1, 1), nn.Linear(2, 2), nn.Linear(2, 2))
        >>> sorted(default_composite().with_lower_rule(net, GammaRule(), 2).names)
        ['0', '1']
        """
        synapses = [n for n, m in model.named_modules() if isinstance(m, SYNAPSE_TYPES)]
        return self.with_names({n: rule for n in synapses[: int(layers)]})

    def rule_for(self, module: nn.Module, name: str | None = None):
        """The rule for ``module`` (``NATIVE`` or a rule), or ``None`` if it has none.
        ``name`` (the module's name in the model) is looked up first."""
        if name is not None and name in self.names:
            return self.names[name]
        for cls in type(module).__mro__:
            if cls in self.rules:
                return self.rules[cls]
        return None

    def supported_types(self) -> list[str]:
        return sorted(t.__name__ for t in self.rules)

    def plan(self, model: nn.Module) -> list[tuple[str, nn.Module, object]]:
        """The ``(name, module, rule)`` to apply; raises if a module has no rule."""
        plan, missing = [], []
        modules = dict(model.named_modules())
        unknown = sorted(set(self.names) - set(modules))
        if unknown:
            raise UnsupportedModuleError(
                f"the composite names module(s) {', '.join(unknown)} that the model does not "
                f"have; its modules are {', '.join(n for n in modules if n) or '(none)'}"
            )
        for name, module in modules.items():
            rule = self.rule_for(module, name)
            if rule is None:
                if next(module.children(), None) is not None:
                    if any(True for _ in module.parameters(recurse=False)):
                        missing.append((name, module))
                    continue  # a container: its children carry the computation
                missing.append((name, module))
            elif rule is not NATIVE:
                plan.append((name, module, rule))
        if missing:
            listed = ", ".join(f"{n or '<model>'} ({type(m).__name__})" for n, m in missing)
            raise UnsupportedModuleError(
                f"no LFP rule for: {listed}. Supported module types: "
                f"{', '.join(self.supported_types())}. Map the type to a rule with "
                "composite.with_rules({MyModule: rule}) or NATIVE if its gradient already "
                "routes reward.",
                missing=tuple((n or "<model>", type(m).__name__) for n, m in missing),
            )
        return plan

    @contextlib.contextmanager
    def context(self, model: nn.Module) -> Iterator[nn.Module]:
        """Apply the rules to ``model`` inside the ``with`` block; restore it on exit."""
        plan = self.plan(model)
        patched: list[tuple[nn.Module, bool, object]] = []
        try:
            for _, module, rule in plan:
                had = "forward" in module.__dict__
                patched.append((module, had, module.__dict__.get("forward")))
                module.__dict__["forward"] = _bind(rule, module)
            yield model
        finally:
            for module, had, old in reversed(patched):
                if had:
                    module.__dict__["forward"] = old
                else:
                    module.__dict__.pop("forward", None)

    def __repr__(self) -> str:
        body = ", ".join(f"{t.__name__}: {r!r}" for t, r in self.rules.items())
        if not self.names:
            return f"Composite({{{body}}})"
        names = ", ".join(f"{n!r}: {r!r}" for n, r in self.names.items())
        return f"Composite({{{body}}}, names={{{names}}})"


def _bind(rule, module):
    def forward(*args, **kwargs):
        return rule.forward(module, *args, **kwargs)

    # Keep the module's signature: libraries (norse's SequentialState) inspect it.
    forward.__signature__ = inspect.signature(module.forward)
    return forward


def default_composite(
    neuron_epsilon: float = 1e-6, synapse_epsilon: float = 0.0, synapse_rule=None
) -> Composite:
    """The composite spikelfp uses unless told otherwise.

    Synapses (Linear, Conv1d/2d/3d) get the ε-rule with ``synapse_epsilon`` (0: the neuron's
    rule already stabilises, reproducing lfprop exactly); neurons get their LFP rule with
    ``neuron_epsilon``; pooling/batch norm/dropout their rules (max-pooling routes reward to
    the arg-max like its gradient, without keeping indices); reshapes and adaptive
    max-pooling stay native.

    :class:`spikelfp.SumPool2d` gets the average-pooling rule: it runs the module's own forward
    (the sum) and splits each output's reward over the window in proportion to the inputs,
    ``r_i = x_i ρ_j / z_j``. Sum pooling is ``k²`` times average pooling, a factor that
    cancels in ``x_i / z_j``, so both redistribute reward identically.

    Args:
        neuron_epsilon: ε of the neuron rules (stabilises the division by the membrane).
        synapse_epsilon: ε of the synapse rule (ignored when ``synapse_rule`` is given).
        synapse_rule: the rule of Linear/Conv layers instead of ε, e.g. :class:`ZPlusRule`.

    Returns:
        A :class:`Composite`; use it as ``with composite.context(model): ...`` or pass it to
        :func:`~spikelfp.lfp.lfp_step`.

    >>> from spikelfp.lfp import ZPlusRule
    >>> comp = default_composite(synapse_rule=ZPlusRule())
    >>> type(comp.rules[nn.Linear]).__name__, type(comp.rules[LIF]).__name__
    ('ZPlusRule', 'LIFRule')
    """
    syn = synapse_rule if synapse_rule is not None else EpsilonRule(synapse_epsilon)
    rules: dict[type, object] = {t: NATIVE for t in _NATIVE_TYPES}
    rules.update(
        {
            nn.Linear: syn,
            nn.Conv1d: syn,
            nn.Conv2d: syn,
            nn.Conv3d: syn,
            nn.AvgPool1d: AvgPoolRule(),
            nn.AvgPool2d: AvgPoolRule(),
            nn.AvgPool3d: AvgPoolRule(),
            nn.AdaptiveAvgPool1d: AvgPoolRule(),
            nn.AdaptiveAvgPool2d: AvgPoolRule(),
            SumPool2d: AvgPoolRule(),
            nn.MaxPool1d: MaxPoolRule(),
            nn.MaxPool2d: MaxPoolRule(),
            nn.MaxPool3d: MaxPoolRule(),
            nn.modules.batchnorm._BatchNorm: BatchNormRule(),
            nn.Dropout: DropoutRule(),
            nn.Dropout1d: DropoutRule(),
            nn.Dropout2d: DropoutRule(),
            LIF: LIFRule(neuron_epsilon),
            IF: LIFRule(neuron_epsilon),
            LI: LIRule(neuron_epsilon),
            CubaLIF: CubaLIFRule(neuron_epsilon),
            ALIF: ALIFRule(neuron_epsilon),
            RLIF: RLIFRule(neuron_epsilon),
        }
    )
    return Composite(rules)
