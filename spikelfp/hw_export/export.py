"""One call from a trained network to a checked, pruned, quantised NIR file and a report.

:func:`export` chains :func:`~spikelfp.hw_export.magnitude_prune` (or feedback pruning),
:func:`~spikelfp.hw_export.quantize`, :func:`~spikelfp.hw_export.check_model`,
:func:`~spikelfp.hw_export.to_nir` / :func:`~spikelfp.hw_export.write_nir` and, given data,
measures accuracy before and after and checks that the integer simulator reproduces the
quantised model bit for bit.

>>> import tempfile, os
>>> from torch import nn
>>> from spikelfp import LIF, Sequential
>>> torch.manual_seed(0) and None
>>> net = Sequential(nn.Linear(12, 8), LIF(threshold=0.5), nn.Linear(8, 3), LIF(threshold=0.5))
>>> x = (torch.rand(10, 20, 12) < 0.3).float(); y = torch.randint(0, 3, (20,))
>>> path = os.path.join(tempfile.mkdtemp(), "net.nir")
>>> rep = export(net, target="int8", bits=8, prune=0.5, path=path, data=(x, y), verbose=False)
>>> rep.constraints.ok, rep.simulator_identical, os.path.isfile(path)
(True, True, True)
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..neurons.base import NeuronModule
from ._layers import (
    as_canonical,
    as_module,
    canonical_model,
    converter_for,
    is_spiking,
    neuron_outputs,
)
from .checks import ConstraintReport, Violation, check_model
from .errors import ProfileViolationError
from .nir_io import to_nir, write_nir
from .profiles import HardwareProfile, get_profile
from .pruning import (
    SparsityReport,
    accumulate_feedback,
    feedback_prune,
    magnitude_prune,
    sparsity_report,
)
from .quantize import QuantizationReport, QuantizedNetwork, quantize
from .simulator import simulate

__all__ = ["ExportReport", "export", "evaluate", "spike_agreement", "iterate_batches"]


@dataclass
class ExportReport:
    """What :func:`export` did and measured.

    Accuracies are fractions in [0, 1]; ``accuracy_drop_points`` is in percentage points
    (float model before pruning minus quantised model), under the same name as in
    :meth:`to_dict` and the CLI's JSON report (``accuracy_drop`` is its deprecated alias).
    """

    target: str
    bits: int
    prune: float
    dt: float
    path: Path | None
    constraints: ConstraintReport
    sparsity: SparsityReport
    quantization: QuantizationReport
    accuracy_float: float | None = None
    accuracy_pruned: float | None = None
    accuracy_quantized: float | None = None
    spike_agreement: float | None = None
    spike_agreement_pruned: float | None = None
    simulator_identical: bool | None = None
    saturations: int | None = None
    n_samples: int = 0
    quantized: QuantizedNetwork | None = field(default=None, repr=False)

    @property
    def accuracy_drop_points(self) -> float | None:
        """Accuracy of the float model minus that of the quantised one, in percentage points
        (``None`` without data)."""
        if self.accuracy_float is None or self.accuracy_quantized is None:
            return None
        return 100.0 * (self.accuracy_float - self.accuracy_quantized)

    @property
    def accuracy_drop(self) -> float | None:
        """Deprecated alias of :attr:`accuracy_drop_points`."""
        warnings.warn(
            "ExportReport.accuracy_drop is deprecated; use accuracy_drop_points (the same "
            "value, in percentage points)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.accuracy_drop_points

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "bits": self.bits,
            "prune": self.prune,
            "dt": self.dt,
            "path": None if self.path is None else str(self.path),
            "constraints": self.constraints.to_dict(),
            "sparsity": self.sparsity.to_dict(),
            "quantization": self.quantization.to_dict(),
            "accuracy_float": self.accuracy_float,
            "accuracy_pruned": self.accuracy_pruned,
            "accuracy_quantized": self.accuracy_quantized,
            "accuracy_drop_points": self.accuracy_drop_points,
            "spike_agreement": self.spike_agreement,
            "spike_agreement_pruned": self.spike_agreement_pruned,
            "simulator_identical": self.simulator_identical,
            "saturations": self.saturations,
            "n_samples": self.n_samples,
        }

    def __str__(self) -> str:
        def pct(v):
            return "n/a" if v is None else f"{100 * v:.2f}%"

        lines = [
            f"== spikelfp export: target {self.target}, {self.bits}-bit, "
            f"{100 * self.prune:.0f}% pruning, dt={self.dt:g} s ==",
            f"file: {self.path if self.path is not None else '(not written)'}",
            "",
            "-- constraints --",
            str(self.constraints),
            "",
            "-- sparsity --",
            str(self.sparsity),
            "",
            "-- quantisation --",
            str(self.quantization),
        ]
        if self.n_samples:
            lines += [
                "",
                f"-- accuracy on {self.n_samples} samples --",
                f"float {pct(self.accuracy_float)}, pruned float {pct(self.accuracy_pruned)}, "
                f"quantised {pct(self.accuracy_quantized)} (drop {self.accuracy_drop_points:.2f} "
                "points)",
                f"spike agreement quantised vs float: {pct(self.spike_agreement)} "
                f"(vs pruned float: {pct(self.spike_agreement_pruned)}) of neuron-steps",
                f"integer simulator identical to the quantised model: "
                f"{self.simulator_identical}; saturated state updates: {self.saturations}",
            ]
        return "\n".join(lines)


def iterate_batches(data, batch_size: int = 256) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` batches from ``(x, y)`` tensors (``x`` time-first ``(T, N, ...)``, split
    along ``N``) or from an iterable of such pairs."""
    if (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and isinstance(data[0], torch.Tensor)
        and isinstance(data[1], torch.Tensor)
    ):
        x, y = data
        if x.dim() < 3 or x.shape[1] != y.shape[0]:
            raise ValueError(
                f"data must be (x, y) with x time-first (T, N, ...) and y (N,), got x "
                f"{tuple(x.shape)} and y {tuple(y.shape)}"
            )
        for i in range(0, x.shape[1], batch_size):
            yield x[:, i : i + batch_size], y[i : i + batch_size]
        return
    for item in data:
        if not (isinstance(item, (tuple, list)) and len(item) >= 2):
            raise ValueError("data batches must be (x, y) pairs")
        yield item[0], item[1]


