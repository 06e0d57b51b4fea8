"""The model zoo: spiking networks that neuromorphic hardware runs, sized from a dataset's frames.

Every model is a :class:`spikelfp.Sequential` of stateless layers and spiking neurons
(:class:`spikelfp.LIF` or :class:`spikelfp.IF`); it takes time-first frames ``(T, B, P, H, W)``
and returns output spikes ``(T, B, C)``. A model is fully described by a :class:`ModelSpec`
(a plain dict in checkpoints), so a checkpoint can be rebuilt without the dataset.

No model uses max pooling (it has no NIR node and no neuromorphic equivalent): pooling is
:class:`spikelfp.SumPool2d`, which Speck, Loihi and the integer exporter run exactly, and every
zoo model passes :func:`spikelfp.hw_export.canonicalize`. ``N`` below is the spiking neuron
(``spec.neuron``), ``[BN]`` a ``BatchNorm2d`` present when ``spec.batch_norm`` (the exporter
folds it into the convolution before it):

* ``mlp``: Flatten → Linear(hidden) → N → Linear(classes) → N
* ``conv``: Conv(c1,k3,p1) → [BN] → N → Pool2 → Conv(c2,k3,p1) → [BN] → N → Pool2 → Flatten
  → Linear(classes) → N
* ``speck-cnn``: the N-MNIST network of the NIR paper, built for Speck: Conv(c1,k5,s2,p1) → N
  → Conv(c2,k3,p1) → N → Pool2 → Conv(c3,k3,p1) → N → Pool2 → Flatten → Linear(hidden) → N
  → Linear(classes) → N
* ``nmnist-cnn``: two wider conv blocks after the PLIF / SpikingJelly N-MNIST network
* ``dvsgesture-cnn``: a strided conv and four pooled conv blocks for DVS128 Gesture
  (128×128, or the trainer's 32×32)

:data:`ZOO` holds one :class:`ZooModel` per name (layout, source, defaults, builder);
:func:`model_summary` counts parameters, neurons and synaptic operations from the shapes, and
:func:`describe_models` / :func:`models_table` list the zoo for a frame shape.

LFP can only pass reward through neurons that spike, so :func:`calibrate_firing` scales the
initial weights of each synapse until its neurons fire at a target rate on a batch of data.

Changed in this version: ``conv`` pools by summation instead of max pooling. Its parameters
are unchanged (pooling has none), so an older ``conv`` checkpoint still loads, but the network
it computes differs; :meth:`ModelSpec.from_dict` warns about such checkpoints.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..events import SparseFrames
from ..layers import SequenceDropout, SumPool2d
from ..lfp import online as _online
from ..neurons import IF, LIF, RLIF
from ..neurons.base import NeuronModule
from ..sequential import Sequential

__all__ = [
    "MODELS",
    "NEURONS",
    "ZOO",
    "ModelSpec",
    "ZooModel",
    "build_model",
    "calibrate_firing",
    "describe_models",
    "model_summary",
    "models_table",
    "neuron_layers",
]

#: The spiking neurons a zoo model can use (``ModelSpec.neuron``).
NEURONS = ("lif", "if")

_SYNAPSES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORM = nn.modules.batchnorm._BatchNorm


@dataclass
class ModelSpec:
    """Everything needed to rebuild a zoo model.

    Attributes:
        name: a key of :data:`ZOO` (``"mlp"``, ``"conv"``, ``"speck-cnn"``, ``"nmnist-cnn"``,
            ``"dvsgesture-cnn"``).
        input_shape: one frame's shape ``(P, H, W)``.
        n_classes: number of output neurons.
        hidden: neurons of the hidden fully connected layer; ``None``: the model's default
            (filled in on construction; ``None`` stays for models without one, ``conv``).
        channels: output channels of the convolutions, as many as the model takes
            (:attr:`ZooModel.n_channels`); ``None``: the model's default. Ignored by ``mlp``.
        beta, threshold, reset, reset_delay: the neurons' parameters (all layers; ``beta`` is
            ignored by ``"if"`` neurons, whose decay is 1).
        neuron: ``"lif"`` or ``"if"``.
        bias: ``False`` makes every Linear/Conv bias-free (Speck has no biases).
        batch_norm: a ``BatchNorm2d`` after every convolution (not for ``mlp``).
        dropout: ``p`` of a :class:`~spikelfp.layers.SequenceDropout` (one mask per sample
            for all time steps) before every Linear that reads hidden spikes (PLIF's
            classifier: after Flatten and after the hidden layer); 0: none. Training only:
            the exporters remove it.
        pool: ``"avg"`` (``nn.AvgPool2d``, default) or ``"sum"`` (:class:`spikelfp.SumPool2d`).
            Both export as NIR sum pooling (the exporter folds ``1/k²`` into the next layer),
            and both pass reward identically; they differ in how the next layer's weights are
            parametrised: after sum pooling they are ``k²`` times smaller, so Adam's step,
            about ``lr`` per weight whatever the weight's size, is ``k²`` times larger
            relative to them (measured on N-MNIST: sum pooling with the avg recipe's
            learning rate stalls near chance for the first epochs).
        extra: free-form notes kept with the spec.

    Older checkpoint dicts, which lack ``neuron``, ``bias`` and ``batch_norm``, get the
    defaults, which are what those models were.

    >>> spec = ModelSpec("speck-cnn", (2, 34, 34), 10)
    >>> spec.channels, spec.hidden
    ((16, 16, 8), 256)
    >>> ModelSpec.from_dict(spec.to_dict()) == spec
    True
    """

    name: str
    input_shape: tuple[int, ...]
    n_classes: int
    hidden: int | None = None
    channels: tuple[int, ...] | None = None
    beta: float = 0.9
    threshold: float = 1.0
    reset: str = "zero"
    reset_delay: bool = False
    neuron: str = "lif"
    bias: bool = True
    batch_norm: bool = False
    pool: str = "avg"
    dropout: float = 0.0
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.input_shape = tuple(int(v) for v in self.input_shape)
        entry = ZOO.get(self.name)
        if self.channels is None and entry is not None:
            self.channels = entry.default_channels
        if self.channels is not None:
            self.channels = tuple(int(c) for c in self.channels)
        if self.hidden is None and entry is not None:
            self.hidden = entry.default_hidden
        if self.hidden is not None:
            self.hidden = int(self.hidden)
        if self.pool not in ("avg", "sum"):
            raise ValueError(f"unknown pool {self.pool!r}; choose avg or sum")
        if isinstance(self.dropout, bool) or not 0 <= float(self.dropout) < 1:
            raise ValueError(f"dropout must be a probability in [0, 1), got {self.dropout!r}")
        self.dropout = float(self.dropout)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["channels"] = None if self.channels is None else list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown model spec fields: {sorted(unknown)}")
        missing = [k for k in ("name", "input_shape", "n_classes") if k not in d]
        if missing:
            raise ValueError(f"model spec lacks the fields {missing}")
        if d["name"] == "conv" and "neuron" not in d:
            warnings.warn(
                "this 'conv' model was saved by an older spikelfp whose conv used max pooling; "
                "it is rebuilt with sum pooling, so its outputs differ (evaluate or retrain it)",
                stacklevel=2,
            )
        return cls(**d)


class _TooSmall(Exception):
    """A layer's output would have no pixels."""


