"""Small tensor helpers shared by the rules."""

from __future__ import annotations

import torch

__all__ = ["sum_to", "stabilized_divide"]


def sum_to(t: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """Sum ``t`` over the dimensions that were broadcast from ``shape``.

    >>> sum_to(torch.ones(3, 2, 4), (4,)).tolist()
    [6.0, 6.0, 6.0, 6.0]
    >>> sum_to(torch.ones(3, 2, 4), (2, 1)).tolist()
    [[12.0], [12.0]]
    """
    shape = tuple(shape)
    if tuple(t.shape) == shape:
        return t
    lead = t.dim() - len(shape)
    if lead:
        t = t.sum(dim=tuple(range(lead)))
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and t.shape[i] != 1)
    if dims:
        t = t.sum(dim=dims, keepdim=True)
    return t


def stabilized_divide(num: torch.Tensor, den: torch.Tensor, epsilon: float) -> torch.Tensor:
    r"""``num / (den + ε·sign(den))`` with ``sign(0) = +1``; with ``ε = 0``, 0 where ``den = 0``.

    >>> stabilized_divide(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([0.0, -1.0, 4.0]), 0.0)
    tensor([ 0.0000, -1.0000,  0.5000])
    """
    if epsilon == 0:
        safe = torch.where(den == 0, torch.ones_like(den), den)
        return torch.where(den == 0, torch.zeros_like(num), num / safe)
    sign = torch.where(den >= 0, torch.ones_like(den), -torch.ones_like(den))
    return num / (den + epsilon * sign)
