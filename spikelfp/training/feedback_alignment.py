r"""Direct feedback alignment (DFA) and direct random target projection (DRTP) for spiking
networks whose spikes stay hard thresholds.

Both rules train a :class:`spikelfp.Sequential` of *blocks* ``[stateless layers] → synapse
(Linear/Conv) → [BatchNorm] → LIF/IF`` (every zoo model is such a chain) without propagating
anything backwards through the network: every block gets its teaching signal straight from the
output through a fixed random matrix. The forward pass is the model's own (Heaviside spikes,
:math:`H'(v) = 0`); no spike is ever differentiated.

Notation, for block :math:`k` with synaptic input :math:`x_k[t]` (the previous block's spikes
after pooling/flattening), synaptic current :math:`z_k[t] = W_k x_k[t] (+ b_k)`, the membrane
:math:`V_k[t]` that the spike is read from (:math:`S_k[t] = H(V_k[t] - \theta)`), output block
:math:`L` with :math:`C` neurons (one per class), target rates :math:`r^*_c = 0.8` for the
labelled class and :math:`0.2` for the others (as the BPTT baseline's ``mse`` loss):

.. math::

    e &= \tfrac{1}{T} \textstyle\sum_t S_L[t] - r^*
      \qquad \text{(output rate error, } B \times C) \\
    \psi_k[t] &= \bigl(\kappa\, |V_k[t] - \theta| + 1\bigr)^{-2}
      \qquad \text{(pseudo-derivative, a surrogate for } H'\text{; } \kappa =
      \texttt{slope}) \\
    \delta_L[t] &= e \odot \psi_L[t] \\
    \delta_k[t] &= (G_k\, e) \odot \psi_k[t] \quad \text{(DFA)}, \qquad
    \delta_k[t] = -(G_k\, y^*) \odot \psi_k[t] \quad \text{(DRTP)} \\
    \nabla W_k &= \tfrac{1}{B} \textstyle\sum_{b} \sum_t \delta_k[t]\, x_k[t]^\top

where :math:`G_k` is the block's fixed random feedback matrix (``(neurons_k, C)``, drawn once
from :math:`\mathcal N(0, 1/C)` with its own generator seeded by ``seed``, so the global RNG
is untouched) and :math:`y^*` the one-hot label. DRTP (Frenkel, Lefebvre & Bol, Front.
Neurosci. 2021) replaces the error by the target: on the labelled class the error of a
one-hot target is known to be negative, so :math:`-y^*` stands in for its sign, and the hidden
layers can be updated before (or without) the output error. DFA is Nøkland (NeurIPS 2016).
For convolutions :math:`W_k x` is the convolution and :math:`\nabla W_k` its weight gradient
for the output gradient :math:`\delta_k`; a BatchNorm between synapse and neuron is
differentiated as part of the block (local to it). The "gradient" is written to ``.grad`` so
any torch optimiser applies it.

**Where a surrogate is used:** only :math:`\psi_k` — the published rules multiply by the
derivative :math:`f'` of the hidden non-linearity, which for a spike is zero almost
everywhere; DFA/DRTP on spiking networks (eRBP, Neftci et al. 2017; SPOON, Frenkel et al. 2020)
use a pseudo-derivative of the membrane there, as here (the fast sigmoid of
:func:`spikelfp.training.fast_sigmoid_spike`). The forward pass never uses it.

**Memory in T:** the step keeps each block's input and membrane for all :math:`T` steps
(:math:`O(T)`, like a forward pass that is kept, but no autograd graph through time) because
the error :math:`e` is known only after the last step.

>>> import torch
>>> from spikelfp.training import ModelSpec, build_model
>>> net = build_model(ModelSpec("mlp", (1, 4, 4), 3, hidden=8))
>>> rule = DFA(net, (1, 4, 4), 3, seed=0)
>>> [tuple(g.shape) for g in rule.feedback]
[(8, 3)]
>>> res = rule.step(net, torch.rand(5, 2, 1, 4, 4), torch.tensor([0, 2]))
>>> tuple(res.output.shape), net[1].weight.grad is not None
((5, 2, 3), True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..neurons import IF, LIF
from ..neurons.base import NeuronModule
from ..neurons.lif import lif_update
from ..sequential import apply_over_time

__all__ = [
    "DFA",
    "DRTP",
    "LocalStepResult",
    "UnsupportedLayerError",
    "pseudo_derivative",
    "rate_error",
    "spike_membrane",
]

#: the layers that carry the learned weights of a block
SYNAPSES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORM = nn.modules.batchnorm._BatchNorm


class UnsupportedLayerError(ValueError):
    """The model has a layer the local rule cannot train; the message names it."""


@dataclass(frozen=True)
class LocalStepResult:
    """What one step of a local rule produced (detached).

    Attributes:
        output: the output spikes ``(T, B, C)`` of the forward pass.
        error: the output error the rule broadcast: ``(B, C)`` for DFA/DRTP (the rate error
            :math:`e`), ``(T, B, C)`` for e-prop (the per-step error :math:`e[t]`).
    """

    output: torch.Tensor
    error: torch.Tensor


@dataclass(frozen=True)
class Block:
    """Indices into a :class:`spikelfp.Sequential` of one block: stateless layers before the
    synapse (``pre``), the synapse, layers between it and the neuron (``post``, batch norm),
    and the spiking neuron."""

    pre: tuple[int, ...]
    synapse: int
    post: tuple[int, ...]
    neuron: int


def pseudo_derivative(v: torch.Tensor, threshold, slope: float) -> torch.Tensor:
    """The fast-sigmoid pseudo-derivative :math:`(\\kappa|V-\\theta|+1)^{-2}` of a spike
    :math:`H(V-\\theta)` (a surrogate: the true derivative is zero almost everywhere).

    Args:
        v: membranes the spikes are read from.
        threshold: :math:`\\theta` (a number or a tensor broadcasting against ``v``).
        slope: :math:`\\kappa` (> 0).

    Returns:
        A tensor shaped like ``v``, 1 at the threshold and falling off on both sides.

    >>> pseudo_derivative(torch.tensor([1.0, 1.1, 0.8]), 1.0, 10.0)
    tensor([1.0000, 0.2500, 0.1111])
    """
    return 1.0 / (slope * (v - threshold).abs() + 1.0) ** 2


def spike_membrane(z: torch.Tensor, spikes: torch.Tensor, neuron: LIF) -> torch.Tensor:
    r"""The membrane :math:`V[t]` each spike of a LIF/IF layer was read from
    (:math:`S[t] = H(V[t] - \theta)`), recomputed from its input ``z`` and its own spikes.

    Immediate reset: :math:`V_t = \beta U_{t-1} + Z_t` (before the reset); delayed reset: the
    membrane after the reset, :math:`U_t`. The resets use the layer's spikes, so the result is
    consistent with them exactly.

    Args:
        z: the layer's input ``(T, B, ...)``.
        spikes: its output for ``z`` from a zero state.
        neuron: the :class:`spikelfp.LIF` (or IF) layer.

    Returns:
        ``(T, B, ...)`` membranes.

    >>> from spikelfp import LIF
    >>> lif = LIF(beta=0.5, threshold=1.0)
    >>> z = torch.tensor([[0.6], [0.9], [0.3]])
    >>> spike_membrane(z, lif(z)[0], lif).flatten().tolist()
    [0.6000000238418579, 1.2000000476837158, 0.30000001192092896]
    """
    steps = iter(spikes.unbind(0))

    def recorded(v, threshold, out=None):  # the layer's own spikes S_t, not recomputed
        return next(steps)

    # the LIF kernel of spikelfp.neurons (the one place the recursion is written)
    p = neuron.parameters_tuple
    u = torch.zeros_like(z[0])
    out = []
    for z_t in z.unbind(0):
        _, u, v_pre = lif_update(z_t, u, p, recorded)
        out.append(u if neuron.reset_delay else v_pre)
    return torch.stack(out)


def rate_error(
    output: torch.Tensor,
    labels: torch.Tensor,
    correct_rate: float = 0.8,
    incorrect_rate: float = 0.2,
) -> torch.Tensor:
    """Output rate error :math:`e = \\frac1T\\sum_t S_L[t] - r^*` ``(B, C)`` (the gradient of
    half the squared rate error, the BPTT baseline's ``mse`` loss up to a factor).

    >>> s = torch.zeros(10, 1, 2); s[:8, 0, 0] = 1
    >>> rate_error(s, torch.tensor([0]))
    tensor([[ 0.0000, -0.2000]])
    """
    return output.mean(0) - target_rates(output, labels, correct_rate, incorrect_rate)


def target_rates(output, labels, correct_rate: float = 0.8, incorrect_rate: float = 0.2):
    """:math:`r^*` ``(B, C)``: ``correct_rate`` on the labelled class, ``incorrect_rate`` else."""
    target = torch.full(output.shape[1:], incorrect_rate, dtype=output.dtype, device=output.device)
    target[torch.arange(len(labels), device=labels.device), labels] = correct_rate
    return target


def _name(i: int, layer: nn.Module) -> str:
    return f"layer {i} ({type(layer).__name__})"


def parse_blocks(model: nn.Module, method: str, batch_norm: bool = True) -> list[Block]:
    """Split ``model`` (a :class:`spikelfp.Sequential`) into :class:`Block` s; raises
    :class:`UnsupportedLayerError` (one line: which layer, why, what to do) for a layer the
    rule cannot train."""
    if not isinstance(model, nn.Sequential):
        raise UnsupportedLayerError(
            f"{method} trains a spikelfp.Sequential of layers, got {type(model).__name__}; "
            "build the network as spikelfp.Sequential(...)"
        )
    layers = list(model)
    blocks, pending, synapse, post = [], [], None, []
    for i, layer in enumerate(layers):
        if isinstance(layer, NeuronModule):
            if type(layer) not in _NEURONS:
                raise UnsupportedLayerError(
                    f"{method} cannot train {_name(i, layer)}: it supports LIF and IF neurons "
                    "only; use --method bptt or lfp for this model"
                )
            if any(p.requires_grad for p in layer.parameters()):
                raise UnsupportedLayerError(
                    f"{method} cannot train {_name(i, layer)}'s learnable beta/threshold; "
                    "build the neurons without learn_beta/learn_threshold"
                )
            if synapse is None:
                raise UnsupportedLayerError(
                    f"{method} cannot train {_name(i, layer)}: a neuron layer must follow a "
                    "Linear or Conv layer"
                )
            blocks.append(Block(tuple(pending), synapse, tuple(post), i))
            pending, synapse, post = [], None, []
        elif isinstance(layer, SYNAPSES):
            if synapse is not None:
                raise UnsupportedLayerError(
                    f"{method} cannot train {_name(i, layer)}: two synapses without a neuron "
                    "layer between them"
                )
            synapse = i
        elif synapse is not None:
            if not (isinstance(layer, _BATCHNORM) and batch_norm):
                what = "batch norm" if isinstance(layer, _BATCHNORM) else "this layer"
                raise UnsupportedLayerError(
                    f"{method} cannot train {_name(i, layer)} between a synapse and its "
                    f"neurons ({what} is not supported there); "
                    + (
                        "build the model without --batch-norm"
                        if what == "batch norm"
                        else "move it before the synapse"
                    )
                )
            post.append(i)
        else:
            if any(True for _ in layer.parameters()):
                raise UnsupportedLayerError(
                    f"{method} cannot train {_name(i, layer)}: only Linear/Conv (and batch "
                    "norm after them) may hold parameters"
                )
            pending.append(i)
    if synapse is not None or pending or not blocks:
        raise UnsupportedLayerError(
            f"{method} needs a network that ends with a spiking (LIF/IF) output layer"
        )
    return blocks


#: the neuron types the local rules run (IF is LIF with beta = 1), by exact type
_NEURONS = frozenset({LIF, IF})


@torch.no_grad()
def neuron_shapes(model: nn.Module, blocks: Sequence[Block], input_shape) -> list[tuple]:
    """Per-sample output shape of every block's neuron layer (one dry pass in eval mode; the
    modules' train/eval flags and batch-norm statistics are left as they were)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        layers = list(model)
        h = torch.zeros(1, 2, *input_shape, device=_device(model))
        shapes = []
        for i, layer in enumerate(layers):
            h = layer(h)[0] if isinstance(layer, NeuronModule) else apply_over_time(layer, h)
            if any(b.neuron == i for b in blocks):
                shapes.append(tuple(h.shape[2:]))
    finally:
        for m, mode in modes:
            m.train(mode)
    return shapes


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def trained_parameters(model: nn.Module, blocks: Sequence[Block]) -> list[nn.Parameter]:
    layers = list(model)
    return [
        p
        for b in blocks
        for i in (b.synapse, *b.post)
        for p in layers[i].parameters()
        if p.requires_grad
    ]


class _FeedbackRule(nn.Module):
    """Shared parts: the blocks, the fixed feedback matrices (buffers ``feedback_k``, one per
    hidden block; they are the rule's ``state_dict``) and the pseudo-derivative."""

    method = "local"
    batch_norm = True

    def __init__(
        self,
        model: nn.Module,
        input_shape: Sequence[int],
        n_classes: int,
        seed: int = 0,
        slope: float = 25.0,
        correct_rate: float = 0.8,
        incorrect_rate: float = 0.2,
    ):
        super().__init__()
        if not slope > 0:
            raise ValueError(f"slope must be > 0, got {slope!r}")
        self.blocks = parse_blocks(model, self.method, self.batch_norm)
        self.shapes = neuron_shapes(model, self.blocks, tuple(input_shape))
        if self.shapes[-1] != (int(n_classes),):
            raise UnsupportedLayerError(
                f"{self.method} needs an output layer of {n_classes} neurons (one per class), "
                f"the model's last neuron layer has shape {self.shapes[-1]}"
            )
        self.n_classes, self.seed, self.slope = int(n_classes), int(seed), float(slope)
        self.correct_rate, self.incorrect_rate = float(correct_rate), float(incorrect_rate)
        g = torch.Generator().manual_seed(int(seed))
        for k, shape in enumerate(self.shapes[:-1]):
            m = torch.randn(math.prod(shape), self.n_classes, generator=g)
            self.register_buffer(
                f"feedback_{k}", (m / math.sqrt(self.n_classes)).to(_device(model))
            )

    @property
    def feedback(self) -> list[torch.Tensor]:
        """The fixed random matrices :math:`G_k` ``(neurons_k, C)``, input side first."""
        return [getattr(self, f"feedback_{k}") for k in range(len(self.blocks) - 1)]

    def _project(self, k: int, signal: torch.Tensor) -> torch.Tensor:
        """``signal (..., C)`` through block ``k``'s feedback, shaped like its neurons."""
        if k == len(self.blocks) - 1:
            return signal
        out = signal @ self.feedback[k].t()
        return out.reshape(*signal.shape[:-1], *self.shapes[k])

    def _clear_grads(self, model: nn.Module) -> list[nn.Parameter]:
        params = trained_parameters(model, self.blocks)
        for p in params:
            p.grad = None
        return params

    def extra_repr(self) -> str:
        return f"blocks={len(self.blocks)}, seed={self.seed}, slope={self.slope}"


class DFA(_FeedbackRule):
    """Direct feedback alignment on a spiking network (equations: module docstring).

    Args:
        model: a :class:`spikelfp.Sequential` of blocks (every zoo model).
        input_shape: one frame's shape, e.g. ``(P, H, W)``.
        n_classes: output neurons.
        seed: seeds the random feedback matrices (their own generator).
        slope: :math:`\\kappa` of the pseudo-derivative.
        correct_rate, incorrect_rate: the target rates :math:`r^*`.

    Raises:
        UnsupportedLayerError: a layer the rule cannot train (one-line message).

    The matrices are buffers: ``rule.state_dict()`` saves them, ``load_state_dict`` restores
    them (the trainer keeps them in its checkpoint).
    """

    method = "dfa"

    def hidden_signal(self, error: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """What the hidden layers receive through :math:`G_k`: the error :math:`e`."""
        return error

    def step(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> LocalStepResult:
        """One forward pass (hard spikes) and the rule's update written to ``.grad``
        (replacing it) of every Linear/Conv/BatchNorm parameter; returns
        :class:`LocalStepResult` ``(output (T, B, C), error (B, C))``. Call the optimiser's
        ``step()`` afterwards.

        Args:
            model: the network the rule was built for.
            x: input ``(T, B, ...)``.
            labels: class indices ``(B,)``.
        """
        self._clear_grads(model)
        layers = list(model)
        h = x
        currents, membranes = [], []
        for blk in self.blocks:
            with torch.no_grad():
                for i in blk.pre:
                    h = apply_over_time(layers[i], h)
            with torch.enable_grad():
                z = h.detach()
                for i in (blk.synapse, *blk.post):
                    z = apply_over_time(layers[i], z)
            neuron = layers[blk.neuron]
            with torch.no_grad():
                h, _ = neuron(z.detach())
                membranes.append(spike_membrane(z.detach(), h, neuron))
            currents.append(z)
        out = h.detach()
        error = rate_error(out, labels, self.correct_rate, self.incorrect_rate)
        hidden = self.hidden_signal(error, labels)
        deltas = []
        last = len(self.blocks) - 1
        for k, (blk, v) in enumerate(zip(self.blocks, membranes, strict=True)):
            signal = self._project(k, error if k == last else hidden)
            psi = pseudo_derivative(v, layers[blk.neuron].threshold, self.slope)
            deltas.append(psi * signal.unsqueeze(0) / len(labels))
        torch.autograd.backward(currents, deltas)
        return LocalStepResult(out, error.detach())


class DRTP(DFA):
    """Direct random target projection: DFA with the hidden layers' signal :math:`-y^*` (the
    one-hot target, sign-flipped) instead of the error; the output layer still learns from
    :math:`e` (arguments as :class:`DFA`)."""

    method = "drtp"

    def hidden_signal(self, error: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """:math:`-y^*`: minus the one-hot labels ``(B, C)``."""
        return -nn.functional.one_hot(labels, self.n_classes).to(error.dtype)
