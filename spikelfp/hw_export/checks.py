"""Check a network against a :class:`HardwareProfile`: every violation, each with a fix.

:func:`check_model` never stops at the first problem: it walks every layer and the network
as a whole and returns a :class:`ConstraintReport` listing all violations (the network cannot
run as trained), warnings (it runs, but something is lost, e.g. a decay rounded far or a
state that may saturate) and notes.

>>> from torch import nn
>>> from spikelfp import LIF, Sequential
>>> net = Sequential(nn.Linear(32, 20), LIF(beta=0.9), nn.Linear(20, 10), LIF(beta=0.9))
>>> report = check_model(net, "xylo")
>>> [v.constraint for v in report.violations]
['bias', 'reset', 'bias', 'reset', 'inputs', 'outputs']
>>> report.ok
False
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..neurons.base import NeuronModule
from ..sequential import Sequential
from ._layers import CanonicalNet, as_canonical, converter_for
from ._violations import ConstraintReport, Violation
from .profiles import HardwareProfile, get_profile
from .quantize import QuantizedNetwork

__all__ = ["Violation", "ConstraintReport", "check_model"]


_TYPE_FIXES = {
    ("Linear", "speck"): "express it as nn.Conv2d with a kernel the size of its input (sinabs' "
    "DynapcnnNetwork converts Linear layers this way)",
    ("Conv2d", "xylo"): "Xylo is dense only: flatten the input and use nn.Linear layers",
    ("Conv1d", "xylo"): "Xylo is dense only: flatten the input and use nn.Linear layers",
    ("LIF", "speck"): "Speck neurons do not leak: use spikelfp.IF (beta = 1)",
    ("CubaLIF", "speck"): "Speck neurons are integrate-and-fire: use spikelfp.IF",
    ("RLIF", "speck"): "Speck is feed-forward: remove the recurrence (use IF)",
    ("LI", "speck"): "use a spiking output layer (IF) and read spike counts",
    ("LI", "xylo"): "use a spiking output layer (LIF) and read spike counts",
    ("IF", "xylo"): "Xylo neurons always leak (bit-shift decay <= 15): use LIF with "
    "beta <= 1 - 2**-15",
}


def _type_fix(kind: str, prof: HardwareProfile) -> str:
    allowed = ", ".join(prof.layer_types + prof.neuron_types)
    return _TYPE_FIXES.get((kind, prof.name), f"replace it by one of: {allowed}")


def _fan(layer: nn.Module, conv, shape_in) -> tuple[int, int]:
    mask = (layer.weight.detach() != 0).to(torch.float64)
    fi, fo = conv.connectivity(layer, mask, shape_in)
    return int(fi.max()), int(fo.max())


def _check_layers(layers, origins, problems, shapes, prof, report: ConstraintReport):
    bad = {i for i, _, _ in problems}
    for i, name, why in problems:
        report.violations.append(
            Violation(f"layer {i} ({name})", "layer type", name, "a supported layer", why)
        )
    for j, layer in enumerate(layers):
        i = origins[j]
        if i in bad:
            continue
        conv = converter_for(layer)
        kind = conv.name or type(layer).__name__
        where = f"layer {i} ({kind})"
        if conv.role == "neuron":
            if kind not in prof.neuron_types:
                report.violations.append(
                    Violation(
                        where,
                        "neuron type",
                        kind,
                        " / ".join(prof.neuron_types),
                        _type_fix(kind, prof),
                    )
                )
                continue
            if conv.check is not None:
                conv.check(layer, conv, where, prof, report)
            continue
        lk = kind
        if lk not in prof.layer_types:
            report.violations.append(
                Violation(
                    where,
                    "layer type",
                    lk,
                    " / ".join(prof.layer_types) or "none",
                    _type_fix(lk, prof),
                )
            )
            continue
        if conv.role == "synapse":
            if not prof.allow_bias and layer.bias is not None and bool((layer.bias != 0).any()):
                report.violations.append(
                    Violation(
                        where,
                        "bias",
                        "non-zero bias",
                        "no bias",
                        f"construct the layer with bias=False and retrain ({prof.name} has no "
                        "synaptic bias)",
                    )
                )
            if (prof.max_fan_in or prof.max_fan_out) and shapes is not None:
                fi, fo = _fan(layer, conv, shapes[j])
                if prof.max_fan_in and fi > prof.max_fan_in:
                    report.violations.append(
                        Violation(
                            where,
                            "fan-in",
                            f"{fi} synapses into one neuron",
                            f"<= {prof.max_fan_in}",
                            "prune per layer (magnitude_prune(model, s, scope='layer')) or use "
                            "smaller kernels / fewer inputs",
                        )
                    )
                if prof.max_fan_out and fo > prof.max_fan_out:
                    report.violations.append(
                        Violation(
                            where,
                            "fan-out",
                            f"{fo} synapses out of one neuron",
                            f"<= {prof.max_fan_out}",
                            "prune or use fewer output channels",
                        )
                    )


def _check_sizes(layers, origins, shapes, prof, report):
    n_in = int(np.prod(shapes[0]))
    if prof.max_inputs is not None and n_in > prof.max_inputs:
        report.violations.append(
            Violation(
                "network",
                "inputs",
                f"{n_in} input channels {tuple(shapes[0])}",
                f"<= {prof.max_inputs}",
                "reduce the input (downsample, crop, pool or select channels) before the chip",
            )
        )
    sizes = [
        (origins[j], int(np.prod(shapes[j + 1])))
        for j, layer in enumerate(layers)
        if isinstance(layer, NeuronModule)
    ]
    if not sizes:
        return
    n_out = sizes[-1][1]
    hidden = sum(n for _, n in sizes[:-1])
    if prof.max_hidden is not None and hidden > prof.max_hidden:
        report.violations.append(
            Violation(
                "network",
                "hidden neurons",
                str(hidden),
                f"<= {prof.max_hidden}",
                f"use fewer hidden neurons (layers of sizes {[n for _, n in sizes[:-1]]})",
            )
        )
    if prof.max_outputs is not None and n_out > prof.max_outputs:
        report.violations.append(
            Violation(
                "network",
                "outputs",
                f"{n_out} output neurons",
                f"<= {prof.max_outputs}",
                f"use <= {prof.max_outputs} output neurons (fewer classes or a binary/population "
                "code)",
            )
        )
    if prof.max_layers is not None and len(sizes) > prof.max_layers:
        report.violations.append(
            Violation(
                "network",
                "layers",
                f"{len(sizes)} neuron layers",
                f"<= {prof.max_layers}",
                "use fewer layers",
            )
        )


def _check_quantized(qnet, prof, report):
    if qnet.bits > prof.weight_bits:
        report.violations.append(
            Violation(
                "network",
                "weight bits",
                f"{qnet.bits}-bit weights",
                f"<= {prof.weight_bits}",
                f"quantise with bits <= {prof.weight_bits}",
            )
        )
    rng = prof.state_range
    layers = list(qnet.model)
    in_max = 1.0
    convs = [converter_for(layer) for layer in layers]
    for j, (layer, conv) in enumerate(zip(layers, convs, strict=True)):
        if conv.role == "synapse":
            w = layer.weight.detach().abs().reshape(layer.weight.shape[0], -1).sum(1)
            bound = w * in_max
            if layer.bias is not None:
                bound = bound + layer.bias.detach().abs()
            worst = float(bound.max())
            k = j + 1
            while k < len(layers) and convs[k].role == "pool":
                kk = layers[k].kernel_size
                worst *= kk[0] * kk[1]
                k += 1
            if rng is not None and worst > rng[1]:
                report.warnings.append(
                    Violation(
                        f"layer {j} ({conv.name})",
                        "state range",
                        f"worst-case input {worst:.0f} per step",
                        f"<= {rng[1]} ({prof.state_bits}-bit state)",
                        "states may saturate: check SimulationResult.saturations on real data, "
                        "or prune / lower the bit width",
                    )
                )
        if conv.role == "neuron" and conv.spiking:
            in_max = 1.0
            if rng is not None and float(layer.threshold.max()) > rng[1]:
                report.violations.append(
                    Violation(
                        f"layer {j} ({conv.name})",
                        "threshold range",
                        f"integer threshold {float(layer.threshold.max()):.0f}",
                        f"<= {rng[1]} ({prof.state_bits}-bit state)",
                        "quantise with fewer bits or raise the weights/threshold ratio",
                    )
                )


def check_model(
    model,
    profile: str | HardwareProfile,
    bits: int | None = None,
    input_shape: Sequence[int] | None = None,
) -> ConstraintReport:
    """Check ``model`` (a :class:`spikelfp.Sequential`, its :class:`CanonicalNet` or a
    :class:`QuantizedNetwork`) against ``profile``; returns a :class:`ConstraintReport` with
    every violation.

    ``bits`` (for a float model) checks the intended weight width; ``input_shape`` enables the
    size limits when the input shape cannot be inferred (convolutional networks).
    """
    prof = get_profile(profile)
    report = ConstraintReport(prof)
    qnet = None
    cnet = model if isinstance(model, CanonicalNet) else None
    if isinstance(model, QuantizedNetwork):
        qnet = model
        model = qnet.float_model
        cnet = qnet.canonical
        input_shape = qnet.input_shape if input_shape is None else input_shape
        bits = qnet.bits if bits is None else bits
    if cnet is None and not isinstance(model, Sequential):
        raise TypeError(
            f"check_model expects a spikelfp.Sequential or a QuantizedNetwork, got "
            f"{type(model).__name__}"
        )
    cnet = as_canonical(model if cnet is None else cnet, input_shape)
    layers, problems, shapes = list(cnet.model), cnet.problems, cnet.shapes
    # a quantised network's layers are numbered as in its (canonical) float model
    origins = list(range(len(layers))) if qnet is not None else cnet.origins
    if shapes is None:
        report.notes.append(f"size limits not checked: {cnet.shape_error}")
    _check_layers(layers, origins, problems, shapes, prof, report)
    if shapes is not None:
        _check_sizes(layers, origins, shapes, prof, report)
    if qnet is not None:
        _check_quantized(qnet, prof, report)
    elif bits is not None and bits > prof.weight_bits:
        report.violations.append(
            Violation(
                "network",
                "weight bits",
                f"{bits}-bit weights",
                f"<= {prof.weight_bits}",
                f"quantise with bits <= {prof.weight_bits}",
            )
        )
    return report
