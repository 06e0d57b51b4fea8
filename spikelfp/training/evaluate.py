"""Evaluation: accuracy (overall and per class), confusion matrix and spike rates per layer.

The predicted class is the output neuron with the most spikes (ties: the lowest index).
The spike rate of a layer is its mean number of spikes per neuron and time step.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager

import torch
from torch import nn

from .models import neuron_layers

__all__ = ["evaluate", "SpikeRecorder", "layer_names", "prepare_input", "predict"]


def prepare_input(x: torch.Tensor, clamp: float | None) -> torch.Tensor:
    """The network input from frames of event counts: counts above ``clamp`` are clipped
    (``clamp=1``: binary spikes, one per pixel and bin at most).

    >>> prepare_input(torch.tensor([0.0, 1.0, 3.0]), 1.0).tolist()
    [0.0, 1.0, 1.0]
    """
    return x.clamp(max=clamp) if clamp is not None else x


def predict(output: torch.Tensor) -> torch.Tensor:
    """Class with the most output spikes, ``(T, B, C) -> (B,)``."""
    return output.sum(0).argmax(-1)


def layer_names(model: nn.Module) -> list[str]:
    """Readable names of the spiking layers: ``hidden1``, ``hidden2``, ..., ``output``."""
    n = len(neuron_layers(model))
    return [f"hidden{i + 1}" for i in range(n - 1)] + (["output"] if n else [])


class SpikeRecorder:
    """Accumulates each spiking layer's spike count (forward hooks, works under LFP and BPTT).

    >>> from spikelfp import LIF, Sequential
    >>> net = Sequential(nn.Linear(3, 4), LIF(threshold=0.1))
    >>> with SpikeRecorder(net) as rec:
    ...     _ = net(torch.ones(5, 2, 3))
    >>> list(rec.rates())
    ['output']
    """

    def __init__(self, model: nn.Module):
        self.layers = neuron_layers(model)
        self.names = layer_names(model)
        self.sums = [0.0] * len(self.layers)
        self.counts = [0] * len(self.layers)
        self._handles = []

    def _hook(self, i: int):
        def hook(module, inputs, output):
            out = output[0] if isinstance(output, tuple) else output
            out = out.detach()
            self.sums[i] += float(out.sum())
            self.counts[i] += out.numel()

        return hook

    def __enter__(self) -> SpikeRecorder:
        self._handles = [
            m.register_forward_hook(self._hook(i)) for i, (_, m) in enumerate(self.layers)
        ]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def state(self) -> dict[str, float]:
        """Raw sums and element counts (for reducing over processes)."""
        out = {}
        for name, s, c in zip(self.names, self.sums, self.counts, strict=True):
            out[f"spikes/{name}"] = s
            out[f"elements/{name}"] = float(c)
        return out

    def rates(self, state: dict[str, float] | None = None) -> dict[str, float]:
        st = self.state() if state is None else state
        return {
            name: (st[f"spikes/{name}"] / st[f"elements/{name}"]) if st[f"elements/{name}"] else 0.0
            for name in self.names
        }


@contextmanager
def _eval_mode(model: nn.Module):
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    n_classes: int,
    input_clamp: float | None = None,
    class_names: list[str] | None = None,
) -> dict:
    """Accuracy, per-class accuracy, confusion matrix (rows: true class, columns: predicted),
    mean cross-entropy of the spike counts and spike rates per layer over ``batches``.

    Public as ``spikelfp.training.evaluate``; works for any :class:`spikelfp.Sequential`
    returning ``(output, state)``, not only zoo models.

    Args:
        model: the network (evaluated in eval mode, restored afterwards, without gradients).
        batches: iterable of ``(x, y)``: ``x`` time-first ``(T, B, ...)``, ``y`` labels ``(B,)``
            (a list, or a DataLoader; :func:`spikelfp.datasets.make_loader`'s
            ``(x, y, lengths)`` batches work too).
        n_classes: output neurons; the predicted class is the one with the most spikes.
        input_clamp: clip input counts at this value first (``1``: binary spikes).
        class_names: names for the per-class results (default ``"0"``, ``"1"``, ...).

    Returns a dict with ``accuracy``, ``loss``, ``n_samples``, ``per_class_accuracy``,
    ``class_support``, ``confusion_matrix`` and ``spike_rates`` (``{"hidden1": ..., "output":
    ...}``, spikes per neuron and time step).

    >>> from spikelfp import LIF, Sequential
    >>> net = Sequential(nn.Linear(3, 2), LIF(threshold=0.1))
    >>> x, y = torch.ones(4, 5, 3), torch.zeros(5, dtype=torch.long)
    >>> r = evaluate(net, [(x, y)], n_classes=2)
    >>> r["n_samples"], sorted(r["spike_rates"])
    (5, ['output'])
    """
    confusion = torch.zeros(n_classes, n_classes, dtype=torch.int64)
    loss_sum, n = 0.0, 0
    with _eval_mode(model), SpikeRecorder(model) as rec:
        for batch in batches:
            x, y = batch[0], batch[1]  # (x, y) or make_loader's (x, y, lengths)
            out, _ = model(prepare_input(x, input_clamp))
            pred = predict(out)
            loss_sum += float(nn.functional.cross_entropy(out.sum(0), y, reduction="sum"))
            confusion += torch.bincount(
                y * n_classes + pred, minlength=n_classes * n_classes
            ).reshape(n_classes, n_classes)
            n += len(y)
    names = class_names or [str(i) for i in range(n_classes)]
    support = confusion.sum(1)
    per_class = {
        names[c]: (int(confusion[c, c]) / int(support[c]) if support[c] else None)
        for c in range(n_classes)
    }
    return {
        "accuracy": int(confusion.diagonal().sum()) / max(n, 1),
        "loss": loss_sum / max(n, 1),
        "n_samples": n,
        "per_class_accuracy": per_class,
        "class_support": {names[c]: int(support[c]) for c in range(n_classes)},
        "confusion_matrix": confusion.tolist(),
        "spike_rates": rec.rates(),
    }
