"""Hooks shared by the spiking neuron kinds (LIF, IF, CubaLIF, RLIF)."""

from __future__ import annotations

import numpy as np

from .._nirutil import as_array, decay_of, lif_params, neuron_meta

__all__ = ["beta_of", "lif_node", "spiking_params", "zeros_like_state"]


def beta_of(layer) -> dict:
    """The float decays of a one-decay neuron: ``{"beta": beta}`` (none for an integer
    neuron, whose decays are integer parameters)."""
    beta = getattr(layer, "beta", None)
    return {} if beta is None else {"beta": beta.detach()}


def spiking_params(kind: str):
    """The ``integer_params`` hook of a spiking kind: threshold, reset, recurrent weights."""

    def params(layer, threshold, w_rec) -> dict:
        return {
            "kind": kind,
            "threshold": threshold,
            "reset": layer.reset,
            "reset_delay": layer.reset_delay,
            "w_rec": w_rec,
        }

    return params


def zeros_like_state(state_type, n: int):
    """An ``initial_state`` hook: ``state_type`` of ``n`` zero tensors."""

    def initial(zeros):
        return state_type(zeros, *(zeros.clone() for _ in range(n - 1)))

    return initial


def lif_node(nir, layer, kind: str, shape, dt, index, integer, allow_if: bool = True):
    """A NIR ``LIF`` (or ``IF`` when the decay is 1 and ``allow_if``) node of a neuron."""
    meta = neuron_meta(layer, kind, integer)
    beta = as_array(decay_of(layer, "beta", integer), shape)
    meta["spikelfp_beta"] = beta
    theta = as_array(layer.threshold, shape)
    zeros = np.zeros(shape)
    if allow_if and np.all(beta == 1):
        return nir.IF(r=np.ones(shape), v_threshold=theta, v_reset=zeros, metadata=meta)
    tau, r = lif_params(beta, dt, index, "beta")
    return nir.LIF(
        tau=tau, r=r, v_leak=zeros.copy(), v_threshold=theta, v_reset=zeros, metadata=meta
    )
