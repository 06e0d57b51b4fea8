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
['reset', 'reset', 'inputs', 'outputs']
>>> report.ok
False
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..neurons import CubaLIF
from ..neurons.base import NeuronModule
from ..sequential import Sequential
from ._decay import quantize_decay
from ._layers import SYNAPSE_TYPES, SumPool2d, canonical_layers, infer_shapes, kind_of
from .errors import ProfileViolationError
from .profiles import HardwareProfile, get_profile

__all__ = ["Violation", "ConstraintReport", "check_model"]


@dataclass(frozen=True)
class Violation:
    """One broken constraint: where, what, what was found, what is required, and the fix."""

    layer: str
    constraint: str
    found: str
    required: str
    fix: str

    def __str__(self) -> str:
        return (
            f"{self.layer}: {self.constraint}: found {self.found}, required {self.required}"
            f" -> {self.fix}"
        )


@dataclass
class ConstraintReport:
    """Result of :func:`check_model`."""

    profile: HardwareProfile
    violations: list[Violation] = field(default_factory=list)
    warnings: list[Violation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when there is no violation (warnings allowed)."""
        return not self.violations

    def raise_if_violated(self) -> None:
        """Raise :class:`ProfileViolationError` listing every violation, if any."""
        if self.violations:
            raise ProfileViolationError(
                f"the network breaks {len(self.violations)} constraint(s) of the "
                f"{self.profile.name!r} profile:\n  "
                + "\n  ".join(str(v) for v in self.violations),
                self.violations,
            )

    def to_dict(self) -> dict:
        return {
            "profile": self.profile.name,
            "ok": self.ok,
            "violations": [vars(v).copy() for v in self.violations],
            "warnings": [vars(v).copy() for v in self.warnings],
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        head = (
            f"{self.profile.name}: {'OK' if self.ok else 'NOT DEPLOYABLE'} "
            f"({len(self.violations)} violation(s), {len(self.warnings)} warning(s))"
        )
        lines = [head]
        if self.profile.description:
            lines.append(f"  profile: {self.profile.description}")
        lines += [f"  VIOLATION {v}" for v in self.violations]
        lines += [f"  warning   {w}" for w in self.warnings]
        lines += [f"  note      {n}" for n in self.notes]
        return "\n".join(lines)


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


def _float_decays(layer) -> dict[str, torch.Tensor]:
    if isinstance(layer, CubaLIF):
        return {"alpha": layer.alpha.detach(), "beta": layer.beta.detach()}
    if hasattr(layer, "beta"):
        return {"beta": layer.beta.detach()}
    return {}


def _fan(layer: nn.Module, shape_in) -> tuple[int, int]:
    from .pruning import _connectivity

    mask = (layer.weight.detach() != 0).to(torch.float64)
    fi, fo = _connectivity(layer, mask, shape_in)
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
        kind = kind_of(layer)
        where = f"layer {i} ({kind})"
        if isinstance(layer, NeuronModule):
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
            _check_neuron(layer, kind, where, prof, report)
            continue
        lk = "AvgPool2d" if isinstance(layer, nn.AvgPool2d) else kind
        if isinstance(layer, SumPool2d):
            lk = "SumPool2d"
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
        if isinstance(layer, SYNAPSE_TYPES):
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
                fi, fo = _fan(layer, shapes[j])
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


def _check_neuron(layer, kind, where, prof, report):
    if kind != "LI" and hasattr(layer, "reset"):
        if layer.reset not in prof.resets:
            report.violations.append(
                Violation(
                    where,
                    "reset",
                    f'reset="{layer.reset}"',
                    " / ".join(prof.resets),
                    f"retrain with {kind}(reset={prof.resets[0]!r})",
                )
            )
        if layer.reset_delay and not prof.reset_delay:
            report.violations.append(
                Violation(
                    where,
                    "reset timing",
                    "reset_delay=True",
                    "immediate reset",
                    f"retrain with {kind}(reset_delay=False)",
                )
            )
    for name, beta in _float_decays(layer).items():
        b = beta.to(torch.float64).numpy().reshape(-1)
        if prof.shared_decay and b.size > 1 and not np.all(b == b[0]):
            report.violations.append(
                Violation(
                    where,
                    "shared decay",
                    f"per-neuron {name} ({b.min():.4g}..{b.max():.4g})",
                    "one decay per layer",
                    f"retrain with one shared {name} (shape=None, learn_{name}=False)",
                )
            )
        if prof.decay == "none" and not np.all(b == 1):
            report.violations.append(
                Violation(
                    where,
                    "decay",
                    f"{name}={b.min():.4g}..{b.max():.4g}",
                    f"{name}=1 (no leak)",
                    "use spikelfp.IF (integrate-and-fire)",
                )
            )
        elif prof.decay == "shift":
            slow = 1.0 - 2.0**-prof.max_shift
            if np.any(b > slow):
                report.violations.append(
                    Violation(
                        where,
                        "decay",
                        f"{name}={b.max():.6g}",
                        f"{name} <= 1 - 2**-{prof.max_shift} = {slow:.6g} (bit-shift <= "
                        f"{prof.max_shift})",
                        f"retrain with {name} <= {slow:.6g}",
                    )
                )
        if prof.decay in ("shift", "mult"):
            _, bq = quantize_decay(b, prof.decay, prof.decay_bits, prof.max_shift)
            err = float(np.abs(bq - b).max())
            if err > 0.02:
                worst = int(np.abs(bq - b).argmax())
                report.warnings.append(
                    Violation(
                        where,
                        "decay precision",
                        f"{name}={b[worst]:.4g} becomes {bq[worst]:.4g}",
                        f"|error| <= 0.02 ({prof.decay} decay)",
                        f"retrain with a representable {name} (e.g. {bq[worst]:.4g})",
                    )
                )
    th = getattr(layer, "threshold", None)
    if th is not None and kind != "LI":
        t = th.detach().reshape(-1)
        if prof.shared_threshold and t.numel() > 1 and not bool((t == t[0]).all()):
            report.notes.append(
                f"{where}: per-neuron thresholds; {prof.name} has one threshold per layer, so "
                "they are folded into the weight rows when quantising"
            )
        if bool((t <= 0).any()):
            report.violations.append(
                Violation(
                    where,
                    "threshold",
                    f"threshold {float(t.min()):.4g}",
                    "> 0",
                    "use positive thresholds (the scale is folded into them)",
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
    for j, layer in enumerate(layers):
        if isinstance(layer, SYNAPSE_TYPES):
            w = layer.weight.detach().abs().reshape(layer.weight.shape[0], -1).sum(1)
            bound = w * in_max
            if layer.bias is not None:
                bound = bound + layer.bias.detach().abs()
            worst = float(bound.max())
            k = j + 1
            while k < len(layers) and isinstance(layers[k], SumPool2d):
                kk = layers[k].kernel_size
                worst *= kk[0] * kk[1]
                k += 1
            if rng is not None and worst > rng[1]:
                report.warnings.append(
                    Violation(
                        f"layer {j} ({kind_of(layer)})",
                        "state range",
                        f"worst-case input {worst:.0f} per step",
                        f"<= {rng[1]} ({prof.state_bits}-bit state)",
                        "states may saturate: check SimulationResult.saturations on real data, "
                        "or prune / lower the bit width",
                    )
                )
        if hasattr(layer, "threshold") and getattr(layer, "kind", "LI") != "LI":
            in_max = 1.0
            if rng is not None and float(layer.threshold.max()) > rng[1]:
                report.violations.append(
                    Violation(
                        f"layer {j} ({layer.kind})",
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
    """Check ``model`` (a :class:`spikelfp.Sequential` or a :class:`QuantizedNetwork`)
    against ``profile``; returns a :class:`ConstraintReport` with every violation.

    ``bits`` (for a float model) checks the intended weight width; ``input_shape`` enables the
    size limits when the input shape cannot be inferred (convolutional networks).
    """
    from .quantize import QuantizedNetwork

    prof = get_profile(profile)
    report = ConstraintReport(prof)
    qnet = None
    if isinstance(model, QuantizedNetwork):
        qnet = model
        model = qnet.float_model
        input_shape = qnet.input_shape if input_shape is None else input_shape
        bits = qnet.bits if bits is None else bits
    if not isinstance(model, Sequential):
        raise TypeError(
            f"check_model expects a spikelfp.Sequential or a QuantizedNetwork, got "
            f"{type(model).__name__}"
        )
    layers, origins, problems = canonical_layers(model)
    try:
        shapes = infer_shapes(Sequential(*layers), input_shape)
    except ValueError as err:
        shapes = None
        report.notes.append(f"size limits not checked: {err}")
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
