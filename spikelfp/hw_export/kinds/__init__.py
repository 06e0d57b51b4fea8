"""The layer kinds of ``hw_export``: one file per kind, one :class:`Converter` per kind.

A converter bundles what the export path needs to know about one kind of layer: whether and
how it is canonicalised, its profile checks, how it is quantised, its integer step in torch
(:class:`~spikelfp.hw_export.QuantizedNeuron`) and in the independent numpy simulator, and
its NIR node. :data:`CONVERTERS` maps module types to converters (looked up along the MRO by
:func:`spikelfp.hw_export.kinds.lookup`); :data:`INTEGER_KINDS` maps the ``kind`` of an
integer neuron to its converter. A new neuron kind is one file here defining its converter,
``TYPES`` and ``INTEGER``, plus its module name in :data:`MODULES`.
"""

from __future__ import annotations

from . import conv, cuba, flatten, li, lif, linear, pool, rlif, structural
from ._base import ROLES, Converter

__all__ = ["Converter", "ROLES", "CONVERTERS", "INTEGER_KINDS", "MODULES", "lookup"]

#: The kind files, in the order their types are registered.
MODULES = (linear, conv, pool, flatten, lif, cuba, li, rlif, structural)

#: ``{module type: converter}``.
CONVERTERS: dict[type, Converter] = {t: c for m in MODULES for t, c in m.TYPES.items()}

#: ``{integer neuron kind: converter}`` (the kinds :class:`QuantizedNeuron` accepts).
INTEGER_KINDS: dict[str, Converter] = {
    k: c for m in MODULES for k, c in getattr(m, "INTEGER", {}).items()
}


def lookup(cls: type, table: dict[type, Converter] = CONVERTERS) -> Converter:
    """The converter of the nearest class in ``cls``'s MRO that ``table`` holds
    (:data:`structural.UNKNOWN` when none does).

    >>> from torch import nn
    >>> from spikelfp import IF
    >>> lookup(nn.Linear).name, lookup(IF).name, lookup(nn.GELU).role
    ('Linear', 'LIF', 'unsupported')
    """
    for base in cls.__mro__:
        found = table.get(base)
        if found is not None:
            return found
    return structural.UNKNOWN
