"""Linear: a dense synapse (NIR ``Affine`` with a bias, else ``Linear``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._intsim import matmul, to_int
from .._nirutil import nir_weights
from ._base import Converter
from ._synapse import Synapse, new_weights

__all__ = ["LINEAR_KIND", "TYPES"]


def connectivity(layer, mask, shape_in):
    x = torch.ones((1, *shape_in), dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        y = F.linear(x, mask)
        y.sum().backward()
    return y.detach().reshape(-1), x.grad.detach().reshape(-1)


def rebuild(layer, wq, bq):
    new = nn.Linear(layer.in_features, layer.out_features, bias=bq is not None, dtype=torch.float64)
    return new_weights(new, wq, bq)


def run(x, op: Synapse):
    y = matmul(x, op.w.T)
    return y + op.b if op.b is not None else y


def nir_node(nir, layer, shapes, index, integer, meta, convention):
    w = nir_weights(layer.weight, integer)
    if layer.bias is not None or convention == "sinabs":  # sinabs reads Affine only
        bias = layer.bias if layer.bias is not None else torch.zeros(w.shape[0])
        return nir.Affine(weight=w, bias=nir_weights(bias, integer), metadata=meta)
    return nir.Linear(weight=w, metadata=meta)


LINEAR_KIND = Converter(
    "Linear",
    "synapse",
    input_shape=lambda layer: (layer.in_features,),
    weights=lambda layer: [("weight", layer.weight)],
    connectivity=connectivity,
    column_scale=lambda layer, full, shape: full.reshape(1, -1),
    rebuild=rebuild,
    compile=lambda layer: Synapse(
        to_int(layer.weight), None if layer.bias is None else to_int(layer.bias)
    ),
    run=run,
    nir_node=nir_node,
)
TYPES = {nn.Linear: LINEAR_KIND}
