r"""e-prop: an online eligibility-trace rule for spiking networks with hard-threshold spikes.

This is e-prop for LIF neurons (Bellec et al., Nat. Commun. 2020) with *random broadcast*
feedback ("random e-prop"), extended to the zoo's feed-forward stacks the way DFA extends
feedback alignment: every block :math:`k` (``[stateless layers] → Linear/Conv → LIF/IF``; see
:mod:`spikelfp.training.feedback_alignment`) receives the output error through its own fixed
random matrix :math:`G_k`. Per step :math:`t`, with the block's synaptic input
:math:`x_k[t]`, decay :math:`\beta_k` (1 for IF), the membrane :math:`V_k[t]` the spike is read
from, and target rates :math:`r^*` (0.8 for the labelled class, 0.2 otherwise):

.. math::

    \bar x_k[t] &= \beta_k\, \bar x_k[t-1] + x_k[t], \qquad
      \bar c_k[t] = \beta_k\, \bar c_k[t-1] + 1 \qquad (\bar x_k[0] = \bar c_k[0] = 0) \\
    \psi_k[t] &= \bigl(\kappa\, |V_k[t] - \theta| + 1\bigr)^{-2}
      \qquad \text{(pseudo-derivative: the surrogate)} \\
    e[t] &= \hat r[t] - r^*, \quad \hat r[t] = \tfrac1t \textstyle\sum_{s<t} S_L[s]
      \qquad \text{(per-step output error, causal; } \hat r[0] = 0) \\
    L_k[t] &= G_k\, e[t] \quad (k < L), \qquad L_L[t] = e[t] \qquad \text{(learning signals)} \\
    \nabla W_{k,ji} &= \tfrac1B \textstyle\sum_b \sum_t L_{k,j}[t]\, \psi_{k,j}[t]\,
      \bar x_{k,i}[t], \qquad
    \nabla b_{k,j} = \tfrac1B \textstyle\sum_b \sum_t L_{k,j}[t]\, \psi_{k,j}[t]\, \bar c_k[t]

:math:`\hat r[t]` is the output rate *before* step :math:`t`: Bellec's readout is a leaky
integrator, the zoo's output a spiking layer, and an error from the current spike
(:math:`S_L[t] - r^*`) is positively correlated with :math:`\psi_L[t]` (a neuron's membrane is
near the threshold exactly when it spikes), which silenced the output layer in our runs.
:math:`e_{ji}[t] = \psi_j[t]\, \bar x_i[t]` is the LIF eligibility trace: :math:`\bar x_i[t]`
is exactly :math:`\partial V_j[t] / \partial W_{ji}` of the membrane
:math:`V[t] = \beta U[t-1] + W x[t] + b` when the reset is left out of the derivative, which
e-prop does (Bellec et al. 2020, Methods, LIF neurons) — exact for ``reset="subtract"``
(:math:`U = V - \theta S` and :math:`H' = 0`), an approximation for ``reset="zero"``, whose
true derivative forgets the past at each spike (a per-synapse trace); the spike's own
derivative is replaced by the pseudo-derivative :math:`\psi` — **the only surrogate** (the
forward pass uses the model's hard threshold). For convolutions :math:`\sum_i W_{ji}\bar x_i`
is the convolution of :math:`\bar x` and :math:`\nabla W` its weight gradient (the trace is
filtered before the
synapse, which is linear). Because every factor is available at step :math:`t`, the update
can be accumulated online with memory independent of :math:`T` (the traces
:math:`\bar x_k`: one per input, not per synapse, as the decay is per layer); this
implementation evaluates the same sums for all steps at once (faster in Python, memory
:math:`O(T)` for the stored traces), and ``tests/test_methods_eprop.py`` checks it against the
step-by-step online form.

Not supported (a one-line :class:`~spikelfp.training.feedback_alignment.UnsupportedLayerError`
before training): batch norm between a synapse and its neurons (it is not a fixed linear map,
so the filtered trace would not be the membrane's derivative), per-neuron decays (the trace
would become one per synapse), neurons other than LIF/IF.

>>> import torch
>>> from spikelfp.training import ModelSpec, build_model
>>> net = build_model(ModelSpec("mlp", (1, 4, 4), 3, hidden=8))
>>> rule = EProp(net, (1, 4, 4), 3, seed=0)
>>> res = rule.step(net, torch.rand(5, 2, 1, 4, 4), torch.tensor([0, 2]))
>>> tuple(res.error.shape), net[3].bias.grad.shape
((5, 2, 3), torch.Size([3]))
"""

from __future__ import annotations

import torch
from torch import nn

from ..sequential import apply_over_time
from .feedback_alignment import (
    LocalStepResult,
    UnsupportedLayerError,
    _FeedbackRule,
    pseudo_derivative,
    spike_membrane,
    target_rates,
)

