"""Fused CPU kernels for the LFP rules: C with OpenMP, compiled on first use, eager fallback.

The eager rules run every elementwise operation as its own pass over whole-sequence tensors;
for a conv layer over N-MNIST frames those are tens of MB each, so the passes are bound by
memory traffic. The kernels in ``kernels.c`` do each recursion in one pass, block by block of
neurons (a block's state stays in cache while the T steps stream past):

* the LIF forward (membrane, reset and spikes) and the LIF rule's backward (the forward's
  replay and the reward recursion, without the full-length replayed membrane),
* the synapse rules' stabilised division ``ρ / z'``,
* 2-d max-pooling with ``uint8`` arg-max offsets, and its reward scatter.

They repeat the eager code's floating-point operations in the same order, each rounded on its
own (``-ffp-contract=off``, no fast-math), so results are **bit-identical** to the eager path
(``tests/test_native.py`` checks it). Only float32/float64 CPU tensors use them.

The library is built with the system C compiler (``$CC``, else ``cc``/``gcc``/``clang``) into
``$SPIKELFP_CACHE_DIR`` (default ``~/.cache/spikelfp``), once per source version and machine,
in well under a second; later imports load the cached file. Without a compiler the rules run
eagerly (correct, slower) and a warning says why. ``SPIKELFP_NATIVE=0`` turns the kernels off.

>>> import spikelfp
>>> spikelfp.native_kernels().available in (True, False)
True
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .._accel.allocator import empty_large, empty_large_like

__all__ = ["NativeStatus", "status", "disabled", "usable"]

_HERE = Path(__file__).resolve().parent
_SOURCES = ("kernels.c", "kernels_impl.h")
_ABI_VERSION = 4
_RESET_CODES = {"zero": 0, "subtract": 1, "none": 2}
#: below this many elements a kernel runs on one thread (thread start-up would dominate)
_PARALLEL_MIN = 1 << 15


@dataclass(frozen=True)
class NativeStatus:
    """Whether the native kernels are in use, and where they were loaded from (or why not)."""

    available: bool
    detail: str


def _cache_dir() -> Path:
    env = os.environ.get("SPIKELFP_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "spikelfp"


def _cpu_signature() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor()


def _attempts() -> list[list[str]]:
    """Compiler flag sets, best first: the first that builds is used."""
    base = ["-O3", "-ffp-contract=off", "-fno-fast-math", "-fPIC", "-shared", "-std=c99"]
    return [
        base + ["-march=native", "-fopenmp"],
        base + ["-fopenmp"],
        base,
    ]


def _build(cc: str) -> tuple[Path | None, str]:
    digest = hashlib.sha256()
    for name in _SOURCES:
        digest.update((_HERE / name).read_bytes())
    digest.update(
        f"{cc}|{_attempts()}|{platform.machine()}|{_cpu_signature()}|{_ABI_VERSION}".encode()
    )
    key = digest.hexdigest()[:16]
    folder = _cache_dir()
    target = folder / f"kernels-{key}.so"
    if target.exists():
        return target, f"loaded {target}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return None, f"cannot create the build folder {folder} ({err}); set SPIKELFP_CACHE_DIR"
    errors = []
    for flags in _attempts():
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".kernels-", suffix=".so")
        os.close(fd)
        cmd = [cc, *flags, "-I", str(_HERE), str(_HERE / "kernels.c"), "-o", tmp, "-lm"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as err:
            proc = None
            errors.append(f"{' '.join(cmd)}: {err}")
        if proc is not None and proc.returncode == 0:
            os.replace(tmp, target)  # atomic: concurrent builders leave one complete file
            return target, f"built {target} ({' '.join(flags)})"
        if proc is not None:
            errors.append(f"{' '.join(flags)}: {proc.stderr.strip()[-500:]}")
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return None, "the C compiler failed: " + " | ".join(errors)


_F32 = (ctypes.c_float, torch.float32, "f32")
_F64 = (ctypes.c_double, torch.float64, "f64")


def _bind(lib: ctypes.CDLL) -> dict:
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    fns = {}
    for real, dtype, suf in (_F32, _F64):
        sigs = {
            "lif_forward": [p, p, p, i64, p, i64, p, p, i64, i64, i32, i32, i32, i32],
            "lif_backward": [p, p, p, p, p, i64, p, i64, real, p, p, p, p]
            + [i64, i64, i32, i32, i32, i32],
            "divide": [p, p, real, p, i64, i32],
            "maxpool2d_forward": [p, p, p] + [i64] * 13 + [i32],
            "maxpool2d_backward": [p, p, p] + [i64] * 9 + [i32],
        }
        for name, args in sigs.items():
            fn = getattr(lib, f"spikelfp_{name}_{suf}")
            fn.argtypes = args
            fn.restype = i32 if name.startswith("lif_") else None
            fns[(name, dtype)] = fn
    return fns


@functools.cache
def _library() -> tuple[dict | None, str]:
    if os.environ.get("SPIKELFP_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None, "turned off by SPIKELFP_NATIVE"
    if sys.platform == "win32":
        return None, "not built on Windows (the eager rules are used)"
    cc = os.environ.get("CC") or next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    if cc is None:
        detail = "no C compiler found (install gcc or clang, or set CC)"
    else:
        path, detail = _build(cc)
        if path is not None:
            try:
                lib = ctypes.CDLL(str(path))
                if lib.spikelfp_abi_version() != _ABI_VERSION:
                    raise OSError("ABI version mismatch")
                return _bind(lib), detail
            except (OSError, AttributeError) as err:
                detail = f"cannot load {path}: {err}; delete it to rebuild"
    warnings.warn(
        f"spikelfp: native LFP kernels unavailable ({detail}); using the eager rules "
        "(same results, slower). Set SPIKELFP_NATIVE=0 to silence this.",
        RuntimeWarning,
        stacklevel=3,
    )
    return None, detail


def status() -> NativeStatus:
    """Build or load the kernels if that has not happened yet, and say whether they are used.

    Public as ``spikelfp.native_kernels()``. The kernels are compiled with the system C
    compiler on first use and cached (``SPIKELFP_CACHE_DIR``, else ``~/.cache/spikelfp``);
    without them the eager torch rules run, with bit-identical results.

    Returns:
        A ``NativeStatus``: ``available`` (bool) and ``detail`` (where the library was
        loaded from, or why it is not used).

    >>> import spikelfp
    >>> isinstance(spikelfp.native_kernels().available, bool)
    True
    """
    fns, detail = _library()
    return NativeStatus(fns is not None, detail)


_disabled_depth = 0


@contextlib.contextmanager
def disabled():
    """Run the eager rules inside the block (e.g. to compare or time them); not thread-local.

    >>> with disabled():
    ...     usable(torch.zeros(3))
    False
    """
    global _disabled_depth
    _disabled_depth += 1
    try:
        yield
    finally:
        _disabled_depth -= 1


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the kernels apply: float32/float64 CPU tensors of one dtype, kernels built."""
    if _disabled_depth:
        return False
    dtype = tensors[0].dtype
    if dtype not in (torch.float32, torch.float64):
        return False
    for t in tensors:
        if t.device.type != "cpu" or t.dtype != dtype:
            return False
    return _library()[0] is not None


