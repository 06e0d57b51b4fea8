"""Speed machinery, kept apart from the maths (layer 0, see ``docs/architecture.md``).

The LFP rules (:mod:`spikelfp.lfp`) say *what* is computed; this package says *how fast*:

* :mod:`~spikelfp._accel.chunking`: the one chunk-size policy (:func:`rows_per_chunk`,
  budgets in :data:`~spikelfp._accel.chunking.BUDGET`) and the chunked convolution forward,
  the chunked Linear/convolution backward sums, and chunked inference;
* :mod:`~spikelfp._accel.dispatch`: native dispatch (which implementation runs; the calls into
  the fused C kernels of :mod:`spikelfp._native`), and the stabilised division;
* :mod:`~spikelfp._accel.recurrence`: recursions over time in preallocated tensors, and the
  fused in-place membrane backward;
* :mod:`~spikelfp._accel.pooling`: max pooling that keeps small arg-max offsets;
* :mod:`~spikelfp._accel.allocator`: huge pages and reuse of freed blocks for large tensors
  (public names re-exported by :mod:`spikelfp.allocator`).

Every fast path gives the bits of the plain computation it replaces (``tests/test_accel.py``,
``tests/test_native.py``). This package imports only torch, numpy and :mod:`spikelfp._native`.
"""

from __future__ import annotations

from .chunking import (
    ChunkBytes,
    ConvSpec,
    apply_chunked,
    conv_backward_chunked,
    conv_forward,
    conv_forward_chunked,
    linear_backward_chunked,
    rows_per_chunk,
)
from .dispatch import LIFPath, divide, lif_backward_fused, lif_forward_fused, lif_path
from .pooling import Winners, max_pool_argmax, scatter_to_argmax
from .recurrence import inplace_ok, membrane_backward_inplace, replay_inplace, run_inplace

__all__ = [
    "ChunkBytes",
    "ConvSpec",
    "LIFPath",
    "Winners",
    "apply_chunked",
    "conv_backward_chunked",
    "conv_forward",
    "conv_forward_chunked",
    "divide",
    "inplace_ok",
    "linear_backward_chunked",
    "lif_backward_fused",
    "lif_forward_fused",
    "lif_path",
    "max_pool_argmax",
    "membrane_backward_inplace",
    "replay_inplace",
    "rows_per_chunk",
    "run_inplace",
    "scatter_to_argmax",
]
