"""Speed and memory of one LFP training step against snntorch surrogate-gradient BPTT.

Usage::

    python benchmarks/bench_step.py            # full run (~6 min on 2 idle cores)
    python benchmarks/bench_step.py --quick    # smaller: 3 repeats, T-scaling at T=10,30 only

Networks (the same architecture in spikelfp and in snntorch, same weights):

* ``fc``: 2312-256-10 LIF MLP, T=30, B=128 (N-MNIST frames flattened);
* ``conv``: 2x34x34 -> Conv2d(2,12,5) -> LIF -> MaxPool2 -> Conv2d(12,32,5) -> LIF -> MaxPool2
  -> Flatten -> Linear(800,10) -> LIF, T=30, B=64.

Inputs are Bernoulli spike frames at ``--density`` (default 3 %, like N-MNIST binned into 30
frames, which has 3.9 %). Neurons: LIF with beta=0.9, threshold 1, subtract reset delayed by
one step (snntorch ``Leaky``'s defaults); weights are scaled so that the hidden layers fire
at about 10 % (see ``_common.calibrate_init``).

Methods, timed round-robin in the same process (``torch.set_num_threads(2)``), once per setting
of ``spikelfp.reuse_freed_memory`` (see ``spikelfp.allocator``): ``peak`` (the default: freed
large tensors are reused within the step's memory peak), ``all`` (every freed block is
kept) and ``off`` (every step gets fresh, kernel-zeroed pages); minor page faults per call are
recorded. The T-scaling runs ``peak`` and ``all``; the sparsity part the default:

* ``lfp``: ``spikelfp.lfp.lfp_step`` with ``rate_coded_reward`` (scale 1/T) and SGD(momentum);
* ``lfp_events``: the same step from event input (:class:`spikelfp.SparseFrames`, made once
  outside the timing, as the sparse loader delivers it): a first ``Linear`` is computed and
  decomposed from the events (CSR products); a conv net gets the dense frames;
* ``lfp_eager``: the same step with the native kernels off (``spikelfp._native.disabled()``);
  main comparison only, timed on its own after the others, to show what the fused kernels
  bring;
* ``bptt``: snntorch, per-step loop over ``snn.Leaky`` (fast-sigmoid surrogate),
  cross-entropy on the spike counts, ``loss.backward()``, SGD(momentum) step;
* ``fwd``: the same snntorch network's forward under ``torch.no_grad()`` (the floor);
* ``spikelfp_fwd``: spikelfp's own forward under ``torch.no_grad()`` (for reference).

Peak memory: each (network, method, T) in a fresh Python process (``MALLOC_MMAP_THRESHOLD_``
fixed at 128 KiB so that freed tensors go back to the OS); after two warm-up steps the kernel's
RSS high-water mark is reset (``/proc/self/clear_refs``) and one more step is run; the peak is
``VmHWM - VmRSS before the step`` (what the step needs on top of model, data and optimizer;
the free blocks the pool kept from the warm-up steps count as the step's).

Writes ``benchmarks/results/bench_step.json`` and prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    SnnTorchNet,
    calibrate_init,
    conv_layers,
    copy_synapses,
    environment,
    fc_layers,
    markdown_table,
    measure_peak_memory,
    random_spike_frames,
    run_in_subprocess,
    spikelfp_net,
    write_json,
)

from spikelfp import _native as native  # noqa: E402
from spikelfp.allocator import REUSE_MODES, reuse_freed_memory  # noqa: E402

CONFIGS = {
    "fc": {"batch": 128, "shape": (2312,), "layers": lambda: fc_layers([2312, 256, 10])},
    "conv": {"batch": 64, "shape": (2, 34, 34), "layers": conv_layers},
}
METHODS = ("lfp", "lfp_events", "lfp_eager", "bptt", "fwd", "spikelfp_fwd")


def build(kind: str, steps: int, density: float, seed: int = 0, batch: int | None = None):
    """The step functions of every method for one configuration (shared weights and data)."""
    from spikelfp import SparseFrames
    from spikelfp.lfp import lfp_step, rate_coded_reward

    cfg = CONFIGS[kind]
    batch = batch or cfg["batch"]
    torch.manual_seed(seed)
    net = spikelfp_net(cfg["layers"](), beta=0.9)
    x = random_spike_frames(steps, batch, cfg["shape"], density, seed=seed)
    labels = torch.randint(0, 10, (batch,), generator=torch.Generator().manual_seed(seed))
    rates = calibrate_init(net, x[:, : min(batch, 32)], rate=0.1)
    snt = SnnTorchNet(cfg["layers"](), beta=0.9)
    copy_synapses(net, snt)
    opt_lfp = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    opt_bptt = torch.optim.SGD(snt.parameters(), lr=1e-3, momentum=0.9)

    def reward(out, target):
        return rate_coded_reward(out, target, 1.0 / out.shape[0])

    def lfp():
        lfp_step(net, x, labels, reward, opt_lfp)

    events = SparseFrames.from_dense(x)  # the data as it arrives from the sparse loader

    def lfp_events():
        lfp_step(net, events, labels, reward, opt_lfp)

    def lfp_eager():
        with native.disabled():
            lfp_step(net, x, labels, reward, opt_lfp)

    def bptt():
        opt_bptt.zero_grad(set_to_none=True)
        spikes, _ = snt(x)
        F.cross_entropy(spikes.sum(0), labels).backward()
        opt_bptt.step()

    def fwd():
        with torch.no_grad():
            snt(x)

    def spikelfp_fwd():
        with torch.no_grad():
            net(x)

    fns = {
        "lfp": lfp,
        "lfp_events": lfp_events,
        "lfp_eager": lfp_eager,
        "bptt": bptt,
        "fwd": fwd,
        "spikelfp_fwd": spikelfp_fwd,
    }
    return fns, {"init_rates": rates, "input_density": x.mean().item()}


def time_round_robin(fns: dict, repeats: int, warmup: int = 1) -> dict:
    """Median wall/CPU seconds per method, the methods interleaved in every round."""
    for f in fns.values():
        for _ in range(warmup):
            f()
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            f()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    out = {}
    for k in fns:
        out[k] = {
            "median_s": statistics.median(wall[k]),
            "min_s": min(wall[k]),
            "max_s": max(wall[k]),
            "cpu_median_s": statistics.median(cpu[k]),
            "times_s": wall[k],
        }
    return out


def memory_probe(
    kind: str, method: str, steps: int, density: float, threads: int = 2, reuse: str = "peak"
) -> dict:
    """Peak memory of one step of ``method`` (run in a fresh process by the benchmark)."""
    torch.set_num_threads(threads)
    reuse_freed_memory(reuse)
    warnings.filterwarnings("ignore")
    fns, _ = build(kind, steps, density)
    fn = fns[method]
    for other in [m for m in fns if m != method]:
        fns[other] = None  # nothing else runs in this process
    return measure_peak_memory(fn, warmup=2)


def sparse_first_layer(
    densities, repeats: int, rows: int = 3840, n_in: int = 2312, n_out: int = 256
) -> list[dict]:
    """Does spike sparsity pay for the first Linear layer (T·B x 2312 @ 2312 x 256)?

    Times (median of ``repeats``) the dense forward ``x W^T + b`` and weight feedback
    ``n^T x`` against the same with ``x`` (and ``x^T``) in sparse CSR, with and without the
    per-step conversion of the dense spike tensor (``nonzero`` -> CSR, CSR -> CSC for ``x^T``;
    ``Tensor.to_sparse_csr`` is slower and reported separately).
    """
    warnings.filterwarnings("ignore", category=UserWarning)  # sparse beta / invariant notes
    g = torch.Generator().manual_seed(0)
    w = torch.randn(n_out, n_in, generator=g) * 0.02
    b = torch.zeros(n_out)
    n = torch.randn(rows, n_out, generator=g)
    rows_out = []

    def med(f):
        f()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts) * 1e3

    for d in densities:
        x = (torch.rand(rows, n_in, generator=g) < d).float()
        rows_out.append({"density": d, **_sparse_row(x, w, b, n, med)})
    return rows_out


def _to_csr(x: torch.Tensor) -> torch.Tensor:
    """Dense 2-D -> sparse CSR via ``nonzero`` (faster than ``Tensor.to_sparse_csr`` here)."""
    idx = x.nonzero()
    crow = torch.zeros(x.shape[0] + 1, dtype=torch.int64)
    crow[1:] = torch.bincount(idx[:, 0], minlength=x.shape[0]).cumsum(0)
    return torch.sparse_csr_tensor(crow, idx[:, 1].contiguous(), x[idx[:, 0], idx[:, 1]], x.shape)


def _transpose_csr(xs: torch.Tensor) -> torch.Tensor:
    """CSR of ``x`` -> CSR of ``x^T`` (through CSC)."""
    c = xs.to_sparse_csc()
    return torch.sparse_csr_tensor(
        c.ccol_indices(), c.row_indices(), c.values(), (xs.shape[1], xs.shape[0])
    )


def _sparse_row(x, w, b, n, med) -> dict:
    xs = _to_csr(x)
    xts = _transpose_csr(xs)
    assert torch.allclose(torch.addmm(b, xs, w.t()), F.linear(x, w, b), atol=1e-4)
    assert torch.allclose(torch.sparse.mm(xts, n).t(), n.t() @ x, atol=1e-3)
    row = {
        "dense_forward_ms": med(lambda: F.linear(x, w, b)),
        "sparse_forward_ms": med(lambda: torch.addmm(b, xs, w.t())),
        "dense_weight_feedback_ms": med(lambda: n.t() @ x),
        "sparse_weight_feedback_ms": med(lambda: torch.sparse.mm(xts, n)),
        "to_csr_ms": med(lambda: _to_csr(x)),
        "csr_transpose_ms": med(lambda: _transpose_csr(xs)),
        "torch_to_sparse_csr_ms": med(lambda: x.to_sparse_csr()),
    }
    row["dense_total_ms"] = row["dense_forward_ms"] + row["dense_weight_feedback_ms"]
    row["sparse_total_ms"] = row["sparse_forward_ms"] + row["sparse_weight_feedback_ms"]
    row["sparse_total_with_conversion_ms"] = (
        row["sparse_total_ms"] + row["to_csr_ms"] + row["csr_transpose_ms"]
    )
    return row


def input_check_cost(kind: str, steps: int, density: float, repeats: int) -> dict:
    """What ``lfp_step``'s NaN/inf input check costs: ``aminmax`` (what it does) against
    ``torch.isfinite(x).all()`` (which allocates two input-sized temporaries)."""
    cfg = CONFIGS[kind]
    x = random_spike_frames(steps, cfg["batch"], cfg["shape"], density)
    ts = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        bool(torch.isfinite(x).all())
        ts.append(time.perf_counter() - t0)
    ts2 = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        lo, hi = torch.aminmax(x)
        bool(torch.isfinite(lo) & torch.isfinite(hi))
        ts2.append(time.perf_counter() - t0)
    return {
        "isfinite_all_ms": statistics.median(ts[1:]) * 1e3,
        "aminmax_ms": statistics.median(ts2[1:]) * 1e3,
    }


def fmt(v, nd=1):
    return f"{v:.{nd}f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 repeats, T-scaling at T=10,30")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats (default 7; 3 quick)")
    ap.add_argument("--density", type=float, default=0.03, help="input spike density")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    ap.add_argument("--scaling", default=None, help="comma-separated T values for T-scaling")
    ap.add_argument("--json", default="bench_step.json", help="file name under benchmarks/results")
    args = ap.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 7)
    scaling = (
        [int(t) for t in args.scaling.split(",")]
        if args.scaling
        else ([10, 30] if args.quick else [10, 30, 100, 300])
    )
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    started = time.time()
    load_before = os.getloadavg()
    result = {
        "environment": environment(),
        "native_kernels": native.status().detail,
        "threads": args.threads,
        "density": args.density,
        "repeats": repeats,
        "load_average_before": load_before,
        "main": {},
        "scaling": {},
        "sparsity": [],
        "notes": [],
    }

    def probe(kind: str, method: str, steps: int, reuse: str = "peak") -> dict:
        return run_in_subprocess(
            "bench_step",
            "memory_probe",
            {
                "kind": kind,
                "method": method,
                "steps": steps,
                "density": args.density,
                "threads": args.threads,
                "reuse": reuse,
            },
        )

    # ---- main comparison at T=30, once per memory setting -------------------------------
    rows = []
    memory = {}

    def main_comparison(mode: str) -> None:
        reuse_freed_memory(mode)
        result["main"][mode] = {}
        for kind in CONFIGS:
            fns, info = build(kind, 30, args.density)
            eager = fns.pop("lfp_eager")
            usage0 = resource.getrusage(resource.RUSAGE_SELF)
            timing = time_round_robin(fns, repeats)
            usage1 = resource.getrusage(resource.RUSAGE_SELF)
            # the eager step on its own (its larger tensors would otherwise raise the pool's
            # high-water mark for the native step)
            reuse_freed_memory(mode)
            timing["lfp_eager"] = time_round_robin({"lfp_eager": eager}, repeats)["lfp_eager"]
            entry = {"T": 30, "batch": CONFIGS[kind]["batch"], **info, "timing": timing}
            entry["minor_page_faults_per_call"] = (usage1.ru_minflt - usage0.ru_minflt) / (
                (repeats + 1) * len(fns)
            )
            t = {k: v["median_s"] * 1e3 for k, v in timing.items()}
            entry["lfp_over_bptt"] = t["lfp"] / t["bptt"]
            entry["lfp_events_over_bptt"] = t["lfp_events"] / t["bptt"]
            entry["lfp_over_fwd"] = t["lfp"] / t["fwd"]
            if not args.no_memory:
                if kind not in memory:
                    memory[kind] = {m: probe(kind, m, 30) for m in ("lfp", "bptt", "fwd")}
                mem = dict(memory[kind])
                if mode != "peak":
                    mem["lfp"] = probe(kind, "lfp", 30, reuse=mode)
                entry["memory"] = mem
                entry["lfp_mem_over_bptt"] = mem["lfp"]["peak_mb"] / mem["bptt"]["peak_mb"]
            entry["input_check"] = input_check_cost(kind, 30, args.density, repeats)
            result["main"][mode][kind] = entry
            del fns
            mem_cells = (
                [
                    fmt(entry["memory"]["lfp"]["peak_mb"]),
                    fmt(entry["memory"]["bptt"]["peak_mb"]),
                    fmt(entry["lfp_mem_over_bptt"], 2),
                ]
                if not args.no_memory
                else ["-"] * 3
            )
            rows.append(
                [
                    kind,
                    mode,
                    30,
                    CONFIGS[kind]["batch"],
                    fmt(t["lfp"]),
                    fmt(t["lfp_events"]),
                    fmt(t["lfp_eager"]),
                    fmt(t["bptt"]),
                    fmt(t["fwd"]),
                    fmt(t["spikelfp_fwd"]),
                    fmt(entry["lfp_over_bptt"], 2),
                    fmt(entry["lfp_events_over_bptt"], 2),
                    fmt(entry["lfp_over_fwd"], 2),
                    *mem_cells,
                    fmt(entry["input_check"]["aminmax_ms"]),
                    fmt(entry["input_check"]["isfinite_all_ms"]),
                ]
            )
            print(
                f"[{time.time() - started:.0f}s] {kind} ({mode} memory): done",
                file=sys.stderr,
                flush=True,
            )
        reuse_freed_memory()

    for mode in REUSE_MODES:
        main_comparison(mode)

    # ---- T-scaling (LFP with both memory settings) ---------------------------------------
    srows = []
    for kind in CONFIGS:
        result["scaling"][kind] = {}
        for steps in scaling:
            fns, _ = build(kind, steps, args.density)
            reps = repeats if steps <= 100 else max(3, repeats // 2)
            pair = {k: fns[k] for k in ("lfp", "bptt")}
            timing = time_round_robin(pair, reps)
            # "all": timed against BPTT again, in its own round-robin (same conditions)
            reuse_freed_memory("all")
            kept = time_round_robin(pair, reps)
            reuse_freed_memory()
            timing["lfp_all"], timing["bptt_all_run"] = kept["lfp"], kept["bptt"]
            entry = {"timing": timing, "repeats": reps}
            del fns
            if not args.no_memory:
                entry["memory"] = {m: probe(kind, m, steps) for m in ("lfp", "bptt")}
                entry["memory"]["lfp_all"] = probe(kind, "lfp", steps, reuse="all")
            result["scaling"][kind][steps] = entry
            t = {k: v["median_s"] * 1e3 for k, v in timing.items()}
            mem = entry.get("memory")
            srows.append(
                [
                    kind,
                    steps,
                    fmt(t["lfp"]),
                    fmt(t["lfp_all"]),
                    fmt(t["bptt"]),
                    fmt(t["lfp"] / t["bptt"], 2),
                    fmt(t["lfp_all"] / t["bptt_all_run"], 2),
                    *(
                        [
                            fmt(mem["lfp"]["peak_mb"]),
                            fmt(mem["lfp_all"]["peak_mb"]),
                            fmt(mem["bptt"]["peak_mb"]),
                            fmt(mem["lfp"]["peak_mb"] / mem["bptt"]["peak_mb"], 2),
                        ]
                        if mem
                        else ["-"] * 4
                    ),
                ]
            )
            print(
                f"[{time.time() - started:.0f}s] scaling {kind} T={steps}: done",
                file=sys.stderr,
                flush=True,
            )
    scaling_table = markdown_table(
        [
            "net",
            "T",
            "LFP ms",
            "LFP all ms",
            "BPTT ms",
            "LFP/BPTT",
            "LFP all/BPTT",
            "LFP peak MB",
            "LFP all peak MB",
            "BPTT peak MB",
            "LFP/BPTT mem",
        ],
        srows,
    )

    # ---- sparsity ------------------------------------------------------------------------
    densities = [0.01, 0.03, 0.05] if args.quick else [0.01, 0.02, 0.03, 0.05]
    result["sparsity"] = sparse_first_layer(densities, repeats)
    sp_rows = [
        [
            f"{r['density']:.0%}",
            fmt(r["dense_forward_ms"]),
            fmt(r["sparse_forward_ms"]),
            fmt(r["dense_weight_feedback_ms"]),
            fmt(r["sparse_weight_feedback_ms"]),
            fmt(r["to_csr_ms"] + r["csr_transpose_ms"]),
            fmt(r["dense_total_ms"]),
            fmt(r["sparse_total_ms"]),
            fmt(r["sparse_total_with_conversion_ms"]),
        ]
        for r in result["sparsity"]
    ]
    sparse_table = markdown_table(
        [
            "input density",
            "dense fwd ms",
            "CSR fwd ms",
            "dense n^T x ms",
            "CSR x^T n ms",
            "dense->CSR of x and x^T ms",
            "dense total",
            "CSR total (input already CSR)",
            "CSR total incl. conversion",
        ],
        sp_rows,
    )

    main_table = markdown_table(
        [
            "net",
            "memory",
            "T",
            "B",
            "LFP step ms",
            "LFP from events ms",
            "LFP eager ms",
            "BPTT step ms",
            "snntorch no-grad fwd ms",
            "spikelfp no-grad fwd ms",
            "LFP/BPTT",
            "LFP events/BPTT",
            "LFP/fwd",
            "LFP peak MB",
            "BPTT peak MB",
            "LFP/BPTT mem",
            "of LFP: input check ms",
            "(isfinite(x) would be ms)",
        ],
        rows,
    )

    result["load_average_after"] = os.getloadavg()
    result["wall_s"] = time.time() - started
    result["tables"] = {"main": main_table, "scaling": scaling_table, "sparsity": sparse_table}
    path = write_json(args.json, result)
    print(
        f"## One training step, {args.threads} threads, input density {args.density:.0%}, "
        f"median of {repeats}\n"
    )
    print(main_table)
    print(f"\n## T-scaling (B as above)\n\n{scaling_table}")
    print(
        f"\n## First Linear layer (3840 x 2312 @ 2312 x 256): does spike sparsity pay?\n\n"
        f"{sparse_table}"
    )
    print(
        f"\nload average before {load_before[0]:.1f}, after {result['load_average_after'][0]:.1f}"
        f"; {result['wall_s']:.0f} s; wrote {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