def _threads(count: int) -> int:
    return 1 if count < _PARALLEL_MIN else max(1, torch.get_num_threads())


def _param(p: torch.Tensor, step_shape: tuple) -> tuple[torch.Tensor, int]:
    """A neuron parameter as a pointer-ready tensor: one value, or one per neuron."""
    p = p.detach()
    if p.numel() == 1:
        return p.reshape(1).contiguous(), 0
    return p.expand(step_shape).contiguous(), 1


def _lif_inputs(z, v0, beta, theta):
    """``(steps, neurons, v0, beta, beta per neuron?, theta, theta per neuron?)`` for a kernel."""
    b, b_full = _param(beta, z.shape[1:])
    th, th_full = _param(theta, z.shape[1:])
    return z.shape[0], math.prod(z.shape[1:]), v0.detach().contiguous(), b, b_full, th, th_full


def _check(failed: int, what: str) -> None:
    if failed:
        raise MemoryError(f"spikelfp: the native LIF {what} could not allocate its block buffer")


def lif_forward(z, v0, beta, theta, reset, delay, readout):
    """The LIF recursion over ``z`` (``(T, ...)``, contiguous) -> ``(outputs, final membrane)``."""
    fns, _ = _library()
    steps, n, v0, b, b_full, th, th_full = _lif_inputs(z, v0, beta, theta)
    out = empty_large_like(z)
    v_last = empty_large_like(v0)
    _check(fns[("lif_forward", z.dtype)](
        z.data_ptr(), v0.data_ptr(), b.data_ptr(), b_full, th.data_ptr(), th_full,
        out.data_ptr(), v_last.data_ptr(), steps, n, _RESET_CODES[reset], int(delay),
        int(readout), _threads(steps * n),
    ), "forward")  # fmt: skip
    return out, v_last


