"""Data-parallel training through DistributedDataParallel (spikelfp.training.distributed).

The multi-process tests start real workers on localhost (gloo, CPU): this file doubles as the
worker script (``python tests/test_distributed.py '<json>'`` with torchrun's environment
variables), so the workers join the group exactly as under torchrun. The pytest process itself
never creates a process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from spikelfp import LIF, Sequential
from spikelfp.lfp import lfp_step, rate_coded_reward
from spikelfp.training import distributed as D
from spikelfp.training.bptt import spike_count_ce_loss, surrogate

T, N_DATA, GLOBAL_BATCH, EPOCHS, LR = 12, 48, 16, 2, 0.05
ROOT = Path(__file__).resolve().parents[1]  # the workers import this checkout
CONFIGS = {  # name: (method, reduction, DDP keyword arguments)
    "lfp_sum": ("lfp", "sum", {}),
    "lfp_sum_grad_views": ("lfp", "sum", {"gradient_as_bucket_view": True}),
    "lfp_mean": ("lfp", "mean", {}),  # control: DDP's averaging is NOT the global batch's step
    "bptt_mean": ("bptt", "mean", {}),  # plain DDP: batch-mean losses average
}


def _net() -> Sequential:
    return Sequential(
        nn.Linear(20, 16),
        LIF(beta=0.9, threshold=0.5, learn_beta=True, learn_threshold=True),
        nn.Linear(16, 4),
        LIF(beta=0.9, threshold=0.5),
    ).double()


def _data() -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(11)
    x = (torch.rand(N_DATA, T, 20, generator=g) < 0.3).double()
    y = torch.randint(0, 4, (N_DATA,), generator=g)
    return torch.utils.data.TensorDataset(x, y)


def _train(net, wrapped, method, sampler, batch) -> int:
    """Train EPOCHS epochs with SGD(momentum) through ``wrapped``; returns the number of steps."""
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.5)
    loader = torch.utils.data.DataLoader(_data(), batch_size=batch, sampler=sampler)
    steps = 0
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        for x, y in loader:
            x = x.transpose(0, 1)
            if method == "lfp":
                lfp_step(wrapped, x, y, rate_coded_reward, optimizer=None)
            else:
                opt.zero_grad(set_to_none=True)
                with surrogate(net):
                    out, _ = wrapped(x)
                spike_count_ce_loss(out, y).backward()
            opt.step()
            steps += 1
    return steps


# -- worker side ---------------------------------------------------------------------------------
def _worker(args: dict) -> None:
    info = D.init_distributed(device="cpu", timeout_s=args.get("timeout", 30))
    out = {"rank": info.rank, "world": info.world_size}
    wrappers = []
    if args["mode"] == "train":
        init = None
        for name, (method, reduction, kwargs) in CONFIGS.items():
            torch.manual_seed(100 + info.rank)  # different initial weights: DDP must fix them
            net = _net()
            wrapped = D.wrap_model(net, reduction, **kwargs)
            assert isinstance(wrapped, nn.parallel.DistributedDataParallel)
            if init is None:
                init = {k: v.clone() for k, v in net.state_dict().items()}
            sampler = D.make_sampler(_data(), shuffle=True, seed=3)
            steps = _train(net, wrapped, method, sampler, D.local_batch_size(GLOBAL_BATCH))
            out[name] = {k: v.clone() for k, v in net.state_dict().items()}
            out[name + "_steps"] = steps
            out[name + "_spread"] = D.max_parameter_difference(net)
            wrappers.append(wrapped)  # freed after shutdown(): that must not hang (see below)
        out["init"] = init
        out["metrics"] = D.reduce_metrics({"rank": info.rank, "one": 1}, op="sum")
        out["metric_mean"] = D.reduce_metrics({"rank": float(info.rank)}, op="mean")
        lin = nn.Linear(2, 1, bias=False)  # reduce_gradients: .grad of rank r is r + 1
        lin.weight.grad = torch.full((1, 2), info.rank + 1.0)
        D.reduce_gradients(lin, "mean")
        out["grad_mean"] = lin.weight.grad.tolist()
        D.reduce_gradients(lin, "sum")
        out["grad_sum"] = lin.weight.grad.tolist()
        if info.is_main:
            torch.save(out, args["out"])
    elif args["mode"] in ("die", "stall"):
        net = _net()
        wrapped = D.wrap_model(net, "sum")
        opt = torch.optim.SGD(net.parameters(), lr=LR)
        x, y = _data().tensors
        for step in range(1000):
            if info.rank == args["victim"] and step == 2:
                if args["mode"] == "die":
                    os._exit(3)
                time.sleep(3600)
            with D.collective("training step (DDP all-reduce)", mixed=True):
                lfp_step(wrapped, x[:8].transpose(0, 1), y[:8], rate_coded_reward)
            opt.step()
    D.barrier()
    D.shutdown()
    # DDP wrappers with the (Python) sum hook that outlive the group once deadlocked when freed
    # (the gloo group's destructor waited for the GIL); shutdown() releases their reducers
    wrappers.clear()
    print("freed the wrappers", flush=True)


# -- test side -----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(world: int, args: dict) -> list[subprocess.Popen]:
    port = _free_port()
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
            OMP_NUM_THREADS="1",
        )
        env.pop("TORCHELASTIC_RUN_ID", None)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, json.dumps(args)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def _finish(p: subprocess.Popen, timeout: float) -> tuple[int | None, str]:
    try:
        _, err = p.communicate(timeout=timeout)
        return p.returncode, err
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
        return None, err


def test_two_processes_equal_one_process_on_the_global_batch(tmp_path):
    out = tmp_path / "rank0.pt"
    procs = _start(2, {"mode": "train", "out": str(out)})
    results = [_finish(p, 120) for p in procs]
    for rank, (code, err) in enumerate(results):
        assert code == 0, f"rank {rank} exited with {code} (None: hung):\n{err[-3000:]}"
    got = torch.load(out)
    assert got["world"] == 2
    assert got["metrics"] == {"rank": 1.0, "one": 2.0}
    assert got["metric_mean"] == {"rank": 0.5}
    assert got["grad_mean"] == [[1.5, 1.5]] and got["grad_sum"] == [[3.0, 3.0]]

    for name, (method, _, _) in CONFIGS.items():
        # One process, batch 16 = 2 x 8, same seeded sample order, same lr, rank 0's weights.
        ref = _net()
        ref.load_state_dict(got["init"])
        moved = {k: v.clone() for k, v in ref.state_dict().items()}
        sampler = D.make_sampler(_data(), shuffle=True, seed=3, num_replicas=1)
        steps = _train(ref, ref, method, sampler, GLOBAL_BATCH)
        expect = ref.state_dict()
        change = max((expect[k] - moved[k]).abs().max().item() for k in expect)
        assert change > 1e-3, f"{name}: the reference run did not learn: the test would be vacuous"
        for k in ("1.beta", "1.threshold"):  # the learnable neuron parameters moved too
            assert (expect[k] - moved[k]).abs().max().item() > 1e-6, (name, k)
        assert got[name + "_steps"] == steps == EPOCHS * N_DATA // GLOBAL_BATCH
        assert got[name + "_spread"] == 0.0, f"{name}: the two processes' weights differ"
        err = max((got[name][k] - expect[k]).abs().max().item() for k in expect)
        if name == "lfp_mean":
            assert err > 1e-3, "DDP's mean should differ from the global-batch LFP run (lr / 2)"
        else:
            assert err < 1e-10, f"{name}: 2 processes differ from 1 process by {err:.3g}"


def test_dead_peer_makes_the_other_exit_with_a_clear_message():
    victim = 0  # the rank that also hosts the rendezvous store: the harder case
    t0 = time.monotonic()
    procs = _start(2, {"mode": "die", "victim": victim, "timeout": 60})
    results = [_finish(p, 90) for p in procs]
    elapsed = time.monotonic() - t0
    survivor = 1 - victim
    assert results[victim][0] == 3
    code, err = results[survivor]
    assert code not in (None, 0), f"the surviving rank did not fail (code {code}):\n{err[-2000:]}"
    assert "DistributedError" in err and "another process died or stalled" in err, err[-3000:]
    assert "checkpoint" in err
    # well below the 60 s timeout: a dead peer is noticed at once (the rest is start-up time)
    assert elapsed < 45, f"took {elapsed:.1f} s to notice the dead peer"


def test_stalled_peer_times_out():
    t0 = time.monotonic()
    procs = _start(2, {"mode": "stall", "victim": 1, "timeout": 4})
    code, err = _finish(procs[0], 60)
    elapsed = time.monotonic() - t0
    procs[1].kill()
    procs[1].communicate()
    assert code not in (None, 0)
    assert "DistributedError" in err and "stalled" in err, err[-3000:]
    assert elapsed < 40, f"the collective timeout (4 s) did not bound the wait: {elapsed:.1f} s"


def test_launch_local_runs_torchrun_and_a_crash_stops_the_job(capfd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    t0 = time.monotonic()
    code = D.launch_local(
        2,
        ["--steps", "4", "--simulate-failure", "1", "--timeout", "20", "--nproc", "2"],
        module="spikelfp.cli._ddp_check",
        env=env,
    )
    elapsed = time.monotonic() - t0
    err = capfd.readouterr().err
    assert code != 0
    assert "simulating a crash" in err and "FAILED" in err, err[-3000:]
    # rank 0 either noticed the dead peer itself or was stopped by torchrun; both say so
    assert "another process died or stalled" in err or "stopped by torchrun" in err, err[-3000:]
    assert elapsed < 40, f"torchrun took {elapsed:.1f} s to stop the job"


def _descendants(pid: int) -> list[int]:
    """All processes below ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _rank_of(pid: int) -> int | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        if item.startswith(b"RANK="):
            return int(item[5:])
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_killing_a_worker_of_train_nproc_2_keeps_the_last_checkpoint(digits_root, tmp_path):
    from spikelfp.training.checkpoint import load_checkpoint

    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SPIKELFP_DIST_TIMEOUT": "20"}
    cmd = [
        sys.executable,
        "-m",
        "spikelfp",
        "train",
        "--data-dir",
        str(digits_root),
        "--epochs",
        "200",
        "--time-bins",
        "4",
        "--hidden",
        "8",
        "--max-train-samples",
        "32",
        "--max-eval-samples",
        "8",
        "--batch-size",
        "16",
        "--no-progress",
        "--nproc",
        "2",
        "--out",
        str(run),
    ]
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    job = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        metrics = run / "metrics.jsonl"
        while time.monotonic() < deadline and job.poll() is None:
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
                break  # two epochs done: checkpoints are being replaced now
            time.sleep(0.2)
        assert job.poll() is None, f"the job ended early:\n{job.communicate()[1][-3000:]}"
        assert (run / "checkpoint.pt").exists(), "no checkpoint after two epochs"
        workers = [p for p in _descendants(job.pid) if _rank_of(p) == 1]
        assert workers, "rank 1's process was not found"
        os.kill(workers[0], signal.SIGKILL)
        _, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            for p in _descendants(job.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            job.kill()
            job.communicate()
    assert job.returncode != 0
    assert "FAILED" in err, err[-3000:]  # torchrun's report names the killed rank
    assert "died or stalled" in err or "stopped by torchrun" in err, err[-3000:]
    ckpt = load_checkpoint(run)  # complete and readable: written atomically by rank 0
    assert 2 <= ckpt["epoch"] < 200
    assert len(ckpt["history"]) == ckpt["epoch"]
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


# -- in-process (world 1) ------------------------------------------------------------------------
@pytest.fixture
def no_torchrun_env(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)


def test_world_one_is_a_no_op(no_torchrun_env):
    info = D.init_distributed(device="cpu")
    assert (info.rank, info.world_size, info.backend, info.device) == (
        0,
        1,
        None,
        torch.device("cpu"),
    )
    assert D.init_distributed(device="auto").device.type in ("cpu", "cuda")
    assert D.is_main_process() and not info.is_distributed
    net = _net()
    assert D.wrap_model(net, "sum") is net and D.wrap_model(net, "mean") is net
    x, y = _data().tensors
    lfp_step(net, x[:4].transpose(0, 1), y[:4], rate_coded_reward)
    before = {n: p.grad.clone() for n, p in net.named_parameters()}
    D.reduce_gradients(net, "mean")
    assert all(torch.equal(before[n], p.grad) for n, p in net.named_parameters())
    assert D.reduce_metrics({"a": torch.tensor(2.0), "b": 3}, op="sum") == {"a": 2.0, "b": 3.0}
    D.barrier()
    assert D.max_parameter_difference(net) == 0.0
    with pytest.raises(ValueError, match="reduction"):
        D.wrap_model(net, "avg")
    with pytest.raises(ValueError, match="reduction"):
        D.reduce_gradients(net, "avg")


def test_collective_turns_only_communication_failures_into_one_clear_error(no_torchrun_env):
    with pytest.raises(D.DistributedError, match=r"barrier failed, most likely because another"):
        with D.collective("barrier"):
            raise RuntimeError("Connection closed by peer")
    # a training step: errors of the computation itself pass unchanged...
    with pytest.raises(RuntimeError, match="^shapes do not match$"):
        with D.collective("step", mixed=True):
            raise RuntimeError("shapes do not match")
    # ...and so does everything while no process group is active
    with pytest.raises(RuntimeError, match="^Timed out waiting$"):
        with D.collective("step", mixed=True):
            raise RuntimeError("Timed out waiting")
    with pytest.raises(ValueError):
        with D.collective("barrier"):
            raise ValueError("not a collective's failure")


def test_world_size_without_master_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        D.init_distributed(device="cpu")


@pytest.mark.parametrize("world", [2, 4])
def test_sampler_shards_union_to_the_single_process_batches(world):
    data = list(range(37))
    single = D.make_sampler(data, shuffle=True, seed=5, num_replicas=1)
    assert isinstance(single, D.EpochSampler)  # the trainer's own single-process sampler
    shards = [
        D.make_sampler(data, shuffle=True, seed=5, num_replicas=world, rank=r) for r in range(world)
    ]
    for epoch in (0, 1):
        single.set_epoch(epoch)
        for s in shards:
            s.set_epoch(epoch)
        order = list(single)
        parts = [list(s) for s in shards]
        b = 8 // world if 8 % world == 0 else 1
        for step in range(len(data) // 8):
            union = sorted(i for p in parts for i in p[step * b : (step + 1) * b])
            assert union == sorted(order[step * 8 : (step + 1) * 8])
    single.set_epoch(0)
    first = list(single)
    single.set_epoch(1)
    assert list(single) != first
    assert list(D.make_sampler(data, shuffle=False, num_replicas=1)) == data


def test_local_batch_size_and_argv():
    assert D.local_batch_size(128, 2) == 64
    with pytest.raises(ValueError, match="multiple"):
        D.local_batch_size(10, 4)
    assert D._strip_nproc(["train", "--nproc", "2", "--epochs=3", "--nproc=4", "x"]) == [
        "train",
        "--epochs=3",
        "x",
    ]
    with pytest.raises(ValueError):
        D.launch_local(0, [])


if __name__ == "__main__":
    _worker(json.loads(sys.argv[1]))
