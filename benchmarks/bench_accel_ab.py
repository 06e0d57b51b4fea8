"""A/B timing of one LFP training step between two source trees, robust to a busy machine.

Usage::

    git -C /work/main archive HEAD | tar -x -C /tmp/before   # the tree to compare against
    python benchmarks/bench_accel_ab.py --tree before=/tmp/before --tree after=.

Each round runs one fresh Python process per tree, alternating (A, B, A, B, ...), with the
tree first on ``PYTHONPATH``. A process builds the ``bench_step.py`` networks (``fc``:
2312-256-10 LIF, T=30, B=128; ``conv``: the N-MNIST conv net at a reduced T=10, B=32, same
weights and spikes in every process) and times ``lfp_step`` with the native kernels
(``lfp``) and without them (``lfp_eager``): two warm-up steps, then ``--steps`` timed steps,
on ``--threads`` torch threads (default 1: with more, threads that wait for a preempted peer
spin and count as CPU time).
Per tree and setting the table reports the **minimum** over all timed steps of the wall time
and of the process CPU time (``time.process_time``, which other processes on the machine
barely affect), and the ratio of the second tree to the first. The minimum is what the code
costs when nothing else intervenes; on a shared machine medians mostly measure the others.

The processes also check that every tree computes the same bits (a hash of the parameters
after the timed steps): the table's last column.

Writes ``benchmarks/results/bench_accel_ab.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETTINGS = [(net, method) for net in ("fc", "conv") for method in ("lfp", "lfp_eager")]


def child(steps: int, threads: int) -> dict:
    """Time the settings in this process (the tree is whatever ``spikelfp`` imports)."""
    import torch

    sys.path.insert(0, str(HERE))
    from _common import calibrate_init, conv_layers, fc_layers, random_spike_frames, spikelfp_net

    import spikelfp
    from spikelfp import _native as native
    from spikelfp.lfp import lfp_step, rate_coded_reward

    torch.set_num_threads(threads)
    configs = {
        "fc": (lambda: fc_layers([2312, 256, 10]), (2312,), 30, 128),
        "conv": (conv_layers, (2, 34, 34), 10, 32),
    }
    out = {"spikelfp": spikelfp.__file__}
    for net_kind, method in SETTINGS:
        layers, shape, t, b = configs[net_kind]
        torch.manual_seed(0)
        net = spikelfp_net(layers(), beta=0.9)
        x = random_spike_frames(t, b, shape, 0.03, seed=0)
        labels = torch.randint(0, 10, (b,), generator=torch.Generator().manual_seed(0))
        calibrate_init(net, x[:, : min(b, 32)], rate=0.1)
        opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)

        def reward(o, target):
            return rate_coded_reward(o, target, 1.0 / o.shape[0])

        walls, cpus = [], []
        for i in range(2 + steps):
            w0, c0 = time.perf_counter(), time.process_time()
            if method == "lfp_eager":
                with native.disabled():
                    lfp_step(net, x, labels, reward, opt)
            else:
                lfp_step(net, x, labels, reward, opt)
            if i >= 2:
                walls.append(time.perf_counter() - w0)
                cpus.append(time.process_time() - c0)
        h = hashlib.sha256()
        for p in net.parameters():
            h.update(p.detach().contiguous().numpy().tobytes())
        out[f"{net_kind}/{method}"] = {
            "wall_ms": [1e3 * w for w in walls],
            "cpu_ms": [1e3 * c for c in cpus],
            "params_sha256": h.hexdigest()[:16],
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", action="append", required=True, help="NAME=PATH (twice)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per process and setting")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time is exact)")
    ap.add_argument("--json", default="bench_accel_ab.json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.steps, args.threads)))
        return
    trees = [t.split("=", 1) for t in args.tree]
    if len(trees) != 2 or any(len(t) != 2 for t in trees):
        ap.error("give exactly two trees: --tree NAME=PATH --tree NAME=PATH")
    runs: dict[str, list[dict]] = {name: [] for name, _ in trees}
    t0 = time.time()
    load_before = os.getloadavg()
    for r in range(args.rounds):
        for name, path in trees:
            env = dict(os.environ, PYTHONPATH=str(Path(path).resolve()))
            cmd = [sys.executable, __file__, "--child", "--steps", str(args.steps)]
            cmd += ["--threads", str(args.threads)]
            cmd += [a for t in args.tree for a in ("--tree", t)]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(f"[{time.time() - t0:.0f}s] round {r + 1} {name}: done", flush=True)
    (a, _), (b, _) = trees
    header = ["net", "method", f"{a} wall ms", f"{b} wall ms", "wall ratio"]
    header += [f"{a} CPU ms", f"{b} CPU ms", "CPU ratio", "same bits"]
    rows, table = [], []
    for net_kind, method in SETTINGS:
        key = f"{net_kind}/{method}"
        stat = {}
        for name in (a, b):
            stat[name] = {
                "wall_ms_min": min(w for run in runs[name] for w in run[key]["wall_ms"]),
                "cpu_ms_min": min(c for run in runs[name] for c in run[key]["cpu_ms"]),
                "hashes": sorted({run[key]["params_sha256"] for run in runs[name]}),
            }
        same = stat[a]["hashes"] == stat[b]["hashes"] and len(stat[a]["hashes"]) == 1
        wr = stat[b]["wall_ms_min"] / stat[a]["wall_ms_min"]
        cr = stat[b]["cpu_ms_min"] / stat[a]["cpu_ms_min"]
        rows.append({"net": net_kind, "method": method, **stat, "wall_ratio": wr, "cpu_ratio": cr,
                     "same_bits": same})  # fmt: skip
        table.append(
            f"| {net_kind} | {method} | {stat[a]['wall_ms_min']:.1f} | {stat[b]['wall_ms_min']:.1f}"
            f" | {wr:.3f} | {stat[a]['cpu_ms_min']:.1f} | {stat[b]['cpu_ms_min']:.1f} | {cr:.3f}"
            f" | {'yes' if same else 'NO'} |"
        )
    text = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *table])
    print(text)
    load_after = os.getloadavg()
    print(f"\nload average before {load_before[0]:.1f}, after {load_after[0]:.1f}")
    payload = {
        "trees": dict(trees),
        "rounds": args.rounds,
        "steps": args.steps,
        "threads": args.threads,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "rows": rows,
        "runs": runs,
        "table": text,
    }
    out = HERE / "results" / args.json
    out.parent.mkdir(exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
