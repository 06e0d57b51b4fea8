r"""Integer decays as chips compute them, in numpy (int64) and torch (float64, bit-identical).

Three representations of a per-step decay :math:`v \leftarrow \beta v` on an integer state:

* ``"shift"`` (Xylo): :math:`v \leftarrow v - (v \gg k)`, i.e. :math:`\beta_q = 1 - 2^{-k}`.
* ``"mult"`` (Loihi 2, 12 bits): :math:`v \leftarrow (v\,(2^n - d)) \gg n`,
  :math:`\beta_q = 1 - d / 2^n`, ``n = 12`` on Loihi 2.
* ``"none"`` (Speck, integrate-and-fire): :math:`v \leftarrow v`, :math:`\beta_q = 1`.

``>>`` is an arithmetic shift, i.e. ``floor`` division by :math:`2^k` (``rounding="floor"``);
``rounding="trunc"`` rounds the shifted magnitude toward zero (sign-magnitude shift, as Lava's
fixed-point Loihi models do). In float64 the same operations are exact for integer states below
:math:`2^{53}` (division by a power of two, floor and trunc are exact), so the torch model and
the numpy simulator agree bit for bit.

>>> import numpy as np
>>> decay_numpy(np.array([100, -100]), "shift", np.array(3), 12, "floor").tolist()
[88, -87]
>>> decay_torch(torch.tensor([100.0, -100.0], dtype=torch.float64), "shift",
...             torch.tensor(3.0, dtype=torch.float64), 12, "floor").tolist()
[88.0, -87.0]
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["DECAY_MODES", "ROUNDINGS", "quantize_decay", "decay_numpy", "decay_torch"]

DECAY_MODES = ("none", "shift", "mult")
ROUNDINGS = ("floor", "trunc")


def quantize_decay(
    beta: np.ndarray, mode: str, bits: int = 12, max_shift: int = 15
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest representable decay: returns ``(param, beta_q)`` (int64, float64 arrays).

    ``param`` is the shift ``k`` (``"shift"``), the decrement ``d`` (``"mult"``) or 0
    (``"none"``).

    >>> k, bq = quantize_decay(np.array([0.9, 0.5, 1.0]), "shift", max_shift=15)
    >>> k.tolist(), bq.tolist()
    ([3, 1, 15], [0.875, 0.5, 0.999969482421875])
    >>> d, bq = quantize_decay(np.array([0.9]), "mult", bits=12)
    >>> d.tolist(), bq.tolist()
    ([410], [0.89990234375])
    """
    beta = np.asarray(beta, dtype=np.float64)
    if mode == "none":
        return np.zeros(beta.shape, np.int64), np.ones(beta.shape)
    if mode == "mult":
        one = 2**bits
        d = np.clip(np.rint((1.0 - beta) * one), 0, one).astype(np.int64)
        return d, 1.0 - d / one
    if mode == "shift":
        leak = np.clip(1.0 - beta, 2.0**-max_shift, 1.0)
        lo = np.clip(np.floor(-np.log2(leak)), 0, max_shift)
        hi = np.clip(lo + 1, 0, max_shift)
        pick_hi = np.abs((1 - 2.0**-hi) - beta) < np.abs((1 - 2.0**-lo) - beta)
        k = np.where(pick_hi, hi, lo).astype(np.int64)
        return k, 1.0 - 2.0 ** (-k.astype(np.float64))
    raise ValueError(f"decay mode must be one of {DECAY_MODES}, got {mode!r}")


def decay_numpy(
    v: np.ndarray, mode: str, param: np.ndarray, bits: int, rounding: str, min_decay: bool = False
):
    """Apply an integer decay to an int64 state (see the module docstring).

    With ``min_decay`` (Xylo; ``"shift"`` only) every non-zero state decays by at least 1:
    the decrement ``v >> k`` becomes ``sign(v)`` where it is 0.
    """
    if mode == "none":
        return v
    if mode == "shift":
        if rounding == "floor":
            dv = np.right_shift(v, param)
        else:
            dv = np.sign(v) * np.right_shift(np.abs(v), param)
        if min_decay:
            dv = np.where((dv == 0) & (v != 0), np.sign(v), dv)
        return v - dv
    p = v * (np.int64(2**bits) - param)
    if rounding == "floor":
        return np.right_shift(p, bits)
    return np.sign(p) * np.right_shift(np.abs(p), bits)


def _round(x: torch.Tensor, rounding: str) -> torch.Tensor:
    return torch.floor(x) if rounding == "floor" else torch.trunc(x)


def decay_torch(
    v: torch.Tensor,
    mode: str,
    param: torch.Tensor,
    bits: int,
    rounding: str,
    min_decay: bool = False,
):
    """The same integer decay on float64 tensors holding integers (exact below 2**53)."""
    if mode == "none":
        return v
    if mode == "shift":
        dv = _round(v / torch.pow(2.0, param), rounding)
        if min_decay:
            dv = torch.where((dv == 0) & (v != 0), torch.sign(v), dv)
        return v - dv
    return _round(v * (2.0**bits - param) / 2.0**bits, rounding)
