"""Array conversions shared by the NIR node writers of the layer kinds (:mod:`.kinds`)."""

from __future__ import annotations

import numpy as np
import torch

from .errors import UnsupportedLayerError

__all__ = ["as_array", "decay_of", "lif_params", "neuron_meta", "nir_weights"]


def as_array(t: torch.Tensor, shape=None, dtype=np.float64) -> np.ndarray:
    """``t`` (broadcast to ``shape``) as a contiguous numpy array."""
    t = t.detach().cpu()
    if shape is not None:
        t = t.expand(shape)
    return np.ascontiguousarray(t.to(torch.float64).numpy().astype(dtype))


def nir_weights(t: torch.Tensor, integer: bool) -> np.ndarray:
    """Weights as float32 unless that would round them (float64 then)."""
    a = t.detach().cpu().to(torch.float64).numpy()
    if t.dtype == torch.float32 or (integer and np.abs(a).max(initial=0) < 2**24):
        return a.astype(np.float32)
    return a


def decay_of(layer, key: str, integer: bool) -> torch.Tensor:
    """The float decay (``"beta"`` / ``"alpha"``) of a float or (``integer``) quantised
    neuron."""
    if integer:
        p = (layer.v_decay if key == "beta" else layer.i_decay).to(torch.float64)
        if layer.decay_mode == "none":
            return torch.ones_like(p)
        if layer.decay_mode == "shift":
            return 1.0 - torch.pow(2.0, -p)
        return 1.0 - p / 2.0**layer.decay_bits
    return getattr(layer, key).detach().to(torch.float64)


def neuron_meta(layer, kind: str, integer: bool) -> dict:
    """The spikelfp metadata of a neuron node (kind, reset; integer decays)."""
    meta = {"spikelfp_kind": kind}
    if kind != "LI":
        meta["spikelfp_reset"] = layer.reset
        meta["spikelfp_reset_delay"] = int(bool(layer.reset_delay))
    if integer:
        meta.update(
            {
                "spikelfp_integer": 1,
                "decay_mode": layer.decay_mode,
                "decay_bits": int(layer.decay_bits),
                "decay_rounding": layer.rounding,
                "state_bits": -1 if layer.state_bits is None else int(layer.state_bits),
                "v_decay": as_array(layer.v_decay),
            }
        )
        if layer.i_decay is not None:
            meta["i_decay"] = as_array(layer.i_decay)
        if getattr(layer, "chip", False):
            # the chip's neuron semantics (Xylo's: QuantizedNeuron's class docstring)
            meta.update(
                {
                    "spikelfp_fire_at": layer.fire_at,
                    "spikelfp_min_decay": int(layer.min_decay),
                    "spikelfp_current_shift": (
                        -1 if layer.current_shift is None else int(layer.current_shift)
                    ),
                    "spikelfp_max_spikes": int(layer.max_spikes),
                    "spikelfp_input_delay": int(layer.input_delay),
                    "spikelfp_v_floor": layer.v_floor,
                }
            )
    return meta


def lif_params(beta: np.ndarray, dt: float, index: int, what: str):
    r"""``(tau, r)`` of a decay: :math:`\tau = dt/(1-\beta)`, :math:`r = 1/(1-\beta)`."""
    if np.any(beta < 0) or np.any(beta > 1):
        raise UnsupportedLayerError(
            f"layer {index}: {what} must lie in [0, 1] for NIR, got "
            f"{beta.min():.4g}..{beta.max():.4g}"
        )
    if np.any(beta == 1):
        raise UnsupportedLayerError(
            f"layer {index}: {what} = 1 (no leak) has no finite NIR time constant in this "
            "neuron model; use IF/LI(beta=1) for a pure integrator or a decay < 1"
        )
    tau = dt / (1.0 - beta)
    return tau, 1.0 / (1.0 - beta)
