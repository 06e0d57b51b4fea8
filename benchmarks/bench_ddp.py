"""Data-parallel LFP through DistributedDataParallel: samples/s of 1 vs 2 processes, beside the
hand-written feedback reducer it replaced, measured in the same run.

Usage::

    python benchmarks/bench_ddp.py                                   # DDP only
    python benchmarks/bench_ddp.py --old-reducer /tmp/old/distributed.py   # + the old reducer
    python benchmarks/bench_ddp.py --device cuda                     # GPU(s), NCCL

``--old-reducer`` is a copy of the old ``spikelfp/training/distributed.py`` (its
``FeedbackAllReducer``), which is no longer in the repository: take it from a revision before
the switch to DDP, ``git show REV:spikelfp/training/distributed.py > /tmp/old/distributed.py``
(and ``_parallel.py`` beside it, which the lines-of-code comparison counts when present).

Network (as in ``bench_step.py``): ``fc`` 2312-256-10 LIF MLP (``--models conv`` adds the
2x34x34 conv net), T=30, global batch 128 (each of N processes trains on 128/N samples),
Bernoulli input spikes at 3 % density, weights scaled so hidden layers fire at ~10 %. One step
= ``lfp_step`` + ``SGD(momentum=0.9).step()``; the feedback is all-reduced

* ``ddp``: by running the step through ``wrap_model(net, "sum")`` (DDP, sum comm hook), as the
  trainer does; ``ddp-views``: the same with ``gradient_as_bucket_view=True`` (``.grad`` are
  views of DDP's buckets: one copy less);
* ``old``: by ``FeedbackAllReducer(net).reduce()`` after the step (its defaults, as the trainer
  used it: one 25 MB bucket, no overlap);
* ``single``: one process, nothing to reduce.

Each configuration (processes x threads per process: ``1x1``, ``1xC``, ``Nx(C/N)``) runs in fresh
worker processes (``RANK``/``WORLD_SIZE`` set as torchrun does). With 2 processes both variants
(``ddp``, ``ddp-views``, ``old``)
are timed round-robin on separate copies of the network in the same workers. Each repeat times
``--steps`` steps (after 2 warm-up steps per variant) and keeps the slowest rank's mean; the
configurations run ``--rounds`` times interleaved; medians over all repeats of all rounds.
Writes ``benchmarks/results/bench_ddp.json`` and prints a markdown table with samples/s, the
ratios ``ddp / old`` and ``/ 1x1``, the process CPU time of a step summed over the processes, and
``CPU efficiency`` = that of one single-threaded process / this (the overhead of data
parallelism, which other jobs on the cores affect much less than wall-clock time). On a shared,
busy machine compare the ratios, not the absolute numbers (the JSON records the load average
and CPU pressure before and after; ``step_s_quartiles`` the spread of the repeats).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tokenize
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

ROOT = Path(__file__).resolve().parents[1]
T, GLOBAL_BATCH, DENSITY = 30, 128, 0.03
MODELS = {"fc": (2312,), "conv": (2, 34, 34)}


# -- worker --------------------------------------------------------------------------------------
def _build(model: str, device: torch.device):
    torch.manual_seed(0)
    layers = fc_layers([2312, 256, 10]) if model == "fc" else conv_layers()
    net = spikelfp_net(layers, beta=0.9, threshold=1.0)
    calibrate_init(net, random_spike_frames(T, 32, MODELS[model], DENSITY, seed=123))
    return net.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _old_module(path: str):
    spec = importlib.util.spec_from_file_location("spikelfp_old_distributed", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def worker(cfg: dict) -> dict | None:
    from spikelfp.lfp import lfp_step, rate_coded_reward
    from spikelfp.training import distributed as D

    torch.set_num_threads(cfg["threads"])
    info = D.init_distributed(device=cfg["device"], timeout_s=180)
    dev = info.device
    local = D.local_batch_size(GLOBAL_BATCH, info.world_size)
    x = random_spike_frames(T, local, MODELS[cfg["model"]], DENSITY, seed=info.rank).to(dev)
    if cfg["model"] == "fc":
        x = x.reshape(T, local, -1)
    y = torch.randint(0, 10, (local,), generator=torch.Generator().manual_seed(info.rank)).to(dev)

    def reward(out, target):
        return rate_coded_reward(out, target, scale=1.0 / T)

    if info.world_size == 1:
        variants = ["single"]
    else:
        variants = ["ddp", "ddp-views"] + (["old"] if cfg["old_reducer"] else [])
    runs = {}
    for v in variants:
        net = _build(cfg["model"], dev)
        wrapped, reducer = net, None
        if v == "ddp":
            wrapped = D.wrap_model(net, "sum")
        elif v == "ddp-views":
            wrapped = D.wrap_model(net, "sum", gradient_as_bucket_view=True)
        elif v == "old":
            reducer = _old_module(cfg["old_reducer"]).FeedbackAllReducer(net)
        runs[v] = (net, wrapped, reducer, torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9))

    def step(v: str) -> tuple[float, float]:
        net, wrapped, reducer, opt = runs[v]
        _sync(dev)
        t0, c0 = time.perf_counter(), time.process_time()
        lfp_step(wrapped, x, y, reward, optimizer=None)
        if reducer is not None:
            reducer.reduce()
        opt.step()
        _sync(dev)
        return time.perf_counter() - t0, time.process_time() - c0

    for v in variants:  # warm-up
        for _ in range(2):
            step(v)
    samples: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(cfg["repeats"]):
        for v in variants:  # round-robin: load from other jobs hits every variant alike
            D.barrier()
            times = [step(v) for _ in range(cfg["steps"])]
            wall = sum(t[0] for t in times) / len(times)
            samples[v].append(D.reduce_metrics({"step": wall}, op="max")["step"])
            used = sum(t[1] for t in times) / len(times)
            cpu[v].append(D.reduce_metrics({"cpu": used}, op="sum")["cpu"])
    result = {
        "world": info.world_size,
        "backend": info.backend,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in runs[variants[0]][0].parameters()),
        "samples": samples,
        "cpu": cpu,
    }
    D.barrier()
    D.shutdown()
    return result if info.is_main else None


# -- orchestration -------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(world: int, cfg: dict, timeout: float) -> dict:
    """Run one configuration in ``world`` fresh workers; rank 0's result. A worker that fails
    stops the others at once (its error is raised), so nothing waits for a dead peer."""
    port = _free_port()
    procs, logs = [], []
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
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        logs.append((out, err))
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "--worker", json.dumps(cfg)],
                env=env,
                stdout=out,
                stderr=err,
                text=True,
                cwd=ROOT,
            )
        )

    def text(f) -> str:
        f.seek(0)
        return f.read()

    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in procs):
            failed = [(r, p) for r, p in enumerate(procs) if p.poll() not in (None, 0)]
            if failed:
                r, p = failed[0]
                raise RuntimeError(
                    f"{cfg['model']} {world}x{cfg['threads']}: rank {r} failed "
                    f"({p.returncode}):\n{text(logs[r][1])[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"world {world} {cfg['model']}: workers timed out")
            time.sleep(0.2)
        for r, p in enumerate(procs):
            if p.returncode != 0:
                raise RuntimeError(f"rank {r} failed ({p.returncode}):\n{text(logs[r][1])[-3000:]}")
        for line in text(logs[0][0]).splitlines():
            if line.startswith("@@RESULT@@"):
                return json.loads(line[len("@@RESULT@@") :])
        raise RuntimeError(f"rank 0 printed no result:\n{text(logs[0][1])[-3000:]}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for out, err in logs:
            out.close()
            err.close()


def _cpu_pressure() -> float | None:
    """Share of the last 60 s in which some runnable task waited for a CPU (Linux PSI), %."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return float(dict(kv.split("=") for kv in line.split()[1:])["avg60"])
    except (OSError, KeyError, ValueError, IndexError):
        return None


