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

from ._intsim import IntegerNeuron, Saturation, chip_simulate, to_int
from ._layers import converter_for
from ._qneuron import QuantizedNeuron
from .kinds import INTEGER_KINDS

__all__ = ["SimulationResult", "simulate", "compile_integer"]


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


def _integer_neuron(layer: QuantizedNeuron) -> IntegerNeuron:
    return IntegerNeuron(
        layer.kind,
        to_int(layer.threshold),
        layer.decay_mode,
        to_int(layer.v_decay),
        None if layer.i_decay is None else to_int(layer.i_decay),
        layer.decay_bits,
        layer.rounding,
        layer.reset,
        layer.reset_delay,
        layer.state_bits,
        None if layer.w_rec is None else to_int(layer.w_rec),
        layer.fire_at,
        layer.min_decay,
        layer.current_shift,
        layer.max_spikes,
        layer.input_delay,
        layer.chip,
        layer.v_floor,
    )


def compile_integer(qnet) -> list:
    """The integer layer list the simulator runs (from a :class:`QuantizedNetwork` or its
    ``model``): numpy arrays per layer, made by each kind's ``compile`` hook
    (:mod:`spikelfp.hw_export.kinds`)."""
    model = getattr(qnet, "model", qnet)
    out = []
    for i, layer in enumerate(model):
        if isinstance(layer, QuantizedNeuron):
            out.append(_integer_neuron(layer))
            continue
        conv = converter_for(layer)
        if conv.compile is None:
            raise TypeError(
                f"layer {i} ({type(layer).__name__}) is not an integer layer; simulate() runs "
                "the output of quantize()"
            )
        out.append((conv, conv.compile(layer)))
    return out


def simulate(qnet, x, *, return_all: bool = True) -> SimulationResult:
    """Run the integer network on integer input ``x`` of shape ``(T, B, ...)``.

    ``qnet`` is a :class:`QuantizedNetwork` (or its ``model``); ``x`` a numpy array or tensor
    of integers (spikes or event counts). Returns a :class:`SimulationResult`. Neurons with
    chip semantics (Xylo's neuron: :class:`QuantizedNeuron`'s ``chip``) run those; a
    :class:`QuantizedNetwork` whose profile clips inputs (``input_clip``, 15 on Xylo) clips
    ``x`` first (its ``model`` alone does not know the profile).
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
    clip = getattr(getattr(qnet, "profile", None), "input_clip", None)
    if clip is not None:
        x = np.minimum(x, clip)
    t, b = x.shape[:2]
    h = x
    outs, sats = [], {}
    for i, layer in enumerate(layers):
        if isinstance(layer, IntegerNeuron):
            sat = Saturation(layer.state_bits)
            run = chip_simulate if layer.chip else INTEGER_KINDS[layer.kind].simulate
            h = run(h, layer, sat)
            sats[i] = sat.count
            if return_all:
                outs.append(h)
            continue
        conv, op = layer
        y = conv.run(h.reshape(t * b, *h.shape[2:]), op)
        h = y.reshape(t, b, *y.shape[1:])
    return SimulationResult(output=h, layer_outputs=outs, saturations=sats)
