"""``spikelfp eval GRAPH.nir``: evaluate a NIR graph written by any framework on a dataset.

The graph is imported with :func:`~spikelfp.hw_export.from_nir` (its producer detected, or
``convention``/``dt`` given), the dataset's frames are made as the graph expects (``--bin-ms``
frames of raw counts with ``--input-clamp none``, or binary), and a graph whose Input is flat
takes the frames flattened.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import nn

from ..hw_export.errors import NIRImportError

__all__ = ["FramesAs", "graph_shapes", "load_nir_model", "evaluate_nir"]


class FramesAs(nn.Module):
    """Feed ``(T, B, *frame)`` frames to a network that takes ``(T, B, *shape)`` (same size).

    Args:
        net: the network (returns ``(output, state)``).
        shape: the per-sample shape it takes.

    >>> from spikelfp import LIF, Sequential
    >>> m = FramesAs(Sequential(nn.Linear(4, 2), LIF()), (4,))
    >>> tuple(m(torch.zeros(3, 1, 1, 2, 2))[0].shape)
    (3, 1, 2)
    """

    def __init__(self, net: nn.Module, shape: tuple[int, ...]):
        super().__init__()
        self.net = net
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: torch.Tensor, state=None):
        return self.net(x.reshape(*x.shape[:2], *self.shape), state)


def graph_shapes(graph) -> tuple[tuple[int, ...], int]:
    """``(input_shape, n_outputs)`` of a NIR graph, from its Input and Output nodes."""
    import nir

    def first(types):
        return tuple(int(v) for v in np.asarray(next(iter(types.values()))).reshape(-1))

    inp = [n for n in graph.nodes.values() if isinstance(n, nir.Input)]
    out = [n for n in graph.nodes.values() if isinstance(n, nir.Output)]
    if len(inp) != 1 or len(out) != 1:
        raise NIRImportError("the graph needs exactly one Input and one Output node")
    return first(inp[0].input_type), int(np.prod(first(out[0].output_type)))


def load_nir_model(path, frame_shape, *, convention=None, dt=None):
    """Import ``path`` and adapt it to frames of ``frame_shape``; returns ``(model, n_out)``.

    Raises :class:`NIRImportError` when the graph's input does not have the frames' size.
    """
    from ..hw_export.nir_io import from_nir, read_nir

    graph = read_nir(path)
    shape, n_out = graph_shapes(graph)
    model = from_nir(graph, dt=dt, convention=convention)
    frame_shape = tuple(int(s) for s in frame_shape)
    if shape and shape != frame_shape:
        if math.prod(shape) != math.prod(frame_shape):
            raise NIRImportError(
                f"{os.fspath(path)} takes inputs of shape {shape} but the dataset's frames are "
                f"{frame_shape}; choose the dataset/frames the graph was trained on"
            )
        model = FramesAs(model, shape)
    return model, n_out


def evaluate_nir(path, cfg, split: str, *, convention=None, dt=None) -> dict:
    """Evaluate the NIR graph at ``path`` on ``split`` of ``cfg``'s dataset (the result of
    :func:`spikelfp.training.evaluate` plus ``dataset``, ``split``, ``classes``)."""
    from torch.utils.data import DataLoader

    from .data import collate, open_split
    from .evaluate import evaluate

    data = open_split(cfg, split)
    model, n_out = load_nir_model(path, data.frame_shape, convention=convention, dt=dt)
    if n_out != len(data.classes):
        raise NIRImportError(
            f"{os.fspath(path)} has {n_out} outputs but {cfg.dataset} has "
            f"{len(data.classes)} classes"
        )
    loader = DataLoader(data.dataset, batch_size=cfg.batch_size, collate_fn=collate)
    result = evaluate(model, loader, n_out, cfg.input_clamp, list(data.classes))
    result.update({"dataset": cfg.dataset, "split": split, "classes": list(data.classes)})
    return result