def lif_backward(r, q_last, z, v0, beta, theta, epsilon, reset, delay, readout, keep_n):
    """The LIF rule's backward -> ``(ρ, q_0, n or None, U_{t-1} or None)``."""
    fns, _ = _library()
    steps, n, v0, b, b_full, th, th_full = _lif_inputs(z, v0, beta, theta)
    r = r.contiguous()
    q_last = q_last.expand(z.shape[1:]).contiguous()
    rho = empty_large_like(z)
    q0 = empty_large_like(v0)
    n_all = empty_large_like(z) if keep_n else None
    u_all = empty_large_like(z) if keep_n else None
    _check(fns[("lif_backward", z.dtype)](
        r.data_ptr(), q_last.data_ptr(), z.data_ptr(), v0.data_ptr(), b.data_ptr(), b_full,
        th.data_ptr(), th_full, epsilon, rho.data_ptr(), q0.data_ptr(),
        n_all.data_ptr() if keep_n else None, u_all.data_ptr() if keep_n else None,
        steps, n, _RESET_CODES[reset], int(delay), int(readout), _threads(steps * n),
    ), "backward")  # fmt: skip
    return rho, q0, n_all, u_all


def divide(num: torch.Tensor, den: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``num / (den + ε sign(den))``; with ``ε = 0``, 0 where ``den == 0`` (same shapes)."""
    fns, _ = _library()
    num, den = num.contiguous(), den.contiguous()
    out = empty_large_like(num)
    count = num.numel()
    fns[("divide", num.dtype)](
        num.data_ptr(), den.data_ptr(), epsilon, out.data_ptr(), count, _threads(count)
    )
    return out


def maxpool2d_forward(x, out_hw, kernel, stride, padding, dilation):
    """2-d max-pooling of contiguous ``(N, C, H, W)`` -> ``(y, uint8 offsets)``."""
    fns, _ = _library()
    nb, c, h, w = x.shape
    oh, ow = out_hw
    y = empty_large_like(x, (nb, c, oh, ow))
    off = empty_large((nb, c, oh, ow), dtype=torch.uint8)
    fns[("maxpool2d_forward", x.dtype)](
        x.data_ptr(), y.data_ptr(), off.data_ptr(), nb * c, h, w, oh, ow, *kernel, *stride,
        *padding, *dilation, _threads(x.numel()),
    )  # fmt: skip
    return y, off


def maxpool2d_backward(rho, off, in_shape, stride, padding):
    """Reward of each window to its arg-max: ``(N, C, H, W)`` reward on the input."""
    fns, _ = _library()
    rho = rho.contiguous()
    nb, c, h, w = in_shape
    oh, ow = rho.shape[-2:]
    r_in = empty_large_like(rho, in_shape)
    fns[("maxpool2d_backward", rho.dtype)](
        rho.data_ptr(), off.data_ptr(), r_in.data_ptr(), nb * c, h, w, oh, ow, *stride,
        *padding, _threads(r_in.numel()),
    )  # fmt: skip
    return r_in
