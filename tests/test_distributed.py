"""Data-parallel LFP (spikelfp.training.distributed).

The multi-process tests start real workers on localhost (gloo, CPU): this file doubles as the
worker script (``python tests/test_distributed.py '<json>'`` with torchrun's environment
variables), so the workers join the group exactly as under torchrun. The pytest process itself
never creates a process group.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from spikelfp import LIF, Sequential
from spikelfp.lfp import lfp_step, rate_coded_reward
from spikelfp.training import distributed as D

T, N_DATA, GLOBAL_BATCH, EPOCHS, LR = 12, 48, 16, 2, 0.05
CONFIGS = {  # name: (bucket_cap_mb, overlap, op)
    "bucketed": (25.0, False, "sum"),
    "unbucketed": (0.0, False, "sum"),
    "overlap": (0.0006, True, "sum"),  # ~3 buckets, launched during the backward pass
    "mean": (25.0, False, "mean"),  # control: averaging is NOT the global batch's step
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


def _train(net, sampler, batch, reducer=None) -> int:
    """Train EPOCHS epochs with SGD(momentum); returns the number of steps taken."""
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.5)
    loader = torch.utils.data.DataLoader(_data(), batch_size=batch, sampler=sampler)
    steps = 0
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        for x, y in loader:
            lfp_step(net, x.transpose(0, 1), y, rate_coded_reward, optimizer=None)
            if reducer is not None:
                reducer.reduce()
            opt.step()
            steps += 1
    return steps


# -- worker side ---------------------------------------------------------------------------------
def _worker(args: dict) -> None:
    info = D.init_distributed(device="cpu", timeout_s=args.get("timeout", 30))
    out = {"rank": info.rank, "world": info.world_size}
    if args["mode"] == "train":
        torch.manual_seed(100 + info.rank)  # different initial weights: broadcast must fix them
        template = _net()
        D.broadcast_parameters(template)
        init = {k: v.clone() for k, v in template.state_dict().items()}
        for name, (cap, overlap, op) in CONFIGS.items():
            net = _net()
            net.load_state_dict(init)
            reducer = D.FeedbackAllReducer(net, bucket_cap_mb=cap, overlap=overlap, op=op)
            sampler = D.make_sampler(_data(), shuffle=True, seed=3)
            steps = _train(net, sampler, D.local_batch_size(GLOBAL_BATCH), reducer)
            out[name] = {k: v.clone() for k, v in net.state_dict().items()}
            out[name + "_buckets"] = len(reducer.buckets)
            out[name + "_steps"] = steps
            out[name + "_spread"] = D.max_parameter_difference(net)
            reducer.remove()
        out["init"] = init
        out["metrics"] = D.reduce_metrics({"rank": info.rank, "one": 1}, op="sum")
        out["metric_mean"] = D.reduce_metrics({"rank": float(info.rank)}, op="mean")
        if info.is_main:
            torch.save(out, args["out"])
    elif args["mode"] in ("die", "stall"):
        net = _net()
        D.broadcast_parameters(net)
        reducer = D.FeedbackAllReducer(net, overlap=True)
        opt = torch.optim.SGD(net.parameters(), lr=LR)
        x, y = _data().tensors
        for step in range(1000):
            if info.rank == args["victim"] and step == 2:
                if args["mode"] == "die":
                    os._exit(3)
                time.sleep(3600)
            lfp_step(net, x[:8].transpose(0, 1), y[:8], rate_coded_reward)
            reducer.reduce()
            opt.step()
    D.barrier()
    D.shutdown()


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
    results = [_finish(p, 90) for p in procs]
    for rank, (code, err) in enumerate(results):
        assert code == 0, f"rank {rank} exited with {code}:\n{err[-3000:]}"
    got = torch.load(out)
    assert got["world"] == 2
    assert got["metrics"] == {"rank": 1.0, "one": 2.0}
    assert got["metric_mean"] == {"rank": 0.5}

    # One process, batch 16 = 2 x 8, same seeded sample order, same lr.
    ref = _net()
    ref.load_state_dict(got["init"])
    moved = {k: v.clone() for k, v in ref.state_dict().items()}
    steps = _train(ref, D.make_sampler(_data(), shuffle=True, seed=3, num_replicas=1), 16)
    expect = ref.state_dict()
    change = max((expect[k] - moved[k]).abs().max().item() for k in expect)
    assert change > 1e-3, "the reference run did not learn anything: the test would be vacuous"
    assert got["unbucketed_buckets"] == 6 and got["bucketed_buckets"] == 1
    assert got["overlap_buckets"] >= 2
    for name in CONFIGS:
        assert got[name + "_steps"] == steps == EPOCHS * N_DATA // GLOBAL_BATCH
        assert got[name + "_spread"] == 0.0, f"{name}: the two processes' weights differ"
        err = max((got[name][k] - expect[k]).abs().max().item() for k in expect)
        if name == "mean":
            assert err > 1e-3, "op='mean' should differ from the global-batch run (half the lr)"
        else:
            assert err < 1e-10, f"{name}: 2 processes differ from 1 process by {err:.3g}"


def test_dead_peer_makes_the_other_exit_with_a_clear_message():
    victim = 0  # the rank that also hosts the rendezvous store: the harder case
    t0 = time.monotonic()
    procs = _start(2, {"mode": "die", "victim": victim, "timeout": 20})
    results = [_finish(p, 60) for p in procs]
    elapsed = time.monotonic() - t0
    survivor = 1 - victim
    assert results[victim][0] == 3
    code, err = results[survivor]
    assert code not in (None, 0), f"the surviving rank did not fail (code {code}):\n{err[-2000:]}"
    assert "DistributedError" in err and "another process died or stalled" in err, err[-3000:]
    assert "checkpoint" in err
    assert elapsed < 30, f"took {elapsed:.1f} s to notice the dead peer"


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
    t0 = time.monotonic()
    code = D.launch_local(
        2,
        ["--steps", "4", "--simulate-failure", "1", "--timeout", "20", "--nproc", "2"],
        module="spikelfp.training.distributed",
        env=env,
    )
    elapsed = time.monotonic() - t0
    err = capfd.readouterr().err
    assert code != 0
    assert "simulating a crash" in err and "FAILED" in err, err[-3000:]
    # rank 0 either noticed the dead peer itself or was stopped by torchrun; both say so
    assert "another process died or stalled" in err or "stopped by torchrun" in err, err[-3000:]
    assert elapsed < 40, f"torchrun took {elapsed:.1f} s to stop the job"


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
    assert D.is_main_process() and not info.is_distributed
    net = _net()
    x, y = _data().tensors
    lfp_step(net, x[:4].transpose(0, 1), y[:4], rate_coded_reward)
    before = {n: p.grad.clone() for n, p in net.named_parameters()}
    for overlap in (False, True):
        r = D.FeedbackAllReducer(net, overlap=overlap)
        r.reduce()
        r.remove()
    assert all(torch.equal(before[n], p.grad) for n, p in net.named_parameters())
    assert D.reduce_metrics({"a": torch.tensor(2.0), "b": 3}, op="sum") == {"a": 2.0, "b": 3.0}
    D.barrier()
    D.broadcast_parameters(net)
    assert D.max_parameter_difference(net) == 0.0


def test_world_size_without_master_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        D.init_distributed(device="cpu")


def test_buckets_follow_the_feedback_order_and_the_cap():
    net = _net()
    names = [n for n, p in net.named_parameters()]
    one = D.FeedbackAllReducer(net, bucket_cap_mb=25)
    assert one.bucket_names() == [list(reversed(names))]
    per_param = D.FeedbackAllReducer(net, bucket_cap_mb=0)
    assert per_param.bucket_names() == [[n] for n in reversed(names)]
    cap = 16 * 20 * 8 / 2**20  # exactly the first Linear's weight (float64)
    capped = D.FeedbackAllReducer(net, bucket_cap_mb=cap)
    assert all(b.nbytes <= 16 * 20 * 8 for b in capped.buckets)
    assert [n for b in capped.bucket_names() for n in b] == list(reversed(names))
    mixed = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2).double())
    assert len(D.FeedbackAllReducer(mixed).buckets) == 2  # one buffer per dtype
    with pytest.raises(ValueError, match="op"):
        D.FeedbackAllReducer(net, op="avg")


@pytest.mark.parametrize("world", [2, 4])
def test_sampler_shards_union_to_the_single_process_batches(world):
    data = list(range(37))
    single = D.make_sampler(data, shuffle=True, seed=5, num_replicas=1)
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
