r"""An integer-exact simulator of a quantised network, in numpy, as the chip computes it.

Every tensor is ``int64``; synapses are integer dot products, pooling integer sums, decays
integer shifts/multiplies (:mod:`._decay`), states saturate at the profile's width. This is an
independent implementation of the same arithmetic as :class:`QuantizedNeuron`, so the two give
bit-identical spikes; run it before deployment to see what the chip will do (including how
often a state saturates).

Dot products use float64 BLAS when every partial sum is provably below :math:`2^{53}` (then
they are exact integers), and exact ``int64`` products otherwise.

>>> from torch import nn
>>> from spikelfp import LIF, Sequential
>>> from spikelfp.hw_export import quantize
>>> torch.manual_seed(0) and None
>>> q = quantize(Sequential(nn.Linear(8, 4), LIF(beta=0.9, threshold=0.5)), bits=8)
>>> x = (torch.rand(10, 3, 8) < 0.5).float()
>>> res = simulate(q, x)
>>> bool((res.output == q(x)[0].numpy()).all())
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ._decay import decay_numpy
from ._layers import SumPool2d

__all__ = ["SimulationResult", "simulate", "compile_integer"]

_EXACT = 2.0**53


@dataclass
class SimulationResult:
    """Outputs of :func:`simulate`.

    Attributes:
        output: the last layer's output ``(T, B, ...)`` (spikes 0/1 or LI membranes), int64.
        layer_outputs: every neuron layer's output, in order.
        saturations: ``{layer index: number of saturated state updates}``.
    """

    output: np.ndarray
    layer_outputs: list[np.ndarray] = field(default_factory=list)
    saturations: dict[int, int] = field(default_factory=dict)


def _int(t) -> np.ndarray:
    a = t.detach().to(torch.float64).numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    r = np.rint(a)
    if not np.array_equal(r, a):
        raise ValueError("the quantised model holds non-integer values; build it with quantize()")
    return r.astype(np.int64)


@dataclass
class _Dense:
    w: np.ndarray
    b: np.ndarray | None


@dataclass
class _Conv:
    w: np.ndarray
    b: np.ndarray | None
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int
    dims: int


@dataclass
class _SumPool:
    kernel: tuple
    stride: tuple
    padding: tuple


@dataclass
class _Flatten:
    start: int
    end: int


@dataclass
class _Neuron:
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


def compile_integer(qnet) -> list:
    """The integer layer list the simulator runs (from a :class:`QuantizedNetwork` or its
    ``model``)."""
    from .quantize import QuantizedNeuron

    model = getattr(qnet, "model", qnet)
    out = []
    for i, layer in enumerate(model):
        if isinstance(layer, nn.Linear):
            out.append(_Dense(_int(layer.weight), None if layer.bias is None else _int(layer.bias)))
        elif isinstance(layer, (nn.Conv1d, nn.Conv2d)):
            dims = 1 if isinstance(layer, nn.Conv1d) else 2
            out.append(
                _Conv(
                    _int(layer.weight),
                    None if layer.bias is None else _int(layer.bias),
                    tuple(layer.stride),
                    tuple(layer.padding),
                    tuple(layer.dilation),
                    layer.groups,
                    dims,
                )
            )
        elif isinstance(layer, SumPool2d):
            out.append(_SumPool(layer.kernel_size, layer.stride, layer.padding))
        elif isinstance(layer, nn.Flatten):
            out.append(_Flatten(layer.start_dim, layer.end_dim))
        elif isinstance(layer, QuantizedNeuron):
            out.append(
                _Neuron(
                    layer.kind,
                    _int(layer.threshold),
                    layer.decay_mode,
                    _int(layer.v_decay),
                    None if layer.i_decay is None else _int(layer.i_decay),
                    layer.decay_bits,
                    layer.rounding,
                    layer.reset,
                    layer.reset_delay,
                    layer.state_bits,
                    None if layer.w_rec is None else _int(layer.w_rec),
                )
            )
        else:
            raise TypeError(
                f"layer {i} ({type(layer).__name__}) is not an integer layer; simulate() runs "
                "the output of quantize()"
            )
    return out


def _matmul(x: np.ndarray, w_t: np.ndarray) -> np.ndarray:
    """Exact integer ``x @ w_t`` (float64 BLAS when provably exact)."""
    bound = float(np.abs(x).max(initial=0)) * float(np.abs(w_t).sum(0).max(initial=0))
    if bound < _EXACT:
        return np.rint(x.astype(np.float64) @ w_t.astype(np.float64)).astype(np.int64)
    return x @ w_t


def _dense(x: np.ndarray, layer: _Dense) -> np.ndarray:
    y = _matmul(x, layer.w.T)
    return y + layer.b if layer.b is not None else y


def _conv(x: np.ndarray, layer: _Conv) -> np.ndarray:
    """Integer convolution via im2col; ``x`` is ``(N, C, *spatial)``."""
    if layer.dims == 1:
        x = x[:, :, None, :]
        w = layer.w[:, :, None, :]
        stride, pad, dil = (1, *layer.stride), (0, *layer.padding), (1, *layer.dilation)
    else:
        w, stride, pad, dil = layer.w, layer.stride, layer.padding, layer.dilation
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    x = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    ho = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    g = layer.groups
    og = o // g
    y = np.empty((n, o, ho, wo), dtype=np.int64)
    for gi in range(g):
        xs = x[:, gi * cg : (gi + 1) * cg]
        cols = np.empty((n, ho, wo, cg, kh, kw), dtype=np.int64)
        for a in range(kh):
            for b in range(kw):
                r0, c0 = a * dil[0], b * dil[1]
                patch = xs[
                    :,
                    :,
                    r0 : r0 + stride[0] * (ho - 1) + 1 : stride[0],
                    c0 : c0 + stride[1] * (wo - 1) + 1 : stride[1],
                ]
                cols[..., a, b] = patch.transpose(0, 2, 3, 1)
        wg = w[gi * og : (gi + 1) * og].reshape(og, -1)
        out = _matmul(cols.reshape(n * ho * wo, -1), wg.T)
        y[:, gi * og : (gi + 1) * og] = out.reshape(n, ho, wo, og).transpose(0, 3, 1, 2)
    if layer.b is not None:
        y += layer.b.reshape(1, -1, 1, 1)
    return y[:, :, 0, :] if layer.dims == 1 else y


def _sumpool(x: np.ndarray, layer: _SumPool) -> np.ndarray:
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n, c, h, w = x.shape
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    y = np.zeros((n, c, ho, wo), dtype=np.int64)
    for a in range(kh):
        for b in range(kw):
            y += x[:, :, a : a + sh * (ho - 1) + 1 : sh, b : b + sw * (wo - 1) + 1 : sw]
    return y


def _flatten(x: np.ndarray, layer: _Flatten) -> np.ndarray:
    shape = x.shape
    nd = len(shape)
    s = layer.start % nd
    e = layer.end % nd
    return x.reshape(*shape[:s], -1, *shape[e + 1 :])


class _Sat:
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


def _run_neuron(z: np.ndarray, p: _Neuron) -> tuple[np.ndarray, int]:
    sat = _Sat(p.state_bits)
    th = p.threshold

    def decay(v, param):
        return decay_numpy(v, p.mode, param, p.bits, p.rounding)

    def reset(v_pre, r):
        if p.reset == "zero":
            return np.where(r, 0, v_pre)
        if p.reset == "subtract":
            return sat(v_pre - th * r)
        return v_pre

    shape = z.shape[1:]
    v = np.zeros(shape, np.int64)
    i_syn = np.zeros(shape, np.int64)
    s_prev = np.zeros(shape, np.int64)
    out = np.empty(z.shape, np.int64)
    for t in range(z.shape[0]):
        drive = z[t]
        if p.kind == "LI":
            v = sat(decay(v, p.v_decay) + drive)
            out[t] = v
            continue
        if p.kind == "CubaLIF":
            i_syn = sat(decay(i_syn, p.i_decay) + drive)
            drive = i_syn
        elif p.kind == "RLIF":
            drive = drive + _matmul(s_prev, p.w_rec.T)
        v_pre = sat(decay(v, p.v_decay) + drive)
        if p.reset_delay:
            r = (v > th).astype(np.int64)
            v = reset(v_pre, r)
            s = (v > th).astype(np.int64)
        else:
            s = (v_pre > th).astype(np.int64)
            v = reset(v_pre, s)
        out[t] = s
        s_prev = s
    return out, sat.count


def simulate(qnet, x, *, return_all: bool = True) -> SimulationResult:
    """Run the integer network on integer input ``x`` of shape ``(T, B, ...)``.

    ``qnet`` is a :class:`QuantizedNetwork` (or its ``model``); ``x`` a numpy array or tensor
    of integers (spikes or event counts). Returns a :class:`SimulationResult`.
    """
    layers = compile_integer(qnet)
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().to(torch.float64).numpy()
    x = np.asarray(x)
    if x.ndim < 3:
        raise ValueError(f"simulate expects a time-first input (T, B, ...), got shape {x.shape}")
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all() or not np.array_equal(np.rint(x), x):
            raise ValueError(
                "the chip takes integer input (spikes or event counts); round or threshold the "
                "input, or quantise with input_scale= so that inputs are integers"
            )
    x = np.rint(x).astype(np.int64)
    t, b = x.shape[:2]
    h = x
    outs, sats = [], {}
    for i, layer in enumerate(layers):
        if isinstance(layer, _Neuron):
            h, n = _run_neuron(h, layer)
            sats[i] = n
            if return_all:
                outs.append(h)
            continue
        flat = h.reshape(t * b, *h.shape[2:])
        if isinstance(layer, _Dense):
            y = _dense(flat, layer)
        elif isinstance(layer, _Conv):
            y = _conv(flat, layer)
        elif isinstance(layer, _SumPool):
            y = _sumpool(flat, layer)
        else:
            y = _flatten(flat, layer)
        h = y.reshape(t, b, *y.shape[1:])
    return SimulationResult(output=h, layer_outputs=outs, saturations=sats)
