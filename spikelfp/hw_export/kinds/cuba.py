r"""CubaLIF: a current-based LIF (the synaptic current decays with :math:`\alpha`).

Integer step: :math:`I_t = sat(D_i(I_{t-1}) + Z_t)`, then the LIF step with input
:math:`I_t` (:mod:`.lif`).
"""

from __future__ import annotations

import numpy as np

from ...neurons import CubaLIF
from ...neurons.cuba import CubaLIFParameters, CubaLIFState, cuba_update
from .._intsim import lif_membrane
from .._nirutil import as_array, decay_of, lif_params, neuron_meta
from ._base import Converter
from ._checks import check_neuron
from ._neuron import spiking_params, zeros_like_state

__all__ = ["CUBA_KIND", "TYPES", "INTEGER"]


def decays(layer) -> dict:
    if not hasattr(layer, "alpha"):  # an integer CubaLIF: no float decays
        return {}
    return {"alpha": layer.alpha.detach(), "beta": layer.beta.detach()}


def torch_step(neuron, z, state, hooks):
    p = CubaLIFParameters(
        neuron.i_decay, neuron.v_decay, neuron.threshold, neuron.reset, neuron.reset_delay
    )
    s, state, _ = cuba_update(z, state, p, **hooks)
    return s, state


def simulate(z, p, sat):
    v = np.zeros(z.shape[1:], np.int64)
    i_syn = np.zeros(z.shape[1:], np.int64)
    out = np.empty(z.shape, np.int64)
    for t in range(z.shape[0]):
        i_syn = sat(p.decay(i_syn, p.i_decay) + z[t])
        v, out[t] = lif_membrane(v, i_syn, p, sat)
    return out


def nir_node(nir, layer, shape, dt, index, integer):
    meta = neuron_meta(layer, "CubaLIF", integer)
    beta = as_array(decay_of(layer, "beta", integer), shape)
    meta["spikelfp_beta"] = beta
    theta = as_array(layer.threshold, shape)
    zeros = np.zeros(shape)
    alpha = as_array(decay_of(layer, "alpha", integer), shape)
    meta["spikelfp_alpha"] = alpha
    tau_syn, w_in = lif_params(alpha, dt, index, "alpha")
    tau_mem, r = lif_params(beta, dt, index, "beta")
    return nir.CubaLIF(
        tau_syn=tau_syn,
        tau_mem=tau_mem,
        r=r,
        v_leak=zeros.copy(),
        v_threshold=theta,
        v_reset=zeros,
        w_in=w_in,
        metadata=meta,
    )


CUBA_KIND = Converter(
    "CubaLIF",
    "neuron",
    check=check_neuron,
    spiking=True,
    decays=decays,
    integer_params=spiking_params("CubaLIF"),
    integer_needs=(("i_decay", "a CubaLIF needs i_decay (the synaptic current's decay)"),),
    initial_state=zeros_like_state(CubaLIFState, 2),
    torch_step=torch_step,
    simulate=simulate,
    nir_node=nir_node,
)
TYPES = {CubaLIF: CUBA_KIND}
INTEGER = {"CubaLIF": CUBA_KIND}
