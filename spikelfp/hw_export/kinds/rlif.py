r"""RLIF: a LIF with recurrent weights :math:`W_{rec}` (its input is
:math:`Z_t + W_{rec} S_{t-1}`), written to NIR as the sub-graph ``input → LIF ⇄
Linear(W_rec)``, ``LIF → output``.
"""

from __future__ import annotations

import numpy as np

from ...neurons import RLIF
from ...neurons.rlif import RLIFState, rlif_update
from .._intsim import lif_membrane, matmul
from .._nirutil import nir_weights
from ._base import Converter
from ._checks import check_neuron
from ._neuron import beta_of, lif_node, spiking_params, zeros_like_state

__all__ = ["RLIF_KIND", "TYPES", "INTEGER"]


def torch_step(neuron, z, state, hooks):
    s, state, _ = rlif_update(z, state, neuron._lif_parameters(), neuron.w_rec, **hooks)
    return s, state


def simulate(z, p, sat):
    v = np.zeros(z.shape[1:], np.int64)
    s_prev = np.zeros(z.shape[1:], np.int64)
    out = np.empty(z.shape, np.int64)
    for t in range(z.shape[0]):
        v, s_prev = lif_membrane(v, z[t] + matmul(s_prev, p.w_rec.T), p, sat)
        out[t] = s_prev
    return out


def nir_node(nir, layer, shape, dt, index, integer):
    node = lif_node(nir, layer, "RLIF", shape, dt, index, integer, allow_if=False)
    w_rec = layer.w_rec if integer else layer.recurrent_weight
    n = shape[0]
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([n])),
            "lif": node,
            "w_rec": nir.Linear(weight=nir_weights(w_rec, integer)),
            "output": nir.Output(output_type=np.array([n])),
        },
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        metadata={"spikelfp_kind": "RLIF"},
    )


def _weights(layer):
    w = getattr(layer, "recurrent_weight", None)  # an integer RLIF has no float weights
    return [] if w is None else [("recurrent_weight", w)]


def _input_shape(layer):
    w = getattr(layer, "w_rec", None)  # an integer RLIF holds its weights as w_rec
    return (int(layer.size),) if w is None else (int(w.shape[0]),)


RLIF_KIND = Converter(
    "RLIF",
    "neuron",
    input_shape=_input_shape,
    weights=_weights,
    check=check_neuron,
    spiking=True,
    decays=beta_of,
    recurrent_weight=lambda layer: layer.recurrent_weight.detach(),
    integer_params=spiking_params("RLIF"),
    integer_needs=(("w_rec", "an RLIF needs w_rec (integer recurrent weights)"),),
    initial_state=zeros_like_state(RLIFState, 2),
    torch_step=torch_step,
    simulate=simulate,
    nir_node=nir_node,
)
TYPES = {RLIF: RLIF_KIND}
INTEGER = {"RLIF": RLIF_KIND}
