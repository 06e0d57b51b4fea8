"""Conv1d and Conv2d: convolutional synapses (zero padding, numeric or odd-kernel "same")."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._intsim import matmul, to_int
from .._nirutil import nir_weights
from ..errors import UnsupportedLayerError
from ._base import Converter
from ._synapse import Synapse, new_weights

__all__ = ["CONV1D_KIND", "CONV2D_KIND", "TYPES"]


def conv_padding(layer) -> tuple[int, ...]:
    """The numeric padding of a convolution; raises :class:`UnsupportedLayerError` for what
    NIR cannot express."""
    if layer.padding_mode != "zeros":
        raise UnsupportedLayerError(
            f"{type(layer).__name__} with padding_mode={layer.padding_mode!r} has no hardware/NIR "
            "equivalent; use zero padding"
        )
    if isinstance(layer.padding, str):
        if layer.padding == "valid":
            return (0,) * len(layer.kernel_size)
        k, d, s = layer.kernel_size, layer.dilation, layer.stride
        pairs = list(zip(k, d, strict=True))
        if all(si == 1 for si in s) and all((di * (ki - 1)) % 2 == 0 for ki, di in pairs):
            return tuple(di * (ki - 1) // 2 for ki, di in pairs)
        raise UnsupportedLayerError(
            f"{type(layer).__name__}(padding='same') with an even kernel pads asymmetrically, "
            "which NIR cannot express; use an odd kernel or numeric padding"
        )
    return tuple(layer.padding)


def numeric_padding(layer: nn.Module) -> nn.Module:
    """``layer`` with its string padding made numeric (a new layer), else ``layer``."""
    pad = conv_padding(layer)
    if not isinstance(layer.padding, str):
        return layer
    new = type(layer)(
        layer.in_channels,
        layer.out_channels,
        layer.kernel_size,
        layer.stride,
        pad,
        layer.dilation,
        layer.groups,
        layer.bias is not None,
        dtype=layer.weight.dtype,
    )
    new.load_state_dict(layer.state_dict())
    return new


def _connectivity(fn):
    def connectivity(layer, mask, shape_in):
        x = torch.ones((1, *shape_in), dtype=torch.float64, requires_grad=True)
        with torch.enable_grad():
            y = fn(x, mask, None, layer.stride, layer.padding, layer.dilation, layer.groups)
            y.sum().backward()
        return y.detach().reshape(-1), x.grad.detach().reshape(-1)

    return connectivity


def column_scale(layer, full, shape):
    per_c = full.reshape(shape[0], -1)
    if layer.groups == 1 and bool((per_c == per_c[:, :1]).all()):
        return per_c[:, 0].reshape(1, -1, *([1] * (layer.weight.dim() - 2)))
    raise ValueError(
        f"{type(layer).__name__} receives an input whose integer scale varies within a channel "
        "(or across groups); put a spiking neuron layer in front of it"
    )


def rebuild(layer, wq, bq):
    new = type(layer)(
        layer.in_channels,
        layer.out_channels,
        layer.kernel_size,
        layer.stride,
        layer.padding,
        layer.dilation,
        layer.groups,
        bias=bq is not None,
        dtype=torch.float64,
    )
    return new_weights(new, wq, bq)


def _compile(dims):
    def compile(layer):
        return Synapse(
            to_int(layer.weight),
            None if layer.bias is None else to_int(layer.bias),
            tuple(layer.stride),
            tuple(layer.padding),
            tuple(layer.dilation),
            layer.groups,
            dims,
        )

    return compile


def run(x: np.ndarray, layer: Synapse) -> np.ndarray:
    """Integer convolution via im2col; ``x`` is ``(N, C, *spatial)``."""
    if layer.dims == 1:
        x = x[:, :, None, :]
        w = layer.w[:, :, None, :]
        stride, pad, dil = (1, *layer.stride), (0, *layer.padding), (1, *layer.dilation)
    else:
        w, stride, pad, dil = layer.w, layer.stride, layer.padding, layer.dilation
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    x = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    ho = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    g = layer.groups
    og = o // g
    y = np.empty((n, o, ho, wo), dtype=np.int64)
    for gi in range(g):
        xs = x[:, gi * cg : (gi + 1) * cg]
        cols = np.empty((n, ho, wo, cg, kh, kw), dtype=np.int64)
        for a in range(kh):
            for b in range(kw):
                r0, c0 = a * dil[0], b * dil[1]
                patch = xs[
                    :,
                    :,
                    r0 : r0 + stride[0] * (ho - 1) + 1 : stride[0],
                    c0 : c0 + stride[1] * (wo - 1) + 1 : stride[1],
                ]
                cols[..., a, b] = patch.transpose(0, 2, 3, 1)
        wg = w[gi * og : (gi + 1) * og].reshape(og, -1)
        out = matmul(cols.reshape(n * ho * wo, -1), wg.T)
        y[:, gi * og : (gi + 1) * og] = out.reshape(n, ho, wo, og).transpose(0, 3, 1, 2)
    if layer.b is not None:
        y += layer.b.reshape(1, -1, 1, 1)
    return y[:, :, 0, :] if layer.dims == 1 else y


def _nir_node(one_d: bool):
    def nir_node(nir, layer, shapes, index, integer, meta, convention):
        w = nir_weights(layer.weight, integer)
        bias = (
            nir_weights(layer.bias, integer)
            if layer.bias is not None
            else np.zeros(w.shape[0], dtype=w.dtype)
        )
        cls = nir.Conv1d if one_d else nir.Conv2d
        return cls(
            input_shape=shapes[index][1] if one_d else tuple(shapes[index][1:]),
            weight=w,
            stride=layer.stride[0] if one_d else tuple(layer.stride),
            padding=layer.padding[0] if one_d else tuple(layer.padding),
            dilation=layer.dilation[0] if one_d else tuple(layer.dilation),
            groups=layer.groups,
            bias=bias,
            metadata=meta,
        )

    return nir_node


def _kind(name, dims, fn) -> Converter:
    return Converter(
        name,
        "synapse",
        canonical=numeric_padding,
        weights=lambda layer: [("weight", layer.weight)],
        connectivity=_connectivity(fn),
        column_scale=column_scale,
        rebuild=rebuild,
        compile=_compile(dims),
        run=run,
        nir_node=_nir_node(dims == 1),
    )


CONV1D_KIND = _kind("Conv1d", 1, F.conv1d)
CONV2D_KIND = _kind("Conv2d", 2, F.conv2d)
TYPES = {nn.Conv1d: CONV1D_KIND, nn.Conv2d: CONV2D_KIND}