def _predict(out: torch.Tensor, readout: str) -> torch.Tensor:
    score = out.sum(0) if readout == "count" else out.mean(0)
    return score.reshape(score.shape[0], -1).argmax(-1)


def _readout_for(model: nn.Module, readout: str | None) -> str:
    if readout is not None:
        if readout not in ("count", "mean"):
            raise ValueError(
                f"readout must be 'count' (spike counts) or 'mean' (mean output), got {readout!r}"
            )
        return readout
    last = list(model)[-1]
    return "mean" if not is_spiking(last) else "count"


def evaluate(
    model, data, readout: str | None = None, batch_size: int = 256, input_scale: float = 1.0
) -> float:
    """Accuracy of ``model`` (a Sequential or a :class:`QuantizedNetwork`) on ``data``.

    The class is the arg-max of the output's spike counts (``"count"``) or time-mean
    (``"mean"``, used for an LI readout).
    """
    q = model if isinstance(model, QuantizedNetwork) else None
    net = q.model if q is not None else as_module(model)
    readout = _readout_for(net, readout)
    correct = total = 0
    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            for x, y in iterate_batches(data, batch_size):
                if q is not None:
                    out, _ = q(_integer_input(x, input_scale))
                else:
                    out, _ = net(_cast(net, x))
                correct += int((_predict(out, readout) == y).sum())
                total += int(y.numel())
    finally:
        net.train(was)
    if total == 0:
        raise ValueError("no samples in data")
    return correct / total


