r"""Modules for NIR graphs that :class:`spikelfp.Sequential` cannot express.

* :class:`RecurrentNeuron`: a neuron fed back through its own affine synapse (NIR's flat
  cycle ``neuron -> Affine -> neuron``, as snntorch and rockpool write recurrence) when it is
  not an :class:`~spikelfp.RLIF` (a CubaLIF, or a recurrent bias). Per step
  :math:`Z'_t = Z_t + W_{rec} S_{t-1} + b_{rec}`, then the neuron's own update.
* :class:`GraphNet`: a branching graph (skip / residual connections), run node by node in
  topological order; where several edges enter a node their outputs are summed, as NIR
  specifies.

Both are time-first (``(T, B, ...)``) and return ``(output, state)`` like every spikelfp
neuron; neither keeps state between calls.
"""

from __future__ import annotations

import torch
from torch import nn

from ..neurons.base import NeuronModule
from ..sequential import apply_over_time

__all__ = ["RecurrentNeuron", "GraphNet", "MultiSpike"]


class MultiSpike(NeuronModule):
    r"""An (L)IF or current-based LIF layer that emits several spikes per step, as sinabs's
    ``MultiSpike`` and rockpool's ``LIFTorch`` do, with a subtractive reset:

    .. math:: I_t = \alpha I_{t-1} + Z_t,\quad V_t = \beta U_{t-1} + I_t,\quad
        S_t = [V_t > 0]\,\mathrm{trunc}(V_t/\theta),\quad U_t = V_t - \theta S_t

    (without ``alpha``, :math:`I_t = Z_t`).

    Args:
        beta: membrane decay :math:`\beta` (1 for IF), a number or a per-neuron tensor.
        threshold: :math:`\theta`, a number or a per-neuron tensor.
        alpha: synaptic decay :math:`\alpha`, or ``None`` for no synaptic current.

    Returns ``(spike_counts, (current, membrane))`` when called on ``x`` ``(T, B, ...)``.

    >>> s, (_, v) = MultiSpike(1.0, 1.0)(torch.tensor([[[2.5]], [[0.25]]]))
    >>> s.flatten().tolist(), v.flatten().tolist()
    ([2.0, 0.0], [0.75])
    """

    def __init__(self, beta, threshold, alpha=None):
        super().__init__()
        self.register_buffer("beta", torch.as_tensor(beta).clone())
        self.register_buffer("threshold", torch.as_tensor(threshold).clone())
        self.register_buffer("alpha", None if alpha is None else torch.as_tensor(alpha).clone())

    def forward(self, x: torch.Tensor, state: tuple | None = None):
        i, v = (torch.zeros_like(x[0]), torch.zeros_like(x[0])) if state is None else state
        out = []
        for z in x.unbind(0):
            if self.alpha is not None:
                i = self.alpha * i + z
                z = i
            v = self.beta * v + z
            s = (v > 0) * torch.div(v, self.threshold, rounding_mode="trunc")
            v = v - s * self.threshold
            out.append(s)
        return torch.stack(out), (i, v)