class _Stack:
    """Appends layers while tracking the per-sample shape; ``dry``: shapes only."""

    def __init__(self, spec: ModelSpec, dry: bool = False):
        self.spec, self.dry = spec, dry
        self.layers: list[nn.Module] = []
        self.shape = tuple(spec.input_shape)
        self.reads_spikes = False  # a neuron layer has been added: the input is spikes now

    def _add(self, make: Callable[[], nn.Module]) -> None:
        if not self.dry:
            self.layers.append(make())

    def conv(self, out: int, k: int, stride: int = 1, padding: int = 0) -> None:
        c, h, w = self.shape
        h2, w2 = ((n + 2 * padding - k) // stride + 1 for n in (h, w))
        if h2 < 1 or w2 < 1:
            raise _TooSmall
        bias = self.spec.bias
        self._add(lambda: nn.Conv2d(c, out, k, stride, padding, bias=bias))
        if self.spec.batch_norm:
            self._add(lambda: nn.BatchNorm2d(out))
        self.shape = (out, h2, w2)

    def pool(self, k: int = 2) -> None:
        c, h, w = self.shape
        if h // k < 1 or w // k < 1:
            raise _TooSmall
        self._add(lambda: SumPool2d(k) if self.spec.pool == "sum" else nn.AvgPool2d(k))
        self.shape = (c, h // k, w // k)

    def neuron(self) -> None:
        self._add(lambda: _make_neuron(self.spec))
        self.reads_spikes = True

    def recurrent_neuron(self) -> None:
        (n,) = self.shape
        spec = self.spec
        self._add(lambda: RLIF(n, spec.beta, spec.threshold, spec.reset, spec.reset_delay))
        self.reads_spikes = True

    def flatten(self) -> None:
        self._add(nn.Flatten)
        self.shape = (math.prod(self.shape),)

    def linear(self, out: int) -> None:
        (n,) = self.shape
        bias = self.spec.bias
        if self.spec.dropout > 0 and self.reads_spikes:
            self._add(lambda: SequenceDropout(self.spec.dropout))
        self._add(lambda: nn.Linear(n, out, bias=bias))
        self.shape = (out,)


def _make_neuron(spec: ModelSpec) -> LIF:
    if spec.neuron == "if":
        return IF(threshold=spec.threshold, reset=spec.reset, reset_delay=spec.reset_delay)
    return LIF(
        beta=spec.beta, threshold=spec.threshold, reset=spec.reset, reset_delay=spec.reset_delay
    )


def _mlp(spec: ModelSpec, s: _Stack) -> None:
    s.flatten()
    s.linear(spec.hidden)
    s.neuron()
    s.linear(spec.n_classes)
    s.neuron()


def _conv(spec: ModelSpec, s: _Stack) -> None:
    for c in spec.channels:
        s.conv(c, 3, padding=1)
        s.neuron()
        s.pool(2)
    s.flatten()
    s.linear(spec.n_classes)
    s.neuron()


def _speck_cnn(spec: ModelSpec, s: _Stack) -> None:
    c1, c2, c3 = spec.channels
    s.conv(c1, 5, stride=2, padding=1)
    s.neuron()
    s.conv(c2, 3, padding=1)
    s.neuron()
    s.pool(2)
    s.conv(c3, 3, padding=1)
    s.neuron()
    s.pool(2)
    _classifier(spec, s)


def _nmnist_cnn(spec: ModelSpec, s: _Stack) -> None:
    for c in spec.channels:
        s.conv(c, 3, padding=1)
        s.neuron()
        s.pool(2)
    _classifier(spec, s)


def _dvsgesture_cnn(spec: ModelSpec, s: _Stack) -> None:
    first, *rest = spec.channels
    s.conv(first, 5, stride=2, padding=2)
    s.neuron()
    s.pool(2)
    for c in rest:
        s.conv(c, 3, padding=1)
        s.neuron()
        s.pool(2)
    _classifier(spec, s)


def _flat(s: _Stack) -> None:
    if len(s.shape) > 1:  # (C,) signals go straight in: no Flatten, which Xylo lacks
        s.flatten()


def _braille_rsnn(spec: ModelSpec, s: _Stack) -> None:
    _flat(s)
    s.linear(spec.hidden)
    s.recurrent_neuron()
    s.linear(spec.n_classes)
    s.neuron()


def _braille_mlp(spec: ModelSpec, s: _Stack) -> None:
    _flat(s)
    s.linear(spec.hidden)
    s.neuron()
    s.linear(spec.n_classes)
    s.neuron()


def _classifier(spec: ModelSpec, s: _Stack) -> None:
    s.flatten()
    s.linear(spec.hidden)
    s.neuron()
    s.linear(spec.n_classes)
    s.neuron()


@dataclass(frozen=True)
class ZooModel:
    """One architecture of the zoo.

    Attributes:
        name: the key in :data:`ZOO` and ``ModelSpec.name``.
        build: ``build(spec, stack)`` appends the layers (internal builder).
        layout: the layers, in words (``N``: the spiking neuron, ``Pool2``: 2×2 sum pooling,
            ``[BN]``: batch norm when ``spec.batch_norm``).
        source: where the layout comes from.
        n_channels: how many entries ``spec.channels`` must have (0: none used).
        default_channels, default_hidden: what ``None`` in a spec means (``default_hidden``
            ``None``: the model has no hidden fully connected layer).
        batch_norm: whether the model can take ``batch_norm=True``.
        input_dims: the numbers of dimensions ``spec.input_shape`` may have (``(3,)``: frames
            ``(P, H, W)``; the sensor models also take signals ``(C,)``).

    >>> ZOO["speck-cnn"].n_channels, ZOO["speck-cnn"].default_channels
    (3, (16, 16, 8))
    """

    name: str
    build: Callable[[ModelSpec, _Stack], None] = field(repr=False)
    layout: str
    source: str
    n_channels: int = 0
    default_channels: tuple[int, ...] = ()
    default_hidden: int | None = None
    batch_norm: bool = True
    input_dims: tuple[int, ...] = (3,)


#: The zoo, keyed by model name (insertion order: smallest first).
ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in (
        ZooModel(
            "mlp",
            _mlp,
            "Flatten → Linear(hidden) → N → Linear(classes) → N",
            "spikelfp's baseline (lfprop's fully connected LIF network)",
            n_channels=0,
            default_hidden=256,  # TrainConfig.hidden: the same MLP as `spikelfp train`
            batch_norm=False,
        ),
        ZooModel(
            "conv",
            _conv,
            "Conv(c1,k3,p1) → [BN] → N → Pool2 → Conv(c2,k3,p1) → [BN] → N → Pool2 → Flatten → "
            "Linear(classes) → N",
            "spikelfp's small CNN (LeNet-like; max pooling replaced by sum pooling)",
            n_channels=2,
            default_channels=(12, 24),
        ),
        ZooModel(
            "speck-cnn",
            _speck_cnn,
            "Conv(c1,k5,s2,p1) → N → Conv(c2,k3,p1) → N → Pool2 → Conv(c3,k3,p1) → N → Pool2 → "
            "Flatten → Linear(hidden) → N → Linear(classes) → N",
            "NIR paper's N-MNIST CNN for Speck (Pedersen et al., Nat. Commun. 2024; sinabs); "
            "there IF neurons and no biases: neuron='if', bias=False",
            n_channels=3,
            default_channels=(16, 16, 8),
            default_hidden=256,
        ),
        ZooModel(
            "nmnist-cnn",
            _nmnist_cnn,
            "Conv(c1,k3,p1) → [BN] → N → Pool2 → Conv(c2,k3,p1) → [BN] → N → Pool2 → Flatten → "
            "Linear(hidden) → N → Linear(classes) → N",
            "PLIF / SpikingJelly N-MNIST network (Fang et al., ICCV 2021), narrower: 128→(32, 64) "
            "channels, FC 2048→256, sum instead of max pooling, dropout optional, no voting layer",
            n_channels=2,
            default_channels=(32, 64),
            default_hidden=256,
        ),
        ZooModel(
            "dvsgesture-cnn",
            _dvsgesture_cnn,
            "Conv(c1,k5,s2,p2) → [BN] → N → Pool2 → 3 × (Conv(ci,k3,p1) → [BN] → N → Pool2) → "
            "Flatten → Linear(hidden) → N → Linear(classes) → N",
            "PLIF / SpikingJelly DVS128 Gesture network (Fang et al., ICCV 2021), narrower: "
            "strided first conv instead of a fifth block, (16, 32, 32, 64) channels, FC 256, sum "
            "pooling",
            n_channels=4,
            default_channels=(16, 32, 32, 64),
            default_hidden=256,
        ),
        ZooModel(
            "braille-rsnn",
            _braille_rsnn,
            "[Flatten] → Linear(hidden) → RLIF(hidden, recurrent) → Linear(classes) → N",
            "NIR paper's recurrent Braille network (Pedersen et al., Nat. Commun. 2024: 12 taxels "
            "→ 38/55 recurrent CuBa-LIF → 7); here recurrent LIF neurons; fits Xylo (<= 16 "
            "inputs, <= 8 outputs) with reset='subtract'",
            default_hidden=40,
            batch_norm=False,
            input_dims=(1, 3),
        ),
        ZooModel(
            "braille-mlp",
            _braille_mlp,
            "[Flatten] → Linear(hidden) → N → Linear(classes) → N",
            "feed-forward baseline of braille-rsnn (same sizes, no recurrence)",
            default_hidden=40,
            batch_norm=False,
            input_dims=(1, 3),
        ),
    )
}

#: The names of the zoo's models.
MODELS = tuple(ZOO)


def _entry(name: str) -> ZooModel:
    entry = ZOO.get(name)
    if entry is None:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(ZOO)}")
    return entry


