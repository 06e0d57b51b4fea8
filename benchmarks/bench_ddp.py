"""Data-parallel LFP: samples/s of 1 vs N processes, and what the feedback all-reduce costs.

Usage::

    python benchmarks/bench_ddp.py                     # FC + conv net, 1 and 2 processes (gloo)
    python benchmarks/bench_ddp.py --models fc         # FC only (~1 min on 2 cores)
    python benchmarks/bench_ddp.py --device cuda       # GPU(s), NCCL; 1 GPU -> world 1 only

Networks (as in ``bench_step.py``): ``fc`` 2312-256-10 LIF MLP; ``conv`` 2x34x34 ->
Conv(2,12,5) -> LIF -> MaxPool2 -> Conv(12,32,5) -> LIF -> MaxPool2 -> Linear(800,10) -> LIF.
T=30, global batch 128 (each of N processes trains on 128/N samples), Bernoulli input spikes at
3 % density, LIF beta=0.9, threshold 1, delayed subtract reset, weights scaled so hidden layers
fire at ~10 %. One step = ``lfp_step(..., optimizer=None)`` with ``rate_coded_reward`` (scale
1/T) + ``FeedbackAllReducer.reduce()`` + ``SGD(momentum=0.9).step()``.

Each configuration runs in fresh worker processes (``RANK``/``WORLD_SIZE`` set as torchrun does,
``torch.set_num_threads(cores // N)``; one process is also timed with 1 thread). Reducer
variants, timed round-robin on separate copies of the network in the same workers (the conv
net: ``bucketed`` only unless ``--conv-variants``):

* ``bucketed``: one 25 MB bucket (flatten, one async all-reduce, views back);
* ``bucketed-1MB``: 1 MB cap (FC: 2 buckets: the output layer + first bias, then the big weight);
* ``unbucketed``: one async all-reduce per parameter, in place;
* ``overlap-1MB``: 1 MB buckets launched from ``register_post_accumulate_grad_hook`` during the
  backward pass, as soon as their feedback is complete.

Per step: wall time (the slowest rank's), the time spent inside ``reduce()`` (the exposed
communication; ``comm share`` = that / step), the time the overlap hooks spent inside the backward
pass, and the raw time of one blocking all-reduce of all the feedback. ``CPU ms/step`` is the
process CPU time of a step summed over the processes, and ``CPU efficiency`` = that of one
single-threaded process / this: it shows the overhead of data parallelism even when other jobs
share the cores (then wall-clock speed-ups are not meaningful). The configurations are run
``--rounds`` times, interleaved; each run times ``--repeats`` (>= 5) repeats of ``--steps``
steps after 2 warm-up steps, and the medians are over all repeats of all rounds. Writes
``benchmarks/results/bench_ddp.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    calibrate_init,
    conv_layers,
    environment,
    fc_layers,
    markdown_table,
    random_spike_frames,
    spikelfp_net,
    write_json,
)

T, GLOBAL_BATCH, DENSITY = 30, 128, 0.03
VARIANTS = {  # name: (bucket_cap_mb, overlap)
    "bucketed": (25.0, False),
    "bucketed-1MB": (1.0, False),
    "unbucketed": (0.0, False),
    "overlap-1MB": (1.0, True),
}
MODELS = {"fc": (2312,), "conv": (2, 34, 34)}


# -- worker --------------------------------------------------------------------------------------
def _build(model: str, device: torch.device):
    torch.manual_seed(0)
    layers = fc_layers([2312, 256, 10]) if model == "fc" else conv_layers()
    net = spikelfp_net(layers, beta=0.9, threshold=1.0)
    calib = random_spike_frames(T, 32, MODELS[model], DENSITY, seed=123)
    calibrate_init(net, calib)
    return net.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def worker(cfg: dict) -> dict | None:
    import torch.distributed as dist

    from spikelfp.lfp import lfp_step, rate_coded_reward
    from spikelfp.training import distributed as D

    torch.set_num_threads(cfg["threads"])
    info = D.init_distributed(device=cfg["device"], timeout_s=600)
    dev = info.device
    local = D.local_batch_size(GLOBAL_BATCH, info.world_size)
    x = random_spike_frames(T, local, MODELS[cfg["model"]], DENSITY, seed=info.rank).to(dev)
    if cfg["model"] == "fc":
        x = x.reshape(T, local, -1)
    y = torch.randint(0, 10, (local,), generator=torch.Generator().manual_seed(info.rank)).to(dev)

    def reward(out, target):
        return rate_coded_reward(out, target, scale=1.0 / T)

    variants = list(VARIANTS) if info.world_size > 1 else ["single"]
    variants = [v for v in variants if v in cfg["variants"] or v == "single"]
    base = _build(cfg["model"], dev)
    runs = {}
    for v in variants:
        net = _build(cfg["model"], dev)
        net.load_state_dict(base.state_dict())
        D.broadcast_parameters(net)
        cap, overlap = VARIANTS.get(v, (25.0, False))
        red = D.FeedbackAllReducer(net, bucket_cap_mb=cap, overlap=overlap)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        runs[v] = (net, red, opt)

    def step(v):
        net, red, opt = runs[v]
        _sync(dev)
        t0, c0 = time.perf_counter(), time.process_time()
        lfp_step(net, x, y, reward, optimizer=None)
        red.reduce()
        opt.step()
        _sync(dev)
        return (
            time.perf_counter() - t0,
            red.last_reduce_s,
            red.last_hook_s,
            time.process_time() - c0,
        )

    for v in variants:  # warm-up
        for _ in range(2):
            step(v)
    samples = {v: {"step": [], "reduce": [], "hook": [], "cpu": []} for v in variants}
    for _ in range(cfg["repeats"]):
        for v in variants:
            D.barrier()
            tot = [step(v) for _ in range(cfg["steps"])]
            s = D.reduce_metrics(
                {
                    "step": sum(t[0] for t in tot) / len(tot),
                    "reduce": sum(t[1] for t in tot) / len(tot),
                    "hook": sum(t[2] for t in tot) / len(tot),
                },
                op="max",
            )
            cpu = D.reduce_metrics({"cpu": sum(t[3] for t in tot) / len(tot)}, op="sum")
            for k in s:
                samples[v][k].append(s[k])
            samples[v]["cpu"].append(cpu["cpu"])

    # Raw cost of moving all the feedback once (blocking, one buffer).
    raw = None
    if info.world_size > 1:
        n = sum(p.numel() for p in base.parameters())
        buf = torch.zeros(n, device=dev)
        for _ in range(3):
            dist.all_reduce(buf)
        times = []
        for _ in range(20):
            _sync(dev)
            t0 = time.perf_counter()
            dist.all_reduce(buf)
            _sync(dev)
            times.append(time.perf_counter() - t0)
        raw = D.reduce_metrics({"raw": statistics.median(times)}, op="max")["raw"]

    result = {
        "world": info.world_size,
        "backend": info.backend,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in base.parameters()),
        "raw_allreduce_s": raw,
        "variants": {},
    }
    for v in variants:
        result["variants"][v] = {"buckets": len(runs[v][1].buckets), "samples": samples[v]}
    for _, red, _ in runs.values():
        red.remove()
    D.barrier()
    D.shutdown()
    return result if info.is_main else None


# -- orchestration -------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(world: int, cfg: dict, timeout: float) -> dict:
    port = _free_port()
    root = Path(__file__).resolve().parents[1]
    procs = []
    for rank in range(world):
        env = dict(os.environ)
        env.update(
            RANK=str(rank),
            WORLD_SIZE=str(world),
            LOCAL_RANK=str(rank),
            LOCAL_WORLD_SIZE=str(world),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS=str(cfg["threads"]),
        )
        env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "--worker", json.dumps(cfg)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=root,
            )
        )
    outs = []
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            outs.append(p.communicate(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise RuntimeError(f"world {world} {cfg['model']}: workers timed out") from None
    for p, (_, err) in zip(procs, outs, strict=True):
        if p.returncode != 0:
            raise RuntimeError(f"a worker failed ({p.returncode}):\n{err[-3000:]}")
    for line in outs[0][0].splitlines():
        if line.startswith("@@RESULT@@"):
            return json.loads(line[len("@@RESULT@@") :])
    raise RuntimeError(f"rank 0 printed no result:\n{outs[0][1][-3000:]}")


def _cpu_pressure() -> float | None:
    """Share of the last 60 s in which some runnable task waited for a CPU (Linux PSI), %."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return float(dict(kv.split("=") for kv in line.split()[1:])["avg60"])
    except (OSError, KeyError, ValueError, IndexError):
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["fc", "conv"], choices=sorted(MODELS))
    ap.add_argument(
        "--worlds",
        nargs="+",
        type=int,
        default=None,
        help="numbers of processes (default: 1 2 on CPU, 1..#GPUs on CUDA)",
    )
    ap.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        choices=list(VARIANTS),
        help="reducer variants for the FC net",
    )
    ap.add_argument(
        "--conv-variants",
        nargs="+",
        default=["bucketed"],
        choices=list(VARIANTS),
        help="reducer variants for the conv net (its feedback is only 72 KB)",
    )
    ap.add_argument("--conv-steps", type=int, default=1, help="steps per repeat, conv net")
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="FC: run every configuration this many times, interleaved (medians over all)",
    )
    ap.add_argument("--conv-rounds", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=2, help="steps per repeat")
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--out", default="bench_ddp.json", help="file name under benchmarks/results")
    args = ap.parse_args(argv)
    if args.repeats < 5:
        print("note: fewer than 5 repeats; medians will be noisy", file=sys.stderr)
    cores = os.cpu_count() or 1
    if args.device == "cuda":
        if not torch.cuda.is_available():
            ap.error("--device cuda: CUDA is not available")
        gpus = torch.cuda.device_count()
        worlds = args.worlds or list(range(1, gpus + 1))
        if max(worlds) > gpus:
            ap.error(f"--worlds {max(worlds)} needs that many GPUs; this machine has {gpus}")
    else:
        worlds = args.worlds or [1, 2]
    load_before = os.getloadavg()
    pressure_before = _cpu_pressure()
    results: dict = {}
    rows = []
    for model in args.models:
        results[model] = {}
        runs = [(w, max(1, cores // w) if args.device == "cpu" else 1) for w in worlds]
        if args.device == "cpu" and 1 in worlds and cores > 1:
            runs.insert(runs.index((1, cores)) + 1, (1, 1))  # also 1 process on 1 core
        rounds = args.rounds if model == "fc" else args.conv_rounds
        for rnd in range(rounds):  # interleaved, so that other load hits all configurations
            for world, threads in runs:
                cfg = {
                    "model": model,
                    "device": args.device,
                    "threads": threads,
                    "repeats": args.repeats,
                    "steps": args.steps if model == "fc" else args.conv_steps,
                    "variants": args.variants if model == "fc" else args.conv_variants,
                }
                key = f"{world}x{threads}"
                print(
                    f"[bench_ddp] {model}, round {rnd + 1}/{rounds}: {world} process(es) x "
                    f"{threads} thread(s) ...",
                    file=sys.stderr,
                    flush=True,
                )
                got = launch(world, cfg, args.timeout)
                if key not in results[model]:
                    results[model][key] = got
                    got["raw_allreduce_s"] = [got["raw_allreduce_s"]]
                    continue
                acc = results[model][key]
                acc["raw_allreduce_s"].append(got["raw_allreduce_s"])
                for name, v in got["variants"].items():
                    for k, vals in v["samples"].items():
                        acc["variants"][name]["samples"][k].extend(vals)
        for r in results[model].values():  # medians over all repeats of all rounds
            raws = [t for t in r["raw_allreduce_s"] if t is not None]
            r["raw_allreduce_median_s"] = statistics.median(raws) if raws else None
            for v in r["variants"].values():
                med = {k: statistics.median(vals) for k, vals in v["samples"].items()}
                v.update(
                    step_s=med["step"],
                    reduce_s=med["reduce"],
                    hook_s=med["hook"],
                    cpu_s=med["cpu"],
                    samples_per_s=GLOBAL_BATCH / med["step"],
                    comm_share=med["reduce"] / med["step"],
                    repeats=len(v["samples"]["step"]),
                )
        singles = [
            next(iter(results[model][f"1x{t}"]["variants"].values()))["samples_per_s"]
            for w, t in runs
            if w == 1
        ]
        base = max(singles) if singles else None
        one = results[model].get("1x1", {}).get("variants", {}).get("single")
        cpu_base = one["cpu_s"] if one else None
        for world, threads in runs:
            r = results[model][f"{world}x{threads}"]
            raw = r["raw_allreduce_median_s"]
            for name, v in r["variants"].items():
                rows.append(
                    [
                        model,
                        world,
                        r["threads"],
                        name,
                        v["buckets"],
                        f"{v['step_s'] * 1e3:.0f}",
                        f"{v['samples_per_s']:.0f}",
                        "-" if base is None else f"{v['samples_per_s'] / base:.2f}",
                        f"{v['cpu_s'] * 1e3:.0f}",
                        "-" if cpu_base is None else f"{cpu_base / v['cpu_s']:.2f}",
                        f"{v['reduce_s'] * 1e3:.1f}",
                        f"{100 * v['comm_share']:.1f} %",
                        f"{v['hook_s'] * 1e3:.1f}",
                        "-" if raw is None else f"{raw * 1e3:.1f}",
                    ]
                )
    header = [
        "model",
        "procs",
        "threads/proc",
        "reducer",
        "buckets",
        "step ms",
        "samples/s",
        "speed-up",
        "CPU ms/step (all procs)",
        "CPU efficiency",
        "reduce() ms",
        "comm share",
        "hooks ms",
        "raw all-reduce ms",
    ]
    table = markdown_table(header, rows)
    payload = {
        "environment": environment(),
        "device": args.device,
        "T": T,
        "global_batch": GLOBAL_BATCH,
        "density": DENSITY,
        "repeats": args.repeats,
        "steps_per_repeat": {"fc": args.steps, "conv": args.conv_steps},
        "rounds": {"fc": args.rounds, "conv": args.conv_rounds},
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cpu_pressure_avg60_before_after": [pressure_before, _cpu_pressure()],
        "results": results,
        "table": table,
    }
    path = write_json(args.out, payload)
    print(table)
    print(
        f"\nload average before/after: {load_before[0]:.1f} / {os.getloadavg()[0]:.1f}; "
        f"CPU pressure (PSI some avg60) before/after: {pressure_before} / {_cpu_pressure()} %; "
        f"wrote {path}"
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        res = worker(json.loads(sys.argv[2]))
        if res is not None:
            print("@@RESULT@@" + json.dumps(res), flush=True)
        sys.exit(0)
    sys.exit(main())
