"""Pieces shared by the synapse kinds (Linear, Conv1d, Conv2d)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Synapse", "new_weights"]


@dataclass
class Synapse:
    """An integer synapse for the numpy simulator (convolutions also keep their geometry)."""

    w: np.ndarray
    b: np.ndarray | None
    stride: tuple = ()
    padding: tuple = ()
    dilation: tuple = ()
    groups: int = 1
    dims: int = 0


def new_weights(new, wq: torch.Tensor, bq: torch.Tensor | None):
    """``new`` with the integer weights ``wq`` and bias ``bq``, frozen."""
    with torch.no_grad():
        new.weight.copy_(wq)
        if bq is not None:
            new.bias.copy_(bq)
    new.requires_grad_(False)
    return new
