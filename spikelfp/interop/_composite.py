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
from collections.abc import Iterator

from torch import nn

from ..lfp.composites import Composite, UnsupportedModuleError

__all__ = ["InteropComposite"]

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
        return InteropComposite({**self.rules, **rules}, self.leaf_types)

    def plan(self, model: nn.Module) -> list[tuple[str, nn.Module, object]]:
        orphans = [
            f"{name or '<model>'} ({type(m).__name__})"
            for name, m in model.named_modules()
            if isinstance(m, self.leaf_types) and self.rule_for(m) is None
            and next(m.children(), None) is not None
        ]
        if orphans:
            raise UnsupportedModuleError(
                f"no LFP rule for: {', '.join(orphans)}. Supported module types: "
                f"{', '.join(self.supported_types())}."
            )
        plan = super().plan(model)
        problems = []
        for name, module, rule in plan:
            check = getattr(rule, "check", None)
            reason = check(module) if check is not None else None
            if reason:
                problems.append(f"{name or '<model>'} ({type(module).__name__}): {reason}")
        if problems:
            raise UnsupportedModuleError(
                "these modules cannot be trained with their LFP rule: " + "; ".join(problems)
                + ". Supported module types: " + ", ".join(self.supported_types())
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

    return forward