def count_lines(path: Path) -> dict[str, int]:
    """``total`` lines and ``code`` lines (without blank lines, comments and docstrings)."""
    text = path.read_text()
    doc: set[int] = set()
    for node in ast.walk(ast.parse(text)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                if isinstance(first.value.value, str):
                    doc.update(range(first.lineno, first.end_lineno + 1))
    code: set[int] = set()
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type not in skip and tok.type != tokenize.ENDMARKER:
            code.update(range(tok.start[0], tok.end[0] + 1))
    return {"total": len(text.splitlines()), "code": len(code - doc)}


def lines_of_code(old_reducer: str | None) -> dict:
    """Lines of the distributed support before (``--old-reducer`` and the ``_parallel.py``
    beside it) and after (``spikelfp/training/distributed.py``; ``_parallel.py`` is gone)."""
    after = {"distributed.py": count_lines(ROOT / "spikelfp/training/distributed.py")}
    out = {"after": after}
    if old_reducer:
        old = Path(old_reducer)
        before = {"distributed.py": count_lines(old)}
        if (old.parent / "_parallel.py").exists():
            before["_parallel.py"] = count_lines(old.parent / "_parallel.py")
        out["before"] = before
    for side in list(out):
        out[side]["sum"] = {
            k: sum(v[k] for name, v in out[side].items() if name != "sum")
            for k in ("total", "code")
        }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["fc"], choices=sorted(MODELS))
    ap.add_argument("--old-reducer", default=None, metavar="FILE", help="old distributed.py")
    ap.add_argument("--nproc", type=int, default=2, help="processes of the parallel runs")
    ap.add_argument(
        "--no-threads",
        action="store_true",
        help="skip the one-process-with-all-cores configuration (CPU)",
    )
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved runs of every config")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per run (>= 5)")
    ap.add_argument("--steps", type=int, default=2, help="steps per repeat")
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--out", default="bench_ddp.json", help="file name under benchmarks/results")
    args = ap.parse_args(argv)
    if args.repeats < 5:
        print("note: fewer than 5 repeats; medians will be noisy", file=sys.stderr)
    if args.old_reducer and not Path(args.old_reducer).is_file():
        ap.error(f"--old-reducer {args.old_reducer}: no such file")
    cores = os.cpu_count() or 1
    n = args.nproc
    if args.device == "cuda":
        if not torch.cuda.is_available():
            ap.error("--device cuda: CUDA is not available")
        if n > torch.cuda.device_count():
            ap.error(f"--nproc {n} needs {n} GPUs; this machine has {torch.cuda.device_count()}")
        configs = [(1, 1), (n, 1)] if n > 1 else [(1, 1)]
    else:
        configs = [(1, 1)] + ([] if args.no_threads else [(1, cores)]) + [(n, max(1, cores // n))]
        configs = list(dict.fromkeys(configs))
    load_before, pressure_before = os.getloadavg(), _cpu_pressure()
    results: dict = {}
    rows = []
    for model in args.models:
        acc: dict[str, dict] = {}
        for rnd in range(args.rounds):  # interleaved, so that other load hits all configs
            for world, threads in configs:
                key = f"{world}x{threads}"
                print(
                    f"[bench_ddp] {model} round {rnd + 1}/{args.rounds}: {key}",
                    file=sys.stderr,
                    flush=True,
                )
                cfg = {
                    "model": model,
                    "device": args.device,
                    "threads": threads,
                    "repeats": args.repeats,
                    "steps": args.steps,
                    "old_reducer": args.old_reducer and str(Path(args.old_reducer).resolve()),
                }
                got = launch(world, cfg, args.timeout)
                if key not in acc:
                    acc[key] = got
                else:
                    for v, vals in got["samples"].items():
                        acc[key]["samples"][v].extend(vals)
                        acc[key]["cpu"][v].extend(got["cpu"][v])
        base = statistics.median(acc["1x1"]["samples"]["single"])
        cpu_base = statistics.median(acc["1x1"]["cpu"]["single"])
        for r in acc.values():
            r["median_step_s"] = {v: statistics.median(s) for v, s in r["samples"].items()}
            r["median_cpu_s"] = {v: statistics.median(s) for v, s in r["cpu"].items()}
            r["step_s_quartiles"] = {
                v: statistics.quantiles(s, n=4) for v, s in r["samples"].items() if len(s) > 1
            }
            r["samples_per_s"] = {v: GLOBAL_BATCH / s for v, s in r["median_step_s"].items()}
            old = r["median_step_s"].get("old")
            for v, s in r["median_step_s"].items():
                rows.append(
                    [
                        model,
                        r["world"],
                        r["threads"],
                        v,
                        f"{s * 1e3:.0f}",
                        f"{GLOBAL_BATCH / s:.0f}",
                        f"{base / s:.2f}",
                        "-" if old is None or not v.startswith("ddp") else f"{old / s:.2f}",
                        f"{r['median_cpu_s'][v] * 1e3:.0f}",
                        f"{cpu_base / r['median_cpu_s'][v]:.2f}",
                        len(r["samples"][v]),
                    ]
                )
        results[model] = acc
    header = [
        "model",
        "procs",
        "threads/proc",
        "all-reduce",
        "step ms",
        "samples/s",
        "speed / 1x1",
        "ddp / old (samples/s)",
        "CPU ms/step (all procs)",
        "CPU efficiency",
        "repeats",
    ]
    table = markdown_table(header, rows)
    loc = lines_of_code(args.old_reducer)
    payload = {
        "environment": environment(),
        "device": args.device,
        "T": T,
        "global_batch": GLOBAL_BATCH,
        "density": DENSITY,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "steps_per_repeat": args.steps,
        "old_reducer": args.old_reducer,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cpu_pressure_avg60_before_after": [pressure_before, _cpu_pressure()],
        "results": results,
        "lines_of_code": loc,
        "table": table,
    }
    path = write_json(args.out, payload)
    print(table)
    for side in ("before", "after"):
        if side in loc:
            parts = ", ".join(
                f"{name} {v['total']} ({v['code']} code)"
                for name, v in loc[side].items()
                if name != "sum"
            )
            s = loc[side]["sum"]
            print(f"lines {side}: {parts}; sum {s['total']} ({s['code']} code)")
    print(
        f"load average before/after: {load_before[0]:.1f} / {os.getloadavg()[0]:.1f}; "
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
