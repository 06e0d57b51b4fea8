r"""Quantisation to integers, with the scale folded into threshold, reset and bias.

**Folding.** A synapse followed by a spiking neuron computes :math:`Z_j = \sum_i W_{ji} x_i + b_j`
and the neuron compares :math:`V_j` with :math:`\theta_j`. Dividing the whole row, the bias, the
state and the threshold by one positive scale :math:`s_j` changes no spike in exact arithmetic
(:math:`V/s > \theta/s \iff V > \theta`; decays and zero/subtract resets are linear). So with

.. math::
    W^q_{ji} = \mathrm{round}(W_{ji}/s_j) \in [-q, q],\quad q = 2^{b-1}-1,\quad
    b^q_j = \mathrm{round}(b_j/s_j),\quad \theta^q_j = \theta_j/s_j

the only change is the rounding of weights and bias. The scale is chosen so that the threshold
is an exact integer: the largest such scale with no weight clipped is
:math:`s_j = \theta_j / n_j`, :math:`n_j = \lfloor q\,\theta_j / \max_i|W_{ji}| \rfloor`
(``scale_method="max"``); the default ``scale_method="mse"`` also tries the finer scales
:math:`\theta_j / \lfloor f n_j \rfloor`, :math:`f \in [1, 8]`, and keeps the one with the
least squared weight error (a few clipped outliers buy many more levels for the rest, which
matters at 4 and 2 bits). One scale per output neuron/channel (``granularity="channel"``).
Targets with one threshold per layer (``profile.shared_threshold``, or
``granularity="layer"``) use one integer :math:`n = \min_j n_j` (or a multiple of it picked
by the same MSE rule) for the layer and
:math:`s_j = \theta_j / n` — a single scale when the thresholds are equal, otherwise per-neuron
thresholds are folded into the weight rows. A recurrent layer's rows share the scale with the
feed-forward rows. A non-spiking readout (LI, or no neuron) gets one scale per layer
(:math:`s = \max|W| / q`), so the arg-max over its outputs is preserved.

Average pooling becomes exact sum pooling (:class:`SumPool2d`) and its :math:`1/k^2` moves into
the scale of what follows (the threshold becomes :math:`n k^2`, still an integer).

**Decays** are rounded to what the profile stores (:mod:`._decay`): bit-shift
:math:`\beta_q = 1-2^{-k}`, 12-bit :math:`\beta_q = 1 - d/4096`, or none. States saturate at the
profile's ``state_bits``.

The result is a :class:`QuantizedNetwork` whose ``model`` is a :class:`spikelfp.Sequential` in
float64 holding integers (Linear/Conv weights and biases, :class:`QuantizedNeuron`
thresholds), computing exactly what :func:`spikelfp.hw_export.simulate` computes with numpy
integers.

>>> from torch import nn
>>> from spikelfp import LIF, Sequential
>>> torch.manual_seed(0) and None
>>> net = Sequential(nn.Linear(6, 4), LIF(beta=0.9, threshold=1.0))
>>> q = quantize(net, bits=8, profile="int8")
>>> w = q.model[0].weight
>>> bool((w == w.round()).all()), int(w.abs().max()) <= 127, q.model[1].threshold.dtype
(True, True, torch.float64)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..sequential import Sequential
from ._decay import quantize_decay
from ._layers import (
    CanonicalNet,
    as_canonical,
    canonical_model,
    converter_for,
    kind_of,
)
from ._qneuron import QuantizedNeuron
from .kinds import Converter
from .profiles import HardwareProfile, get_profile
from .simulator import simulate as _simulate

__all__ = [
    "QuantizedNeuron",
    "QuantizedNetwork",
    "LayerQuantization",
    "QuantizationReport",
    "quantize",
]

F64 = torch.float64


@dataclass
class LayerQuantization:
    """What quantisation did to one layer (errors in the float model's units)."""

    index: int
    kind: str
    scale_min: float | None = None
    scale_max: float | None = None
    max_weight_error: float | None = None
    max_relative_error: float | None = None
    max_bias_error: float | None = None
    clipped: int = 0
    threshold_int: tuple[int, int] | None = None
    max_threshold_error: float | None = None
    decay: str | None = None
    max_decay_error: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class QuantizationReport:
    """Per-layer rounding errors of a :func:`quantize` call."""

    bits: int
    profile: str
    layers: list[LayerQuantization]

    @property
    def max_weight_error(self) -> float:
        errs = [r.max_weight_error for r in self.layers if r.max_weight_error is not None]
        return max(errs, default=0.0)

    def to_dict(self) -> dict:
        return {
            "bits": self.bits,
            "profile": self.profile,
            "layers": [vars(r).copy() for r in self.layers],
        }

    def __str__(self) -> str:
        def f(v):
            return "" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))

        lines = [
            f"quantisation to {self.bits} bits for {self.profile}",
            "| layer | kind | scale | max weight err | rel. err | bias err | clipped | "
            "threshold (int) | threshold err | decay | decay err |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.layers:
            scale = (
                ""
                if r.scale_min is None
                else (
                    f"{r.scale_min:.3g}"
                    if r.scale_min == r.scale_max
                    else f"{r.scale_min:.3g}..{r.scale_max:.3g}"
                )
            )
            th = (
                ""
                if r.threshold_int is None
                else (
                    str(r.threshold_int[0])
                    if r.threshold_int[0] == r.threshold_int[1]
                    else f"{r.threshold_int[0]}..{r.threshold_int[1]}"
                )
            )
            lines.append(
                f"| {r.index} | {r.kind} | {scale} | {f(r.max_weight_error)} | "
                f"{f(r.max_relative_error)} | {f(r.max_bias_error)} | {r.clipped} | {th} | "
                f"{f(r.max_threshold_error)} | {r.decay or ''} | {f(r.max_decay_error)} |"
            )
        notes = [f"layer {r.index}: {n}" for r in self.layers for n in r.notes]
        return "\n".join(lines + notes)


@dataclass
class QuantizedNetwork:
    """An integer network: the float64 torch model, its scales and the quantisation report.

    Attributes:
        model: :class:`spikelfp.Sequential` (float64, integer-valued).
        report: :class:`QuantizationReport`.
        profile: the :class:`HardwareProfile` quantised for.
        bits: weight bits.
        input_shape: per-sample input shape (no time, no batch).
        input_scale: float value of one integer input unit.
        weight_scales: ``{layer index: per-output-channel scale}`` (float = scale · integer).
        output_scale: float value of one unit of the output (1 for spikes).
        float_model: the canonical float model that was quantised.
        canonical: its :class:`CanonicalNet` (origins, kinds, shapes), when built by
            :func:`quantize`.
    """

    model: Sequential
    report: QuantizationReport
    profile: HardwareProfile
    bits: int
    input_shape: tuple[int, ...]
    input_scale: float
    weight_scales: dict[int, torch.Tensor]
    output_scale: torch.Tensor
    float_model: Sequential
    canonical: CanonicalNet | None = field(default=None, repr=False)

    def __call__(self, x: torch.Tensor, state=None):
        """Run the quantised torch model on integer input ``x`` (cast to float64; clipped to
        the profile's ``input_clip`` where it has one)."""
        return self.model(self.clip_input(x.to(F64)), state)

    def clip_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with at most the profile's ``input_clip`` events per channel and step (Xylo:
        15), as the chip takes it; unchanged when the profile has no such limit."""
        clip = self.profile.input_clip
        return x if clip is None else x.clamp(max=float(clip))

    def simulate(self, x, **kwargs):
        """Run the numpy integer simulator (:func:`spikelfp.hw_export.simulate`)."""
        return _simulate(self, x, **kwargs)


def _channel_view(t: torch.Tensor, ndim: int) -> torch.Tensor:
    return t.reshape(-1, *([1] * (ndim - 1)))


def _next_neuron(convs: list[Converter], i: int) -> int | None:
    j = i + 1
    while j < len(convs) and convs[j].role == "pool":
        j += 1
    if j < len(convs) and convs[j].role == "neuron":
        return j
    return None


def _per_channel(t: torch.Tensor, shape: tuple[int, ...]) -> tuple[torch.Tensor, bool]:
    """Reduce a tensor broadcast to ``shape`` (channel first) to one value per channel."""
    full = t.to(F64).expand(shape).reshape(shape[0], -1)
    uniform = bool((full == full[:, :1]).all())
    return (full[:, 0] if uniform else full.mean(1)), uniform


def _input_scale_for(layer, conv: Converter, scale: torch.Tensor, shape: tuple[int, ...]):
    """The input scale as a factor on the weight (per input column / channel: the kind's
    ``column_scale``)."""
    full = scale.expand(shape)
    if bool((full == full.reshape(-1)[0]).all()):
        return full.reshape(-1)[0]
    return conv.column_scale(layer, full, shape)


#: Candidate refinements of the no-clipping scale: threshold integer n -> n·f (finer scale,
#: the largest weights may clip); the one with the least squared weight error is kept.
_MSE_FACTORS = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)


def _row_errors(rows: torch.Tensor, s: torch.Tensor, qmax: int) -> torch.Tensor:
    q = torch.round(rows / s[:, None]).clamp(-qmax, qmax)
    return ((rows - s[:, None] * q) ** 2).sum(1)


def _choose_scale(w_eff, rec, nxt, nxt_shape, qmax, shared, index, method="mse"):
    """Per-output-channel scale (see the module docstring) and a note, if any."""
    c = w_eff.shape[0]
    rows = w_eff.reshape(c, -1)
    if rec is not None:
        rows = torch.cat([rows, rec], 1)
    m = rows.abs().amax(1)
    mse = method == "mse"
    if nxt is None:  # no spiking neuron next (none, or an LI readout)
        top = float(m.max()) if m.numel() else 0.0
        if top == 0:
            return torch.ones(c, dtype=F64), None
        cands = [
            torch.full((c,), top / qmax / f, dtype=F64) for f in _MSE_FACTORS[: 10 if mse else 1]
        ]
        errs = [float(_row_errors(rows, s, qmax).sum()) for s in cands]
        return cands[int(np.argmin(errs))], None
    theta, uniform = _per_channel(nxt.threshold.detach(), nxt_shape)
    note = None
    if not uniform:
        note = (
            "threshold varies within a channel: the per-channel scale cannot make it "
            "exact; it is rounded"
        )
    if bool((theta <= 0).any()):
        raise ValueError(
            f"layer {index + 1}: quantisation folds the scale into the threshold, which needs "
            f"positive thresholds (found {float(theta.min()):.4g}); raise the threshold"
        )
    ratio = torch.where(
        m > 0, qmax * theta / m.clamp_min(1e-300), torch.full_like(theta, float("inf"))
    )
    factors = _MSE_FACTORS if mse else (1.0,)
    if shared:
        r = float(ratio.min())
        if not np.isfinite(r):
            return theta / qmax, note
        n0 = np.floor(r)
        if n0 < 1:
            note = (
                f"threshold/weight ratio too small for {qmax} levels: the shared integer "
                f"threshold rounds to {round(r)}"
            )
            return theta / r, note
        cands = sorted({float(np.floor(n0 * f)) for f in factors})
        errs = [float(_row_errors(rows, theta / n, qmax).sum()) for n in cands]
        return theta / cands[int(np.argmin(errs))], note
    n0 = torch.floor(ratio).clamp(max=2.0**40)
    n0 = torch.where(m > 0, n0, torch.full_like(n0, float(qmax)))
    ok = n0 >= 1
    best = torch.where(ok, theta / n0.clamp_min(1), m / qmax)
    if mse and bool(ok.any()):
        best_err = _row_errors(rows, best, qmax)
        for f in factors[1:]:
            s = theta / torch.floor(n0 * f).clamp_min(1)
            err = _row_errors(rows, s, qmax)
            better = ok & (err < best_err)
            best = torch.where(better, s, best)
            best_err = torch.where(better, err, best_err)
    if bool((~ok).any()):
        note = (
            f"{int((~ok).sum())} neuron(s) have a threshold below max|w|/{qmax}: their "
            "integer threshold is rounded"
        )
    return best, note


def quantize(
    model: nn.Module,
    bits: int = 8,
    profile: str | HardwareProfile = "int8",
    *,
    granularity: str | None = None,
    input_shape: Sequence[int] | None = None,
    input_scale: float = 1.0,
    scale_method: str = "mse",
) -> QuantizedNetwork:
    """Quantise ``model`` (a :class:`spikelfp.Sequential`) to ``bits``-bit integer weights.

    Args:
        model: the trained float network (not modified), or its :class:`CanonicalNet`.
        bits: weight width (>= 2; 8 default, 4 and 2 work too).
        profile: target profile (name or :class:`HardwareProfile`): decay representation,
            state width, shared thresholds.
        granularity: ``"channel"`` (one scale per output neuron/channel), ``"layer"`` (one
            integer threshold per layer) or ``None`` (``"layer"`` if the profile shares
            thresholds, else ``"channel"``).
        input_shape: per-sample input shape when it cannot be inferred (convolutions).
        input_scale: float value of one unit of the (integer) input; 1 for spikes/counts.
        scale_method: ``"max"``: the largest scale-compatible integer threshold with no weight
            clipped; ``"mse"`` (default): also try finer scales (threshold integer ``n·f``,
            ``f`` up to 8) and keep the one with the least squared weight error (matters at 4
            and 2 bits, where a few clipped outliers buy many more levels for the rest).

    Returns:
        a :class:`QuantizedNetwork`; ``.report`` lists the max rounding error per layer.
    """
    prof = get_profile(profile)
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or bits < 2:
        raise ValueError(f"bits must be an integer >= 2, got {bits!r}")
    if bits > 31:
        raise ValueError(f"bits must be <= 31, got {bits}")
    if scale_method not in ("mse", "max"):
        raise ValueError(f"scale_method must be 'mse' or 'max', got {scale_method!r}")
    if granularity not in (None, "channel", "layer"):
        raise ValueError(f"granularity must be 'channel', 'layer' or None, got {granularity!r}")
    if not (np.isfinite(input_scale) and input_scale > 0):
        raise ValueError(f"input_scale must be a positive number, got {input_scale}")
    shared = prof.shared_threshold if granularity is None else granularity == "layer"
    modules = model.model.modules() if isinstance(model, CanonicalNet) else model.modules()
    if isinstance(model, QuantizedNetwork) or any(isinstance(m, QuantizedNeuron) for m in modules):
        raise ValueError("the network is already quantised; quantise the float model instead")
    cnet = as_canonical(model, input_shape)
    canon = canonical_model(cnet)
    shapes = cnet.require_shapes()
    qmax = 2 ** (bits - 1) - 1
    layers = list(canon)
    scale = torch.tensor(float(input_scale), dtype=F64)
    new_layers: list[nn.Module] = []
    rows: list[LayerQuantization] = []
    weight_scales: dict[int, torch.Tensor] = {}
    pending_rec: dict[int, torch.Tensor] = {}
    convs = [converter_for(layer) for layer in layers]
    for i, (layer, conv) in enumerate(zip(layers, convs, strict=True)):
        shape_in, shape_out = shapes[i], shapes[i + 1]
        row = LayerQuantization(index=i, kind=conv.name)
        if conv.role == "synapse":
            j = _next_neuron(convs, i)
            s, new = _quantize_synapse(
                i, layers, convs, j, scale, shapes, qmax, shared, scale_method, row
            )
            if j is not None and convs[j].recurrent_weight is not None:
                pending_rec[j] = s
            weight_scales[i] = s
            new_layers.append(new)
            scale = _channel_view(s, len(shape_out))
        elif conv.role in ("pool", "reshape"):
            new, scale, note = conv.quantize(layer, scale, shape_in)
            row.kind = kind_of(new)
            if note:
                row.notes.append(note)
            new_layers.append(new)
        elif conv.role == "neuron":
            last = not any(c.role == "neuron" for c in convs[i + 1 :])
            new_layers.append(
                _quantize_neuron(
                    layer, conv, scale, shape_in, prof, qmax, row, pending_rec.get(i), last
                )
            )
            if conv.spiking:
                scale = torch.tensor(1.0, dtype=F64)
        else:  # pragma: no cover - canonicalize refused it already
            raise TypeError(f"unsupported layer {type(layer).__name__}")
        rows.append(row)
    qmodel = Sequential(*new_layers)
    qmodel.eval()
    return QuantizedNetwork(
        model=qmodel,
        report=QuantizationReport(bits=int(bits), profile=prof.name, layers=rows),
        profile=prof,
        bits=int(bits),
        input_shape=tuple(shapes[0]),
        input_scale=float(input_scale),
        weight_scales=weight_scales,
        output_scale=scale.expand(shapes[-1]).clone(),
        float_model=canon,
        canonical=cnet,
    )


def _quantize_synapse(i, layers, convs, j, scale, shapes, qmax, shared, method, row):
    """``(per-output-channel scale, integer synapse)`` of synapse ``i`` feeding neuron ``j``."""
    layer, conv = layers[i], convs[i]
    w = layer.weight.detach().to(F64)
    w_eff = w * _input_scale_for(layer, conv, scale, shapes[i])
    nxt = layers[j] if j is not None else None
    rec = None
    if nxt is not None and convs[j].recurrent_weight is not None:
        rec = convs[j].recurrent_weight(nxt).to(F64)
    s, note = _choose_scale(
        w_eff,
        rec,
        nxt if nxt is not None and convs[j].spiking else None,
        shapes[j + 1] if j is not None else None,
        qmax,
        shared,
        i,
        method,
    )
    sv = _channel_view(s, w.dim())
    raw = torch.round(w_eff / sv)
    wq = raw.clamp(-qmax, qmax)
    row.clipped = int((raw.abs() > qmax).sum())
    row.max_weight_error = float((w_eff - sv * wq).abs().max())
    top = float(w_eff.abs().max())
    row.max_relative_error = row.max_weight_error / top if top > 0 else 0.0
    bq = None
    if layer.bias is not None:
        b = layer.bias.detach().to(F64)
        bq = torch.round(b / s)
        row.max_bias_error = float((b - s * bq).abs().max())
    row.scale_min, row.scale_max = float(s.min()), float(s.max())
    if note:
        row.notes.append(note)
    return s, conv.rebuild(layer, wq, bq)


#: The integer decay parameter each float decay becomes.
_DECAY_PARAMS = {"alpha": "i", "beta": "v"}


def _chip_semantics(prof: HardwareProfile, params: dict, last: bool) -> dict:
    """The :class:`QuantizedNeuron` keywords of the profile's neuron semantics (none for
    spikelfp's own neuron, so other profiles' networks stay as they were; none for a neuron
    the chip cannot run anyway, e.g. with a zero reset: the constraint check reports it)."""
    if not prof.chip_neuron:
        return {}
    if params.get("reset") != "subtract" or params.get("reset_delay"):
        return {}
    return {
        "fire_at": prof.fire_at,
        "min_decay": prof.min_decay,
        "current_shift": prof.synaptic_shift if prof.current_stage else None,
        "max_spikes": prof.max_spikes_out if last else prof.max_spikes,
        "input_delay": prof.output_delay and last,
        "v_floor": prof.v_floor,
    }


def _quantize_neuron(
    layer, conv, scale, shape, prof, qmax, row, rec_scale, last=False
) -> QuantizedNeuron:
    decays, texts, errs = {}, [], []
    for name, beta in conv.decays(layer).items():
        b = beta.to(F64).numpy()
        param, bq = quantize_decay(b, prof.decay, prof.decay_bits, prof.max_shift)
        decays[_DECAY_PARAMS[name]] = torch.as_tensor(np.asarray(param, dtype=np.float64))
        errs.append(float(np.abs(bq - b).max()))
        uniq = np.unique(bq)
        pdesc = {"shift": "k", "mult": "d", "none": ""}[prof.decay]
        if uniq.size == 1:
            extra = f" ({pdesc}={int(np.unique(param)[0])})" if pdesc else ""
            src = np.unique(b)
            src_txt = f"{float(src[0]):.6g}" if src.size == 1 else "per-neuron"
            texts.append(f"{name}={src_txt}->{uniq[0]:.6g}{extra}")
        else:
            texts.append(f"{name} per-neuron ({prof.decay})")
    row.decay = ", ".join(texts)
    row.max_decay_error = max(errs)
    common = dict(
        decay_mode=prof.decay,
        v_decay=decays["v"],
        i_decay=decays.get("i"),
        decay_bits=prof.decay_bits,
        rounding=prof.decay_rounding,
        state_bits=prof.state_bits,
    )
    if not conv.spiking:
        row.scale_min = float(scale.min())
        row.scale_max = float(scale.max())
        return QuantizedNeuron(**conv.integer_params(layer, None, None), **common)
    full_scale = scale.expand(shape)
    theta = layer.threshold.detach().to(F64).expand(shape)
    tq = torch.round(theta / full_scale)
    row.max_threshold_error = float((theta - tq * full_scale).abs().max())
    row.threshold_int = (int(tq.min()), int(tq.max()))
    if bool((tq <= 0).any()):
        row.notes.append(
            f"{int((tq <= 0).sum())} integer threshold(s) <= 0: those neurons "
            "fire on any positive input"
        )
    if bool((tq == tq.reshape(-1)[0]).all()):
        tq = tq.reshape(-1)[0].clone()
    w_rec = None
    if conv.recurrent_weight is not None:
        rec = conv.recurrent_weight(layer).to(F64)
        s = rec_scale if rec_scale is not None else full_scale.reshape(-1)
        raw = torch.round(rec / s.reshape(-1, 1))
        w_rec = raw.clamp(-qmax, qmax)
        row.clipped += int((raw.abs() > qmax).sum())
        row.max_weight_error = float((rec - s.reshape(-1, 1) * w_rec).abs().max())
        top = float(rec.abs().max())
        row.max_relative_error = row.max_weight_error / top if top > 0 else 0.0
    params = conv.integer_params(layer, tq, w_rec)
    return QuantizedNeuron(**params, **common, **_chip_semantics(prof, params, last))
