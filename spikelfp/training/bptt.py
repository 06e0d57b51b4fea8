r"""The baseline: backpropagation through time with a surrogate gradient.

spikelfp's neurons spike with a Heaviside whose derivative is exactly zero, so ordinary
``loss.backward()`` through them gives no gradient. Inside ``with surrogate(model):`` every
spiking layer's forward is replaced (on the instance, exactly like an LFP composite does, and
undone on exit) by a functional re-implementation of the same neuron equations whose spike is
:math:`H(v)` in the forward pass and has the *fast-sigmoid* derivative

.. math:: \frac{\partial S}{\partial v} = \frac{1}{(k |v| + 1)^2}

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
from collections.abc import Iterator

import torch
from torch import nn

from ..neurons import ALIF, LI, LIF, RLIF, CubaLIF
from ..neurons.alif import ALIFState
from ..neurons.base import NeuronModule, check_time_first
from ..neurons.cuba import CubaLIFState
from ..neurons.lif import LIFState
from ..neurons.rlif import RLIFState

__all__ = [
    "surrogate",
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


def _reset(v_pre, s, theta, reset):
    s = s.detach()
    if reset == "zero":
        return v_pre * (1 - s)
    if reset == "subtract":
        return v_pre - theta * s
    return v_pre


def _lif_update(z, v, beta, theta, reset, reset_delay, slope):
    v_pre = beta * v + z
    if reset_delay:
        r = (v > theta).to(v.dtype)
        v_new = _reset(v_pre, r, theta, reset)
        return fast_sigmoid_spike(v_new - theta, slope), v_new
    s = fast_sigmoid_spike(v_pre - theta, slope)
    return s, _reset(v_pre, s, theta, reset)


def _lif_forward(module: LIF, slope: float):
    def forward(x: torch.Tensor, state: LIFState | None = None):
        check_time_first(x, type(module).__name__)
        v = module.initial_state(x).v if state is None else state.v
        out = []
        for z in x.unbind(0):
            s, v = _lif_update(
                z, v, module.beta, module.threshold, module.reset, module.reset_delay, slope
            )
            out.append(s)
        return torch.stack(out), LIFState(v)

    return forward


def _cuba_forward(module: CubaLIF, slope: float):
    def forward(x: torch.Tensor, state: CubaLIFState | None = None):
        check_time_first(x, type(module).__name__)
        st = module.initial_state(x) if state is None else state
        i, v = st.i, st.v
        out = []
        for z in x.unbind(0):
            i = module.alpha * i + z
            s, v = _lif_update(
                i, v, module.beta, module.threshold, module.reset, module.reset_delay, slope
            )
            out.append(s)
        return torch.stack(out), CubaLIFState(i, v)

    return forward


def _alif_forward(module: ALIF, slope: float):
    def forward(x: torch.Tensor, state: ALIFState | None = None):
        check_time_first(x, type(module).__name__)
        st = module.initial_state(x) if state is None else state
        v, a = st.v, st.a
        p = module.parameters_tuple
        out = []
        for z in x.unbind(0):
            theta = p.threshold + p.kappa * a
            v_pre = p.beta * v + z
            s = fast_sigmoid_spike(v_pre - theta, slope)
            v = _reset(v_pre, s, theta, p.reset)
            a = p.rho * a + (1 - p.rho) * s
            out.append(s)
        return torch.stack(out), ALIFState(v, a)

    return forward


def _rlif_forward(module: RLIF, slope: float):
    def forward(x: torch.Tensor, state: RLIFState | None = None):
        check_time_first(x, "RLIF", min_dim=3)
        st = module.initial_state(x) if state is None else state
        v, s = st.v, st.s
        w = module.recurrent_weight
        out = []
        for z in x.unbind(0):
            s, v = _lif_update(
                z + s @ w.t(),
                v,
                module.beta,
                module.threshold,
                module.reset,
                module.reset_delay,
                slope,
            )
            out.append(s)
        return torch.stack(out), RLIFState(v, s)

    return forward


def _forward_for(module: nn.Module, slope: float):
    # most specific type first (IF is a LIF; LI has no spike and keeps its own forward)
    if isinstance(module, LI):
        return None
    if isinstance(module, RLIF):
        return _rlif_forward(module, slope)
    if isinstance(module, CubaLIF):
        return _cuba_forward(module, slope)
    if isinstance(module, ALIF):
        return _alif_forward(module, slope)
    if isinstance(module, LIF):
        return _lif_forward(module, slope)
    if isinstance(module, NeuronModule):
        raise TypeError(
            f"no surrogate-gradient forward for {type(module).__name__}; "
            "BPTT supports LIF, IF, CubaLIF, ALIF, RLIF and LI"
        )
    return None


@contextlib.contextmanager
def surrogate(model: nn.Module, slope: float = 25.0) -> Iterator[nn.Module]:
    """Run ``model``'s spiking layers with a fast-sigmoid surrogate gradient in this block."""
    patched = []
    try:
        for module in model.modules():
            fwd = _forward_for(module, slope)
            if fwd is None:
                continue
            had = "forward" in module.__dict__
            patched.append((module, had, module.__dict__.get("forward")))
            module.__dict__["forward"] = fwd
        yield model
    finally:
        for module, had, old in reversed(patched):
            if had:
                module.__dict__["forward"] = old
            else:
                module.__dict__.pop("forward", None)


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
