"""Data-pipeline throughput: real N-MNIST recordings -> (30, 2, 34, 34) frames.

Compares, on the same files and producing the same float32 frame tensors:

* tonic: ``tonic.io.read_mnist_file`` + ``tonic.transforms.ToFrame`` per file (what
  ``tonic.datasets.NMNIST`` does; its class itself refuses an extracted subset, so it is
  emulated file by file);
* spikelfp ``NMNIST`` without a cache (every epoch pays the preprocessing);
* spikelfp ``NMNIST(cache_dir=...)``: the first epoch builds the HDF5 cache, later epochs read it;
* a cached epoch through ``make_loader`` (batches of 64, time-first, padded).

Each measurement is the median of ``--repeats`` runs (wall clock; the process CPU time is
reported too, as a check on a busy machine). Also times generating the built-in DigitsEvents
dataset. Prints a markdown table and writes JSON.

    python benchmarks/bench_data.py --data /path/to/shared/data [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

N_BINS = 30


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def median_runs(fn: Callable[[], Any], repeats: int) -> dict[str, Any]:
    runs = [timed(fn) for _ in range(repeats)]
    return {
        "wall_s": [r[0] for r in runs],
        "cpu_s": [r[1] for r in runs],
        "median_wall_s": statistics.median(r[0] for r in runs),
        "median_cpu_s": statistics.median(r[1] for r in runs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        default=os.environ.get("SPIKELFP_DATA"),
        help="shared data folder holding nmnist/NMNIST/Train (default: $SPIKELFP_DATA)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (>= 3)")
    parser.add_argument("--gen-repeats", type=int, default=1, help="runs of the generator")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N files")
    parser.add_argument(
        "--json",
        default=str(Path(__file__).parent / "results" / "bench_data.json"),
        help="where to write the results",
    )
    args = parser.parse_args(argv)
    if not args.data:
        parser.error("no data folder: pass --data or set SPIKELFP_DATA")
    root = Path(args.data) / "nmnist"
    if not (root / "NMNIST" / "Train").is_dir():
        parser.error(f"no N-MNIST recordings under {root}/NMNIST/Train")

    import tonic

    from spikelfp.datasets import NMNIST, FrameSpec, make_digits_events, make_loader

    spec = FrameSpec(n_time_bins=N_BINS)
    plain = NMNIST(root, "train", frames=spec)
    files = plain.files[: args.limit] if args.limit else plain.files
    n = len(files)
    to_frame = tonic.transforms.ToFrame(sensor_size=NMNIST.sensor_size, n_time_bins=N_BINS)
    dtype = tonic.datasets.NMNIST.dtype

    def tonic_epoch() -> None:
        for f in files:
            frames = to_frame(tonic.io.read_mnist_file(str(f), dtype=dtype))
            torch.from_numpy(frames.astype(np.float32))

    def epoch(ds: NMNIST) -> Callable[[], None]:
        def run() -> None:
            for i in range(n):
                ds[i]

        return run

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        tmp_path = Path(tmp)
        build_runs = []
        for r in range(args.repeats):  # first epoch with a cache = building it
            cache_dir = tmp_path / f"cache{r}"
            build_runs.append(
                timed(lambda d=cache_dir: NMNIST(root, "train", spec, cache_dir=d, progress=False))
            )
        cached = NMNIST(root, "train", spec, cache_dir=tmp_path / "cache0", progress=False)
        assert cached.cache is not None, "the cache was not built"
        for i in (0, n // 2, n - 1):
            assert torch.equal(cached[i][0], plain[i][0]), "cached frames differ"
        results["tonic reader + ToFrame"] = median_runs(tonic_epoch, args.repeats)
        results["spikelfp NMNIST, uncached epoch"] = median_runs(epoch(plain), args.repeats)
        results["spikelfp NMNIST, first epoch building the cache"] = {
            "wall_s": [b[0] for b in build_runs],
            "cpu_s": [b[1] for b in build_runs],
            "median_wall_s": statistics.median(b[0] for b in build_runs),
            "median_cpu_s": statistics.median(b[1] for b in build_runs),
        }
        results["spikelfp NMNIST, cached epoch"] = median_runs(epoch(cached), args.repeats)
        loader = make_loader(cached, batch_size=64)
        results["spikelfp cached epoch via make_loader (B=64)"] = median_runs(
            lambda: [b for b in loader], args.repeats
        )
        cache_mb = cached.cache_path.stat().st_size / 1e6
        gen = median_runs(
            lambda: make_digits_events(tempfile.mkdtemp(dir=tmp_path, prefix="digits_"), seed=0),
            args.gen_repeats,
        )

    for row in results.values():
        row["samples"] = n
        row["samples_per_s"] = n / row["median_wall_s"]
        row["samples_per_cpu_s"] = n / row["median_cpu_s"] if row["median_cpu_s"] else None
    uncached = results["spikelfp NMNIST, uncached epoch"]
    cached_row = results["spikelfp NMNIST, cached epoch"]
    speedup_wall = uncached["median_wall_s"] / cached_row["median_wall_s"]
    speedup_cpu = uncached["median_cpu_s"] / cached_row["median_cpu_s"]

    print(
        f"\nN-MNIST, {n} real recordings -> ({N_BINS}, 2, 34, 34) float32 frames, "
        f"median of {args.repeats} runs\n"
    )
    print("| pipeline | samples/s (wall) | samples/s (CPU time) | epoch wall (s) |")
    print("|---|---:|---:|---:|")
    for name, row in results.items():
        per_cpu = row["samples_per_cpu_s"]
        print(
            f"| {name} | {row['samples_per_s']:,.0f} | "
            f"{per_cpu:,.0f} | {row['median_wall_s']:.3f} |"
            if per_cpu
            else f"| {name} | {row['samples_per_s']:,.0f} | - | {row['median_wall_s']:.3f} |"
        )
    print(
        f"\ncached vs uncached epoch: {speedup_wall:.1f}x (wall), {speedup_cpu:.1f}x (CPU); "
        f"cache file {cache_mb:.1f} MB"
    )
    print(
        f"built-in DigitsEvents generation (1,797 recordings): "
        f"{gen['median_wall_s']:.1f} s wall, {gen['median_cpu_s']:.1f} s CPU "
        f"(median of {args.gen_repeats})"
    )
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    report = {
        "benchmark": "bench_data",
        "frames": [N_BINS, 2, 34, 34],
        "repeats": args.repeats,
        "results": results,
        "speedup_cached_vs_uncached_wall": speedup_wall,
        "speedup_cached_vs_uncached_cpu": speedup_cpu,
        "cache_file_mb": cache_mb,
        "digits_generation": gen,
        "environment": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
            "tonic": getattr(tonic, "__version__", "unknown"),
            "cpus": os.cpu_count(),
            "load_average": load,
            "platform": platform.platform(),
        },
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")
    if speedup_wall < 10 and speedup_cpu < 10:
        print("WARNING: the cached epoch is less than 10x faster than the uncached one")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
