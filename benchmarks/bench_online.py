"""Long sequences: full LFP, online LFP (windows of K steps) and snntorch BPTT, step time and
peak memory against T.

Usage::

    python benchmarks/bench_online.py                     # fc T=30..1000, conv T=30..300
    python benchmarks/bench_online.py --fc-steps 30 100 300 1000 3000 --conv-steps 30 100
    python benchmarks/bench_online.py --quick             # fc and conv at T=30, 100 only
    python benchmarks/bench_online.py --train             # whole training processes (below)

``--train``: the issue's 1-epoch N-MNIST run (``spikelfp train --dataset nmnist --model mlp
--max-train-samples 96 --val-fraction 0.1 --batch-size 32 --epochs 1``) as whole processes,
full LFP at ``--full-steps`` time bins, online LFP (``--online-window K``) at
``--online-steps``, BPTT at ``--bptt-steps``; peak resident memory of each process
(``ru_maxrss``), wall time, validation accuracy; ``--tree`` runs another checkout's spikelfp
(before/after). Writes ``bench_online_train.json``.

Networks as in ``bench_step.py`` (same weights in spikelfp and snntorch): ``fc`` 2312-256-10
LIF MLP and ``conv`` 2x34x34 -> conv(12,5) -> pool -> conv(32,5) -> pool -> 800-10, LIF with
beta=0.9, threshold 1, subtract reset delayed by one step; Bernoulli input at ``--density``
(default 3 %); weights scaled so that the hidden layers fire at about 10 %; batch ``--batch``.

Methods (SGD with momentum; rate-coded reward, scale 1/T, for LFP):

* ``lfp``: :func:`spikelfp.lfp.lfp_step` on the dense ``(T, B, ...)`` input;
* ``online``: :func:`spikelfp.lfp.online_lfp_step`, windows of ``--window`` steps (default 25),
  feedback summed over the sequence, the input kept as :class:`spikelfp.lfp.SparseFrames`
  (one window made dense at a time);
* ``bptt``: snntorch per-step loop, cross-entropy on the spike counts, ``loss.backward()``.

Step time: median wall time of ``--repeats`` steps (1 at T >= 300), the methods interleaved.
Peak memory: each (network, method, T) in a fresh process (glibc mmap threshold fixed), the
high-water mark of the first step above the resident memory before it
(``_common.measure_peak_memory`` without warm-up, so the optimiser's state is included); the
input's own memory is listed apart (``input MB``: dense float32 for ``lfp``/``bptt``, indices
and counts for ``online``). Ratios: online/lfp and online/bptt.

Writes ``benchmarks/results/bench_online.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
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

CONFIGS = {
    "fc": {"shape": (2312,), "layers": lambda: fc_layers([2312, 256, 10])},
    "conv": {"shape": (2, 34, 34), "layers": conv_layers},
}
METHODS = ("lfp", "online", "bptt")


def build(kind, steps, density, batch, window, methods=METHODS, seed=0):
    """Step functions of ``methods`` for one configuration, and the input's memory."""
    from spikelfp.lfp import SparseFrames, lfp_step, online_lfp_step, rate_coded_reward

    cfg = CONFIGS[kind]
    torch.manual_seed(seed)
    net = spikelfp_net(cfg["layers"](), beta=0.9)
    x = random_spike_frames(steps, batch, cfg["shape"], density, seed=seed)
    labels = torch.randint(0, 10, (batch,), generator=torch.Generator().manual_seed(seed))
    calibrate_init(net, x[: min(steps, 100)], rate=0.1)
    fns, input_mb = {}, {}

    def reward(out, target):
        return rate_coded_reward(out, target, 1.0 / steps)

    if "lfp" in methods:
        opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
        fns["lfp"] = lambda: lfp_step(net, x, labels, reward, opt)
        input_mb["lfp"] = x.numel() * 4 / 2**20
    if "online" in methods:
        sparse = SparseFrames.from_dense(x)
        opt_on = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
        fns["online"] = lambda: online_lfp_step(net, sparse, labels, reward, opt_on, window=window)
        input_mb["online"] = (sparse.index.numel() * 8 + sparse.value.numel() * 4) / 2**20
    if "bptt" in methods:
        snt = SnnTorchNet(cfg["layers"](), beta=0.9)
        copy_synapses(net, snt)
        opt_b = torch.optim.SGD(snt.parameters(), lr=1e-3, momentum=0.9)

        def bptt():
            opt_b.zero_grad(set_to_none=True)
            spikes, _ = snt(x)
            F.cross_entropy(spikes.sum(0), labels).backward()
            opt_b.step()

        fns["bptt"] = bptt
        input_mb["bptt"] = x.numel() * 4 / 2**20
    if "lfp" not in methods and "bptt" not in methods:
        del x  # online only: the dense input is not part of its process
    return fns, input_mb