def _integer_input(x: torch.Tensor, input_scale: float) -> torch.Tensor:
    xi = x.to(torch.float64) / input_scale
    if not bool((xi == xi.round()).all()):
        raise ValueError(
            "the chip takes integer input: x / input_scale must hold integers (spikes or "
            "counts); binarise/round the input or pass the right input_scale"
        )
    return xi


def _cast(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` in the dtype of the network's parameters (a float64 model takes float64 input)."""
    p = next(iter(net.parameters()), None)
    return x.to(p.dtype) if p is not None and x.is_floating_point() else x


def _spiking_outputs(m, x: torch.Tensor, input_scale: float) -> list[torch.Tensor]:
    quantized = isinstance(m, QuantizedNetwork)
    net = m.model if quantized else as_module(m)
    outs = neuron_outputs(net, _integer_input(x, input_scale) if quantized else _cast(net, x))
    flags = [is_spiking(layer) for layer in net if isinstance(layer, NeuronModule)]
    return [o for o, f in zip(outs, flags, strict=True) if f]


def spike_agreement(model_a, model_b, x: torch.Tensor, input_scale: float = 1.0) -> float:
    """Fraction of neuron-steps (spiking layers, all steps and samples) where two networks of
    the same architecture emit the same spike. Either may be a :class:`QuantizedNetwork`
    (fed ``x / input_scale``)."""
    a = _spiking_outputs(model_a, x, input_scale)
    b = _spiking_outputs(model_b, x, input_scale)
    if len(a) != len(b):
        raise ValueError("the two networks have different numbers of spiking layers")
    return _agree(a, b, [True] * len(a))


def export(
    model: nn.Module,
    target: str | HardwareProfile = "int8",
    bits: int = 8,
    prune: float | None = 0.0,
    dt: float = 1e-3,
    path: str | Path | None = None,
    data=None,
    *,
    prune_method: str = "magnitude",
    prune_scope: str = "global",
    feedback_scores: Mapping[str, torch.Tensor] | None = None,
    reward: Callable | None = None,
    input_shape: Sequence[int] | None = None,
    input_scale: float = 1.0,
    allow_reset_change: bool = False,
    allow_violations: bool = False,
    strict: bool = False,
    scale_method: str = "mse",
    trained_for_target: bool = False,
    readout: str | None = None,
    batch_size: int = 256,
    verify: bool = True,
    verbose: bool = True,
) -> ExportReport:
    """Prune, quantise, check and write ``model`` for ``target``; return an :class:`ExportReport`.

    Args:
        model: trained :class:`spikelfp.Sequential` (not modified), or its
            :class:`CanonicalNet`.
        target: profile name (``"int8"``, the default: a generic 8-bit integer chip;
            ``"xylo"``, ``"loihi2"``, ``"speck"``, or one registered) or a
            :class:`HardwareProfile`.
        bits: weight bits (8, 4, 2, ...; at most ``profile.weight_bits``).
        prune: fraction of weights to remove (0.8 = 80 %); 0 (the default) or ``None``: no
            pruning.
        dt: time step in seconds for NIR's continuous-time parameters.
        path: NIR file to write (atomically); ``None`` (the default): write nothing, only
            report (``report.quantized`` holds the quantised network).
        data: ``(x, y)`` (``x`` time-first ``(T, N, ...)``, integer spikes/counts) or a
            re-iterable of such batches (a list, a DataLoader; feedback pruning reads it
            twice): accuracy before/after, spike agreement, simulator check.
        prune_method: ``"magnitude"`` or ``"feedback"`` (accumulated LFP feedback: from
            ``feedback_scores``, or accumulated on ``data`` with ``reward``, default
            :func:`spikelfp.lfp.rate_coded_reward`).
        prune_scope: ``"global"`` or ``"layer"``.
        input_shape: per-sample input shape (no time, no batch). Default: taken from the
            first batch of ``data`` when given, else inferred from a leading Linear layer
            (convolutional networks without ``data`` need it).
        input_scale: float value of one unit of the chip's integer input.
        allow_reset_change: write resets the target does not implement as NIR's
            reset-to-zero (see :func:`to_nir`). A reset the target implements (e.g.
            ``"subtract"`` on Xylo) is always written, as NIR's reset-to-zero node with the
            reset in the node metadata (``spikelfp_reset``), and listed in the report: a note
            when the target has no reset-to-zero (its toolchain reads the metadata), else a
            warning.
        allow_violations: write ``path`` even when the network breaks the target's
            constraints (otherwise :class:`ProfileViolationError` is raised and nothing is
            written). Without ``path`` violations are only reported.
        strict: also refuse warnings (clipped weights, a decay rounded far, a state that may
            saturate, a changed reset, an accuracy drop over 1 point): raise
            :class:`ProfileViolationError` listing every violation and warning, write nothing.
        scale_method: ``"mse"`` or ``"max"`` (no weight clipped), see :func:`quantize`.
        trained_for_target: the model was trained for this target with
            :class:`~spikelfp.hw_export.TargetTraining` (``spikelfp train --target``) at these
            ``bits`` and ``scale_method="max"``: its float weights are shadows and the
            exported integer network is the trained one, so the float model's accuracy is no
            reference (no accuracy-drop warning; ``accuracy_quantized`` is the trained
            network's accuracy).
        readout: ``"count"`` or ``"mean"`` (default: counts for spiking outputs, mean for LI).
        verify: run the integer simulator on the first batch and compare bit for bit.
        verbose: print the report.
    """
    prof = get_profile(target)
    frac = 0.0 if prune is None else float(prune)
    if not (0.0 <= frac <= 1.0) or math.isnan(frac):
        raise ValueError(
            f"prune is a fraction in [0, 1] (0.8 = 80% of weights removed), got {prune}"
        )
    if prune_method not in ("magnitude", "feedback"):
        raise ValueError(f"prune_method must be 'magnitude' or 'feedback', got {prune_method!r}")
    cnet = as_canonical(model)  # the one canonicalisation of this export
    float_model = canonical_model(cnet)
    if isinstance(data, Iterator):  # a one-shot iterator (generator): keep its batches
        data = list(data)
    if input_shape is None and data is not None:
        input_shape = _input_shape_of(data, batch_size)
    cnet = as_canonical(cnet, input_shape)
    if frac == 0:
        pruned = float_model
    elif prune_method == "magnitude":
        pruned = magnitude_prune(float_model, frac, prune_scope)
    else:
        scores = feedback_scores
        if scores is None:
            if data is None:
                raise ValueError(
                    "prune_method='feedback' needs feedback_scores (from "
                    "FeedbackAccumulator / accumulate_feedback) or data"
                )
            from ..lfp import rate_coded_reward

            trainable = copy.deepcopy(float_model)
            for p in trainable.parameters():
                p.requires_grad_(True)
            scores = accumulate_feedback(
                trainable, iterate_batches(data, batch_size), reward or rate_coded_reward
            )
        pruned = feedback_prune(float_model, scores, frac, prune_scope)
    qnet = quantize(
        cnet if pruned is float_model else cnet.with_model(pruned),
        bits,
        prof,
        input_shape=input_shape,
        input_scale=input_scale,
        scale_method=scale_method,
    )
    constraints = check_model(qnet, prof)
    _report_clipping(qnet, constraints)
    reset_changed = _report_reset_change(qnet, prof, constraints, trained_for_target)
    sparsity = sparsity_report(pruned, qnet.input_shape)
    report = ExportReport(
        target=prof.name,
        bits=int(bits),
        prune=frac,
        dt=float(dt),
        path=None,
        constraints=constraints,
        sparsity=sparsity,
        quantization=qnet.report,
        quantized=qnet,
    )
    if data is not None:
        _measure(report, float_model, pruned, qnet, data, readout, batch_size, input_scale, verify)
        if not trained_for_target:
            _report_accuracy(report)
    if trained_for_target:
        _trained_notes(constraints)
    refusal = _refusal(report, strict, allow_violations or path is None)
    if refusal is not None:
        if verbose:
            print(report)
        raise refusal
    if path is not None:
        with warnings.catch_warnings():
            if reset_changed:  # listed in the report already
                warnings.simplefilter("ignore", UserWarning)
            graph = to_nir(qnet, dt, allow_reset_change=allow_reset_change or reset_changed)
        report.path = write_nir(graph, path)
    if verbose:
        print(report)
    return report


#: The accuracy drop (percentage points) above which an export is reported loudly.
MAX_ACCURACY_DROP = 1.0


def _report_clipping(qnet: QuantizedNetwork, constraints: ConstraintReport) -> None:
    """A warning per layer whose weights were clipped (a change the chip makes silently)."""
    for row in qnet.report.layers:
        if row.clipped:
            constraints.warnings.append(
                Violation(
                    f"layer {row.index} ({row.kind})",
                    "weight clipping",
                    f"{row.clipped} weight(s) clipped to +-{2 ** (qnet.bits - 1) - 1} (max "
                    f"relative error {row.max_relative_error:.3g})",
                    "no clipped weight",
                    "export with scale_method='max' (CLI: --scale-method max) or train with "
                    f"--target {qnet.profile.name} (the integer weights are what is trained)",
                )
            )


def _report_reset_change(
    qnet: QuantizedNetwork, prof: HardwareProfile, constraints, trained_for_target: bool = False
) -> bool:
    """List the resets NIR cannot express but the target implements; True if there are such
    resets and no others (then the file holds them in the node metadata).

    A note when the target only has such resets or the run was trained for it (its reset is
    the target's own: a model trained with ``--target T`` never needs retraining to export to
    T); otherwise a warning, since a NIR reader that ignores the metadata would simulate a
    reset to zero."""
    native, foreign = [], []
    for i, layer in enumerate(qnet.model):
        conv = converter_for(layer)
        if conv.role != "neuron" or not conv.spiking:
            continue
        if layer.reset == "zero" and not layer.reset_delay:
            continue
        ok = layer.reset in prof.resets and (prof.reset_delay or not layer.reset_delay)
        (native if ok else foreign).append((i, layer))
    if not native or foreign:
        return False
    where = ", ".join(
        f"layer {i} ({layer.kind}, reset={layer.reset!r}"
        + (", reset_delay=True)" if layer.reset_delay else ")")
        for i, layer in native
    )
    if "zero" not in prof.resets or trained_for_target:
        constraints.notes.append(
            f"{where}: NIR's neurons only reset to v_reset; the file holds reset-to-zero nodes "
            f"with the {prof.name} reset in their metadata (spikelfp_reset, "
            "spikelfp_reset_delay), which from_nir and the target's toolchain read"
        )
    else:
        constraints.warnings.append(
            Violation(
                where,
                "reset in NIR",
                "a reset NIR cannot express",
                "reset='zero', reset_delay=False",
                "the file holds reset-to-zero nodes with the reset in their metadata "
                "(spikelfp_reset); tools that ignore it simulate a different network. Train "
                f"with --target {prof.name} (the reset is then the target's own and the file "
                "records it), or with --reset zero",
            )
        )
    return True


def _report_accuracy(report: ExportReport) -> None:
    drop = report.accuracy_drop_points
    if drop is not None and drop > MAX_ACCURACY_DROP:
        report.constraints.warnings.append(
            Violation(
                "network",
                "accuracy",
                f"float {100 * report.accuracy_float:.2f}% -> exported "
                f"{100 * report.accuracy_quantized:.2f}% ({drop:.2f} points lost on "
                f"{report.n_samples} samples)",
                f"<= {MAX_ACCURACY_DROP:g} point lost",
                f"train with --target {report.target} (the exported integer network is what is "
                "trained), prune less or use more bits",
            )
        )


def _trained_notes(constraints: ConstraintReport) -> None:
    """A network trained as the target's integer network: saturating states are part of what
    was trained (the training forward saturates as the chip and the simulator do), so a
    possible saturation is a note, not a warning."""
    kept = []
    for w in constraints.warnings:
        if w.constraint == "state range":
            constraints.notes.append(f"{w.layer}: {w.found}: the states saturate as in training")
        else:
            kept.append(w)
    constraints.warnings[:] = kept
    constraints.notes.append(
        "trained for this target: the exported integer network is the one trained (the float "
        "weights were shadows; their accuracy is no reference)"
    )


def _cost_text(report: ExportReport) -> str:
    if report.accuracy_drop_points is None:
        return ""
    return (
        f" (on {report.n_samples} samples the exported network scores "
        f"{100 * report.accuracy_quantized:.2f}% against the float network's "
        f"{100 * report.accuracy_float:.2f}%: {report.accuracy_drop_points:.2f} points)"
    )


def _refusal(report: ExportReport, strict: bool, allow_violations: bool):
    """The :class:`ProfileViolationError` that refuses the export, or ``None``."""
    c = report.constraints
    found = list(c.violations) + (list(c.warnings) if strict else [])
    if not found or (not strict and allow_violations):
        return None
    what = "violation(s)" if not strict else "violation(s)/warning(s)"
    flag = "--strict refuses warnings too" if strict else "--allow-violations writes anyway"
    return ProfileViolationError(
        f"refused: the network has {len(found)} {what} of the {report.target!r} profile "
        f"({flag}); nothing was written{_cost_text(report)}: " + "; ".join(str(v) for v in found),
        found,
        report=report,
    )


def _input_shape_of(data, batch_size: int) -> tuple[int, ...]:
    """The per-sample input shape ``x.shape[2:]`` of the first batch of ``data``."""
    for x, _ in iterate_batches(data, batch_size):
        if x.dim() < 3:
            raise ValueError(
                f"data must hold time-first batches (T, B, ...); got x of shape {tuple(x.shape)}"
            )
        return tuple(int(v) for v in x.shape[2:])
    raise ValueError("no samples in data")


def _measure(report, float_model, pruned, qnet, data, readout, batch_size, input_scale, verify):
    readout = _readout_for(float_model, readout)
    n = c_f = c_p = c_q = 0
    agree = agree_p = 0.0
    sats = 0
    identical = None
    with torch.no_grad():
        for k, (x, y) in enumerate(iterate_batches(data, batch_size)):
            xi = qnet.clip_input(_integer_input(x, input_scale))
            out_f = neuron_outputs(float_model, x)
            out_p = neuron_outputs(pruned, x) if pruned is not float_model else out_f
            out_q = neuron_outputs(qnet.model, xi)
            c_f += int((_predict(out_f[-1], readout) == y).sum())
            c_p += int((_predict(out_p[-1], readout) == y).sum())
            c_q += int((_predict(out_q[-1], readout) == y).sum())
            flags = [is_spiking(m) for m in qnet.model if isinstance(m, NeuronModule)]
            agree += _agree(out_q, out_f, flags) * y.numel()
            agree_p += _agree(out_q, out_p, flags) * y.numel()
            n += int(y.numel())
            if verify and k == 0:
                m = min(32, x.shape[1])
                sim = simulate(qnet, xi[:, :m])
                identical = all(
                    np.array_equal(o[:, :m].numpy().astype(np.int64), s)
                    for o, s in zip(out_q, sim.layer_outputs, strict=True)
                )
                sats = sum(sim.saturations.values())
    if n == 0:
        raise ValueError("no samples in data")
    report.accuracy_float = c_f / n
    report.accuracy_pruned = c_p / n
    report.accuracy_quantized = c_q / n
    report.spike_agreement = agree / n
    report.spike_agreement_pruned = agree_p / n
    report.simulator_identical = identical
    report.saturations = sats if identical is not None else None
    report.n_samples = n


def _agree(out_a, out_b, flags) -> float:
    same = total = 0
    for a, b, f in zip(out_a, out_b, flags, strict=True):
        if f:
            if a.shape != b.shape:
                raise ValueError(
                    f"spiking layer shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
                )
            same += int((a.to(torch.float64) == b.to(torch.float64)).sum())
            total += a.numel()
    return same / total if total else 1.0
