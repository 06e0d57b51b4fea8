"""A container that threads time-first tensors and neuron states through mixed layers.

Stateless layers (Linear, Conv2d, pooling, Flatten, Dropout, BatchNorm, ...) are applied to all
``T·B`` samples at once (one matmul/conv for the whole sequence); neuron layers
(:class:`spikelfp.neurons.NeuronModule`) run their cheap elementwise recursion over time.
For a feed-forward network this is exactly the step-by-step network, only faster.
"""

from __future__ import annotations

import torch
from torch import nn

from ._accel.chunking import CHUNKED_MODULES, apply_chunked
from .events import SparseFrames
from .layers import SequenceDropout
from .neurons.base import NeuronModule

__all__ = ["Sequential", "apply_over_time", "event_input_layer"]


def apply_over_time(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a stateless ``module`` to every step of ``x: (T, B, ...)`` in one call.

    >>> y = apply_over_time(nn.Linear(3, 2), torch.zeros(5, 4, 3))
    >>> tuple(y.shape)
    (5, 4, 2)

    A :class:`~spikelfp.layers.SequenceDropout` gets ``x`` as it is (its mask holds over time).
    """
    if isinstance(module, SequenceDropout):
        return module(x)
    t, b = x.shape[:2]
    flat = x.reshape(t * b, *x.shape[2:])
    chunked = type(module) in CHUNKED_MODULES and t > 1 and flat.is_contiguous()
    if chunked and not torch.is_grad_enabled():  # in chunks of samples, the same values
        y = apply_chunked(module, flat, b)
    else:
        y = module(flat)
    return y.reshape(t, b, *y.shape[1:])


def event_input_layer(layers, frame_shape) -> int | None:
    """The index of the ``Linear`` that takes event frames of ``frame_shape`` directly: the
    first layer of ``layers`` after ``Flatten`` (all dimensions after the batch) only, with
    ``in_features == prod(frame_shape)``; ``None`` if there is none.

    >>> event_input_layer([nn.Flatten(), nn.Linear(8, 2)], (2, 2, 2))
    1
    >>> event_input_layer([nn.Conv2d(2, 4, 3)], (2, 5, 5)) is None
    True
    """
    size = 1
    for d in frame_shape:
        size *= int(d)
    for i, layer in enumerate(layers):
        if type(layer) is nn.Flatten and (layer.start_dim, layer.end_dim) == (1, -1):
            continue
        if type(layer) is nn.Linear and layer.in_features == size:
            return i
        return None
    return None


class Sequential(nn.Sequential):
    """Like :class:`torch.nn.Sequential`, but time-first and stateful.

    ``forward(x, state=None) -> (output, state)``: ``x`` is ``(T, B, ...)``; ``state`` is a
    tuple with one entry per layer (``None`` for stateless layers), as returned by a previous
    call, so a long recording can be fed in chunks.

    Args:
        *layers: the modules, in order (as for :class:`torch.nn.Sequential`).

    Returns ``(output, state)`` when called; raises ``TypeError`` when ``x`` is not a tensor
    and ``ValueError`` when it is not time-first, when ``state`` does not have one entry per
    layer, or when a layer cannot take its input's shape (the message names the layer).

    >>> from spikelfp.neurons import LIF
    >>> net = Sequential(nn.Linear(4, 3), LIF(beta=0.9), nn.Linear(3, 2), LIF(beta=0.9))
    >>> out, state = net(torch.rand(6, 5, 4))
    >>> tuple(out.shape), len(state)
    ((6, 5, 2), 4)
    """

    def forward(self, x: torch.Tensor | SparseFrames, state: tuple | None = None):
        layers = list(self)
        first = 0
        if isinstance(x, SparseFrames):
            x, first = self._from_events(layers, x)
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"Sequential expects a tensor (T, B, ...) or SparseFrames, got {type(x).__name__}"
            )
        if x.dim() < 3:
            raise ValueError(
                f"Sequential expects a time-first tensor (T, B, features...), got shape "
                f"{tuple(x.shape)}; for a single sample use x.unsqueeze(1), for one step "
                f"x.unsqueeze(0)"
            )
        if state is None:
            state = (None,) * len(layers)
        elif len(state) != len(layers):
            raise ValueError(
                f"state has {len(state)} entries but the network has {len(layers)} layers; "
                "pass the state returned by the previous call of this network"
            )
        new_state = [None] * first
        for i, (layer, s) in enumerate(zip(layers, state, strict=True)):
            if i < first:  # computed from the events
                continue
            try:
                if isinstance(layer, NeuronModule):
                    x, s = layer(x, s)
                else:
                    x = apply_over_time(layer, x)
                    s = None
            except RuntimeError as err:
                raise ValueError(
                    f"layer {i} ({type(layer).__name__}) could not take an input of shape "
                    f"{tuple(x.shape)} (time-first (T, B, ...)): {err}"
                ) from err
            new_state.append(s)
        return x, tuple(new_state)

    @staticmethod
    def _from_events(layers, x: SparseFrames) -> tuple[torch.Tensor, int]:
        """``(input of layer k, k)``: the first ``Linear`` (after ``Flatten`` only) computed
        from the events as one CSR product, or the dense frames and 0 for any other first
        layer (an event-driven convolution does not pay on CPU, ``bench_conv_scatter.py``)."""
        i = event_input_layer(layers, x.shape[2:])
        if i is None:
            dtype = next((p.dtype for m in layers for p in m.parameters()), torch.float32)
            return x.dense(dtype), 0
        linear = layers[i]
        z = linear(x.csr(dtype=linear.weight.dtype))
        return z.view(x.steps, x.shape[1], -1), i + 1
