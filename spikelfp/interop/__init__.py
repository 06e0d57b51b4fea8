"""Bring your own snntorch or norse model: LFP rules for their neurons, and converters.

* :func:`snntorch_composite` / :func:`norse_composite`: composites that train an *unmodified*
  snntorch or norse model with LFP (``with composite.context(model): ...``), in the per-step
  loop those libraries' users write.
* :func:`to_snntorch`, :func:`from_snntorch`, :func:`to_norse`, :func:`from_norse`: the same
  network (weights and dynamics) in the other library.

snntorch and norse are optional: they are imported when one of these functions is called, and
a missing one raises an ImportError that says how to install it. See ``docs/interop.md``.
"""

from ..lfp.composites import Composite
from ._loop import StepLoop
from .norse import (
    from_norse,
    norse_composite,
    norse_forward,
    to_norse,
)
from .snntorch import (
    from_snntorch,
    reset_snntorch_state,
    snntorch_composite,
    snntorch_forward,
    to_snntorch,
)

__all__ = [
    "StepLoop",
    "snntorch_composite",
    "to_snntorch",
    "from_snntorch",
    "snntorch_forward",
    "reset_snntorch_state",
    "norse_composite",
    "to_norse",
    "from_norse",
    "norse_forward",
    "interop_composite",
]


def interop_composite(
    neuron_epsilon: float = 1e-6, synapse_epsilon: float = 0.0, synapse_rule=None
) -> Composite:
    """One composite with the rules of spikelfp, snntorch and norse (whichever is installed).

    Args:
        neuron_epsilon, synapse_epsilon, synapse_rule: as for
            :func:`spikelfp.lfp.default_composite`.

    Returns:
        A :class:`~spikelfp.lfp.Composite`: the rules of every installed library's composite
        and the union of their ``leaf_types``.
    """
    import importlib.util

    from ..lfp.composites import default_composite

    comp = default_composite(neuron_epsilon, synapse_epsilon, synapse_rule)
    for have, make in (("snntorch", snntorch_composite), ("norse", norse_composite)):
        if importlib.util.find_spec(have) is None:
            continue
        part = make(neuron_epsilon, synapse_epsilon, synapse_rule)
        comp = Composite({**comp.rules, **part.rules}, leaf_types=comp.leaf_types + part.leaf_types)
    return comp


def __getattr__(name: str):
    if name == "InteropComposite":  # merged into spikelfp.lfp.Composite; kept as an alias
        import warnings

        warnings.warn(
            "spikelfp.interop.InteropComposite was merged into spikelfp.lfp.Composite; use "
            "Composite(rules, leaf_types=...) (snntorch_composite()/norse_composite() build it)",
            DeprecationWarning,
            stacklevel=2,
        )
        return Composite
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
