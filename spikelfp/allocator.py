"""Reuse of freed CPU memory for large tensors (glibc): an opt-in, process-wide setting.

torch's CPU allocator hands every tensor to ``malloc``. glibc serves requests above its mmap
threshold (at most 32 MiB) with fresh ``mmap`` pages and returns them on ``free``, so a
training step that creates a tensor of, say, 80 MB creates it in new pages every time, and the
kernel zeroes each page on first touch. Sequence-level LFP works on whole ``(T, B, ...)``
tensors: for a conv layer over N-MNIST frames at ``T=30, B=64`` those are 83 MB each, and the
zeroing of about 400 MB per step costs ~25 % of the step (``benchmarks/bench_step.py``
measures it; per-step BPTT's tensors are small enough to be recycled by malloc already).

:func:`reuse_freed_memory` tells glibc to serve large requests from its heap and to keep freed
memory for the next request: after a few steps no page is zeroed any more (``bench_step.py``'s
conv step gets ~8-10 % faster). The price is memory: the process's resident
memory no longer drops between steps, and glibc's heap fragments, so it can hold more than a
step needs at its peak (the conv benchmark's heap settles at ~470 MB of free memory for a
step that needs ~265 MB; a loop allocating one 100 MB tensor at a time settles at ~570 MB).
It affects the whole process, so nothing in spikelfp turns it on by itself: call it, or pass
``--reuse-memory`` to ``spikelfp train`` / ``spikelfp demo``.

>>> reuse_freed_memory() in (True, False)   # False where the C library is not glibc
True
>>> reuse_freed_memory(False) in (True, False)
True

The rules' own whole-sequence tensors come from :func:`empty_large`, which is on by default and
changes nothing process-wide: a fresh CPU tensor of 4 MiB or more is marked for transparent
huge pages (``madvise(MADV_HUGEPAGE)``, Linux) before anything touches it, so the kernel maps
it in 2 MiB pages, one fault each instead of 512. Zeroing the pages still costs memory
bandwidth, but an 83 MB tensor's first fill takes ~5 ms instead of ~16 ms (~4 ms when its
pages are already mapped). Where transparent huge pages are off (``never``), the advice is
ignored.

>>> empty_large((3, 4)).shape
torch.Size([3, 4])
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

import torch

__all__ = ["reuse_freed_memory", "empty_large", "empty_large_like"]

# mallopt(3) parameters and glibc's defaults.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_DEFAULT_MMAP_MAX = 65536
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
#: With reuse on, free memory at the top of the heap above this is still given back.
_KEPT_BYTES = 1 << 30


_MADV_HUGEPAGE = 14
_HUGE_PAGE = 1 << 21
#: tensors at least this large get the huge-page advice
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


def empty_large(
    shape, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """``torch.empty``; a large CPU tensor is first advised into transparent huge pages.

    Only the 2 MiB-aligned interior of the tensor's own memory is advised, and before its
    first touch (the advice does not apply to pages already mapped).
    """
    t = torch.empty(shape, dtype=dtype, device=device)
    nbytes = t.numel() * t.element_size()
    if t.device.type == "cpu" and nbytes >= _LARGE_BYTES:
        madvise = _madvise()
        if madvise is not None:
            start = (t.data_ptr() + _HUGE_PAGE - 1) & ~(_HUGE_PAGE - 1)
            end = (t.data_ptr() + nbytes) & ~(_HUGE_PAGE - 1)
            if end > start:
                madvise(start, end - start, _MADV_HUGEPAGE)  # advice only: errors ignored
    return t


def empty_large_like(t: torch.Tensor, shape=None) -> torch.Tensor:
    """:func:`empty_large` with ``t``'s dtype and device (and shape, unless given)."""
    return empty_large(t.shape if shape is None else shape, dtype=t.dtype, device=t.device)


@functools.cache
def _mallopt():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        gnu = libc.gnu_get_libc_version  # present only in glibc
    except (OSError, AttributeError):
        return None
    gnu.restype = ctypes.c_char_p
    fn = libc.mallopt
    fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return fn


def reuse_freed_memory(enable: bool = True) -> bool:
    """Keep freed memory in the process for the next large tensor (glibc only; process-wide).

    ``enable=True``: large allocations come from malloc's heap (``M_MMAP_MAX = 0``) and up to
    1 GiB of free memory at its top is kept (``M_TRIM_THRESHOLD``); glibc still falls back to
    ``mmap`` where the heap cannot grow. ``enable=False`` restores glibc's default limits
    (not its dynamic threshold, which any ``mallopt`` call switches off).

    Returns whether the setting was applied (``False`` on other platforms and C libraries,
    where it does nothing).
    """
    mallopt = _mallopt()
    if mallopt is None:
        return False
    if enable:
        ok = mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, _KEPT_BYTES)
    else:
        ok = mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX) and mallopt(
            _M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD
        )
    return bool(ok)
