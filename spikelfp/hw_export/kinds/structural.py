"""Layers that canonicalisation removes (dropout, identity) or folds (batch norm), and the
layers that cannot be exported, each with the reason and the fix."""

from __future__ import annotations

from torch import nn

from ...neurons import ALIF
from ...neurons.base import NeuronModule
from ._base import Converter

__all__ = ["TYPES", "UNKNOWN"]


def _unknown_reason(layer) -> str:
    return (
        f"{type(layer).__name__} is not supported for export; supported: Linear, Conv1d, "
        "Conv2d, AvgPool2d, Flatten, Dropout/Identity (removed), BatchNorm after a synapse "
        "(folded), LIF, IF, CubaLIF, LI, RLIF"
    )


def _fixed(text: str):
    return lambda layer: text


# an empty name: kind_of reports the layer's own type name
DROPPED = Converter("", "dropped")
BATCHNORM = Converter(
    "",
    "batchnorm",
    reason=_fixed(
        "batch norm must directly follow a Linear/Conv layer so it can be folded into it"
    ),
)
MAXPOOL = Converter(
    "",
    "unsupported",
    reason=_fixed(
        "max pooling has no NIR node and no neuromorphic equivalent; use "
        "nn.AvgPool2d (exported as sum pooling) or a strided convolution"
    ),
)
CONV3D = Converter("", "unsupported", reason=_fixed("Conv3d has no NIR node; use Conv1d/Conv2d"))
ALIF_KIND = Converter(
    "",
    "unsupported",
    spiking=True,
    reason=_fixed(
        "ALIF has no NIR node and no integer hardware model here; train with LIF/CubaLIF "
        "(or fold adaptation into a learnt threshold)"
    ),
)
#: A neuron module no kind file describes.
UNKNOWN_NEURON = Converter("", "unsupported", spiking=True, reason=_unknown_reason)
#: Any other module.
UNKNOWN = Converter("", "unsupported", reason=_unknown_reason)

TYPES = {
    nn.Dropout: DROPPED,
    nn.Dropout1d: DROPPED,
    nn.Dropout2d: DROPPED,
    nn.Identity: DROPPED,
    nn.BatchNorm1d: BATCHNORM,
    nn.BatchNorm2d: BATCHNORM,
    nn.MaxPool1d: MAXPOOL,
    nn.MaxPool2d: MAXPOOL,
    nn.MaxPool3d: MAXPOOL,
    nn.Conv3d: CONV3D,
    ALIF: ALIF_KIND,
    NeuronModule: UNKNOWN_NEURON,
}
