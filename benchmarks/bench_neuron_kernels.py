"""Speed of the neuron kernels' callers, before and after a change, in one run.

Times, on ``bench_step.py``'s networks (LIF, beta 0.9, threshold 1, delayed subtract reset):

* ``lfp``: one ``lfp_step`` (the LIF rule forward and backward on the native kernels);
* ``lfp_eager``: the same with the native kernels off (the rule's in-place eager path, which
  is also the GPU path);
* ``fwd``: spikelfp's forward under ``torch.no_grad()`` (the module's in-place path);
* ``fwd_eager``: the same with the native kernels off;
* ``bptt``: spikelfp's own BPTT baseline (``spikelfp.training.bptt.surrogate``), forward and
  backward of the spike-count cross-entropy (the module's autograd path).

With ``--before DIR`` (a folder holding an older ``spikelfp`` package, e.g. an export of the
previous commit), each round runs the old and the current code alternately, each in a fresh
process, so that both see the same machine load; the table gives the median of the per-round
medians and the ratio current/before (below 1: faster now).

Usage::

    python benchmarks/bench_neuron_kernels.py --before /tmp/spikelfp-before --rounds 3

Writes ``benchmarks/results/bench_neuron_kernels.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
METHODS = ("lfp", "lfp_eager", "fwd", "fwd_eager", "bptt")
BATCH = {"fc": 128, "conv": 16}


def child(kind: str, steps: int, repeats: int, threads: int) -> dict:
    """Median seconds per method for one network, in this process's ``spikelfp``."""
    import warnings

    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(HERE))
    from bench_step import build, time_round_robin

    from spikelfp import _native as native
    from spikelfp.training.bptt import surrogate

    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    fns, _ = build(kind, steps, 0.03, batch=BATCH[kind])
    lfp, lfp_eager = fns["lfp"], fns["lfp_eager"]
    spikelfp_fwd = fns["spikelfp_fwd"]
    # the spikelfp network and input of build(), from the closure of its forward
    cells = spikelfp_fwd.__code__.co_freevars, spikelfp_fwd.__closure__
    seen = {name: cell.cell_contents for name, cell in zip(*cells, strict=True)}
    net, x = seen["net"], seen["x"]
    labels = torch.randint(0, 10, (x.shape[1],), generator=torch.Generator().manual_seed(0))

    def fwd_eager():
        with native.disabled():
            spikelfp_fwd()

    def bptt():
        net.zero_grad(set_to_none=True)
        with surrogate(net):
            spikes, _ = net(x)
        F.cross_entropy(spikes.sum(0), labels).backward()

    todo = {"lfp": lfp, "lfp_eager": lfp_eager, "fwd": spikelfp_fwd, "fwd_eager": fwd_eager}
    todo["bptt"] = bptt
    timing = time_round_robin(todo, repeats)
    import spikelfp

    return {
        "spikelfp": str(Path(spikelfp.__file__).parent),
        **{m: timing[m]["median_s"] for m in METHODS},
    }


def run_child(pythonpath: str, kind: str, args) -> dict:
    env = dict(os.environ, PYTHONPATH=pythonpath)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind]
    cmd += ["--steps", str(args.steps), "--repeats", str(args.repeats)]
    cmd += ["--threads", str(args.threads)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"benchmark child failed ({kind}, {pythonpath}):\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default=None, help="folder holding the older spikelfp package")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per child (default 3)")
    ap.add_argument("--steps", type=int, default=30, help="time steps T (default 30)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kinds", default="fc,conv", help="networks: fc, conv (comma-separated)")
    ap.add_argument("--json", default="bench_neuron_kernels.json")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.repeats, args.threads)))
        return 0
    if args.before and not (Path(args.before) / "spikelfp" / "__init__.py").is_file():
        raise SystemExit(f"--before {args.before}: no spikelfp/__init__.py there")
    variants = {"current": str(ROOT)}
    if args.before:
        variants = {"before": str(Path(args.before).resolve()), **variants}
    kinds = [k for k in args.kinds.split(",") if k]
    runs = {v: {k: [] for k in kinds} for v in variants}
    started = time.time()
    for r in range(args.rounds):
        for kind in kinds:
            for name, path in variants.items():
                runs[name][kind].append(run_child(path, kind, args))
                elapsed = time.time() - started
                print(f"[{elapsed:.0f}s] round {r + 1} {kind} {name}", file=sys.stderr)
    result = {"steps": args.steps, "threads": args.threads, "rounds": args.rounds,
              "repeats": args.repeats, "load_average_end": os.getloadavg(), "runs": runs,
              "median_ms": {}}  # fmt: skip
    head = ["network", "method"] + [f"{v} (ms)" for v in variants]
    if args.before:
        head.append("current / before")
    rows = []
    for kind in kinds:
        for m in METHODS:
            med = {v: statistics.median(x[m] for x in runs[v][kind]) * 1e3 for v in variants}
            result["median_ms"].setdefault(kind, {})[m] = med
            row = [kind, m] + [f"{med[v]:.1f}" for v in variants]
            if args.before:
                ratio = med["current"] / med["before"]
                result["median_ms"][kind][m]["ratio"] = ratio
                row.append(f"{ratio:.2f}")
            rows.append(row)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    print("\n".join(lines))
    out = HERE / "results" / args.json
    out.parent.mkdir(exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(out)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