def _check(spec: ModelSpec, entry: ZooModel) -> None:
    if len(spec.input_shape) not in entry.input_dims:
        if entry.input_dims == (3,):
            raise ValueError(f"input_shape must be (P, H, W), got {spec.input_shape}")
        raise ValueError(
            f"{entry.name} takes input_shape (C,) or (P, H, W), got {spec.input_shape}"
        )
    if min(spec.input_shape) < 1 or int(spec.n_classes) < 1:
        raise ValueError(
            f"input_shape and n_classes must be positive, got {spec.input_shape}, {spec.n_classes}"
        )
    if spec.neuron not in NEURONS:
        raise ValueError(f"unknown neuron {spec.neuron!r}; choose one of {', '.join(NEURONS)}")
    if entry.n_channels:
        ch = spec.channels
        if ch is None or len(ch) != entry.n_channels:
            got = "none" if ch is None else f"{len(ch)} {tuple(ch)}"
            raise ValueError(
                f"{entry.name} takes {entry.n_channels} channel counts (spec.channels), got {got}"
            )
        if min(ch) < 1:
            raise ValueError(f"{entry.name}: channel counts must be positive, got {tuple(ch)}")
    if entry.default_hidden is not None and (spec.hidden is None or spec.hidden < 1):
        raise ValueError(f"{entry.name} needs hidden >= 1, got {spec.hidden}")
    if spec.batch_norm and not entry.batch_norm:
        raise ValueError(f"{entry.name} has no convolutions; batch_norm applies to convolutions")


