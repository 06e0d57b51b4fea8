"""Memory for the rules' large CPU tensors: huge pages, and reuse of freed blocks.

torch's CPU allocator hands every tensor to ``malloc``. glibc serves requests above its mmap
threshold (at most 32 MiB) with fresh ``mmap`` pages and returns them on ``free``, and the
kernel zeroes every fresh page on first touch (on a VM, the host may have to back it first).
Sequence-level LFP works on whole ``(T, B, ...)`` tensors: for a conv layer over N-MNIST
frames at ``T=30, B=64`` they are 83 MB each, about 1.6 GB of fresh memory per step at
``T=100`` (per-step BPTT's tensors are small enough for malloc to recycle).

The rules allocate these tensors (4 MiB or more, CPU) with :func:`empty_large`:

* The memory is advised into transparent huge pages (``madvise(MADV_HUGEPAGE)``, Linux) before
  its first touch: one fault per 2 MiB instead of one per 4 KiB.
* Freed blocks are kept in a pool and handed to the next request of their size; a training
  step's tensors have the same sizes every step. By default (``"peak"``) the pool never holds
  more than the same tensors would need without it (the high-water mark of the requested sizes
  in use): when a request needs a new block, the least recently freed blocks are given back
  first. So the pool's memory never exceeds the high-water mark of its tensors, and a step's
  memory peak rises only where other memory peaks at another moment (``bench_step.py``: conv
  net at ``T=30``, 262 MB vs 252 MB without reuse); between steps the process keeps up to
  that peak resident, and only part of the fresh pages are saved (same net: 340 of 608 MB
  per step are still fresh). With ``"all"`` a request may also take the smallest larger free
  block.

:func:`reuse_freed_memory` chooses ``"peak"``, ``"all"`` (keep every freed block: no fresh
pages after the first step, but more memory than the step's peak) or ``"off"``;
``SPIKELFP_POOL_BYTES`` caps the pool's free memory at start-up (``0``: off).

A block returns to the pool only when torch frees the last tensor on it (the tensor's storage
holds the block's only reference), so a tensor saved for a backward pass or kept by the user is
never overwritten.

>>> t = empty_large((2048, 1024))        # 8 MiB
>>> t.shape, t.dtype
(torch.Size([2048, 1024]), torch.float32)
>>> del t; pooled_bytes() > 0            # its block is kept for the next request
True
>>> reuse_freed_memory("off"); pooled_bytes()
True
0
>>> reuse_freed_memory()
True
"""

from __future__ import annotations

import collections
import ctypes
import functools
import math
import os
import sys
import threading
import weakref

import numpy as np
import torch

__all__ = [
    "REUSE_MODES",
    "reuse_freed_memory",
    "pooled_bytes",
    "empty_large",
    "empty_large_like",
]

_MADV_HUGEPAGE = 14
_HUGE_PAGE = 1 << 21
#: tensors at least this large come from the pool
_LARGE_BYTES = 1 << 22


@functools.cache
def _madvise():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def _initial_limit() -> int:
    env = os.environ.get("SPIKELFP_POOL_BYTES", "").strip()
    if not env:
        return _default_limit()
    try:
        return max(0, int(float(env)))
    except ValueError:
        raise ValueError(
            f"SPIKELFP_POOL_BYTES must be a number of bytes (0: no reuse), got {env!r}"
        ) from None


