"""Flatten (a reshape; NIR's ``Flatten`` counts dimensions without the batch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from ..errors import UnsupportedLayerError
from ._base import Converter

__all__ = ["FLATTEN_KIND", "TYPES"]


def quantize(layer, scale, shape_in):
    full = scale.expand(shape_in).unsqueeze(0)
    scale = layer(full)[0] if scale.dim() else scale
    return nn.Flatten(layer.start_dim, layer.end_dim), scale, None


@dataclass
class FlattenOp:
    """Flatten for the numpy simulator (dims of the ``(N, ...)`` array)."""

    start: int
    end: int


def run(x: np.ndarray, layer: FlattenOp) -> np.ndarray:
    shape = x.shape
    nd = len(shape)
    s = layer.start % nd
    e = layer.end % nd
    return x.reshape(*shape[:s], -1, *shape[e + 1 :])


def flatten_dims(layer: nn.Flatten, index: int) -> tuple[int, int]:
    """NIR's ``(start_dim, end_dim)`` (no batch dimension) of a Flatten."""
    s, e = layer.start_dim, layer.end_dim
    if s == 0 or e == 0:
        raise UnsupportedLayerError(
            f"layer {index}: Flatten(start_dim={s}, end_dim={e}) would merge the batch "
            "dimension; use start_dim >= 1"
        )
    return (s - 1 if s > 0 else s), (e - 1 if e > 0 else e)


def nir_node(nir, layer, shapes, index, integer, meta, convention):
    s, e = flatten_dims(layer, index)
    return nir.Flatten(input_type={"input": np.array(shapes[index])}, start_dim=s, end_dim=e)


FLATTEN_KIND = Converter(
    "Flatten",
    "reshape",
    quantize=quantize,
    compile=lambda layer: FlattenOp(layer.start_dim, layer.end_dim),
    run=run,
    nir_node=nir_node,
)
TYPES = {nn.Flatten: FLATTEN_KIND}
