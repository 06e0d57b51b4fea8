"""The model zoo of the trainer: small spiking networks sized from a dataset's frames.

Every model is a :class:`spikelfp.Sequential` of stateless layers and :class:`spikelfp.LIF`
neurons; it takes time-first frames ``(T, B, P, H, W)`` and returns output spikes ``(T, B, C)``.
A model is fully described by a :class:`ModelSpec` (a plain dict in checkpoints), so a
checkpoint can be rebuilt without the dataset.

* ``mlp``:  Flatten → Linear → LIF → Linear → LIF
* ``conv``: Conv2d → LIF → MaxPool2d → Conv2d → LIF → MaxPool2d → Flatten → Linear → LIF

LFP can only pass reward through neurons that spike, so :func:`calibrate_firing` scales the
initial weights of each synapse until its neurons fire at a target rate on a batch of data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..neurons import LIF
from ..neurons.base import NeuronModule
from ..sequential import Sequential

__all__ = ["MODELS", "ModelSpec", "build_model", "calibrate_firing", "neuron_layers"]

MODELS = ("mlp", "conv")


@dataclass
class ModelSpec:
    """Everything needed to rebuild a zoo model.

    Attributes:
        name: ``"mlp"`` or ``"conv"``.
        input_shape: one frame's shape ``(P, H, W)``.
        n_classes: number of output neurons.
        hidden: hidden neurons of ``mlp``.
        channels: the two conv layers' channels of ``conv``.
        beta, threshold, reset, reset_delay: the LIF neurons' parameters (all layers).
    """

    name: str
    input_shape: tuple[int, ...]
    n_classes: int
    hidden: int = 128
    channels: tuple[int, int] = (12, 24)
    beta: float = 0.9
    threshold: float = 1.0
    reset: str = "zero"
    reset_delay: bool = False
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown model spec fields: {sorted(unknown)}")
        d = dict(d)
        d["input_shape"] = tuple(int(v) for v in d["input_shape"])
        if "channels" in d:
            d["channels"] = tuple(int(v) for v in d["channels"])
        return cls(**d)


def _lif(spec: ModelSpec) -> LIF:
    return LIF(
        beta=spec.beta, threshold=spec.threshold, reset=spec.reset, reset_delay=spec.reset_delay
    )


def build_model(spec: ModelSpec) -> Sequential:
    """Build the network a spec describes (weights from the current torch RNG).

    >>> net = build_model(ModelSpec("mlp", (2, 8, 8), 10, hidden=16))
    >>> out, _ = net(torch.rand(5, 3, 2, 8, 8))
    >>> tuple(out.shape)
    (5, 3, 10)
    >>> net = build_model(ModelSpec("conv", (2, 34, 34), 10, channels=(4, 8)))
    >>> tuple(net(torch.rand(2, 1, 2, 34, 34))[0].shape)
    (2, 1, 10)
    """
    if spec.name not in MODELS:
        raise ValueError(f"unknown model {spec.name!r}; choose one of {', '.join(MODELS)}")
    if len(spec.input_shape) != 3:
        raise ValueError(f"input_shape must be (P, H, W), got {spec.input_shape}")
    p, h, w = spec.input_shape
    if spec.name == "mlp":
        return Sequential(
            nn.Flatten(),
            nn.Linear(p * h * w, spec.hidden),
            _lif(spec),
            nn.Linear(spec.hidden, spec.n_classes),
            _lif(spec),
        )
    c1, c2 = spec.channels
    h4, w4 = h // 2 // 2, w // 2 // 2
    if h4 < 1 or w4 < 1:
        raise ValueError(f"conv needs frames of at least 4x4 pixels, got {h}x{w}")
    return Sequential(
        nn.Conv2d(p, c1, 3, padding=1),
        _lif(spec),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1),
        _lif(spec),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * h4 * w4, spec.n_classes),
        _lif(spec),
    )


def neuron_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every spiking layer, input to output."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, NeuronModule)]


def _synapses_before_neurons(model: Sequential) -> list[tuple[int, int]]:
    """``(synapse index, neuron index)`` for every parametrised layer feeding a neuron layer."""
    pairs, last = [], None
    for i, layer in enumerate(model):
        if isinstance(layer, NeuronModule):
            if last is not None:
                pairs.append((last, i))
            last = None
        elif isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            last = i
    return pairs


@torch.no_grad()
def calibrate_firing(
    model: Sequential,
    x: torch.Tensor,
    target_rate: float | Sequence[float] = 0.1,
    max_iter: int = 16,
) -> list[float]:
    """Scale each synapse's initial weights so its neurons fire at ``target_rate``.

    Layer by layer (input to output), the weight of the Linear/Conv feeding a LIF layer is
    multiplied by a gain found by bisection (in log space) such that the mean spike rate
    (spikes per neuron and step) on the batch ``x`` ``(T, B, ...)`` is close to the target.
    ``target_rate`` may give one rate per neuron layer. Returns the gains. Deterministic.

    >>> torch.manual_seed(0) and None
    >>> net = build_model(ModelSpec("mlp", (1, 4, 4), 3, hidden=32))
    >>> x = (torch.rand(10, 8, 1, 4, 4) < 0.2).float()
    >>> gains = calibrate_firing(net, x, 0.2)
    >>> rate = net[:3](x)[0].mean().item()
    >>> 0.1 < rate < 0.3
    True
    """
    pairs = _synapses_before_neurons(model)
    if isinstance(target_rate, (int, float)):
        targets = [float(target_rate)] * len(pairs)
    else:
        targets = [float(r) for r in target_rate]
        if len(targets) != len(pairs):
            raise ValueError(f"need {len(pairs)} target rates, got {len(targets)}")
    gains = []
    h = x
    start = 0
    for (syn, neu), target in zip(pairs, targets, strict=True):
        # input of the synapse: run the preceding (already calibrated) layers once
        h, _ = Sequential(*list(model)[start:syn])(h) if syn > start else (h, None)
        start = syn
        layer = model[syn]
        w0 = layer.weight.detach().clone()
        b0 = None if layer.bias is None else layer.bias.detach().clone()
        head = Sequential(*list(model)[syn : neu + 1])

        def rate(g, layer=layer, w0=w0, b0=b0, head=head, h=h):
            layer.weight.copy_(w0 * g)
            if b0 is not None:
                layer.bias.copy_(b0 * g)
            return head(h)[0].mean().item()

        lo, hi = -6.0, 6.0  # log2 gain
        for _ in range(max_iter):
            mid = (lo + hi) / 2
            if rate(2.0**mid) < target:
                lo = mid
            else:
                hi = mid
        g = 2.0 ** ((lo + hi) / 2)
        rate(g)
        gains.append(g)
    return gains
