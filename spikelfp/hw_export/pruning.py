r"""Pruning (magnitude or accumulated LFP feedback) and a per-layer sparsity report.

The prunable tensors are the synapse weights (Linear, Conv1d, Conv2d) and the recurrent
weights of :class:`spikelfp.RLIF`; biases and neuron parameters are kept.

**Magnitude pruning** removes the ``sparsity`` fraction of weights with the smallest
:math:`|w|`, over all layers at once (``scope="global"``) or within each layer
(``scope="layer"``). **Feedback pruning** removes the weights with the smallest accumulated
LFP feedback :math:`\sum_{\text{batches}} |F(w)|` with :math:`F(w_{ji}) = |w_{ji}|\,x_i\,n_j`
(see :mod:`spikelfp.lfp.synapse_rules`): a weight that never carries reward is pruned, however
large. Because LFP's update of a weight is proportional to :math:`|w|`, small weights stay
small under LFP training, which is why LFP-trained networks prune well
(``benchmarks/bench_export.py`` measures it against BPTT).

Every pruning function returns a pruned **copy**; :func:`apply_masks_` is the one in-place
operation (e.g. to keep pruned weights at zero while fine-tuning).

>>> from torch import nn
>>> from spikelfp import LIF, Sequential
>>> torch.manual_seed(0) and None
>>> net = Sequential(nn.Linear(10, 8), LIF(), nn.Linear(8, 4), LIF())
>>> pruned = magnitude_prune(net, 0.75)
>>> round(sparsity_report(pruned).sparsity, 2), round(sparsity_report(net).sparsity, 2)
(0.75, 0.0)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..neurons.base import NeuronModule
from ..sequential import apply_over_time
from ._layers import (
    CanonicalNet,
    as_canonical,
    as_module,
    check_finite,
    converter_for,
    infer_shapes,
    is_spiking,
    synapse_weights,
)

__all__ = [
    "prunable_parameters",
    "prune_masks",
    "magnitude_prune",
    "feedback_prune",
    "prune_by_scores",
    "apply_masks_",
    "FeedbackAccumulator",
    "accumulate_feedback",
    "LayerSparsity",
    "SparsityReport",
    "sparsity_report",
]


def prunable_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{parameter name: tensor}`` of every prunable weight, in model order.

    >>> from torch import nn
    >>> from spikelfp import RLIF, Sequential
    >>> list(prunable_parameters(Sequential(nn.Linear(3, 4), RLIF(4))))
    ['0.weight', '1.recurrent_weight']
    """
    out = {}
    for name, module in as_module(model).named_modules():
        prefix = f"{name}." if name else ""
        for attr, weight in synapse_weights(module):
            out[prefix + attr] = weight
    return out


def _check_sparsity(sparsity: float) -> float:
    sparsity = float(sparsity)
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(
            f"sparsity is a fraction in [0, 1] (0.8 = 80% of weights removed), got {sparsity}"
        )
    return sparsity


def _lowest_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    keep = torch.ones(scores.numel(), dtype=torch.bool)
    if k > 0:
        order = torch.argsort(scores.reshape(-1), stable=True)
        keep[order[:k]] = False
    return keep


def prune_masks(
    model: nn.Module,
    sparsity: float,
    scores: Mapping[str, torch.Tensor] | None = None,
    scope: str = "global",
) -> dict[str, torch.Tensor]:
    """Boolean keep-masks removing the ``sparsity`` fraction of lowest-scored weights.

    ``scores`` defaults to :math:`|w|` (magnitude pruning); weights without a score are scored
    by magnitude. ``scope="global"`` ranks all prunable weights together, ``"layer"`` prunes
    each tensor to the same sparsity. Exactly ``round(sparsity · n)`` weights are removed
    (already-zero weights count, being the smallest).
    """
    sparsity = _check_sparsity(sparsity)
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    params = prunable_parameters(model)
    if not params:
        raise ValueError("the model has no prunable weights (Linear, Conv1d/2d, RLIF)")
    scores = dict(scores or {})
    unknown = sorted(set(scores) - set(params))
    if unknown:
        raise KeyError(f"scores for unknown parameters {unknown}; prunable: {sorted(params)}")
    sc = {}
    for name, p in params.items():
        s = scores.get(name)
        s = p.detach().abs() if s is None else s.detach().abs().to(p.device)
        if s.shape != p.shape:
            raise ValueError(
                f"scores[{name!r}] has shape {tuple(s.shape)}, the weight {tuple(p.shape)}"
            )
        if not torch.isfinite(s).all():
            raise ValueError(f"scores[{name!r}] has non-finite values")
        # a weight that is already zero is pruned first, whatever its score
        s = s.to(torch.float64)
        sc[name] = torch.where(p.detach() == 0, torch.full_like(s, -1.0), s)
    if scope == "layer":
        return {
            n: _lowest_k_mask(s, round(sparsity * s.numel())).reshape(s.shape)
            for n, s in sc.items()
        }
    flat = torch.cat([s.reshape(-1).to(torch.float64) for s in sc.values()])
    keep = _lowest_k_mask(flat, round(sparsity * flat.numel()))
    out, start = {}, 0
    for n, s in sc.items():
        out[n] = keep[start : start + s.numel()].reshape(s.shape)
        start += s.numel()
    return out


