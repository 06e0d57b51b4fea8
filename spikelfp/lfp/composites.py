"""Composites: which rule each module type gets, applied for the duration of a context.

A :class:`Composite` maps module types to rules (looked up along the module's MRO, so a
subclass inherits its base's rule unless it has its own entry). Inside
``with composite.context(model):`` every matched module computes its forward through its rule
(:class:`~spikelfp.lfp.Rule`: for LFP an ``autograd.Function``); on exit the model is
exactly as before (no attribute, hook or parameter left behind), even if the block raised.
The same class, configured, is the LFP composite (:func:`default_composite`), the snntorch and
norse composites (``leaf_types`` and rules with ``check``/``hidden_state`` hooks) and the BPTT
baseline (:func:`spikelfp.training.bptt.surrogate`).

Modules mapped to :data:`NATIVE` keep their own forward: their ordinary gradient already routes
reward correctly (reshapes, adaptive max-pooling to the arg-max, identity).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType

from torch import nn

from ..layers import SumPool2d
from ..neurons import ALIF, IF, LI, LIF, RLIF, CubaLIF
from .neuron_rules import ALIFRule, CubaLIFRule, LIFRule, LIRule, RLIFRule
from .synapse_rules import AvgPoolRule, BatchNormRule, DropoutRule, EpsilonRule, MaxPoolRule

__all__ = ["Composite", "NATIVE", "UnsupportedModuleError", "default_composite"]


class _Native:
    def __repr__(self) -> str:
        return "NATIVE"

    def __reduce__(self) -> str:  # copies and pickles stay the one marker
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
    """A module inside the model has no rule in the composite, or its rule cannot reproduce it.

    ``missing`` lists the modules without a rule as ``(name, type name)``; ``problems`` lists
    the modules whose rule's ``check`` refused them as ``(name, type name, reason)`` (both
    empty when the composite names modules the model does not have)."""

    def __init__(
        self,
        message: str,
        missing: tuple[tuple[str, str], ...] = (),
        problems: tuple[tuple[str, str, str], ...] = (),
    ):
        super().__init__(message)
        self.missing = tuple(missing)
        self.problems = tuple(problems)


@dataclass(frozen=True, repr=False)
class Composite:
    """Maps module types (and, optionally, module names) to rules.

    Immutable: :meth:`with_rules`, :meth:`with_names` and :meth:`with_lower_rule` return new
    composites that keep every other setting. The rules follow the :class:`~spikelfp.lfp.Rule`
    protocol; ``with composite.context(model):`` binds each matched module's forward to its
    rule, after asking every rule's optional ``check`` hook, and on exit restores the forward
    and the hidden state the rules name (``hidden_state`` hook).

    Args:
        rules: ``{module type: rule or NATIVE}``, looked up along the module's MRO (a
            subclass inherits its base's rule unless it has its own entry).
        names: ``{module name (as in named_modules()): rule or NATIVE}``, looked up before
            the types.
        leaf_types: module types that are computations even when they have children (a
            library's recurrent neuron holding its recurrent synapse): without a rule they
            are reported as unsupported, never skipped as containers.

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

    rules: Mapping[type, object]
    names: Mapping[str, object] = field(default_factory=dict)
    leaf_types: tuple[type, ...] = ()

    def __post_init__(self):
        for key in self.rules:
            if not isinstance(key, type):
                raise TypeError(f"composite keys must be module types, got {key!r}")
        for key in self.names or {}:
            if not isinstance(key, str):
                raise TypeError(f"composite names must be module names (str), got {key!r}")
        leaf = tuple(self.leaf_types)
        for t in leaf:
            if not isinstance(t, type):
                raise TypeError(f"composite leaf_types must be module types, got {t!r}")
        object.__setattr__(self, "rules", MappingProxyType(dict(self.rules)))
        object.__setattr__(self, "names", MappingProxyType(dict(self.names or {})))
        object.__setattr__(self, "leaf_types", leaf)

    def __hash__(self) -> int:
        return hash((tuple(self.rules.items()), tuple(self.names.items()), self.leaf_types))

    def __reduce__(self):  # copy/deepcopy/pickle (a mappingproxy itself cannot be pickled)
        values = (getattr(self, f.name) for f in fields(self))
        return type(self), tuple(dict(v) if isinstance(v, MappingProxyType) else v for v in values)

    def with_rules(self, rules: Mapping[type, object]) -> Composite:
        """A new composite with ``rules`` added to (and taking precedence over) these.

        Args:
            rules: ``{module type: rule or NATIVE}``.

        Returns:
            A new :class:`Composite` with the same names and leaf types.
        """
        return replace(self, rules={**self.rules, **rules})

    def with_names(self, names: Mapping[str, object]) -> Composite:
        """A new composite where the modules called ``names`` (as in ``named_modules()``) get
        their own rule, before any rule by type: the way to use different rules at different
        depths (e.g. z⁺ in the first convolutions, ε above them, as LRP does for CNNs).

        Args:
            names: ``{module name: rule or NATIVE}``, added to (and replacing) these names.

        Returns:
            A new :class:`Composite` with the same rules by type and leaf types.

        >>> from spikelfp.lfp.synapse_rules import ZPlusRule
        >>> comp = default_composite().with_names({"0": ZPlusRule()})
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
        >>> comp.rule_for(net[0], "0"), comp.rule_for(net[1], "1")
        (ZPlusRule(epsilon=0.0), EpsilonRule(epsilon=0.0))
        """
        return replace(self, names={**self.names, **names})

    def with_lower_rule(self, model: nn.Module, rule: object, layers: int) -> Composite:
        """A new composite where the first ``layers`` Linear/Conv modules of ``model`` (input
        side, in ``named_modules()`` order) get ``rule`` by name (:meth:`with_names`).

        Args:
            model: the model whose modules are named.
            rule: the rule of the lower layers.
            layers: how many Linear/Conv layers, from the input.

        Returns:
            A new :class:`Composite` (every other setting kept).

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
        """The names of the module types this composite has a rule (or NATIVE) for."""
        return sorted(t.__name__ for t in self.rules)

    def plan(self, model: nn.Module) -> list[tuple[str, nn.Module, object]]:
        """The ``(name, module, rule)`` to apply.

        Raises:
            UnsupportedModuleError: one error listing every module without a rule (a module
                with children and no parameters of its own is a container, unless its type
                is in ``leaf_types``) and every module whose rule's ``check`` refused it; or
                the names the composite gives that the model does not have.
        """
        modules = dict(model.named_modules())
        unknown = sorted(set(self.names) - set(modules))
        if unknown:
            raise UnsupportedModuleError(
                f"the composite names module(s) {', '.join(unknown)} that the model does not "
                f"have; its modules are {', '.join(n for n in modules if n) or '(none)'}"
            )
        plan, missing, problems = [], [], []
        for name, module in modules.items():
            rule = self.rule_for(module, name)
            if rule is None:
                container = next(module.children(), None) is not None and not any(
                    True for _ in module.parameters(recurse=False)
                )
                if not container or isinstance(module, self.leaf_types):
                    missing.append((name or "<model>", type(module).__name__))
                continue
            if rule is NATIVE:
                continue
            check = getattr(rule, "check", None)
            reason = check(module) if check is not None else None
            if reason:
                problems.append((name or "<model>", type(module).__name__, str(reason)))
            plan.append((name, module, rule))
        if missing or problems:
            parts = []
            if missing:
                parts.append("no LFP rule for: " + ", ".join(f"{n} ({t})" for n, t in missing))
            if problems:
                parts.append(
                    "cannot be run by their rule: "
                    + "; ".join(f"{n} ({t}): {why}" for n, t, why in problems)
                )
            raise UnsupportedModuleError(
                ". ".join(parts)
                + f". Supported module types: {', '.join(self.supported_types())}. Map the "
                "type to a rule with composite.with_rules({MyModule: rule}) or NATIVE if its "
                "gradient already routes reward.",
                missing=tuple(missing),
                problems=tuple(problems),
            )
        return plan

    @contextlib.contextmanager
    def context(self, model: nn.Module) -> Iterator[nn.Module]:
        """Apply the rules to ``model`` inside the ``with`` block; restore it on exit.

        Every module of :meth:`plan` computes its forward through its rule (bound on the
        instance, with the module's own signature); the hidden state its rule names is saved
        first. On exit, even if the block raised, the forwards are unbound and the hidden
        state put back, so the model is exactly as before.
        """
        plan = self.plan(model)
        patched: list[tuple[nn.Module, object]] = []
        saved: list[tuple[nn.Module, str, tuple]] = []
        try:
            for _, module, rule in plan:
                hidden = getattr(rule, "hidden_state", None)
                for attr in hidden(module) if hidden is not None else ():
                    saved.append((module, attr, _get(module, attr)))
                patched.append((module, module.__dict__.get("forward", _MISSING)))
                module.__dict__["forward"] = _bind(rule, module)
            yield model
        finally:
            for module, old in reversed(patched):
                if old is _MISSING:
                    module.__dict__.pop("forward", None)
                else:
                    module.__dict__["forward"] = old
            for module, attr, where in reversed(saved):
                _put(module, attr, where)

    def __repr__(self) -> str:
        body = ", ".join(f"{t.__name__}: {r!r}" for t, r in self.rules.items())
        extra = ""
        if self.names:
            extra += ", names={" + ", ".join(f"{n!r}: {r!r}" for n, r in self.names.items()) + "}"
        if self.leaf_types:
            extra += ", leaf_types=(" + ", ".join(t.__name__ for t in self.leaf_types) + ",)"
        return f"{type(self).__name__}({{{body}}}{extra})"


_MISSING = object()


def _get(module: nn.Module, name: str) -> tuple:
    """Where the attribute ``name`` lives on ``module`` (buffers, parameters or ``__dict__``)
    and its value; ``(None, _MISSING)`` if it has none."""
    for store in (module._buffers, module._parameters, module.__dict__):
        if name in store:
            return store, store[name]
    return None, _MISSING


def _put(module: nn.Module, name: str, where: tuple) -> None:
    """Put back what :func:`_get` saw (removing the attribute if it had none)."""
    store, value = where
    for other in (module._buffers, module._parameters, module.__dict__):
        if other is not store:
            other.pop(name, None)
    if store is not None:
        store[name] = value


def _bind(rule, module):
    def forward(*args, **kwargs):
        return rule.forward(module, *args, **kwargs)

    # Libraries inspect forward's signature (norse's SequentialState looks for a ``state``
    # parameter to decide whether to pass states): keep the module's own.
    try:
        forward.__signature__ = inspect.signature(module.forward)
    except (TypeError, ValueError):
        pass
    forward.__doc__ = getattr(module.forward, "__doc__", None)
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
