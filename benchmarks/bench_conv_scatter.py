"""Does an event-driven scatter pay for a first convolution on the CPU? (issue 14, item 3)

The first layer of an N-MNIST conv net sees sparse binary frames. Kept as events (indices of the
non-zero entries, as ``SparseFrames`` and the sparse frame cache hold them), the layer's two
large computations can run on the events only:

* forward: ``z[bt, :, oy, ox] += W[:, c, ky, kx]`` for every event ``(bt, c, y, x)`` and kernel
  offset with ``oy·s − p + ky = y`` (one ``index_add_`` per offset);
* LFP's weight feedback (the ε-rule's ``F(W) = W ⊙ Σ x n``, whose sum is the weight gradient of
  a convolution): ``G[:, c, ky, kx] = Σ_events n[bt, :, oy, ox]`` (one gather and
  ``index_add_`` per offset).

Both are compared, for equality and time, with torch's dense convolution and its weight
gradient (``torch.nn.grad.conv2d_weight``) on the same frames. Frames: the first 32 real
N-MNIST training recordings binned into T frames (clamped to 1, as the recipe's
``input_clamp: 1``), or Bernoulli frames at the same density without the data. The events are
taken as given (the conversion from dense frames is not timed: the data must arrive sparse).
Times are the median of ``--repeats`` calls, one process, ``--threads`` torch threads.

    python benchmarks/bench_conv_scatter.py [--data-dir D] [--steps 16 30 300]

Prints a markdown table and writes ``benchmarks/results/bench_conv_scatter.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
#: the first convolutions of the zoo's N-MNIST models
LAYERS = {
    "nmnist-cnn conv1 (2→32, k3, s1, p1)": dict(c_out=32, k=3, stride=1, padding=1),
    "speck-cnn conv1 (2→16, k5, s2, p1)": dict(c_out=16, k=5, stride=2, padding=1),
}


def frames(data_dir: Path | None, t: int, b: int) -> tuple[torch.Tensor, str]:
    """``(T·B, 2, 34, 34)`` binary frames: real N-MNIST if available, else Bernoulli."""
    if data_dir is not None and (data_dir / "NMNIST").is_dir():
        from spikelfp.datasets import NMNIST, FrameSpec

        ds = NMNIST(data_dir, "train", FrameSpec(n_time_bins=t), progress=False)
        x = torch.stack([ds[i][0] for i in range(b)], dim=1).clamp_(max=1.0)
        return x.reshape(t * b, 2, 34, 34).contiguous(), "N-MNIST"
    density = {16: 0.073, 30: 0.050, 300: 0.0077}.get(t, 0.03)
    g = torch.Generator().manual_seed(t)
    x = (torch.rand(t * b, 2, 34, 34, generator=g) < density).float()
    return x, f"Bernoulli({density})"


def _offsets(events, k, stride, padding, h_out, w_out):
    """Per kernel offset ``(ky, kx)``: the events that reach an output and its flat index."""
    bt, c, y, x = events
    out = []
    for ky in range(k):
        for kx in range(k):
            ny, nx = y + padding - ky, x + padding - kx
            ok = (ny >= 0) & (nx >= 0) & (ny % stride == 0) & (nx % stride == 0)
            oy, ox = ny // stride, nx // stride
            ok &= (oy < h_out) & (ox < w_out)
            flat = (bt[ok] * h_out + oy[ok]) * w_out + ox[ok]
            out.append((ky, kx, c[ok], flat))
    return out


def scatter_forward(offsets, weight, n_rows: int) -> torch.Tensor:
    """``z`` as ``(T·B·Ho·Wo, C_out)`` from the events (binary inputs)."""
    z = torch.zeros(n_rows, weight.shape[0], dtype=weight.dtype)
    for ky, kx, c, flat in offsets:
        z.index_add_(0, flat, weight[:, :, ky, kx].t().index_select(0, c))
    return z


def gather_weight_grad(offsets, g_rows: torch.Tensor, shape) -> torch.Tensor:
    """``Σ x n`` over the events, shaped like the weight; ``g_rows`` is ``(T·B·Ho·Wo, C_out)``."""
    c_out, c_in, k, _ = shape
    grad = torch.zeros(k, k, c_in, c_out, dtype=g_rows.dtype)
    for ky, kx, c, flat in offsets:
        grad[ky, kx].index_add_(0, c, g_rows.index_select(0, flat))
    return grad.permute(3, 2, 0, 1).contiguous()


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def measure(x: torch.Tensor, c_out: int, k: int, stride: int, padding: int, repeats: int):
    torch.manual_seed(0)
    weight = torch.randn(c_out, 2, k, k) * 0.1
    dense = F.conv2d(x, weight, stride=stride, padding=padding)
    n, _, h_out, w_out = dense.shape
    events = x.nonzero(as_tuple=True)
    offsets = _offsets(events, k, stride, padding, h_out, w_out)
    g = torch.randn_like(dense)
    g_rows = g.permute(0, 2, 3, 1).reshape(-1, c_out).contiguous()
    rows = n * h_out * w_out
    z = scatter_forward(offsets, weight, rows).reshape(n, h_out, w_out, c_out)
    grad_dense = torch.nn.grad.conv2d_weight(x, weight.shape, g, stride=stride, padding=padding)
    grad_scatter = gather_weight_grad(offsets, g_rows, weight.shape)
    return {
        "events": int(events[0].numel()),
        "density": float(events[0].numel() / x.numel()),
        # float32 sums in another order: the largest difference relative to the largest value
        "forward_rel_err": _rel_err(z.permute(0, 3, 1, 2), dense),
        "grad_rel_err": _rel_err(grad_scatter, grad_dense),
        "forward_dense_ms": _median_ms(
            lambda: F.conv2d(x, weight, stride=stride, padding=padding), repeats
        ),
        "forward_scatter_ms": _median_ms(lambda: scatter_forward(offsets, weight, rows), repeats),
        "grad_dense_ms": _median_ms(
            lambda: torch.nn.grad.conv2d_weight(x, weight.shape, g, stride=stride, padding=padding),
            repeats,
        ),
        "grad_scatter_ms": _median_ms(
            lambda: gather_weight_grad(offsets, g_rows, weight.shape), repeats
        ),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("SPIKELFP_DATA")
    ap.add_argument("--data-dir", default=str(Path(default) / "nmnist") if default else None)
    ap.add_argument("--steps", type=int, nargs="+", default=[16, 30, 300])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/bench_conv_scatter.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = Path(args.data_dir) if args.data_dir else None
    rows = []
    for t in args.steps:
        x, source = frames(data, t, args.batch)
        for name, layer in LAYERS.items():
            r = measure(x, repeats=args.repeats, **layer)
            rows.append({"layer": name, "T": t, "B": args.batch, "frames": source, **r})
            print(f"done {name} T={t}", flush=True)
    print(
        "\n| layer | T | density | forward dense ms | forward scatter ms | scatter/dense "
        "| weight feedback dense ms | events ms | events/dense | max rel. difference |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['layer']} | {r['T']} | {100 * r['density']:.2f} % | "
            f"{r['forward_dense_ms']:.1f} | {r['forward_scatter_ms']:.1f} | "
            f"{r['forward_scatter_ms'] / r['forward_dense_ms']:.2f} | {r['grad_dense_ms']:.1f} | "
            f"{r['grad_scatter_ms']:.1f} | {r['grad_scatter_ms'] / r['grad_dense_ms']:.2f} | "
            f"{max(r['forward_rel_err'], r['grad_rel_err']):.1e} |"
        )
    out = {
        "command": " ".join(["python", "benchmarks/bench_conv_scatter.py", *(argv or [])]),
        "threads": args.threads,
        "torch": torch.__version__,
        "rows": rows,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