def time_round_robin(fns, repeats):
    for f in fns.values():
        f()  # warm-up
    wall = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            wall[k].append(time.perf_counter() - t0)
    return {k: {"median_s": statistics.median(v), "times_s": v} for k, v in wall.items()}


def memory_probe(kind, method, steps, density, batch, window):
    """Peak memory of one step of ``method`` (run in a fresh process)."""
    warnings.filterwarnings("ignore")
    fns, input_mb = build(kind, steps, density, batch, window, methods=(method,))
    # no warm-up: a warm-up step's freed heap memory (BPTT's many small per-step tensors)
    # would be reused by the measured step and hide its memory
    result = measure_peak_memory(fns[method], warmup=0)
    result["input_mb"] = input_mb[method]
    return result


# -- whole training processes ---------------------------------------------------------------------
TRAIN_ARGS = [
    "--dataset", "nmnist", "--model", "mlp", "--max-train-samples", "96", "--val-fraction",
    "0.1", "--batch-size", "32", "--epochs", "1", "--threads", "1", "--no-progress",
]  # fmt: skip

_PEAK = (
    "import resource, runpy, sys\n"
    "sys.argv = ['spikelfp'] + sys.argv[1:]\n"
    "try:\n"
    "    runpy.run_module('spikelfp', run_name='__main__')\n"
    "finally:\n"
    "    print('@@PEAK@@', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)


def train_run(data_dir: str, out: str, extra: list[str], tree: str | None = None) -> dict:
    """One ``spikelfp train`` process (the issue's 1-epoch N-MNIST run): peak resident memory
    of the whole process (``ru_maxrss``), wall time and validation accuracy."""
    import re
    import subprocess

    root = Path(tree) if tree else Path(__file__).resolve().parents[1]  # spikelfp from there
    cmd = [sys.executable, "-c", _PEAK, "train", *TRAIN_ARGS, "--data-dir", data_dir]
    cmd += ["--out", out, "--overwrite", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
    wall = time.perf_counter() - t0
    peak = re.search(r"@@PEAK@@ (\d+)", proc.stderr)
    acc = re.search(r"val acc ([0-9.]+)", proc.stderr)
    if proc.returncode != 0 or peak is None:
        raise RuntimeError(f"spikelfp train {' '.join(extra)} failed:\n{proc.stderr[-2000:]}")
    return {
        "args": extra,
        "peak_rss_mb": int(peak.group(1)) / 1024,
        "wall_s": wall,
        "val_acc": float(acc.group(1)) if acc else None,
    }


def train_main(args) -> int:
    from _common import default_data_root

    data = Path(args.data_dir) if args.data_dir else default_data_root() / "nmnist"
    if not (data / "NMNIST").is_dir():
        print(f"skipped: no N-MNIST recordings in {data} (pass --data-dir)", file=sys.stderr)
        return 0
    runs = [("full LFP", ["--time-bins", str(t)]) for t in args.full_steps]
    runs += [
        ("online LFP", ["--time-bins", str(t), "--online-window", str(args.window)])
        for t in args.online_steps
    ]
    runs += [("BPTT", ["--time-bins", str(t), "--method", "bptt"]) for t in args.bptt_steps]
    results, rows = [], []
    base = None
    for name, extra in runs:
        out = f"/tmp/bench_online_{len(results)}"
        r = train_run(str(data), out, extra, args.tree)
        r["method"] = name
        base = r["peak_rss_mb"] if base is None else base
        r["peak_over_first"] = r["peak_rss_mb"] / base
        results.append(r)
        rows.append(
            [
                name,
                " ".join(extra),
                _fmt(r["peak_rss_mb"]),
                _fmt(r["peak_over_first"], 3),
                _fmt(r["wall_s"], 0),
                _fmt(r["val_acc"], 3),
            ]  # fmt: skip
        )
        print(f"done {name} {' '.join(extra)}", file=sys.stderr, flush=True)
    print(
        markdown_table(
            ["method", "arguments", "peak RSS MB", "peak / first run", "wall s", "val acc"], rows
        )
    )
    path = write_json(
        args.json or "bench_online_train.json",
        {
            "command": ["spikelfp", "train", *TRAIN_ARGS],
            "settings": {k: v for k, v in vars(args).items() if k != "data_dir"},
            "environment": environment(),
            "results": results,
        },
    )
    print(f"wrote {path}")
    return 0


def _fmt(v, nd=1):
    return "-" if v is None else f"{v:.{nd}f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fc-steps", type=int, nargs="*", default=[30, 100, 300, 1000])
    ap.add_argument("--conv-steps", type=int, nargs="*", default=[30, 100, 300])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--window", type=int, default=25)
    ap.add_argument("--density", type=float, default=0.03)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    ap.add_argument("--quick", action="store_true", help="T=30, 100 for both networks")
    ap.add_argument(
        "--train",
        action="store_true",
        help="instead: whole 1-epoch N-MNIST training processes (full LFP at --full-steps, "
        "online LFP with --online-window K at --online-steps, BPTT at --bptt-steps); peak "
        "resident memory",
    )
    ap.add_argument("--full-steps", type=int, nargs="*", default=[25], help="--train: full LFP")
    ap.add_argument("--online-steps", type=int, nargs="*", default=[1000], help="--train: online")
    ap.add_argument("--bptt-steps", type=int, nargs="*", default=[], help="--train: BPTT")
    ap.add_argument("--tree", default=None, help="--train: run the spikelfp of this checkout")
    ap.add_argument("--json", default=None, help="results file name (in benchmarks/results)")
    ap.add_argument("--data-dir", default=None, help="folder holding NMNIST/Train")
    args = ap.parse_args(argv)
    if args.train:
        return train_main(args)
    if args.quick:
        args.fc_steps, args.conv_steps = [30, 100], [30, 100]
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    rows, results = [], []
    for kind, steps_list in (("fc", args.fc_steps), ("conv", args.conv_steps)):
        for steps in steps_list:
            fns, input_mb = build(kind, steps, args.density, args.batch, args.window)
            timing = time_round_robin(fns, 1 if steps >= 300 else args.repeats)
            del fns
            memory = {}
            if not args.no_memory:
                for m in METHODS:
                    memory[m] = run_in_subprocess(
                        "bench_online",
                        "memory_probe",
                        {
                            "kind": kind,
                            "method": m,
                            "steps": steps,
                            "density": args.density,
                            "batch": args.batch,
                            "window": args.window,
                        },
                        threads=args.threads,
                    )
            t = {m: timing[m]["median_s"] for m in METHODS}
            mem = {m: memory[m]["peak_mb"] for m in memory}
            entry = {
                "net": kind,
                "T": steps,
                "batch": args.batch,
                "window": args.window,
                "time": timing,
                "memory": memory,
                "input_mb": input_mb,
                "time_online_over_lfp": t["online"] / t["lfp"],
                "time_online_over_bptt": t["online"] / t["bptt"],
                "time_lfp_over_bptt": t["lfp"] / t["bptt"],
            }
            if mem:
                entry["mem_online_over_lfp"] = mem["online"] / mem["lfp"]
                entry["mem_online_over_bptt"] = mem["online"] / mem["bptt"]
                entry["mem_lfp_over_bptt"] = mem["lfp"] / mem["bptt"]
            results.append(entry)
            rows.append(
                [
                    kind,
                    steps,
                    *(_fmt(t[m] * 1000, 0) for m in METHODS),
                    *(_fmt(mem.get(m)) for m in METHODS),
                    _fmt(input_mb["lfp"]),
                    _fmt(input_mb["online"], 2),
                    _fmt(entry["time_online_over_lfp"], 2),
                    _fmt(entry["time_online_over_bptt"], 2),
                    _fmt(entry.get("mem_online_over_lfp"), 2),
                    _fmt(entry.get("mem_online_over_bptt"), 2),
                ]
            )
            write_json(  # after every row: a long run that is cut off keeps what it measured
                args.json or "bench_online.json",
                {"settings": vars(args), "environment": environment(), "results": results},
            )
            print(f"done {kind} T={steps}", file=sys.stderr, flush=True)
    header = [
        "net",
        "T",
        "LFP ms",
        f"online K={args.window} ms",
        "BPTT ms",
        "LFP peak MB",
        "online peak MB",
        "BPTT peak MB",
        "dense input MB",
        "sparse input MB",
        "time online/LFP",
        "time online/BPTT",
        "mem online/LFP",
        "mem online/BPTT",
    ]
    print(markdown_table(header, rows))
    path = write_json(
        args.json or "bench_online.json",
        {"settings": vars(args), "environment": environment(), "results": results},
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