class RecurrentNeuron(NeuronModule):
    r"""A spiking neuron layer with an all-to-all recurrent synapse (weight and bias).

    Per step, with the inner neuron's own dynamics :math:`f`:

    .. math:: Z'_t = Z_t + W_{rec}\, S_{t-1} + b_{rec},\qquad (S_t, s_t) = f(Z'_t, s_{t-1})

    Args:
        neuron: the inner neuron (e.g. :class:`~spikelfp.CubaLIF`, :class:`~spikelfp.LIF`).
        weight: recurrent weights ``(N, N)``; neuron ``i`` receives ``weight[i] @ S``.
        bias: recurrent bias ``(N,)`` or ``None``.

    Returns ``(spikes, (inner_state, last_spikes))`` when called on ``x`` ``(T, B, N)``.

    >>> from spikelfp import CubaLIF
    >>> layer = RecurrentNeuron(CubaLIF(alpha=0.5, beta=0.5), torch.eye(2), None)
    >>> s, _ = layer(torch.tensor([[[2.0, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]]]))
    >>> s[:, 0].tolist()   # the spike at t=0 feeds itself back
    [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]
    """

    def __init__(self, neuron: NeuronModule, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        weight = torch.as_tensor(weight)
        if weight.dim() != 2 or weight.shape[0] != weight.shape[1]:
            raise ValueError(
                f"RecurrentNeuron: the recurrent weight must be square (N, N), got "
                f"{tuple(weight.shape)}"
            )
        self.neuron = neuron
        self.size = int(weight.shape[0])
        self.recurrent_weight = nn.Parameter(weight.clone())
        if bias is None:
            self.recurrent_bias = None
        else:
            self.recurrent_bias = nn.Parameter(torch.as_tensor(bias).clone().reshape(self.size))

    def forward(self, x: torch.Tensor, state=None):
        if x.dim() != 3 or x.shape[-1] != self.size:
            raise ValueError(
                f"RecurrentNeuron({self.size}) expects input (T, B, {self.size}), got "
                f"{tuple(x.shape)}"
            )
        inner, s = (None, None) if state is None else state
        if s is None:
            s = torch.zeros_like(x[0])
        out = []
        for x_t in x.unbind(0):
            z = x_t + s @ self.recurrent_weight.t()
            if self.recurrent_bias is not None:
                z = z + self.recurrent_bias
            y, inner = self.neuron(z.unsqueeze(0), inner)
            s = y[0]
            out.append(s)
        return torch.stack(out), (inner, s)


class GraphNet(nn.Module):
    """A feed-forward graph of time-first modules (a NIR graph that branches or merges).

    Args:
        modules: ``name -> module``; each is a spikelfp neuron (called as ``(x, state)``)
            or a stateless layer (applied to every time step).
        order: the node names in topological order (the input's consumers first).
        inputs: ``name -> list of predecessor names``; ``"input"`` is the graph's input.
            Several predecessors are summed.
        output: the names feeding the graph's output (summed).

    Returns ``(output, state)`` when called on ``(T, B, ...)``; ``state`` has one entry per
    node in ``order`` (``None`` for stateless ones) and can be passed back to continue.

    >>> from spikelfp import LIF
    >>> net = GraphNet({"a": nn.Linear(2, 2), "n": LIF(beta=0.5)}, ["a", "n"],
    ...                {"a": ["input"], "n": ["a", "input"]}, ["n"])
    >>> out, state = net(torch.ones(3, 1, 2))
    >>> tuple(out.shape), len(state)
    ((3, 1, 2), 2)
    """

    def __init__(self, modules: dict, order: list, inputs: dict, output: list):
        super().__init__()
        self.keys = {n: n.replace(".", "__").replace("/", "__") for n in order}
        self.nodes = nn.ModuleDict({self.keys[n]: modules[n] for n in order})
        self.order = list(order)
        self.inputs = {n: list(inputs[n]) for n in order}
        self.output = list(output)

    def layer(self, name: str) -> nn.Module:
        """The module of node ``name``."""
        return self.nodes[self.keys[name]]

    def forward(self, x: torch.Tensor, state: tuple | None = None):
        if state is None:
            state = (None,) * len(self.order)
        if len(state) != len(self.order):
            raise ValueError(
                f"state has {len(state)} entries but the graph has {len(self.order)} nodes; "
                "pass the state returned by the previous call"
            )
        values = {"input": x}
        new_state = []
        for name, s in zip(self.order, state, strict=True):
            h = _sum(values, self.inputs[name], name)
            layer = self.layer(name)
            try:
                if isinstance(layer, NeuronModule):
                    h, s = layer(h, s)
                else:
                    h, s = apply_over_time(layer, h), None
            except RuntimeError as err:
                raise ValueError(
                    f"node {name!r} ({type(layer).__name__}) could not take an input of shape "
                    f"{tuple(h.shape)}: {err}"
                ) from err
            values[name] = h
            new_state.append(s)
        return _sum(values, self.output, "output"), tuple(new_state)


def _sum(values: dict, names: list, target: str) -> torch.Tensor:
    out = values[names[0]]
    for other in names[1:]:
        v = values[other]
        if v.shape != out.shape:
            raise ValueError(
                f"node {target!r} sums inputs of different shapes: {names[0]} "
                f"{tuple(out.shape)} and {other} {tuple(v.shape)}"
            )
        out = out + v
    return out
