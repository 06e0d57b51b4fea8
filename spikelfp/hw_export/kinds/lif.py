r"""LIF and IF (a LIF whose decay is 1 everywhere): the reference spiking neuron kind.

Integer step (torch: :func:`spikelfp.neurons.lif_update` with the integer decay and
saturation hooks; numpy: :func:`spikelfp.hw_export._intsim.lif_membrane`)::

    V_t = sat(D_v(U_{t-1}) + Z_t);  S_t = [V_t > θ];  U_t = reset(V_t, S_t)
"""

from __future__ import annotations

import numpy as np

from ...neurons import IF, LIF
from ...neurons.lif import LIFState, lif_update
from .._intsim import lif_membrane
from ._base import Converter
from ._checks import check_neuron
from ._neuron import beta_of, lif_node, spiking_params, zeros_like_state

__all__ = ["LIF_KIND", "IF_KIND", "TYPES", "INTEGER"]


def _refine(layer) -> Converter:
    return IF_KIND if bool((layer.beta == 1).all()) else LIF_KIND


def torch_step(neuron, z, state, hooks):
    s, v, _ = lif_update(z, state.v, neuron._lif_parameters(), **hooks)
    return s, LIFState(v)


def simulate(z, p, sat):
    v = np.zeros(z.shape[1:], np.int64)
    out = np.empty(z.shape, np.int64)
    for t in range(z.shape[0]):
        v, out[t] = lif_membrane(v, z[t], p, sat)
    return out


def _kind(name: str) -> Converter:
    return Converter(
        name,
        "neuron",
        refine=_refine,
        check=check_neuron,
        spiking=True,
        decays=beta_of,
        integer_params=spiking_params(name),
        initial_state=zeros_like_state(LIFState, 1),
        torch_step=torch_step,
        simulate=simulate,
        nir_node=lambda nir, layer, shape, dt, index, integer: lif_node(
            nir, layer, name, shape, dt, index, integer
        ),
    )


LIF_KIND = _kind("LIF")
IF_KIND = _kind("IF")
TYPES = {LIF: LIF_KIND, IF: LIF_KIND}
INTEGER = {"LIF": LIF_KIND, "IF": IF_KIND}
