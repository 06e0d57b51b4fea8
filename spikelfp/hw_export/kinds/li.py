r"""LI: the leaky-integrator readout (no spikes; its output is the membrane).

Integer step: :math:`V_t = sat(D_v(V_{t-1}) + Z_t)`, output :math:`V_t`.
"""

from __future__ import annotations

import numpy as np

from ...neurons import LI
from ...neurons.li import LIParameters, LIState, li_update
from .._nirutil import as_array, decay_of, lif_params, neuron_meta
from ._base import Converter
from ._checks import check_neuron
from ._neuron import beta_of

__all__ = ["LI_KIND", "TYPES", "INTEGER"]


def torch_step(neuron, z, state, hooks):
    v = li_update(z, state.v, LIParameters(neuron.v_decay), **hooks)
    return v, LIState(v)


def simulate(z, p, sat):
    v = np.zeros(z.shape[1:], np.int64)
    out = np.empty(z.shape, np.int64)
    for t in range(z.shape[0]):
        v = sat(p.decay(v, p.v_decay) + z[t])
        out[t] = v
    return out


def nir_node(nir, layer, shape, dt, index, integer):
    meta = neuron_meta(layer, "LI", integer)
    beta = as_array(decay_of(layer, "beta", integer), shape)
    meta["spikelfp_beta"] = beta
    if np.all(beta == 1):
        return nir.I(r=np.ones(shape), metadata=meta)
    tau, r = lif_params(beta, dt, index, "beta")
    return nir.LI(tau=tau, r=r, v_leak=np.zeros(shape), metadata=meta)


LI_KIND = Converter(
    "LI",
    "neuron",
    check=check_neuron,
    spiking=False,
    decays=beta_of,
    integer_params=lambda layer, threshold, w_rec: {"kind": "LI", "threshold": None},
    initial_state=LIState,
    torch_step=torch_step,
    simulate=simulate,
    nir_node=nir_node,
)
TYPES = {LI: LI_KIND}
INTEGER = {"LI": LI_KIND}
