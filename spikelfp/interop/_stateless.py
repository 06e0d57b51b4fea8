"""The layers the snntorch/norse converters carry over unchanged."""

from __future__ import annotations

from torch import nn

__all__ = ["STATELESS_LAYERS"]

#: Layers the converters carry over as they are (a deep copy: same type, same weights).
STATELESS_LAYERS = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.modules.batchnorm._BatchNorm,
    nn.ReLU,
)
