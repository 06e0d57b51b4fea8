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
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

__all__ = ["reuse_freed_memory"]

# mallopt(3) parameters and glibc's defaults.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_DEFAULT_MMAP_MAX = 65536
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
#: With reuse on, free memory at the top of the heap above this is still given back.
_KEPT_BYTES = 1 << 30


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