def apply_masks_(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Zero the masked-out weights **in place** (``mask == False``); returns ``model``.

    Use it after every optimiser step when fine-tuning a pruned network.
    """
    params = dict(as_module(model).named_parameters())
    missing = sorted(set(masks) - set(params))
    if missing:
        raise KeyError(f"masks for unknown parameters {missing}")
    with torch.no_grad():
        for name, mask in masks.items():
            p = params[name]
            if mask.shape != p.shape:
                raise ValueError(
                    f"mask {name!r} has shape {tuple(mask.shape)}, the weight {tuple(p.shape)}"
                )
            p.mul_(mask.to(device=p.device, dtype=p.dtype))
    return model


def prune_by_scores(
    model: nn.Module,
    sparsity: float,
    scores: Mapping[str, torch.Tensor] | None = None,
    scope: str = "global",
) -> nn.Module:
    """A pruned copy of ``model`` (see :func:`prune_masks`); ``model`` is not modified (a
    :class:`CanonicalNet` gives a :class:`CanonicalNet`)."""
    if isinstance(model, CanonicalNet):
        return model.with_model(prune_by_scores(model.model, sparsity, scores, scope))
    check_finite(model)
    masks = prune_masks(model, sparsity, scores, scope)
    return apply_masks_(copy.deepcopy(model), masks)


def magnitude_prune(model: nn.Module, sparsity: float, scope: str = "global") -> nn.Module:
    """A copy of ``model`` with the ``sparsity`` fraction of weights of smallest :math:`|w|` set
    to 0."""
    return prune_by_scores(model, sparsity, None, scope)


def feedback_prune(
    model: nn.Module,
    scores: Mapping[str, torch.Tensor] | FeedbackAccumulator,
    sparsity: float,
    scope: str = "global",
) -> nn.Module:
    """A copy of ``model`` without the weights of least accumulated LFP feedback.

    ``scores`` comes from :class:`FeedbackAccumulator` or :func:`accumulate_feedback`.
    """
    if isinstance(scores, FeedbackAccumulator):
        scores = scores.scores
    scores = {k: v for k, v in scores.items() if k in prunable_parameters(model)}
    return prune_by_scores(model, sparsity, scores, scope)


class FeedbackAccumulator:
    """Sums :math:`|F(w)|` of the prunable weights over LFP steps.

    Call :meth:`update` right after each :func:`spikelfp.lfp.lfp_step` (during training, or
    over a few batches with ``optimizer=None`` afterwards).

    >>> from torch import nn
    >>> from spikelfp import LIF, Sequential
    >>> from spikelfp.lfp import lfp_step, rate_coded_reward
    >>> net = Sequential(nn.Linear(6, 3), LIF(threshold=0.3))
    >>> acc = FeedbackAccumulator(net)
    >>> _ = lfp_step(net, torch.ones(4, 2, 6), torch.tensor([0, 1]), rate_coded_reward)
    >>> acc.update(); acc.steps, tuple(acc.scores["0.weight"].shape)
    (1, (3, 6))
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.scores = {
            n: torch.zeros_like(p, dtype=torch.float64)
            for n, p in prunable_parameters(model).items()
        }
        self.steps = 0

    def update(self) -> None:
        """Add the feedback of the last LFP step (``-param.grad``) to the scores."""
        params = prunable_parameters(self.model)
        got = False
        for name, p in params.items():
            if p.grad is not None:
                self.scores[name] += p.grad.detach().abs().to(torch.float64)
                got = True
        if not got:
            raise RuntimeError("no feedback found: call update() right after lfp_step(model, ...)")
        self.steps += 1


def accumulate_feedback(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, object]],
    reward: Callable,
    composite=None,
) -> dict[str, torch.Tensor]:
    """Accumulated :math:`|F(w)|` over ``batches`` of ``(x, target)``; ``model`` is not updated
    (``lfp_step`` without an optimiser; its ``.grad`` is left as after the last batch)."""
    from ..lfp import lfp_step

    acc = FeedbackAccumulator(model)
    for x, target in batches:
        lfp_step(model, x, target, reward, optimizer=None, composite=composite)
        acc.update()
    if acc.steps == 0:
        raise ValueError("accumulate_feedback needs at least one batch")
    return acc.scores


@dataclass
class LayerSparsity:
    """Connectivity of one weight tensor (Linear/Conv weight or RLIF recurrent weight)."""

    name: str
    kind: str
    weights: int
    nonzero: int
    synapses: int | None
    fan_in_mean: float | None
    fan_in_max: int | None
    fan_out_mean: float | None
    fan_out_max: int | None
    dead_neurons: int | None
    unused_inputs: int | None

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / self.weights if self.weights else 0.0


