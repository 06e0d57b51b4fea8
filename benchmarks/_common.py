"""Pieces shared by the benchmarks: N-MNIST frames, equivalent snntorch networks, timing, memory.

Nothing in the ``spikelfp`` package imports this module; it needs the benchmark extras
(``tonic`` to read the recordings, ``snntorch`` for the surrogate-gradient baselines).
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spikelfp.allocator import pooled_bytes

RESULTS = Path(__file__).resolve().parent / "results"
SENSOR = (34, 34)  # N-MNIST (width, height)


# --------------------------------------------------------------------------------------------
# N-MNIST: events -> frames, kept in memory
# --------------------------------------------------------------------------------------------


def default_data_root() -> Path:
    """``$SPIKELFP_DATA`` or ``../shared/data`` relative to the repository root."""
    env = os.environ.get("SPIKELFP_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def nmnist_files(root: str | os.PathLike) -> list[tuple[Path, int]]:
    """``(path, digit)`` of every ``NMNIST/Train/<digit>/<idx>.bin`` under ``root`` (sorted)."""
    base = Path(root) / "nmnist" / "NMNIST" / "Train"
    if not base.is_dir():
        base = Path(root) / "NMNIST" / "Train"
    if not base.is_dir():
        raise FileNotFoundError(
            f"no N-MNIST recordings under {root} (expected nmnist/NMNIST/Train/<digit>/*.bin); "
            "set --data or $SPIKELFP_DATA"
        )
    files = []
    for digit in range(10):
        for f in sorted((base / str(digit)).glob("*.bin")):
            files.append((f, digit))
    if not files:
        raise FileNotFoundError(f"no .bin files under {base}")
    return files


_EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])


def read_nmnist_events(path: str | os.PathLike) -> np.ndarray:
    """Events ``(x, y, t [µs], p)`` of one 40-bit N-MNIST recording (read with tonic)."""
    import tonic.io

    return tonic.io.read_mnist_file(str(path), dtype=_EVENT_DTYPE)


def events_to_frames(events: np.ndarray, n_bins: int, binary: bool = True) -> np.ndarray:
    """Bin events into ``n_bins`` equal time slices of the recording: ``(T, 2, 34, 34)`` uint8.

    Bin ``k`` holds events with ``k <= (t - t_first) * n_bins / (t_last - t_first + 1) < k+1``.
    ``binary=True`` clips the per-pixel counts to 1 (spikes), else counts saturate at 255.
    """
    w, h = SENSOR
    frames = np.zeros((n_bins, 2, h, w), dtype=np.int32)
    if len(events):
        t = events["t"].astype(np.int64)
        t0, t1 = t.min(), t.max()
        k = ((t - t0) * n_bins) // (t1 - t0 + 1)
        np.add.at(frames, (k, events["p"].astype(np.int64), events["y"], events["x"]), 1)
    if binary:
        return (frames > 0).astype(np.uint8)
    return np.minimum(frames, 255).astype(np.uint8)


_FRAME_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def load_nmnist_frames(
    root: str | os.PathLike, n_bins: int, binary: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """All recordings as ``frames (N, T, 2, 34, 34) uint8`` and ``labels (N,) int64``.

    Cached in memory per ``(root, n_bins, binary)``; the events of each file are read once per
    process.
    """
    key = (str(Path(root).resolve()), int(n_bins), bool(binary))
    if key not in _FRAME_CACHE:
        events = _load_events(key[0])
        frames = np.stack([events_to_frames(ev, n_bins, binary) for ev, _ in events])
        labels = np.array([d for _, d in events], dtype=np.int64)
        _FRAME_CACHE[key] = (torch.from_numpy(frames), torch.from_numpy(labels))
    return _FRAME_CACHE[key]


_EVENT_CACHE: dict[str, list] = {}


def _load_events(root: str) -> list[tuple[np.ndarray, int]]:
    if root not in _EVENT_CACHE:
        _EVENT_CACHE[root] = [(read_nmnist_events(f), d) for f, d in nmnist_files(root)]
    return _EVENT_CACHE[root]


def stratified_split(labels: torch.Tensor | np.ndarray, n_val: int, seed: int = 0):
    """Deterministic stratified split: ``(train_idx, val_idx)`` with exactly ``n_val`` in val.

    Each class gets its share of ``n_val`` (largest remainder), drawn by a seeded permutation.
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    share = counts * n_val / len(labels)
    take = np.floor(share).astype(int)
    for i in np.argsort(-(share - take), kind="stable")[: n_val - take.sum()]:
        take[i] += 1
    rng = np.random.default_rng(seed)
    val = []
    for c, k in zip(classes, take, strict=True):
        idx = np.flatnonzero(labels == c)
        val.extend(rng.permutation(idx)[:k].tolist())
    val = np.sort(np.array(val, dtype=np.int64))
    train = np.setdiff1d(np.arange(len(labels)), val)
    return torch.from_numpy(train), torch.from_numpy(val)