def _min_side(spec: ModelSpec, entry: ZooModel) -> int | None:
    """The smallest square frame the model takes (``None`` if none up to 4096)."""
    for side in range(1, 4097):
        probe = dataclasses.replace(spec, input_shape=(spec.input_shape[0], side, side))
        try:
            entry.build(probe, _Stack(probe, dry=True))
        except _TooSmall:
            continue
        return side
    return None


def build_model(spec: ModelSpec) -> Sequential:
    """Build the network a spec describes (weights from the current torch RNG).

    >>> net = build_model(ModelSpec("mlp", (2, 8, 8), 10, hidden=16))
    >>> out, _ = net(torch.rand(5, 3, 2, 8, 8))
    >>> tuple(out.shape)
    (5, 3, 10)
    >>> net = build_model(ModelSpec("speck-cnn", (2, 34, 34), 10, neuron="if", bias=False))
    >>> tuple(net(torch.rand(2, 1, 2, 34, 34))[0].shape), net[9].in_features
    ((2, 1, 10), 128)
    """
    entry = _entry(spec.name)
    _check(spec, entry)
    stack = _Stack(spec)
    try:
        entry.build(spec, stack)
    except _TooSmall:
        _, h, w = spec.input_shape
        side = _min_side(spec, entry)
        least = "larger frames" if side is None else f"frames of at least {side}x{side} pixels"
        raise ValueError(f"{spec.name} needs {least}, got {h}x{w}") from None
    return Sequential(*stack.layers)


