"""Adapter between the trainer and :mod:`spikelfp.training.distributed` (data parallelism).

The trainer only talks to this module. When ``spikelfp.training.distributed`` is importable
its functions are used; otherwise (or in a single process) the stand-ins below do the
single-process equivalent, so the trainer has one code path:

* :func:`init` -> ``DistInfo(rank, world_size, local_rank, device)``
* :func:`make_sampler` -> a sampler with ``set_epoch`` (``DistributedSampler`` when world > 1,
  else :class:`~spikelfp.training.data.EpochSampler`, whose order is a function of
  ``(seed, epoch)`` so that resuming is exact)
* :func:`make_reducer` -> an object whose ``reduce()`` all-reduces the LFP feedback in ``.grad``
  (called between ``lfp_step(..., optimizer=None)`` and ``optimizer.step()``)
* :func:`reduce_sums` -> a dict of metric *sums* summed over all processes
* :func:`local_batch_size`, :func:`broadcast_parameters`, :func:`barrier`, :func:`shutdown`
* :func:`is_main_process`, :func:`launch_local`
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

import torch

from .data import EpochSampler

__all__ = [
    "DistInfo",
    "backend",
    "init",
    "make_sampler",
    "make_reducer",
    "reduce_sums",
    "is_main_process",
    "launch_local",
    "local_batch_size",
    "broadcast_parameters",
    "barrier",
    "shutdown",
]


class DistInfo(NamedTuple):
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")


def backend():
    """The ``spikelfp.training.distributed`` module, or ``None`` when it is not available."""
    try:
        return importlib.import_module("spikelfp.training.distributed")
    except ImportError:
        return None


_INFO: DistInfo | None = None


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


def init(device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (world size 1 otherwise)."""
    global _INFO
    mod = backend()
    dev = _device(device)
    if mod is None or not hasattr(mod, "init_distributed"):
        _INFO = DistInfo(device=dev)
    else:
        info = mod.init_distributed(device=dev)
        _INFO = DistInfo(
            int(getattr(info, "rank", 0)),
            int(getattr(info, "world_size", 1)),
            int(getattr(info, "local_rank", 0)),
            torch.device(getattr(info, "device", "cpu")),
        )
    return _INFO


def info() -> DistInfo:
    return _INFO if _INFO is not None else DistInfo()


def make_sampler(dataset, shuffle: bool, seed: int):
    """A sampler with ``set_epoch(epoch)``; its order depends on ``(seed, epoch)`` only.

    Both implementations draw ``torch.randperm(n)`` from a generator seeded with
    ``seed + epoch``; with N processes rank ``k`` takes every N-th sample of it.
    """
    mod = backend()
    if mod is not None and hasattr(mod, "make_sampler"):
        return mod.make_sampler(dataset, shuffle=shuffle, seed=seed)
    return EpochSampler(len(dataset), seed=seed, shuffle=shuffle)


def local_batch_size(global_batch: int) -> int:
    """Samples per process and step: the global batch divided by the number of processes."""
    world = info().world_size
    mod = backend()
    if world > 1 and mod is not None and hasattr(mod, "local_batch_size"):
        return int(mod.local_batch_size(global_batch, world))
    if global_batch % world:
        raise ValueError(
            f"the batch size {global_batch} must be a multiple of the number of processes {world}"
        )
    return global_batch // world


def broadcast_parameters(model) -> None:
    """Give every process rank 0's parameters (no-op in a single process)."""
    mod = backend()
    if info().world_size > 1 and mod is not None and hasattr(mod, "broadcast_parameters"):
        mod.broadcast_parameters(model)


def shutdown() -> None:
    """Leave the process group (no-op in a single process)."""
    mod = backend()
    if info().world_size > 1 and mod is not None and hasattr(mod, "shutdown"):
        mod.shutdown()


class _NoReduce:
    def __init__(self, model):
        self.model = model

    def reduce(self) -> None:
        return None


def make_reducer(model, op: str = "sum"):
    """An object whose ``reduce()`` all-reduces ``.grad`` over processes.

    ``op="sum"`` for LFP (its feedback is a sum over the batch, so summed shards equal the
    global batch); ``op="mean"`` for the BPTT baseline (its losses are batch means).
    """
    mod = backend()
    if info().world_size > 1 and mod is not None and hasattr(mod, "FeedbackAllReducer"):
        return mod.FeedbackAllReducer(model, op=op)
    return _NoReduce(model)


def reduce_sums(sums: dict[str, float]) -> dict[str, float]:
    """Sum metric sums (correct counts, sample counts, loss sums...) over all processes."""
    if info().world_size <= 1:
        return dict(sums)
    import torch.distributed as dist

    keys = sorted(sums)
    ordered = {k: float(sums[k]) for k in keys}
    mod = backend()
    if mod is not None and hasattr(mod, "reduce_metrics"):
        return dict(mod.reduce_metrics(ordered, op="sum"))
    if dist.is_available() and dist.is_initialized():
        t = torch.tensor([ordered[k] for k in keys], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            t = t.to(info().device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return dict(zip(keys, t.cpu().tolist(), strict=True))
    return ordered


def is_main_process() -> bool:
    mod = backend()
    if mod is not None and hasattr(mod, "is_main_process"):
        return bool(mod.is_main_process())
    return info().rank == 0


def launch_local(nproc: int, argv: list[str]) -> int:
    """Re-run ``python -m spikelfp train ARGV`` in ``nproc`` processes; returns the exit code."""
    mod = backend()
    if mod is None or not hasattr(mod, "launch_local"):
        raise RuntimeError(
            "--nproc > 1 needs spikelfp.training.distributed, which is not available"
        )
    rc: Any = mod.launch_local(nproc, argv)
    return int(rc or 0)


def barrier() -> None:
    if info().world_size <= 1:
        return
    mod = backend()
    if mod is not None and hasattr(mod, "barrier"):
        mod.barrier()
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
