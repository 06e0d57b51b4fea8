"""The large-tensor allocator's public names (the allocator lives in :mod:`spikelfp._accel`).

Huge pages and reuse of freed blocks for the rules' large CPU tensors; see
:mod:`spikelfp._accel.allocator` for how it works. This module keeps ``spikelfp.allocator``
importable.

>>> t = empty_large((4, 3))   # small: an ordinary tensor
>>> t.shape
torch.Size([4, 3])
"""

from __future__ import annotations

from ._accel.allocator import (
    REUSE_MODES,
    empty_large,
    empty_large_like,
    pooled_bytes,
    reuse_freed_memory,
)

__all__ = [
    "REUSE_MODES",
    "reuse_freed_memory",
    "pooled_bytes",
    "empty_large",
    "empty_large_like",
]