__all__ = ["EProp", "low_pass", "running_rate"]


def low_pass(x: torch.Tensor, beta) -> torch.Tensor:
    r""":math:`\bar x[t] = \beta\,\bar x[t-1] + x[t]` over the leading (time) axis,
    :math:`\bar x[0] = x[0]`.

    Args:
        x: ``(T, ...)``.
        beta: the decay (number or 0-d tensor).

    Returns:
        The filtered ``(T, ...)``.

    >>> low_pass(torch.ones(3, 1), 0.5).flatten().tolist()
    [1.0, 1.5, 1.75]
    """
    out = torch.empty_like(x)
    acc = torch.zeros_like(x[0])
    for t in range(x.shape[0]):
        acc = beta * acc + x[t]
        out[t] = acc
    return out


def running_rate(spikes: torch.Tensor) -> torch.Tensor:
    r"""The output rate so far, before the current step: :math:`\hat r[t] = \frac1t
    \sum_{s<t} S[s]` for :math:`t \ge 1` (time counted from 0), :math:`\hat r[0] = 0`.

    Causal (available online at step :math:`t`) and independent of the current spike.

    Args:
        spikes: ``(T, B, C)``.

    Returns:
        ``(T, B, C)``.

    >>> running_rate(torch.tensor([[1.0], [0.0], [1.0], [0.0]])).flatten().tolist()
    [0.0, 1.0, 0.5, 0.6666666865348816]
    """
    t = spikes.shape[0]
    steps = torch.arange(1, t, dtype=spikes.dtype, device=spikes.device)
    before = spikes[:-1].cumsum(0) / steps.view(t - 1, *(1,) * (spikes.dim() - 1))
    return torch.cat([torch.zeros_like(spikes[:1]), before])


class EProp(_FeedbackRule):
    """e-prop with LIF eligibility traces and random broadcast feedback (equations: module
    docstring). Arguments as :class:`~spikelfp.training.feedback_alignment.DFA`.

    Raises:
        UnsupportedLayerError: batch norm between a synapse and its neurons, per-neuron
            decays, or another layer the rule cannot train (one-line message).
    """

    method = "eprop"
    batch_norm = False

    def __init__(self, model: nn.Module, *args, **kwargs):
        super().__init__(model, *args, **kwargs)
        layers = list(model)
        for blk in self.blocks:
            beta = layers[blk.neuron].beta
            if beta.numel() != 1:
                raise UnsupportedLayerError(
                    f"eprop cannot train layer {blk.neuron} ({type(layers[blk.neuron]).__name__})"
                    " with per-neuron decays; give the layer one beta"
                )

    def step(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> LocalStepResult:
        """One forward pass (hard spikes) and the e-prop update written to ``.grad``
        (replacing it) of every Linear/Conv parameter; returns :class:`LocalStepResult`
        ``(output (T, B, C), error e[t] (T, B, C))``.

        Args:
            model: the network the rule was built for.
            x: input ``(T, B, ...)``.
            labels: class indices ``(B,)``.
        """
        self._clear_grads(model)
        layers = list(model)
        t_steps = x.shape[0]
        h = x
        traces, membranes = [], []
        with torch.no_grad():
            for blk in self.blocks:
                for i in blk.pre:
                    h = apply_over_time(layers[i], h)
                neuron = layers[blk.neuron]
                z = apply_over_time(layers[blk.synapse], h)
                s, _ = neuron(z)
                membranes.append(spike_membrane(z, s, neuron))
                traces.append(low_pass(h, neuron.beta.reshape(())))
                h = s
        out = h
        rate = running_rate(out)
        error = rate - target_rates(out, labels, self.correct_rate, self.incorrect_rate)
        currents, deltas = [], []
        for k, (blk, v, xbar) in enumerate(zip(self.blocks, membranes, traces, strict=True)):
            neuron, syn = layers[blk.neuron], layers[blk.synapse]
            psi = pseudo_derivative(v, neuron.threshold, self.slope)
            deltas.append(psi * self._project(k, error) / len(labels))
            with torch.enable_grad():
                z = apply_over_time(syn, xbar)
                if syn.bias is not None:  # W x̄ + b c̄: the bias's trace is c̄, not 1
                    ones = torch.ones(t_steps, dtype=x.dtype, device=x.device)
                    c = low_pass(ones, neuron.beta.reshape(()))
                    spatial = (1,) * (z.dim() - 3)
                    bias = syn.bias.view(1, 1, -1, *spatial)
                    z = z + bias * (c - 1).view(t_steps, 1, 1, *spatial)
            currents.append(z)
        torch.autograd.backward(currents, deltas)
        return LocalStepResult(out.detach(), error)
