r"""AvgPool2d and SumPool2d. Average pooling is exported as exact sum pooling; its
:math:`1/k^2` moves into the scale of what follows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from ...layers import SumPool2d
from ._base import Converter

__all__ = ["AVGPOOL_KIND", "SUMPOOL_KIND", "TYPES"]


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(i) for i in v)
    return v if len(v) == 2 else (v[0], v[0])


def avg_reason(layer) -> str | None:
    if layer.ceil_mode:
        return "AvgPool2d(ceil_mode=True) has no NIR equivalent; use ceil_mode=False"
    if layer.divisor_override is not None:
        return "AvgPool2d(divisor_override=...) has no NIR equivalent"
    if not layer.count_include_pad and _pair(layer.padding) != (0, 0):
        return (
            "AvgPool2d(count_include_pad=False) with padding is not a sum/k² pool; use "
            "count_include_pad=True or padding=0"
        )
    return None


def avg_quantize(layer, scale, shape_in):
    k = SumPool2d(layer.kernel_size, layer.stride, layer.padding)
    note = "average pooling exported as sum pooling; 1/k² folded into the scale of what follows"
    return k, scale / (k.kernel_size[0] * k.kernel_size[1]), note


def sum_quantize(layer, scale, shape_in):
    return SumPool2d(layer.kernel_size, layer.stride, layer.padding), scale, None


@dataclass
class SumPoolOp:
    """Integer sum pooling for the numpy simulator."""

    kernel: tuple
    stride: tuple
    padding: tuple


def run(x: np.ndarray, layer: SumPoolOp) -> np.ndarray:
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n, c, h, w = x.shape
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    y = np.zeros((n, c, ho, wo), dtype=np.int64)
    for a in range(kh):
        for b in range(kw):
            y += x[:, :, a : a + sh * (ho - 1) + 1 : sh, b : b + sw * (wo - 1) + 1 : sw]
    return y


def _nir_node(cls_name: str):
    def nir_node(nir, layer, shapes, index, integer, meta, convention):
        k = SumPool2d(layer.kernel_size, layer.stride, layer.padding)
        node = getattr(nir, cls_name)(
            kernel_size=np.array(k.kernel_size),
            stride=np.array(k.stride),
            padding=np.array(k.padding),
        )
        node.input_type = {"input": np.array(shapes[index])}
        node.output_type = {"output": np.array(shapes[index + 1])}
        return node

    return nir_node


AVGPOOL_KIND = Converter(
    "AvgPool2d", "pool", reason=avg_reason, quantize=avg_quantize, nir_node=_nir_node("AvgPool2d")
)
SUMPOOL_KIND = Converter(
    "SumPool2d",
    "pool",
    quantize=sum_quantize,
    compile=lambda layer: SumPoolOp(layer.kernel_size, layer.stride, layer.padding),
    run=run,
    nir_node=_nir_node("SumPool2d"),
)
TYPES = {nn.AvgPool2d: AVGPOOL_KIND, SumPool2d: SUMPOOL_KIND}
