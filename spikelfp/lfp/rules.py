"""The rule protocol: what a :class:`~spikelfp.lfp.Composite` asks of the rules it applies.

A rule is an immutable description of *how one module type computes its forward* inside a
composite's ``with`` block (LFP's rules, the BPTT baseline's surrogate rule, the snntorch and
norse rules, the integer target rules). Rules are frozen dataclasses: their settings are
fields, validated on construction (a bad value is a one-line ``ValueError``), compared by value
and printed as ``EpsilonRule(epsilon=0.0)``; a rule holds no state between calls.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any, Protocol, runtime_checkable

from torch import nn

__all__ = ["Rule", "CheckedRule", "StatefulRule", "nonnegative", "positive"]


@runtime_checkable
class Rule(Protocol):
    r"""The one method a composite calls: the module's forward, computed by the rule.

    ``rule.forward(module, *args, **kwargs)`` receives the module and the arguments of the
    module's own call and returns what the module's forward would return (same values and
    structure; the rule decides what the backward pass carries, e.g. an LFP
    ``autograd.Function`` whose backward propagates reward). Two optional hooks, looked up with
    ``getattr`` (typed as ``CheckedRule`` and ``StatefulRule`` in ``spikelfp.lfp.rules``):

    * ``check(module) -> str | None``: why the rule cannot reproduce *this* module's forward
      (a subclass with its own forward, an unsupported option), or ``None`` when it can. The
      composite asks every rule before it patches anything and reports every problem at once
      in one :class:`~spikelfp.lfp.UnsupportedModuleError`.
    * ``hidden_state(module) -> Collection[str]``: the names of attributes (plain attributes,
      buffers or parameters) holding the library's hidden state that the forward updates in
      place (snntorch's ``mem``/``syn``/``spk`` with ``init_hidden``). The composite saves them
      on entry and restores them on exit, so no autograd graph built in the block stays
      reachable from the model. (Names, not values: the composite must know whether each was
      a buffer, a parameter or a plain attribute to put it back exactly.)

    The contract:

    * A rule **may** read the module's parameters, buffers and settings, call the module's
      own kernels (``module.sequence``), update the running statistics the module's own
      forward would update (batch norm) and, when it names them in ``hidden_state``, the
      library's hidden state.
    * A rule **may not** replace or add parameters, buffers or submodules, register hooks,
      change settings, or keep anything between calls (on itself or on the module) beyond
      what the module's own forward keeps: after the composite's block the model is exactly
      as before.
    * A rule is immutable and compared by value (a frozen dataclass); invalid settings raise
      ``ValueError`` in ``__post_init__``.

    Example: a rule that doubles a Linear layer's output in the forward pass.

    >>> import torch
    >>> from dataclasses import dataclass
    >>> from spikelfp.lfp import Composite
    >>> @dataclass(frozen=True)
    ... class Doubled:
    ...     def forward(self, module, x):
    ...         return 2 * torch.nn.functional.linear(x, module.weight, module.bias)
    >>> isinstance(Doubled(), Rule)
    True
    >>> lin = nn.Linear(2, 1)
    >>> with Composite({nn.Linear: Doubled()}).context(lin):
    ...     y = lin(torch.ones(1, 2))
    >>> torch.equal(y, 2 * lin(torch.ones(1, 2))), Doubled() == Doubled()
    (True, True)
    """

    def forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        """The module's forward output for ``args``/``kwargs``, computed by the rule."""
        ...  # pragma: no cover - protocol


@runtime_checkable
class CheckedRule(Rule, Protocol):
    """A :class:`Rule` that can tell, before any forward, why it cannot handle a module."""

    def check(self, module: nn.Module) -> str | None:
        """Why the rule cannot reproduce ``module`` (one clause), or ``None`` if it can."""
        ...  # pragma: no cover - protocol


@runtime_checkable
class StatefulRule(Rule, Protocol):
    """A :class:`Rule` whose forward updates library hidden state kept on the module."""

    def hidden_state(self, module: nn.Module) -> Collection[str]:
        """The attribute names to save on entering the composite and restore on leaving."""
        ...  # pragma: no cover - protocol


def _number(rule: object, name: str, ok, requirement: str, hint: str) -> None:
    value = getattr(rule, name)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or not ok(number):
        raise ValueError(
            f"{type(rule).__name__}: {name} must be a finite number {requirement}, got "
            f"{value!r}; pass e.g. {name}={hint}"
        )
    object.__setattr__(rule, name, number)  # frozen dataclasses: normalised once, here


def nonnegative(rule: object, name: str, hint: str = "0.0") -> None:
    """Validate the field ``name`` of the frozen dataclass ``rule`` as a finite float ``>= 0``
    and store it as a ``float`` (for ``__post_init__``).

    Args:
        rule: the rule being constructed.
        name: the field to check.
        hint: a valid value, suggested in the error.

    Raises:
        ValueError: one line naming the rule, the field, the bad value and a valid one.

    >>> from spikelfp.lfp import EpsilonRule
    >>> EpsilonRule(epsilon=-1)
    Traceback (most recent call last):
    ...
    ValueError: EpsilonRule: epsilon must be a finite number >= 0, got -1; pass e.g. epsilon=0.0
    """
    _number(rule, name, lambda v: v >= 0, ">= 0", hint)


def positive(rule: object, name: str, hint: str = "1.0") -> None:
    """As :func:`nonnegative`, for a field that must be ``> 0``."""
    _number(rule, name, lambda v: v > 0, "> 0", hint)