@dataclass
class SparsityReport:
    """Per-layer sparsity; ``silent`` (with data) counts neurons that never spiked."""

    layers: list[LayerSparsity]
    silent: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def weights(self) -> int:
        return sum(r.weights for r in self.layers)

    @property
    def nonzero(self) -> int:
        return sum(r.nonzero for r in self.layers)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / self.weights if self.weights else 0.0

    @property
    def synapses(self) -> int | None:
        vals = [r.synapses for r in self.layers]
        return None if any(v is None for v in vals) else sum(vals)

    def to_dict(self) -> dict:
        return {
            "sparsity": self.sparsity,
            "weights": self.weights,
            "nonzero": self.nonzero,
            "synapses": self.synapses,
            "layers": [dict(vars(r), sparsity=r.sparsity) for r in self.layers],
            "silent": {k: list(v) for k, v in self.silent.items()},
        }

    def __str__(self) -> str:
        def f(v, fmt="{:.1f}"):
            return "?" if v is None else (fmt.format(v) if isinstance(v, float) else str(v))

        lines = [
            "| layer | kind | weights | non-zero | sparsity | synapses | fan-in mean/max | "
            "fan-out mean/max | dead neurons | unused inputs |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.layers:
            lines.append(
                f"| {r.name} | {r.kind} | {r.weights} | {r.nonzero} | {100 * r.sparsity:.1f}% | "
                f"{f(r.synapses)} | {f(r.fan_in_mean)}/{f(r.fan_in_max)} | "
                f"{f(r.fan_out_mean)}/{f(r.fan_out_max)} | {f(r.dead_neurons)} | "
                f"{f(r.unused_inputs)} |"
            )
        lines.append(
            f"total: {self.nonzero}/{self.weights} non-zero weights "
            f"({100 * self.sparsity:.1f}% sparse), synapses {f(self.synapses)}"
        )
        for name, (silent, n) in self.silent.items():
            lines.append(f"layer {name}: {silent} of {n} neurons never spiked on the data")
        return "\n".join(lines)


def _row(name, kind, w, fan_in, fan_out) -> LayerSparsity:
    nnz = int((w != 0).sum())
    if fan_in is None:
        return LayerSparsity(name, kind, w.numel(), nnz, None, None, None, None, None, None, None)
    return LayerSparsity(
        name,
        kind,
        w.numel(),
        nnz,
        int(round(float(fan_in.sum()))),
        float(fan_in.mean()),
        int(fan_in.max()),
        float(fan_out.mean()),
        int(fan_out.max()),
        int((fan_in == 0).sum()),
        int((fan_out == 0).sum()),
    )


def sparsity_report(
    model: nn.Module,
    input_shape: Sequence[int] | None = None,
    data: torch.Tensor | None = None,
) -> SparsityReport:
    """Weights, non-zeros, synapses, fan-in/fan-out and dead neurons per layer.

    ``synapses`` counts actual connections (a conv kernel tap counts once per output position
    it reaches); a *dead* neuron has no non-zero incoming synapse, an *unused* input no
    outgoing one. Convolutions need ``input_shape`` (unless inferable) for these counts.
    With ``data`` (a time-first input batch) the report also counts neurons that never spiked.
    """
    if isinstance(model, CanonicalNet):  # its shapes are known already
        shapes = as_canonical(model, input_shape).shapes
        model = model.model
    else:
        try:
            shapes = infer_shapes(model, input_shape)
        except ValueError:
            shapes = None
    layers = list(model)
    rows = []
    for i, layer in enumerate(layers):
        conv = converter_for(layer)
        if conv.role == "synapse":
            w = layer.weight.detach()
            mask = (w != 0).to(torch.float64)
            fi = fo = None
            shape_in = shapes[i] if shapes is not None else None
            if shape_in is None and conv.input_shape is not None:  # a Linear fixes its own
                shape_in = conv.input_shape(layer)
            if shape_in is not None:
                fi, fo = conv.connectivity(layer, mask, shape_in)
            rows.append(_row(str(i), conv.name, w, fi, fo))
        elif conv.recurrent_weight is not None and synapse_weights(layer):
            w = conv.recurrent_weight(layer)
            mask = (w != 0).to(torch.float64)
            rows.append(_row(f"{i}.recurrent", conv.name, w, mask.sum(1), mask.sum(0)))
    silent = {}
    if data is not None:
        x = data
        runner = copy.deepcopy(model).eval()
        with torch.no_grad():
            for i, layer in enumerate(runner):
                if isinstance(layer, NeuronModule):
                    x, _ = layer(x)
                    if is_spiking(layer):
                        fired = (x != 0).reshape(x.shape[0] * x.shape[1], -1).any(0)
                        silent[str(i)] = (int((~fired).sum()), int(fired.numel()))
                else:
                    x = apply_over_time(layer, x)
    return SparsityReport(rows, silent)
