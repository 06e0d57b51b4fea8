"""Bring your own snntorch or norse model: LFP rules for their neurons, and converters.

* :func:`snntorch_composite` / :func:`norse_composite`: composites that train an *unmodified*
  snntorch or norse model with LFP (``with composite.context(model): ...``), in the per-step
  loop those libraries' users write.
* :func:`to_snntorch`, :func:`from_snntorch`, :func:`to_norse`, :func:`from_norse`: the same
  network (weights and dynamics) in the other library.

snntorch and norse are optional: they are imported when one of these functions is called, and
a missing one raises an ImportError that says how to install it. See ``docs/interop.md``.
"""

from ._composite import InteropComposite
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
    "InteropComposite",
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
) -> InteropComposite:
    """One composite with the rules of spikelfp, snntorch and norse (whichever is installed)."""
    import importlib.util

    comp = None
    for have, make in (("snntorch", snntorch_composite), ("norse", norse_composite)):
        if importlib.util.find_spec(have) is None:
            continue
        part = make(neuron_epsilon, synapse_epsilon, synapse_rule)
        comp = (
            part
            if comp is None
            else InteropComposite({**comp.rules, **part.rules}, comp.leaf_types + part.leaf_types)
        )
    if comp is None:
        from ..lfp.composites import default_composite

        base = default_composite(neuron_epsilon, synapse_epsilon, synapse_rule)
        comp = InteropComposite(base.rules)
    return comp
