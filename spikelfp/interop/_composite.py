"""A :class:`~spikelfp.lfp.Composite` for models built from other libraries' neurons.

It differs from the base composite in two ways:

* :meth:`InteropComposite.plan` also asks each rule whether it can reproduce *this* module
  (``rule.check(module)`` returns a reason when it cannot: a surrogate-only feature, a
  subclass with its own forward, an unsupported option); every problem is reported at once,
  before any forward or training step.
* :meth:`InteropComposite.context` saves the hidden state that the library keeps on the module
  (snntorch's ``mem``/``syn``/``spk`` buffers with ``init_hidden``) and puts it back on exit, so
  the model is exactly as before the ``with`` block (forward, parameters, buffers, hidden
  state) and no autograd graph built inside the block stays reachable from the model.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator

from torch import nn

from ..lfp.composites import NATIVE, Composite, UnsupportedModuleError

__all__ = ["InteropComposite", "STATELESS_LAYERS"]

#: Layers the converters carry over as they are (a deep copy: same type, same weights).
STATELESS_LAYERS = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.modules.batchnorm._BatchNorm,
    nn.ReLU,
)

_MISSING = object()


class InteropComposite(Composite):
    """Composite whose rules may ``check`` a module and keep library hidden state.

    A rule may define

    * ``check(module) -> str | None``: why the rule cannot handle ``module`` (``None``: it can);
    * ``hidden_state(module) -> dict[str, object]``: the attributes to save on entry and
      restore on exit (read from ``module.__dict__``, ``_buffers`` or ``_parameters``).
    """

    def __init__(self, rules, leaf_types: tuple[type, ...] = ()):
        super().__init__(rules)
        #: Module types that are computations even when they have children (a recurrent
        #: neuron holding its recurrent synapse): without a rule they are unsupported, never
        #: mistaken for containers.
        self.leaf_types = tuple(leaf_types)

    def with_rules(self, rules) -> InteropComposite:
        new = InteropComposite({**self.rules, **rules}, self.leaf_types)
        new.names = dict(self.names)
        return new

    def plan(self, model: nn.Module) -> list[tuple[str, nn.Module, object]]:
        """The ``(name, module, rule)`` to apply; raises one error listing every module that
        has no rule or whose rule cannot reproduce it."""
        plan, missing, problems = [], [], []
        for name, module in model.named_modules():
            label = f"{name or '<model>'} ({type(module).__name__})"
            rule = self.rule_for(module, name)
            if rule is None:
                container = next(module.children(), None) is not None and not any(
                    True for _ in module.parameters(recurse=False)
                )
                if not container or isinstance(module, self.leaf_types):
                    missing.append(label)
                continue
            if rule is NATIVE:
                continue
            check = getattr(rule, "check", None)
            reason = check(module) if check is not None else None
            if reason:
                problems.append(f"{label}: {reason}")
            plan.append((name, module, rule))
        if missing or problems:
            parts = []
            if missing:
                parts.append(f"no LFP rule for: {', '.join(missing)}")
            if problems:
                parts.append("cannot be trained with their LFP rule: " + "; ".join(problems))
            raise UnsupportedModuleError(
                ". ".join(parts)
                + ". Supported module types: "
                + ", ".join(self.supported_types())
                + ". Map another type to a rule with "
                "composite.with_rules({MyModule: rule}), or NATIVE if its gradient already "
                "routes reward."
            )
        return plan

    @contextlib.contextmanager
    def context(self, model: nn.Module) -> Iterator[nn.Module]:
        """Apply the rules inside the ``with`` block; restore forward and hidden state on exit."""
        plan = self.plan(model)
        patched: list[tuple[nn.Module, object]] = []
        saved: list[tuple[nn.Module, str, object]] = []
        try:
            for _, module, rule in plan:
                names = getattr(rule, "hidden_state", None)
                for name in names(module) if names is not None else ():
                    saved.append((module, name, _get(module, name)))
                patched.append((module, module.__dict__.get("forward", _MISSING)))
                module.__dict__["forward"] = _bind(rule, module)
            yield model
        finally:
            for module, old in reversed(patched):
                if old is _MISSING:
                    module.__dict__.pop("forward", None)
                else:
                    module.__dict__["forward"] = old
            for module, name, old in reversed(saved):
                _put(module, name, old)


def _get(module: nn.Module, name: str):
    for store in (module._buffers, module._parameters, module.__dict__):
        if name in store:
            return store, store[name]
    return None, _MISSING


def _put(module: nn.Module, name: str, where) -> None:
    store, value = where
    for other in (module._buffers, module._parameters, module.__dict__):
        if other is not store:
            other.pop(name, None)
    if store is None:
        return
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
