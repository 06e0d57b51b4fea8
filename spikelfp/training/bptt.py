r"""The baseline: backpropagation through time with a surrogate gradient.

spikelfp's neurons spike with a Heaviside whose derivative is exactly zero, so ordinary
``loss.backward()`` through them gives no gradient. Inside ``with surrogate(model):`` every
spiking layer's forward is replaced (on the instance, by a :class:`~spikelfp.lfp.Composite`
mapping the neurons to :class:`SurrogateRule`, undone on exit) by the layer's own kernel
(:meth:`~spikelfp.neurons.base.NeuronModule.sequence`, the same code as its forward and its
LFP rule's forward) with the spike function
:class:`FastSigmoid`, whose spike is :math:`H(v - \theta)` in the forward pass (the same
bits as the module's) and has the *fast-sigmoid* derivative

.. math:: \frac{\partial S}{\partial v} = \frac{1}{(k |v - \theta| + 1)^2}

in the backward pass (``k`` = ``slope``, 25 by default as in SuperSpike/snntorch). The reset
term is detached (as snntorch does by default). Parameters and ``state_dict`` are untouched:
the same model trains with LFP or BPTT and checkpoints are interchangeable.

>>> from spikelfp import LIF, Sequential
>>> net = Sequential(nn.Linear(4, 3), LIF(beta=0.9, threshold=0.5))
>>> x = torch.rand(6, 2, 4)
>>> with surrogate(net):
...     out, _ = net(x)
>>> out.sum().backward()
>>> bool(net[0].weight.grad.abs().sum() > 0)
True
>>> "forward" in vars(net[1])
False
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from ..lfp.composites import NATIVE, Composite
from ..lfp.rules import positive
from ..neurons import LI
from ..neurons.base import NeuronModule

__all__ = [
    "surrogate",
    "surrogate_composite",
    "SurrogateRule",
    "FastSigmoid",
    "fast_sigmoid_spike",
    "spike_count_ce_loss",
    "spike_count_mse_loss",
    "BPTT_LOSSES",
]


class _FastSigmoidSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v: torch.Tensor, slope: float) -> torch.Tensor:
        ctx.save_for_backward(v)
        ctx.slope = slope
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (v,) = ctx.saved_tensors
        return grad / (ctx.slope * v.abs() + 1.0) ** 2, None


def fast_sigmoid_spike(v: torch.Tensor, slope: float = 25.0) -> torch.Tensor:
    """``H(v) = 1[v > 0]`` with the fast-sigmoid surrogate derivative ``1/(slope|v|+1)^2``.

    >>> v = torch.tensor([-0.1, 0.0, 0.2], requires_grad=True)
    >>> fast_sigmoid_spike(v, slope=10.0).sum().backward()
    >>> v.grad
    tensor([0.2500, 1.0000, 0.1111])
    """
    return _FastSigmoidSpike.apply(v, float(slope))


@dataclass(frozen=True)
class FastSigmoid:
    r"""The BPTT baseline's spike function for the neuron kernels (their ``spike_fn`` hook).

    :math:`S = H(v - \theta)` forwards, the fast-sigmoid surrogate derivative
    :math:`1/(k|v - \theta| + 1)^2` backwards (:func:`fast_sigmoid_spike`).

    Args:
        slope: :math:`k` (> 0; 25 as in SuperSpike/snntorch).

    >>> from spikelfp.neurons import LIFParameters, lif_update
    >>> p = LIFParameters(torch.tensor(0.9), torch.tensor(1.0))
    >>> z = torch.tensor([0.5, 1.5], requires_grad=True)
    >>> s, v, _ = lif_update(z, torch.zeros(2), p, FastSigmoid(slope=1.0))
    >>> s.sum().backward(); s.tolist(), z.grad   # 1/(|0.5 - 1| + 1)^2 = 0.444
    ([0.0, 1.0], tensor([0.4444, 0.4444]))
    """

    slope: float = 25.0

    def __post_init__(self):
        if not float(self.slope) > 0:
            raise ValueError(f"the surrogate slope must be positive, got {self.slope}")

    def __call__(self, v: torch.Tensor, threshold: torch.Tensor, out=None) -> torch.Tensor:
        return fast_sigmoid_spike(v - threshold, self.slope)


@dataclass(frozen=True)
class SurrogateRule:
    r"""The BPTT baseline's rule (:class:`~spikelfp.lfp.Rule`): the neuron's own kernel
    sequence (:meth:`~spikelfp.neurons.base.NeuronModule.sequence`) with the spike function
    :class:`FastSigmoid` (``slope``), so its forward is the module's forward bit for bit and
    its backward is the surrogate gradient.

    Args:
        slope: the fast sigmoid's :math:`k` (> 0).

    >>> from spikelfp import LIF
    >>> rule = SurrogateRule(slope=5.0)
    >>> rule, rule == SurrogateRule(5), rule.check(LIF()) is None
    (SurrogateRule(slope=5.0), True, True)
    """

    slope: float = 25.0

    def __post_init__(self):
        positive(self, "slope", "25.0")

    def check(self, module: nn.Module) -> str | None:
        """Why ``module`` has no surrogate forward (a neuron without its own kernel sequence)."""
        if type(module).sequence is NeuronModule.sequence:
            return (
                f"no surrogate-gradient forward for {type(module).__name__} (it has no kernel "
                "sequence); BPTT supports LIF, IF, CubaLIF, ALIF, RLIF and LI"
            )
        return None

    def forward(self, module: NeuronModule, x: torch.Tensor, state=None):
        return module.sequence(x, state, spike_fn=FastSigmoid(self.slope))


def surrogate_composite(slope: float = 25.0) -> Composite:
    """The BPTT baseline as a :class:`~spikelfp.lfp.Composite`: every spiking neuron gets
    :class:`SurrogateRule` (``slope``); the :class:`~spikelfp.neurons.LI` readout (no spike)
    and every other module keep their own forward (``NATIVE``; their gradient is already
    the true one).

    Args:
        slope: the fast sigmoid's :math:`k` (> 0).

    Returns:
        The composite; ``with surrogate_composite(k).context(model):`` is
        ``with surrogate(model, k):``.

    >>> surrogate_composite(5.0).rule_for(LI()), surrogate_composite(5.0).rules[NeuronModule]
    (NATIVE, SurrogateRule(slope=5.0))
    """
    return Composite({nn.Module: NATIVE, NeuronModule: SurrogateRule(slope), LI: NATIVE})


def surrogate(model: nn.Module, slope: float = 25.0) -> contextlib.AbstractContextManager:
    """Run ``model``'s spiking layers with a fast-sigmoid surrogate gradient in this block:
    the context of ``spikelfp.training.bptt.surrogate_composite(slope)``, a
    :class:`~spikelfp.lfp.Composite` that gives every spiking neuron ``SurrogateRule(slope)``
    (its own kernel sequence with the fast-sigmoid spike) and leaves every other module native.

    Args:
        model: the network; its parameters, buffers and forwards are as before on exit.
        slope: the fast sigmoid's :math:`k` (> 0).

    Returns:
        A context manager yielding ``model``.

    Raises:
        spikelfp.lfp.UnsupportedModuleError: (a ``TypeError``) for a neuron type without a
            kernel sequence.
    """
    return surrogate_composite(slope).context(model)


def spike_count_ce_loss(spikes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the output spike counts ``(T, B, C) -> (B, C)`` used as logits.

    >>> s = torch.zeros(4, 2, 3); s[:, 0, 1] = 1
    >>> round(spike_count_ce_loss(s, torch.tensor([1, 0])).item(), 4)
    0.5673
    """
    return nn.functional.cross_entropy(spikes.sum(0), labels)


def spike_count_mse_loss(
    spikes: torch.Tensor,
    labels: torch.Tensor,
    correct_rate: float = 0.8,
    incorrect_rate: float = 0.2,
) -> torch.Tensor:
    """Mean squared error between the spike counts and target counts: ``correct_rate · T``
    for the labelled class, ``incorrect_rate · T`` for the others (keeps every output neuron
    active, so the surrogate gradient does not vanish; snntorch's ``mse_count_loss``).

    >>> s = torch.zeros(10, 1, 2); s[:8, 0, 0] = 1; s[:2, 0, 1] = 1
    >>> spike_count_mse_loss(s, torch.tensor([0])).item()
    0.0
    """
    t = spikes.shape[0]
    counts = spikes.sum(0)
    target = torch.full_like(counts, incorrect_rate * t)
    target[torch.arange(len(labels)), labels] = correct_rate * t
    return nn.functional.mse_loss(counts, target)


#: The losses of the BPTT baseline, by their config name.
BPTT_LOSSES = {"mse": spike_count_mse_loss, "ce": spike_count_ce_loss}