def _default_limit() -> int:
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        ram = 16 << 30
    return min(8 << 30, ram // 4)


class _Pool:
    """Free blocks of whole huge pages, by size; see the module docstring.

    ``used_bytes``: the (rounded) sizes requested by the tensors in use, what the process
    would hold without a pool; ``high_bytes`` its high-water mark. ``held_bytes``: the sizes
    of the blocks in use (without ``within_peak`` a request may get a larger free block). With
    ``within_peak`` (exact sizes only), ``held_bytes + free_bytes <= high_bytes`` holds after
    every call: the pool's memory never exceeds what the same tensors would need without it.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.free: dict[int, list[np.ndarray]] = {}
        self.order: collections.OrderedDict[int, int] = collections.OrderedDict()
        self.free_bytes = 0
        self.used_bytes = 0
        self.held_bytes = 0
        self.high_bytes = 0
        self.within_peak = True
        self.lock = threading.RLock()  # a finalizer may run inside a locked section

    @staticmethod
    def _fresh(size: int) -> np.ndarray:
        raw = np.empty(size + _HUGE_PAGE, dtype=np.uint8)
        start = (-raw.ctypes.data) % _HUGE_PAGE
        block = raw[start : start + size]
        madvise = _madvise()
        if madvise is not None:
            madvise(block.ctypes.data, size, _MADV_HUGEPAGE)  # advice only: errors ignored
        return block

    def _pop(self, size: int) -> np.ndarray:
        block = self.free[size].pop()
        self.free_bytes -= size
        self.order.pop(id(block), None)
        return block

    def take(self, nbytes: int) -> np.ndarray:
        size = -(-nbytes // _HUGE_PAGE) * _HUGE_PAGE
        with self.lock:
            self.used_bytes += size
            self.high_bytes = max(self.high_bytes, self.used_bytes)
            # the same size; without the peak bound also the smallest larger free block (it is
            # resident already; under the bound its unused tail could push a later fresh block
            # over the high-water mark)
            if self.within_peak:
                fit = size if self.free.get(size) else None
            else:
                fit = min((k for k, v in self.free.items() if v and k >= size), default=None)
            block = self._pop(fit) if fit is not None else None
            self.held_bytes += size if block is None else fit
            if block is None:
                self.trim()  # room for the fresh block within the bounds
        if block is None:
            block = self._fresh(size)
        view = block[:nbytes]
        weakref.finalize(view, self._give_back, block, size).atexit = False
        return view

    def _give_back(self, block: np.ndarray, size: int) -> None:
        with self.lock:
            self.used_bytes -= size
            self.held_bytes -= block.nbytes
            if self.limit <= 0:
                return
            self.free.setdefault(block.nbytes, []).append(block)
            self.order[id(block)] = block.nbytes
            self.free_bytes += block.nbytes
            self.trim()

    def trim(self) -> None:
        """Give back the least recently freed blocks until the free ones fit the bounds: at
        most ``limit`` bytes and, ``within_peak``, ``held + free <= high``."""
        with self.lock:
            bound = self.limit
            if self.within_peak:
                bound = min(bound, self.high_bytes - self.held_bytes)
            bound = max(0, bound)
            while self.free_bytes > bound:
                key, size = self.order.popitem(last=False)
                blocks = self.free[size]
                del blocks[next(i for i, b in enumerate(blocks) if id(b) == key)]
                self.free_bytes -= size


_POOL = _Pool(_initial_limit())


def empty_large(
    shape, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """``torch.empty``; a large CPU tensor in huge pages, from the pool if reuse is on.

    The values are uninitialised, as with ``torch.empty`` (a reused block holds old data).
    """
    dtype = torch.get_default_dtype() if dtype is None else dtype
    device = torch.device("cpu") if device is None else torch.device(device)
    shape = tuple(shape)
    nbytes = math.prod(shape) * dtype.itemsize
    if device.type != "cpu" or nbytes < _LARGE_BYTES:
        return torch.empty(shape, dtype=dtype, device=device)
    view = _POOL.take(nbytes)
    return torch.from_numpy(view).view(dtype).view(shape)


def empty_large_like(t: torch.Tensor, shape=None) -> torch.Tensor:
    """:func:`empty_large` with ``t``'s dtype and device (and shape, unless given)."""
    return empty_large(t.shape if shape is None else shape, dtype=t.dtype, device=t.device)


#: the settings of :func:`reuse_freed_memory`
REUSE_MODES = ("peak", "all", "off")


def reuse_freed_memory(mode: str = "peak", *, max_bytes: int | None = None) -> bool:
    """How the rules' freed large tensors are reused (see the module docstring).

    * ``"peak"`` (the default): freed blocks are kept for the next request of their size, but
      only as many as fit under the high-water mark of blocks in use: a step's memory peak
      barely rises, and part of its fresh pages are saved.
    * ``"all"``: every freed block is kept (up to ``max_bytes``): no fresh pages at all after
      the first step, the fastest setting, but the process holds more than a step's peak.
    * ``"off"``: every block goes back to the system when its tensor is freed.

    ``max_bytes``: the most free memory the pool keeps (default: a quarter of the physical
    memory, at most 8 GiB). Every call empties what the new setting does not allow and starts
    the high-water mark afresh.

    Args:
        mode: ``"peak"``, ``"all"`` or ``"off"``.
        max_bytes: the most free memory the pool keeps (keyword only).

    Returns:
        ``True`` (the setting applies on every platform).

    Raises:
        ValueError: an unknown ``mode`` or a negative ``max_bytes``.

    >>> import spikelfp
    >>> spikelfp.reuse_freed_memory("off"), spikelfp.reuse_freed_memory()   # back to the default
    (True, True)
    """
    if mode not in REUSE_MODES:
        raise ValueError(f"mode must be one of {REUSE_MODES}, got {mode!r}")
    if max_bytes is not None and max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
    with _POOL.lock:
        limit = _default_limit() if max_bytes is None else int(max_bytes)
        _POOL.limit = 0 if mode == "off" else limit
        _POOL.within_peak = mode == "peak"
        _POOL.high_bytes = _POOL.used_bytes
        _POOL.trim()
    return True


def pooled_bytes() -> int:
    """Bytes of free blocks the pool keeps for reuse (resident, but in no tensor)."""
    return _POOL.free_bytes
