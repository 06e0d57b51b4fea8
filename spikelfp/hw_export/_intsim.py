"""Numpy integer arithmetic of the simulator (:mod:`spikelfp.hw_export.simulator`).

The deliberately independent second implementation of the integer network: it shares no code
with the torch neuron kernels (the kinds' ``simulate`` hooks build on these primitives).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ._decay import decay_numpy

__all__ = [
    "EXACT",
    "IntegerNeuron",
    "Saturation",
    "chip_simulate",
    "lif_membrane",
    "matmul",
    "to_int",
]

#: Integer sums below this bound are exact in float64.
EXACT = 2.0**53


def to_int(t) -> np.ndarray:
    """``t`` (a tensor or array of integer values) as int64; non-integers are refused."""
    a = t.detach().to(torch.float64).numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    r = np.rint(a)
    if not np.array_equal(r, a):
        raise ValueError("the quantised model holds non-integer values; build it with quantize()")
    return r.astype(np.int64)


def matmul(x: np.ndarray, w_t: np.ndarray) -> np.ndarray:
    """Exact integer ``x @ w_t`` (float64 BLAS when provably exact)."""
    bound = float(np.abs(x).max(initial=0)) * float(np.abs(w_t).sum(0).max(initial=0))
    if bound < EXACT:
        return np.rint(x.astype(np.float64) @ w_t.astype(np.float64)).astype(np.int64)
    return x @ w_t


class Saturation:
    """Clip to a ``bits``-bit signed state (``None``: no limit), counting clipped values."""

    def __init__(self, bits: int | None):
        self.bits = bits
        self.count = 0
        if bits is not None:
            self.lo, self.hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def __call__(self, v: np.ndarray) -> np.ndarray:
        if self.bits is None:
            return v
        over = (v < self.lo) | (v > self.hi)
        if over.any():
            self.count += int(over.sum())
            v = np.clip(v, self.lo, self.hi)
        return v


@dataclass
class IntegerNeuron:
    """An integer neuron layer as numpy arrays (what the simulator runs)."""

    kind: str
    threshold: np.ndarray
    mode: str
    v_decay: np.ndarray
    i_decay: np.ndarray | None
    bits: int
    rounding: str
    reset: str
    reset_delay: bool
    state_bits: int | None
    w_rec: np.ndarray | None
    fire_at: str = ">"
    min_decay: bool = False
    current_shift: int | None = None
    max_spikes: int = 1
    input_delay: bool = False
    chip: bool = False
    v_floor: str = "state"

    def decay(self, v: np.ndarray, param: np.ndarray) -> np.ndarray:
        return decay_numpy(v, self.mode, param, self.bits, self.rounding, self.min_decay)


def chip_simulate(z: np.ndarray, p: IntegerNeuron, sat: Saturation) -> np.ndarray:
    """A spiking layer with chip semantics (Xylo's and DYNAP-CNN's neurons; equations in
    :class:`~spikelfp.hw_export.QuantizedNeuron`) on the ``(T, B, N)`` input ``z``: spike
    counts ``(T, B, N)``."""
    if p.input_delay:
        z = np.concatenate([np.zeros_like(z[:1]), z[:-1]])
    shape = z.shape[1:]
    i_syn = np.zeros(shape, np.int64)
    v = np.zeros(shape, np.int64)
    s = np.zeros(shape, np.int64)
    th = np.maximum(p.threshold, 1)
    k_syn = p.i_decay if p.i_decay is not None else np.int64(p.current_shift or 0)
    out = np.empty(z.shape, np.int64)
    for t in range(z.shape[0]):
        drive = z[t] if p.w_rec is None else z[t] + matmul(s, p.w_rec.T)
        if p.current_shift is not None:
            i_syn = sat(i_syn + drive)
            i_syn = p.decay(i_syn, k_syn)
            drive = i_syn
        v = sat(p.decay(v, p.v_decay) + drive)
        n = v // th if p.fire_at == ">=" else (v - 1) // th
        s = np.clip(n, 0, p.max_spikes)
        v = v - s * th
        if p.v_floor == "-threshold":
            v = np.maximum(v, -th)
        out[t] = s
    return out


def lif_membrane(v, drive, p: IntegerNeuron, sat: Saturation):
    """One integer LIF step: ``(membrane after reset, spikes)``, from the membrane ``v`` after
    the previous step's reset and this step's ``drive``."""
    th = p.threshold

    def reset(v_pre, r):
        if p.reset == "zero":
            return np.where(r, 0, v_pre)
        if p.reset == "subtract":
            return sat(v_pre - th * r)
        return v_pre

    v_pre = sat(p.decay(v, p.v_decay) + drive)
    if p.reset_delay:
        r = (v > th).astype(np.int64)
        v = reset(v_pre, r)
        s = (v > th).astype(np.int64)
    else:
        s = (v_pre > th).astype(np.int64)
        v = reset(v_pre, s)
    return v, s