def random_spike_frames(t: int, b: int, shape: Sequence[int], density: float, seed: int = 0):
    """Bernoulli spikes ``(T, B, *shape)`` at the given density (stand-in for N-MNIST frames)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((t, b, *shape), generator=g) < density).float()


# --------------------------------------------------------------------------------------------
# Equivalent networks: spikelfp (time-first, whole sequence) and snntorch (per-step loop)
# --------------------------------------------------------------------------------------------


def fc_layers(sizes: Sequence[int]) -> list[nn.Module]:
    """The synapses of an MLP ``sizes[0] -> ... -> sizes[-1]``."""
    return [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=False)]


def conv_layers(
    in_ch: int = 2, c1: int = 12, c2: int = 32, k: int = 5, n_out: int = 10, side: int = 34
) -> list[nn.Module]:
    """``Conv(in,c1,k) · Pool2 · Conv(c1,c2,k) · Pool2 · Flatten · Linear(·, n_out)``.

    Returned as the modules *without* neurons; a neuron follows each Conv and the Linear.
    """
    s = ((side - k + 1) // 2 - k + 1) // 2
    return [
        nn.Conv2d(in_ch, c1, k),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, k),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * s * s, n_out),
    ]


def with_neurons(layers: Sequence[nn.Module], make_neuron: Callable[[], nn.Module]):
    """Insert ``make_neuron()`` after every Linear/Conv (the network's spiking structure)."""
    out = []
    for m in layers:
        out.append(m)
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            out.append(make_neuron())
    return out


def spikelfp_net(
    layers: Sequence[nn.Module],
    beta: float,
    threshold: float = 1.0,
    reset: str = "subtract",
    reset_delay: bool = True,
    readout: str = "lif",
):
    """A :class:`spikelfp.Sequential` with a LIF after every synapse (LI readout if asked)."""
    from spikelfp import LI, LIF, Sequential

    mods = with_neurons(
        layers, lambda: LIF(beta=beta, threshold=threshold, reset=reset, reset_delay=reset_delay)
    )
    if readout == "li":
        mods[-1] = LI(beta=beta)
    return Sequential(*mods)


class SnnTorchNet(nn.Module):
    """The same network in snntorch: ``snn.Leaky`` neurons and a per-step loop over time.

    ``forward(x: (T, B, ...)) -> (spikes_or_membrane (T, B, C), output membranes (T, B, C))``.
    The synapse/pooling modules are shared objects with whatever they were built from, so
    copy weights with ``load_state_dict`` when comparing.
    """

    def __init__(
        self,
        layers: Sequence[nn.Module],
        beta: float,
        threshold: float = 1.0,
        reset: str = "subtract",
        reset_delay: bool = True,
        readout: str = "lif",
        slope: float = 25.0,
        surrogate: str = "fast_sigmoid",
    ):
        super().__init__()
        import snntorch as snn
        from snntorch import surrogate as sg

        grad = sg.fast_sigmoid(slope=slope) if surrogate == "fast_sigmoid" else sg.atan()
        self.readout = readout
        mods = with_neurons(
            layers,
            lambda: snn.Leaky(
                beta=beta,
                threshold=threshold,
                spike_grad=grad,
                reset_mechanism=reset,
                reset_delay=reset_delay,
            ),
        )
        if readout == "li":  # leaky integrator: no reset, the membrane is the output
            mods[-1] = snn.Leaky(
                beta=beta, threshold=threshold, spike_grad=grad, reset_mechanism="none"
            )
        self.layers = nn.ModuleList(mods)
        self._neuron = [isinstance(m, snn.Leaky) for m in mods]

    def forward(self, x: torch.Tensor):
        mems = [
            m.init_leaky() if n else None for m, n in zip(self.layers, self._neuron, strict=True)
        ]
        out_spk, out_mem = [], []
        for t in range(x.shape[0]):
            h = x[t]
            for i, m in enumerate(self.layers):
                if self._neuron[i]:
                    h, mems[i] = m(h, mems[i])
                else:
                    h = m(h)
            out_spk.append(h)
            out_mem.append(mems[-1])
        mem = torch.stack(out_mem)
        return (mem if self.readout == "li" else torch.stack(out_spk)), mem


def calibrate_init(
    net: nn.Module, x: torch.Tensor, rate: float = 0.1, tol: float = 1.2, iters: int = 24
) -> list[float]:
    """Scale each synapse so that the LIF right after it fires at about ``rate`` on ``x``.

    LFP only moves neurons that spike: a silent layer gets no reward. Layer by layer
    (``net`` a :class:`spikelfp.Sequential`), the synapse's weight and bias are multiplied by a
    gain found by bisection in log space. A synapse followed by an LI readout is left alone.
    Returns the firing rates after calibration.
    """
    from spikelfp.neurons import LIF
    from spikelfp.sequential import apply_over_time

    mods = list(net)
    rates = []
    h = x
    with torch.no_grad():
        for i, m in enumerate(mods):
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            if isinstance(m, (nn.Linear, nn.Conv2d)) and isinstance(nxt, LIF):
                w0 = m.weight.detach().clone()
                b0 = None if m.bias is None else m.bias.detach().clone()

                def rate_at(g, m=m, nxt=nxt, w0=w0, b0=b0, h=h):
                    m.weight.copy_(w0 * g)
                    if b0 is not None:
                        m.bias.copy_(b0 * g)
                    return nxt(apply_over_time(m, h))[0].mean().item()

                lo, hi = None, None
                g = 1.0
                for _ in range(iters):
                    r = rate_at(g)
                    if rate / tol <= r <= rate * tol:
                        break
                    if r < rate:
                        lo = g
                    else:
                        hi = g
                    g = g * 2 if hi is None else (g / 2 if lo is None else math.sqrt(lo * hi))
                rate_at(g)
            if isinstance(m, (LIF,)) or hasattr(m, "initial_state"):
                h = m(h)[0]
                if isinstance(m, LIF):
                    rates.append(h.mean().item())
            else:
                h = apply_over_time(m, h)
    return rates


def copy_synapses(src: nn.Module, dst: nn.Module) -> None:
    """Copy the Linear/Conv weights of ``src`` into ``dst`` in order (same architecture)."""
    a = [m for m in src.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    b = [m for m in dst.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if len(a) != len(b):
        raise ValueError("different architectures")
    with torch.no_grad():
        for m, n in zip(a, b, strict=True):
            n.weight.copy_(m.weight)
            n.bias.copy_(m.bias)


# --------------------------------------------------------------------------------------------
# Timing and memory
# --------------------------------------------------------------------------------------------


def time_median(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> dict:
    """Run ``fn`` ``warmup`` times, then ``repeats`` timed times; median/min/max seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "repeats": repeats,
        "times_s": times,
    }


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_peak_memory(fn: Callable[[], object], warmup: int = 2) -> dict:
    """Peak resident memory of one ``fn()`` call above the resident memory just before it.

    Meant for a fresh process per configuration (see :func:`run_in_subprocess`), started with
    a fixed glibc mmap threshold so that freed tensors are returned to the OS. After
    ``warmup`` calls (one-time allocations: thread pools, oneDNN/MKL buffers, optimizer state)
    the kernel's high-water mark is reset (``/proc/self/clear_refs``), then
    ``peak = VmHWM after - VmRSS before``, where the free blocks spikelfp's tensor pool keeps
    from the warm-up steps (``spikelfp.allocator.pooled_bytes()``, resident and reused by the
    step) count as the step's memory, not as the baseline. Where the reset is not possible it
    falls back to ``ru_maxrss`` after ``fn()`` minus the RSS before the warm-up (which then
    includes the one-time allocations).
    """
    rss_cold = _status_kb("VmRSS")
    for _ in range(warmup):
        fn()
    gc.collect()
    ok = reset_peak_rss()
    base = _status_kb("VmRSS")
    pooled = pooled_bytes() // 1024  # free blocks kept by spikelfp's pool: the step's own memory
    fn()
    if ok and base is not None:
        hwm = _status_kb("VmHWM")
        return {
            "peak_mb": (hwm - (base - pooled)) / 1024,
            "method": "VmHWM reset",
            "base_mb": (base - pooled) / 1024,
            "pool_free_before_mb": pooled / 1024,
        }
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "peak_mb": (maxrss - (rss_cold or 0)) / 1024,
        "method": "ru_maxrss delta",
        "base_mb": (rss_cold or 0) / 1024,
    }


def run_in_subprocess(module: str, func: str, kwargs: dict, threads: int = 2) -> dict:
    """``module.func(**kwargs)`` in a fresh Python (its JSON-able result), with a fixed mmap
    threshold (``MALLOC_MMAP_THRESHOLD_=131072``) so that large tensors are returned on free."""
    env = dict(os.environ)
    env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    env["OMP_NUM_THREADS"] = str(threads)
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(
        [str(root), str(root / "benchmarks"), env.get("PYTHONPATH", "")]
    )
    code = (
        "import json, sys, torch\n"
        f"torch.set_num_threads({threads})\n"
        f"import {module} as m\n"
        f"r = m.{func}(**json.loads(sys.argv[1]))\n"
        "print('@@RESULT@@' + json.dumps(r))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(kwargs)],
        env=env,
        capture_output=True,
        text=True,
        cwd=root,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("@@RESULT@@"):
            return json.loads(line[len("@@RESULT@@") :])
    raise RuntimeError(f"subprocess failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def environment() -> dict:
    """What the numbers were measured on."""
    import importlib.metadata as md

    def version(pkg):
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "snntorch": version("snntorch"),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2))
    return path


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