def neuron_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every spiking layer, input to output.

    >>> [n for n, _ in neuron_layers(build_model(ModelSpec("conv", (2, 8, 8), 3)))]
    ['1', '4', '8']
    """
    return [(n, m) for n, m in model.named_modules() if isinstance(m, NeuronModule)]


def _gain_layers(model: Sequential) -> list[tuple[int, int, int]]:
    """``(synapse, gain layer, neuron)`` indices for every neuron layer fed by a synapse.

    The gain layer is the synapse itself, or an affine batch norm between it and the neuron
    (batch norm in training mode undoes any scaling of the synapse before it).
    """
    found, syn, gain = [], None, None
    for i, layer in enumerate(model):
        if isinstance(layer, NeuronModule):
            if syn is not None:
                found.append((syn, gain, i))
            syn = gain = None
        elif isinstance(layer, _SYNAPSES):
            syn = gain = i
        elif isinstance(layer, _BATCHNORM) and layer.affine and syn is not None:
            gain = i
    return found


def _target_rates(target_rate: float | Sequence[float], n: int) -> list[float]:
    """One target spike rate per neuron layer (``n`` of them) from one rate or a list."""
    if isinstance(target_rate, (int, float)):
        return [float(target_rate)] * n
    targets = [float(r) for r in target_rate]
    if len(targets) != n:
        raise ValueError(f"need {n} target rates, got {len(targets)}")
    return targets


def _bisect_gain(rate: Callable[[float], float], target: float, max_iter: int) -> float:
    """The gain ``g`` in ``[1/64, 64]`` with ``rate(g)`` close to ``target``: bisection on
    log2 g (the rate grows with the gain). ``rate`` applies the gain it is given."""
    lo, hi = -6.0, 6.0
    for _ in range(max_iter):
        mid = (lo + hi) / 2
        if rate(2.0**mid) < target:
            lo = mid
        else:
            hi = mid
    return 2.0 ** ((lo + hi) / 2)


@torch.no_grad()
def calibrate_firing(
    model: Sequential,
    x: torch.Tensor,
    target_rate: float | Sequence[float] = 0.1,
    max_iter: int = 16,
) -> list[float]:
    """Scale each synapse's initial weights so its neurons fire at ``target_rate``.

    Layer by layer (input to output), the weight and bias of the Linear/Conv feeding a neuron
    layer (or of the batch norm between them) are multiplied by a gain found by bisection (in
    log space, gains 1/64 to 64) such that the mean spike rate (spikes per neuron and step) on
    the batch ``x`` ``(T, B, ...)`` is close to the target, in the model's current
    train/eval mode. ``target_rate`` may give one rate per neuron layer. Returns the gains.
    Only those weights change: batch-norm running statistics are restored. Deterministic.

    >>> torch.manual_seed(0) and None
    >>> net = build_model(ModelSpec("mlp", (1, 4, 4), 3, hidden=32))
    >>> x = (torch.rand(10, 8, 1, 4, 4) < 0.2).float()
    >>> gains = calibrate_firing(net, x, 0.2)
    >>> rate = net[:3](x)[0].mean().item()
    >>> 0.1 < rate < 0.3
    True
    """
    triples = _gain_layers(model)
    targets = _target_rates(target_rate, len(triples))
    saved = {
        (m, name): b.clone()
        for m in model.modules()
        if isinstance(m, _BATCHNORM)
        for name, b in m.named_buffers(recurse=False)
        if b is not None
    }
    gains = []
    h = x
    start = 0
    try:
        for (syn, gain_at, neu), target in zip(triples, targets, strict=True):
            # input of the synapse: run the preceding (already calibrated) layers once
            h, _ = Sequential(*list(model)[start:syn])(h) if syn > start else (h, None)
            start = syn
            layer = model[gain_at]
            w0 = layer.weight.detach().clone()
            b0 = None if layer.bias is None else layer.bias.detach().clone()
            head = Sequential(*list(model)[syn : neu + 1])

            def rate(g, layer=layer, w0=w0, b0=b0, head=head, h=h):
                layer.weight.copy_(w0 * g)
                if b0 is not None:
                    layer.bias.copy_(b0 * g)
                return head(h)[0].mean().item()

            g = _bisect_gain(rate, target, max_iter)
            rate(g)
            gains.append(g)
    finally:
        for (m, name), b in saved.items():
            getattr(m, name).copy_(b)
    return gains


@torch.no_grad()
def calibrate_firing_online(
    model: nn.Module,
    x: torch.Tensor | SparseFrames,
    target_rate: float | Sequence[float] = 0.1,
    window: int = 25,
    max_iter: int = 16,
) -> list[float]:
    """:func:`calibrate_firing`, run window by window.

    The same bisection of each synapse's gain (log2 gain in ``[-6, 6]``), with the mean spike
    rate of each neuron layer counted over windows of ``window`` steps (state carried), so
    that only one window of the input and of every layer is in memory at a time. The input
    of each synapse is made once per window and kept compact for the bisection: a first
    ``Linear`` (after ``Flatten`` only) on :class:`~spikelfp.lfp.SparseFrames` is computed
    from the events (sparse matrix product); binary inputs (the spikes of the layer before)
    are kept as packed bits (1/32 of float32); other inputs are recomputed from the input at
    every evaluation. Returns the gains.

    Args:
        model: a :class:`spikelfp.Sequential` that streams.
        x: the calibration batch ``(T, B, ...)`` or :class:`~spikelfp.lfp.SparseFrames`.
        target_rate: one rate, or one per neuron layer.
        window: steps per window.
        max_iter: bisection steps per layer.

    Returns:
        The gain of each neuron layer's synapse.

    Raises:
        ValueError: a wrong number of target rates, a bad window, or a model that cannot
            stream.
    """
    window = _online.check_window(window)
    _online.check_streamable(model)
    layers = list(model)
    triples = _gain_layers(model)
    rates = _target_rates(target_rate, len(triples))
    gains = []
    for (syn, gain_at, neu), target in zip(triples, rates, strict=True):
        layer = model[gain_at]
        w0 = layer.weight.detach().clone()
        b0 = None if layer.bias is None else layer.bias.detach().clone()
        source = _online._synapse_inputs(layers, syn, gain_at, x, window)

        def rate(g, layer=layer, w0=w0, b0=b0, source=source, syn=syn, neu=neu):
            layer.weight.copy_(w0 * g)
            if b0 is not None:
                layer.bias.copy_(b0 * g)
            first = source[1]
            head = Sequential(*layers[first : neu + 1])
            spikes, count, state = 0.0, 0, None
            for h in _online._source_windows(source, x, window, layers[syn]):
                out, state = head(h, state)
                spikes += float(out.sum(dtype=torch.float64))
                count += out.numel()
            return spikes / max(count, 1)

        g = _bisect_gain(rate, target, max_iter)
        layer.weight.copy_(w0 * g)
        if b0 is not None:
            layer.bias.copy_(b0 * g)
        gains.append(g)
    return gains


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _layer_params(layer: nn.Module) -> int:
    """Parameters of a layer from its hyper-parameters (synapses, batch norm)."""
    if isinstance(layer, nn.Linear):
        return layer.out_features * (layer.in_features + (layer.bias is not None))
    if isinstance(layer, nn.modules.conv._ConvNd):
        fan_in = layer.in_channels // layer.groups * math.prod(layer.kernel_size)
        return layer.out_channels * (fan_in + (layer.bias is not None))
    if isinstance(layer, _BATCHNORM):
        return 2 * layer.num_features if layer.affine else 0
    return sum(p.numel() for p in layer.parameters())


def model_summary(spec: ModelSpec) -> dict:
    """Size and cost of a zoo model, from the layer shapes (one sample, one time step).

    * ``parameters``: trainable parameters (batch norm: its affine weight and bias);
    * ``neurons``: spiking units, the outputs of all neuron layers;
    * ``synops``: synaptic operations, dense: for every Linear/Conv, output elements × fan-in
      (multiply-accumulates a frame-based accelerator does; an event-driven chip does this
      times the input's spike rate); batch norm is folded into the synapse and costs nothing;
    * ``pool_ops``: additions of sum pooling, output elements × window size (not in
      ``synops``);
    * ``layers``: the same per layer, with its output shape.

    The global RNG is left as it was.

    >>> s = model_summary(ModelSpec("speck-cnn", (2, 34, 34), 10, bias=False))
    >>> s["parameters"], s["neurons"], s["synops"], s["pool_ops"]
    (39584, 8970, 903680, 4608)
    """
    with torch.random.fork_rng(devices=[]):
        model = build_model(spec)
    model.eval()
    shape = tuple(spec.input_shape)
    rows = []
    with torch.no_grad():
        for i, layer in enumerate(model):
            if isinstance(layer, NeuronModule):
                out_shape = shape
            else:
                out_shape = tuple(layer(torch.zeros(1, *shape)).shape[1:])
            n_out = math.prod(out_shape)
            synops = pool_ops = 0
            if isinstance(layer, nn.Linear):
                synops = n_out * layer.in_features
            elif isinstance(layer, nn.modules.conv._ConvNd):
                synops = n_out * layer.in_channels // layer.groups * math.prod(layer.kernel_size)
            elif isinstance(layer, RLIF):
                synops = n_out * layer.size  # the recurrent weights
            elif isinstance(layer, (SumPool2d, nn.AvgPool2d)):
                pool_ops = n_out * math.prod(_pair(layer.kernel_size))
            rows.append(
                {
                    "index": i,
                    "layer": type(layer).__name__,
                    "output_shape": out_shape,
                    "parameters": _layer_params(layer),
                    "neurons": n_out if isinstance(layer, NeuronModule) else 0,
                    "synops": synops,
                    "pool_ops": pool_ops,
                }
            )
            shape = out_shape
    totals = {k: sum(r[k] for r in rows) for k in ("parameters", "neurons", "synops", "pool_ops")}
    return {
        "name": spec.name,
        "input_shape": tuple(spec.input_shape),
        "n_classes": int(spec.n_classes),
        **totals,
        "layers": rows,
    }


def describe_models(input_shape: Sequence[int], n_classes: int, **spec_fields) -> list[dict]:
    """One row per zoo model for frames ``input_shape`` and ``n_classes`` classes.

    Each row has ``name``, ``layout``, ``source``, ``channels``, ``hidden``, ``parameters``,
    ``neurons``, ``synops``, ``pool_ops`` (see :func:`model_summary`) and ``error`` (``None``,
    or why the model cannot be built, e.g. frames too small; the counts are then ``None``).
    ``spec_fields`` (``neuron``, ``bias``, ``batch_norm``, ...) apply to every model.

    >>> rows = describe_models((2, 34, 34), 10)
    >>> [(r["name"], r["parameters"]) for r in rows][:2]
    [('mlp', 594698), ('conv', 18214)]
    """
    rows = []
    for name, entry in ZOO.items():
        row = {"name": name, "layout": entry.layout, "source": entry.source}
        spec = ModelSpec(name, tuple(input_shape), int(n_classes), **spec_fields)
        row.update(channels=spec.channels if entry.n_channels else None, hidden=spec.hidden)
        try:
            s = model_summary(spec)
        except ValueError as err:
            row.update(dict.fromkeys(("parameters", "neurons", "synops", "pool_ops")))
            row["error"] = str(err)
        else:
            row.update({k: s[k] for k in ("parameters", "neurons", "synops", "pool_ops")})
            row["error"] = None
        rows.append(row)
    return rows


def models_table(input_shape: Sequence[int], n_classes: int, **spec_fields) -> str:
    """:func:`describe_models` as a printable table (``spikelfp info --models``).

    >>> print(models_table((2, 34, 34), 10).splitlines()[2])
    mlp                   594,698       266       594,432  -            Flatten → Linear(hidden) → N → Linear(classes) → N
    """  # noqa: E501
    rows = describe_models(input_shape, n_classes, **spec_fields)
    shape = "x".join(str(int(v)) for v in input_shape)
    lines = [
        f"zoo models for frames {shape} and {n_classes} classes "
        "(per sample; synops: dense synaptic operations per time step)",
        f"{'model':<16} {'parameters':>12} {'neurons':>9} {'synops':>13}  {'channels':<12} layout",
    ]
    for r in rows:
        ch = "-" if r["channels"] is None else ",".join(str(c) for c in r["channels"])
        if r["error"] is not None:
            lines.append(f"{r['name']:<16} {'-':>12} {'-':>9} {'-':>13}  {ch:<12} {r['error']}")
            continue
        lines.append(
            f"{r['name']:<16} {r['parameters']:>12,} {r['neurons']:>9,} {r['synops']:>13,}  "
            f"{ch:<12} {r['layout']}"
        )
    return "\n".join(lines)
