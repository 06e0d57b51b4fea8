r"""Homeostatic synaptic scaling: a floor under each hidden layer's firing rate.

Under LFP the reward that silences wrong outputs flows down as negative feedback, and a hidden
layer can fall almost silent within a few epochs (nmnist-cnn's second conv layer: spike rate
0.10 → 0.006 by epoch 5, ``docs/learning_in_depth.md``), which leaves the layers above it
little to learn from. :class:`RateFloor` is the synaptic scaling of biological neurons
(Turrigiano 2008), applied after each optimiser step: a hidden layer :math:`l` whose mean
spike rate in the step, :math:`r_l` (spikes per neuron and time step, over the batch), is
below the floor :math:`\underline r` gets its synapse's weights and bias (those
:func:`~spikelfp.training.calibrate_firing` scales) multiplied by

.. math::

    g_l = \min\!\Big(g_{\max},\ \big(\underline r / \max(r_l, 10^{-4})\big)^{\eta}\Big)
    \qquad (r_l < \underline r;\ \text{else } g_l = 1).

It needs no derivative and no extra pass (the rates come from the training step's own
forward), never lowers a weight and leaves the output layer to the reward. With
``η = 0.1`` and ``g_max = 1.05`` a silent layer regains its rate over a few dozen steps.

>>> import torch
>>> from torch import nn
>>> from spikelfp import IF, Sequential
>>> net = Sequential(nn.Linear(4, 8), IF(threshold=100.0), nn.Linear(8, 2), IF())
>>> floor = RateFloor(net, 0.05)
>>> with floor:
...     _ = net(torch.ones(5, 3, 4))
>>> w = net[0].weight.detach().clone()
>>> floor.after_step()
[1.05]
>>> torch.allclose(net[0].weight, 1.05 * w)
True
"""

from __future__ import annotations

import torch
from torch import nn

from .evaluate import SpikeRecorder
from .models import _gain_layers

__all__ = ["RateFloor"]


class RateFloor:
    """Scale up the synapse of every hidden layer that fires below ``floor`` (see the module
    docstring). Use as a context manager around the training steps (it records each hidden
    layer's spikes with forward hooks) and call :meth:`after_step` after ``optimizer.step()``.

    Args:
        model: a :class:`spikelfp.Sequential` (its last neuron layer is the output, not scaled).
        floor: the lowest mean spike rate of a hidden layer, in ``(0, 1)``.
        eta: the exponent :math:`\\eta` of the gain (``> 0``).
        max_gain: the largest gain of one step (``> 1``).
    """

    def __init__(self, model: nn.Module, floor: float, eta: float = 0.1, max_gain: float = 1.05):
        if not 0.0 < float(floor) < 1.0:
            raise ValueError(f"rate floor must be in (0, 1), got {floor!r}")
        if not float(eta) > 0.0 or not float(max_gain) > 1.0:
            raise ValueError(f"eta must be > 0 and max_gain > 1, got {eta!r}, {max_gain!r}")
        self.floor, self.eta, self.max_gain = float(floor), float(eta), float(max_gain)
        hidden = _gain_layers(model)[:-1]  # every neuron layer but the output
        #: the layer each hidden layer's gain scales (its synapse, or a batch norm after it)
        self.layers = [model[g] for _, g, _ in hidden]
        #: the spike counts of every neuron layer since :meth:`__enter__` (the trainer reads
        #: its epoch's spike rates from it, so each step's spikes are counted once)
        self.recorder = SpikeRecorder(model)
        index = {id(m): i for i, (_, m) in enumerate(self.recorder.layers)}
        self._which = [index[id(model[n])] for _, _, n in hidden]
        self._since = self._counts()  # the recorder's counts at the last after_step

    def _counts(self) -> list[tuple[float, int]]:
        rec = self.recorder
        return [(rec.sums[i], rec.counts[i]) for i in self._which]

    def __enter__(self) -> RateFloor:
        """Start counting afresh (the recorder's totals too) and record every forward."""
        n = len(self.recorder.layers)
        self.recorder.sums, self.recorder.counts = [0.0] * n, [0] * n
        self._since = self._counts()
        self.recorder.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.recorder.__exit__(*exc)

    def rates(self) -> list[float | None]:
        """Each hidden layer's spike rate in the forward passes since the last
        :meth:`after_step` (e.g. the windows of online LFP; ``None``: not run)."""
        return [
            (s - s0) / (c - c0) if c > c0 else None
            for (s, c), (s0, c0) in zip(self._counts(), self._since, strict=True)
        ]

    @torch.no_grad()
    def after_step(self, rates: list[float] | None = None) -> list[float]:
        """Apply the gains for the rates since the last call (or ``rates``, e.g. averaged
        over processes) and start counting afresh; returns the gains (1.0 where the layer fired
        at or above the floor)."""
        rates = self.rates() if rates is None else rates
        gains = []
        for layer, r in zip(self.layers, rates, strict=True):
            g = 1.0
            if r is not None and r < self.floor:
                g = min(self.max_gain, (self.floor / max(r, 1e-4)) ** self.eta)
                layer.weight.mul_(g)
                if layer.bias is not None:
                    layer.bias.mul_(g)
            gains.append(g)
        self._since = self._counts()
        return gains
