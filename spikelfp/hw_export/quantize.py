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

from ..neurons import LI, RLIF, CubaLIF
from ..neurons.base import NeuronModule, check_time_first
from ..neurons.cuba import CubaLIFParameters, CubaLIFState, cuba_update
from ..neurons.li import LIParameters, LIState, li_update
from ..neurons.lif import RESETS, LIFParameters, LIFState, lif_update
from ..neurons.rlif import RLIFState, rlif_update
from ..sequential import Sequential
from ._decay import DECAY_MODES, ROUNDINGS, decay_torch, quantize_decay
from ._layers import (
    NEURON_TYPES,
    SYNAPSE_TYPES,
    SumPool2d,
    canonicalize,
    infer_shapes,
    kind_of,
)
from .profiles import HardwareProfile, get_profile

__all__ = [
    "QuantizedNeuron",
    "QuantizedNetwork",
    "LayerQuantization",
    "QuantizationReport",
    "quantize",
]

_KINDS = ("LIF", "IF", "CubaLIF", "LI", "RLIF")
F64 = torch.float64


class QuantizedNeuron(NeuronModule):
    r"""An integer neuron layer, in float64 tensors holding integers (see :mod:`._decay`).

    Per step, with integer input :math:`Z_t`, saturation :math:`\mathrm{sat}` to the state
    range and the integer decay :math:`D` (``D_v`` membrane, ``D_i`` current)::

        LI:       V_t = sat(D_v(V_{t-1}) + Z_t)                     output V_t
        CubaLIF:  I_t = sat(D_i(I_{t-1}) + Z_t), then LIF with input I_t
        RLIF:     LIF with input Z_t + W_rec S_{t-1}
        LIF/IF:   V_t = sat(D_v(U_{t-1}) + Z_t);  S_t = [V_t > θ];
                  U_t = 0 if S_t (zero) | sat(V_t - θ S_t) (subtract) | V_t (none)

    With ``reset_delay=True`` the reset uses :math:`R_t = [U_{t-1} > θ]` and
    :math:`S_t = [U_t > θ]`, as :class:`spikelfp.LIF` does.

    With a bit-shift decay ``k = 1`` (``v -= v >> 1``) and threshold 10, a constant input 6
    gives membranes 6, 9, 11 → spike:

    >>> n = QuantizedNeuron("LIF", threshold=torch.tensor(10.0), decay_mode="shift",
    ...                     v_decay=torch.tensor(1.0), state_bits=16)
    >>> s, st = n(torch.full((3, 1, 1), 6.0))
    >>> s.flatten().tolist(), st.v.flatten().tolist()
    ([0.0, 0.0, 1.0], [0.0])
    """

    def __init__(
        self,
        kind: str,
        threshold: torch.Tensor | float | None = None,
        decay_mode: str = "mult",
        v_decay: torch.Tensor | float = 0.0,
        i_decay: torch.Tensor | float | None = None,
        decay_bits: int = 12,
        rounding: str = "floor",
        reset: str = "zero",
        reset_delay: bool = False,
        state_bits: int | None = None,
        w_rec: torch.Tensor | None = None,
    ):
        super().__init__()
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        if decay_mode not in DECAY_MODES:
            raise ValueError(f"decay_mode must be one of {DECAY_MODES}, got {decay_mode!r}")
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
        if reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
        if kind == "CubaLIF" and i_decay is None:
            raise ValueError("a CubaLIF needs i_decay (the synaptic current's decay)")
        if kind == "RLIF" and w_rec is None:
            raise ValueError("an RLIF needs w_rec (integer recurrent weights)")
        if kind != "LI" and threshold is None:
            raise ValueError(f"a spiking {kind} needs an integer threshold")
        self.kind = kind
        self.decay_mode = decay_mode
        self.decay_bits = int(decay_bits)
        self.rounding = rounding
        self.reset = reset
        self.reset_delay = bool(reset_delay)
        self.state_bits = None if state_bits is None else int(state_bits)
        th = torch.as_tensor(0.0 if threshold is None else threshold, dtype=F64).clone()
        self.register_buffer("threshold", th)
        self.register_buffer("v_decay", torch.as_tensor(v_decay, dtype=F64).clone())
        self.register_buffer(
            "i_decay", None if i_decay is None else torch.as_tensor(i_decay, dtype=F64).clone()
        )
        self.register_buffer("w_rec", None if w_rec is None else w_rec.to(F64).clone())
        for name in ("threshold", "v_decay", "i_decay", "w_rec"):
            t = getattr(self, name)
            if t is not None and not bool((t == t.round()).all()):
                raise ValueError(f"QuantizedNeuron.{name} must hold integers")

    def _sat(self, v: torch.Tensor) -> torch.Tensor:
        if self.state_bits is None:
            return v
        hi = 2.0 ** (self.state_bits - 1)
        return v.clamp(-hi, hi - 1)

    def _decay(self, v: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
        return decay_torch(v, self.decay_mode, param, self.decay_bits, self.rounding)

    def _lif_parameters(self) -> LIFParameters:
        return LIFParameters(self.v_decay, self.threshold, self.reset, self.reset_delay)

    def initial_state(self, x: torch.Tensor):
        zeros = torch.zeros(x.shape[1:], dtype=F64, device=x.device)
        if self.kind == "CubaLIF":
            return CubaLIFState(zeros, zeros.clone())
        if self.kind == "RLIF":
            return RLIFState(zeros, zeros.clone())
        if self.kind == "LI":
            return LIState(zeros)
        return LIFState(zeros)

    def forward(self, x: torch.Tensor, state=None):
        check_time_first(x, f"Quantized{self.kind}")
        x = x.to(F64)
        if state is None:
            state = self.initial_state(x)
        # the neuron kernels of spikelfp.neurons with the integer decay and saturation hooks:
        # the same recursion as the float modules and the LFP rules (the numpy simulator in
        # simulator.py stays the independent check)
        hooks = {"decay": self._decay, "saturate": self._sat}
        p = self._lif_parameters()
        out = []
        for z in x.unbind(0):
            if self.kind == "LI":
                v = li_update(z, state.v, LIParameters(self.v_decay), **hooks)
                state = LIState(v)
                out.append(v)
                continue
            if self.kind == "CubaLIF":
                cp = CubaLIFParameters(
                    self.i_decay, self.v_decay, self.threshold, p.reset, p.reset_delay
                )
                s, state, _ = cuba_update(z, state, cp, **hooks)
            elif self.kind == "RLIF":
                s, state, _ = rlif_update(z, state, p, self.w_rec, **hooks)
            else:
                s, v, _ = lif_update(z, state.v, p, **hooks)
                state = LIFState(v)
            out.append(s)
        return torch.stack(out), state

    def extra_repr(self) -> str:
        return (
            f"kind={self.kind!r}, decay={self.decay_mode!r}, reset={self.reset!r}, "
            f"reset_delay={self.reset_delay}, state_bits={self.state_bits}"
        )


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

    def __call__(self, x: torch.Tensor, state=None):
        """Run the quantised torch model on integer input ``x`` (cast to float64)."""
        return self.model(x.to(F64), state)

    def simulate(self, x, **kwargs):
        """Run the numpy integer simulator (:func:`spikelfp.hw_export.simulate`)."""
        from .simulator import simulate

        return simulate(self, x, **kwargs)


def _channel_view(t: torch.Tensor, ndim: int) -> torch.Tensor:
    return t.reshape(-1, *([1] * (ndim - 1)))


def _next_neuron(layers: list[nn.Module], i: int) -> int | None:
    j = i + 1
    while j < len(layers) and isinstance(layers[j], (nn.AvgPool2d, SumPool2d)):
        j += 1
    if j < len(layers) and isinstance(layers[j], NEURON_TYPES):
        return j
    return None


def _per_channel(t: torch.Tensor, shape: tuple[int, ...]) -> tuple[torch.Tensor, bool]:
    """Reduce a tensor broadcast to ``shape`` (channel first) to one value per channel."""
    full = t.to(F64).expand(shape).reshape(shape[0], -1)
    uniform = bool((full == full[:, :1]).all())
    return (full[:, 0] if uniform else full.mean(1)), uniform


def _input_scale_for(layer: nn.Module, scale: torch.Tensor, shape: tuple[int, ...]):
    """The input scale as a factor on the weight (per input column / channel)."""
    full = scale.expand(shape)
    if bool((full == full.reshape(-1)[0]).all()):
        return full.reshape(-1)[0]
    if isinstance(layer, nn.Linear):
        return full.reshape(1, -1)
    per_c = full.reshape(shape[0], -1)
    if layer.groups == 1 and bool((per_c == per_c[:, :1]).all()):
        return per_c[:, 0].reshape(1, -1, *([1] * (layer.weight.dim() - 2)))
    raise ValueError(
        f"{type(layer).__name__} receives an input whose integer scale varies within a channel "
        "(or across groups); put a spiking neuron layer in front of it"
    )


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
    if nxt is None or isinstance(nxt, LI):
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


def _new_synapse(layer: nn.Module, wq: torch.Tensor, bq: torch.Tensor | None) -> nn.Module:
    if isinstance(layer, nn.Linear):
        new = nn.Linear(layer.in_features, layer.out_features, bias=bq is not None, dtype=F64)
    else:
        new = type(layer)(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.dilation,
            layer.groups,
            bias=bq is not None,
            dtype=F64,
        )
    with torch.no_grad():
        new.weight.copy_(wq)
        if bq is not None:
            new.bias.copy_(bq)
    new.requires_grad_(False)
    return new


def _betas(layer: nn.Module) -> dict[str, torch.Tensor]:
    if isinstance(layer, CubaLIF):
        return {"i": layer.alpha.detach(), "v": layer.beta.detach()}
    return {"v": layer.beta.detach()}


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
        model: the trained float network (not modified).
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
    if isinstance(model, QuantizedNetwork) or any(
        isinstance(m, QuantizedNeuron) for m in model.modules()
    ):
        raise ValueError("the network is already quantised; quantise the float model instead")
    canon = canonicalize(model)
    shapes = infer_shapes(canon, input_shape)
    qmax = 2 ** (bits - 1) - 1
    layers = list(canon)
    scale = torch.tensor(float(input_scale), dtype=F64)
    new_layers: list[nn.Module] = []
    rows: list[LayerQuantization] = []
    weight_scales: dict[int, torch.Tensor] = {}
    pending_rec: dict[int, torch.Tensor] = {}
    for i, layer in enumerate(layers):
        shape_in, shape_out = shapes[i], shapes[i + 1]
        row = LayerQuantization(index=i, kind=kind_of(layer))
        if isinstance(layer, SYNAPSE_TYPES):
            w = layer.weight.detach().to(F64)
            w_eff = w * _input_scale_for(layer, scale, shape_in)
            j = _next_neuron(layers, i)
            nxt = layers[j] if j is not None else None
            rec = nxt.recurrent_weight.detach().to(F64) if isinstance(nxt, RLIF) else None
            s, note = _choose_scale(
                w_eff,
                rec,
                nxt,
                shapes[j + 1] if j is not None else None,
                qmax,
                shared,
                i,
                scale_method,
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
            if rec is not None:
                pending_rec[j] = s
            weight_scales[i] = s
            new_layers.append(_new_synapse(layer, wq, bq))
            scale = _channel_view(s, len(shape_out))
        elif isinstance(layer, (nn.AvgPool2d, SumPool2d)):
            if isinstance(layer, nn.AvgPool2d):
                k = SumPool2d(layer.kernel_size, layer.stride, layer.padding)
                scale = scale / (k.kernel_size[0] * k.kernel_size[1])
                row.notes.append(
                    "average pooling exported as sum pooling; 1/k² folded into "
                    "the scale of what follows"
                )
            else:
                k = SumPool2d(layer.kernel_size, layer.stride, layer.padding)
            row.kind = "SumPool2d"
            new_layers.append(k)
        elif isinstance(layer, nn.Flatten):
            full = scale.expand(shape_in).unsqueeze(0)
            scale = layer(full)[0] if scale.dim() else scale
            new_layers.append(nn.Flatten(layer.start_dim, layer.end_dim))
        elif isinstance(layer, NEURON_TYPES):
            new_layers.append(
                _quantize_neuron(layer, scale, shape_in, prof, qmax, row, pending_rec.get(i))
            )
            if not isinstance(layer, LI):
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
    )


def _quantize_neuron(layer, scale, shape, prof, qmax, row, rec_scale) -> QuantizedNeuron:
    decays, texts, errs = {}, [], []
    for key, beta in _betas(layer).items():
        b = beta.to(F64).numpy()
        param, bq = quantize_decay(b, prof.decay, prof.decay_bits, prof.max_shift)
        decays[key] = torch.as_tensor(np.asarray(param, dtype=np.float64))
        errs.append(float(np.abs(bq - b).max()))
        name = {"i": "alpha", "v": "beta"}[key]
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
    kind = kind_of(layer)
    common = dict(
        decay_mode=prof.decay,
        v_decay=decays["v"],
        i_decay=decays.get("i"),
        decay_bits=prof.decay_bits,
        rounding=prof.decay_rounding,
        state_bits=prof.state_bits,
    )
    if isinstance(layer, LI):
        row.scale_min = float(scale.min())
        row.scale_max = float(scale.max())
        return QuantizedNeuron("LI", None, **common)
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
    if isinstance(layer, RLIF):
        rec = layer.recurrent_weight.detach().to(F64)
        s = rec_scale if rec_scale is not None else full_scale.reshape(-1)
        raw = torch.round(rec / s.reshape(-1, 1))
        w_rec = raw.clamp(-qmax, qmax)
        row.clipped += int((raw.abs() > qmax).sum())
        row.max_weight_error = float((rec - s.reshape(-1, 1) * w_rec).abs().max())
        top = float(rec.abs().max())
        row.max_relative_error = row.max_weight_error / top if top > 0 else 0.0
    return QuantizedNeuron(
        kind, tq, reset=layer.reset, reset_delay=layer.reset_delay, w_rec=w_rec, **common
    )
