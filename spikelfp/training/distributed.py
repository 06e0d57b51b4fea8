r"""Data-parallel LFP training on ``torch.distributed``.

LFP writes each parameter's feedback ``F`` as ``param.grad = -F`` from custom autograd
Functions, so :class:`torch.nn.parallel.DistributedDataParallel`'s gradient hooks cannot be relied
on to all-reduce it. This module does that part itself, plus the small pieces a trainer needs
around it: joining the process group, sharding the data, reducing metrics, copying rank 0's
initial weights, and launching workers on one machine.

**Which reduction makes N processes equal one process.** For a batch :math:`\mathcal B`, LFP's
feedback is a *sum* over the samples,

.. math:: F(w) = \sum_{b \in \mathcal B} F_b(w),

where :math:`F_b` depends only on sample :math:`b` (its forward pass and its reward) and on the
weights. This holds when

1. the reward of a sample depends only on that sample's output and target (true for every reward
   in :mod:`spikelfp.lfp.rewards`: none divides by the batch size),
2. no layer mixes samples: BatchNorm in training mode normalises with the batch's statistics
   (each process sees only its shard's statistics), and Dropout draws random masks, so networks
   with either are equal only in distribution, not to float tolerance,
3. every process holds the same weights (:func:`broadcast_parameters` once at the start; equal
   feedback and a deterministic optimiser keep them equal).

Split the global batch into shards :math:`\mathcal B = \bigcup_k \mathcal B_k`, one per process.
Then :math:`\sum_k F^{(k)} = F`: a **sum** all-reduce of the per-shard feedback is exactly the
global batch's feedback, whatever the shard sizes. So :class:`FeedbackAllReducer` sums by default
(``op="sum"``), and **N processes with batch B/N each, at learning rate lr, equal one process
with batch B at the same lr** (to floating-point reassociation of the sums: ~1e-16 relative in
float64; spikes are thresholds, so in float32 long runs can drift apart like any data-parallel
run). ``--batch-size`` is the *global* batch; each process loads ``B / N`` samples
(:func:`local_batch_size`).

``op="mean"`` divides the sum by ``N``: that is one process with batch B at learning rate
``lr / N`` for SGD (Adam is nearly invariant to the scale). Use it only when the reward is
normalised by the *local* batch size (``reward / B_local``): then the mean over N equal shards is
the global batch's normalised feedback. This needs equal shard sizes.

:func:`make_sampler` hands rank ``k`` the indices ``perm[k::N]`` of the same seeded permutation a
single process would use, so step ``s`` of the N processes covers exactly the samples
``perm[s·B : (s+1)·B]`` of the single-process run with batch ``B``.

**Failures.** A collective that fails (a peer died: its sockets close; or it stalled beyond the
timeout of :func:`init_distributed`) raises :class:`DistributedError` with a message that says
so, instead of hanging. Under ``torchrun``, the launcher also stops the remaining workers when
one fails (SIGTERM, handled by printing a line and exiting) and reports the first failure.
Checkpoints must be written atomically by rank 0 (temporary file + rename), so the last complete
checkpoint survives any of this.

Self-check of a launch setup (two processes training a tiny network; prints whether the weights
stayed equal)::

    torchrun --standalone --nproc-per-node 2 -m spikelfp.training.distributed --steps 5
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler, Sampler

# ``torch.distributed.nn.functional`` binds ``group.WORLD`` as a default argument when it is first
# imported (torch.optim/dynamo import it). Imported after the group exists, that default keeps
# the gloo group (and its worker threads) alive past ``destroy_process_group``; at interpreter
# exit a worker thread may then still be releasing a finished collective's tensors and abort
# the process ("terminate called without an active exception"). Importing it first avoids this.
with contextlib.suppress(ImportError):
    import torch.distributed.nn  # noqa: F401

__all__ = [
    "DistInfo",
    "DistributedError",
    "FeedbackAllReducer",
    "EpochSampler",
    "init_distributed",
    "shutdown",
    "get_info",
    "is_main_process",
    "barrier",
    "broadcast_parameters",
    "max_parameter_difference",
    "reduce_metrics",
    "make_sampler",
    "local_batch_size",
    "launch_local",
    "DEFAULT_TIMEOUT_S",
]

#: Seconds a collective (and joining the group) may wait for a peer before it fails;
#: overridden by the environment variable ``SPIKELFP_DIST_TIMEOUT``.
DEFAULT_TIMEOUT_S = 300.0


class DistributedError(RuntimeError):
    """A collective failed: another process died, stalled past the timeout, or never joined."""


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job.

    Attributes:
        rank: global rank ``0 .. world_size-1``.
        world_size: number of processes (1: not distributed, no process group).
        local_rank: rank on this machine (the GPU index with CUDA).
        device: the device this process computes on.
        backend: ``"gloo"``, ``"nccl"``, or ``None`` without a process group.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None = None

    @property
    def is_distributed(self) -> bool:
        """True when a process group with more than one process is active."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the process that logs and writes checkpoints)."""
        return self.rank == 0


_INFO: DistInfo | None = None


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def _default_timeout() -> float:
    value = os.environ.get("SPIKELFP_DIST_TIMEOUT")
    if not value:
        return DEFAULT_TIMEOUT_S
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"SPIKELFP_DIST_TIMEOUT={value!r} is not a number of seconds") from None


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


_IDENTITY = "rank 0 of 1"  # set by init_distributed; kept after shutdown for messages
_FAILURE: str | None = None  # message of the first collective that failed in this process


def _who() -> str:
    if _active():
        return f"rank {dist.get_rank()} of {dist.get_world_size()}"
    return _IDENTITY


@contextlib.contextmanager
def _collective(what: str) -> Iterator[None]:
    """Turn a failing collective into a :class:`DistributedError` that says what happened."""
    global _FAILURE
    try:
        yield
    except DistributedError:
        raise
    except RuntimeError as err:
        msg = (
            f"{_who()}: {what} failed, most likely because another process died or stalled "
            f"(look for the first error in the other processes' output; torchrun names the "
            f"failed rank). The last checkpoint written by rank 0 is intact; restart from it. "
            f"Original error: {type(err).__name__}: {' '.join(str(err).split())}"
        )
        if _FAILURE is None:
            _FAILURE = msg
        raise DistributedError(msg) from err


def _sigterm_handler(signum, frame):  # pragma: no cover - exercised through torchrun
    """torchrun stops the remaining workers with SIGTERM when one fails: say so and exit."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    if _FAILURE is not None:
        # This process had already noticed the failure; SystemExit would swallow its error.
        text, code = f"spikelfp: error: {_FAILURE}", 1
    else:
        text, code = (
            f"[spikelfp {_IDENTITY}] stopped by torchrun (SIGTERM), which stops every worker "
            f"when one fails; the failed rank is named under 'Root Cause' in torchrun's report. "
            f"The last checkpoint written by rank 0 is intact.",
            128 + signal.SIGTERM,
        )
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
    raise SystemExit(code)


def init_distributed(
    backend: str | None = None,
    device: str | torch.device | None = None,
    timeout_s: float | None = None,
    handle_sigterm: bool = True,
) -> DistInfo:
    """Join the process group described by torchrun's environment variables.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``, used by
    the ``env://`` rendezvous). Without them, or with ``WORLD_SIZE=1``, no process group is
    created and ``world_size`` is 1. Calling it again returns the same answer.

    Args:
        backend: ``"gloo"`` or ``"nccl"``; default NCCL when the device is CUDA, else gloo.
        device: where to compute; default ``cuda:LOCAL_RANK`` when CUDA is available, else CPU.
            ``"cuda"`` means ``cuda:LOCAL_RANK``.
        timeout_s: how long joining and each collective may wait for a peer before raising
            (default :data:`DEFAULT_TIMEOUT_S` or ``$SPIKELFP_DIST_TIMEOUT``), so that a stalled
            peer cannot hang the job forever. With NCCL, the timeout is enforced by the NCCL
            watchdog (``TORCH_NCCL_ASYNC_ERROR_HANDLING``, on by default).
        handle_sigterm: under torchrun, print a clear line and exit when the launcher stops this
            worker because another one failed.

    >>> info = init_distributed(device="cpu")   # not launched by torchrun
    >>> info.world_size, info.rank, info.backend
    (1, 0, None)
    """
    global _INFO, _IDENTITY
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"invalid torchrun environment: RANK={rank}, WORLD_SIZE={world}")

    if device is None:
        dev = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", local_rank)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {dev} requested but CUDA is not available")
        if dev.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"{dev} requested (LOCAL_RANK={local_rank}) but this machine has "
                f"{torch.cuda.device_count()} visible GPU(s); use --nproc-per-node <= number of "
                f"GPUs (and check CUDA_VISIBLE_DEVICES)"
            )
        torch.cuda.set_device(dev)

    if _active():
        info = DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, dist.get_backend())
        _INFO = info
        return info
    if world == 1:
        _INFO = DistInfo(0, 1, local_rank, dev, None)
        return _INFO

    if backend is None:
        backend = "nccl" if dev.type == "cuda" else "gloo"
    if backend == "nccl" and dev.type != "cuda":
        raise ValueError("the NCCL backend needs CUDA devices; use backend='gloo' on CPU")
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE={world} is set but {', '.join(missing)} is not: launch the workers with "
            f"torchrun (or `spikelfp train ... --nproc N`), which sets them"
        )
    timeout = _default_timeout() if timeout_s is None else float(timeout_s)
    if not timeout > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout}")
    kwargs = {"device_id": dev} if dev.type == "cuda" else {}
    try:
        dist.init_process_group(
            backend=backend,
            init_method="env://",
            rank=rank,
            world_size=world,
            timeout=timedelta(seconds=timeout),
            **kwargs,
        )
    except RuntimeError as err:
        raise DistributedError(
            f"rank {rank} of {world} could not join the process group at "
            f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} ({backend}) within "
            f"{timeout:g} s: {err}"
        ) from err
    if (
        handle_sigterm
        and os.environ.get("TORCHELASTIC_RUN_ID")
        and threading.current_thread() is threading.main_thread()
    ):
        signal.signal(signal.SIGTERM, _sigterm_handler)
    _IDENTITY = f"rank {rank} of {world}"
    _INFO = DistInfo(rank, world, local_rank, dev, backend)
    return _INFO


def shutdown() -> None:
    """Leave the process group (call once at the end of training; harmless without one)."""
    global _INFO
    if _active():
        with contextlib.suppress(RuntimeError):
            dist.destroy_process_group()
    _INFO = None


def get_info() -> DistInfo:
    """The :class:`DistInfo` of the last :func:`init_distributed` (world 1 on CPU if none)."""
    if _INFO is not None:
        return _INFO
    if _active():
        return DistInfo(
            dist.get_rank(), dist.get_world_size(), 0, torch.device("cpu"), dist.get_backend()
        )
    return DistInfo(0, 1, 0, torch.device("cpu"), None)


def is_main_process() -> bool:
    """True on rank 0, and when not distributed.

    >>> is_main_process()
    True
    """
    return not _active() or dist.get_rank() == 0


def barrier() -> None:
    """Wait until every process arrives here (no-op when not distributed)."""
    if _active():
        with _collective("barrier"):
            dist.barrier()


def _comm_device() -> torch.device:
    """The device collectives' scratch tensors live on (CUDA for NCCL)."""
    if _active() and dist.get_backend() == "nccl":
        return (
            get_info().device
            if get_info().device.type == "cuda"
            else torch.device("cuda", torch.cuda.current_device())
        )
    return torch.device("cpu")


def broadcast_parameters(model: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into every other process's ``model``.

    Call once after building (or loading) the model and before the first step; from then on
    identical reduced feedback keeps the copies identical. No-op when not distributed.
    """
    if not _active():
        return
    with torch.no_grad(), _collective("broadcast of the initial parameters"):
        for t in [*model.parameters(), *model.buffers()]:
            dist.broadcast(t.data, src=src)


def max_parameter_difference(model: nn.Module) -> float:
    """Largest ``|w - w_rank0|`` over all parameters and processes (0.0 when not distributed).

    A cheap consistency check (one broadcast and one all-reduce of the flat weights).
    """
    if not _active():
        return 0.0
    params = [p.detach().reshape(-1) for p in model.parameters()]
    if not params:
        return 0.0
    with torch.no_grad(), _collective("parameter consistency check"):
        flat = torch.cat(params).to(_comm_device(), torch.float64)
        ref = flat.clone()
        dist.broadcast(ref, src=0)
        diff = (flat - ref).abs().max().reshape(1)
        dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff)


_OPS = {"sum": "SUM", "mean": "SUM", "max": "MAX", "min": "MIN"}


def reduce_metrics(
    metrics: Mapping[str, float | int | torch.Tensor], op: str = "mean"
) -> dict[str, float]:
    """Combine scalar metrics over all processes in one all-reduce; returns plain floats.

    ``op``: ``"mean"`` (the average over processes: right for per-process *means* only when every
    process saw the same number of samples), ``"sum"`` (use it for counts and sums, e.g. reduce
    ``{"correct": c, "seen": n}`` and divide afterwards: exact for unequal shards too), ``"max"``,
    ``"min"``. Every process must pass the same keys in the same order (checked).

    >>> reduce_metrics({"loss": torch.tensor(0.5), "correct": 3})
    {'loss': 0.5, 'correct': 3.0}
    """
    if op not in _OPS:
        raise ValueError(f"op must be one of {sorted(_OPS)}, got {op!r}")
    keys = list(metrics)
    values = []
    for k in keys:
        v = metrics[k]
        if isinstance(v, torch.Tensor):
            if v.numel() != 1:
                raise ValueError(f"metric {k!r} must be a scalar, got shape {tuple(v.shape)}")
            v = v.detach().item()
        values.append(float(v))
    if not _active() or dist.get_world_size() == 1:
        return dict(zip(keys, values, strict=True))
    world = dist.get_world_size()
    check = float(zlib.crc32("\x00".join(keys).encode()))
    buf = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    with _collective(f"reduce_metrics({', '.join(keys)})"):
        dist.all_reduce(buf, op=getattr(dist.ReduceOp, _OPS[op]))
        tag = torch.tensor([check, check], dtype=torch.float64, device=_comm_device())
        dist.all_reduce(tag[:1], op=dist.ReduceOp.MIN)
        dist.all_reduce(tag[1:], op=dist.ReduceOp.MAX)
    if tag[0].item() != check or tag[1].item() != check:
        raise ValueError(
            f"{_who()}: reduce_metrics got different metric names on different processes "
            f"(here: {keys}); pass the same keys in the same order everywhere"
        )
    out = buf.cpu()
    if op == "mean":
        out = out / world
    return dict(zip(keys, out.tolist(), strict=True))


class EpochSampler(Sampler[int]):
    """Single-process sampler with the same seeded order as :class:`DistributedSampler`.

    ``shuffle=True`` draws ``torch.randperm(n)`` from a generator seeded with ``seed + epoch``
    (exactly what ``DistributedSampler`` does before it splits the permutation over ranks), so one
    process with batch ``B`` sees the union of what ``N`` processes with ``B/N`` each see.
    Call :meth:`set_epoch` before every epoch.

    >>> s = EpochSampler(range(5), shuffle=False)
    >>> list(s)
    [0, 1, 2, 3, 4]
    """

    def __init__(self, dataset, shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        self.n = len(dataset)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.epoch = 0
        self.drop_last = drop_last  # kept for the same signature; one replica drops nothing

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of this epoch."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def make_sampler(
    dataset,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
    *,
    num_replicas: int | None = None,
    rank: int | None = None,
) -> Sampler[int]:
    """This process's sampler: ``DistributedSampler`` when world > 1, else :class:`EpochSampler`.

    Both have ``set_epoch(epoch)``; call it at the start of every epoch (otherwise every epoch
    repeats the first epoch's order). Pass the sampler to ``DataLoader(sampler=...)`` (with
    ``shuffle=False``) and ``batch_size=local_batch_size(B, world)``. With world > 1 and
    ``drop_last=False`` the dataset is padded with repeated samples to a multiple of the world
    size (``DistributedSampler``'s rule). ``num_replicas``/``rank`` override the process group's.

    >>> s = make_sampler(range(4), shuffle=True, seed=1, num_replicas=2, rank=1)
    >>> type(s).__name__, len(s)
    ('DistributedSampler', 2)
    """
    info = get_info()
    world = info.world_size if num_replicas is None else int(num_replicas)
    rk = info.rank if rank is None else int(rank)
    if world > 1:
        return DistributedSampler(
            dataset, num_replicas=world, rank=rk, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
    return EpochSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)


def local_batch_size(global_batch: int, world_size: int | None = None) -> int:
    """The per-process batch ``B / N`` for a global batch ``B`` (must divide evenly).

    >>> local_batch_size(128, 2)
    64
    """
    world = get_info().world_size if world_size is None else int(world_size)
    if global_batch < world or global_batch % world:
        raise ValueError(
            f"the global batch size {global_batch} must be a multiple of the number of "
            f"processes {world} (each process trains on batch_size / nproc samples)"
        )
    return global_batch // world


class _Bucket:
    __slots__ = (
        "params",
        "numels",
        "dtype",
        "device",
        "index",
        "ready",
        "work",
        "flat",
        "launched",
    )

    def __init__(self, index: int, params: list[nn.Parameter]):
        self.index = index
        self.params = params
        self.numels = [p.numel() for p in params]
        self.dtype = params[0].dtype
        self.device = params[0].device
        self.ready = 0
        self.work = None
        self.flat = None
        self.launched = False

    @property
    def nbytes(self) -> int:
        return sum(self.numels) * self.params[0].element_size()


class FeedbackAllReducer:
    r"""Sum (or average) every parameter's LFP feedback ``.grad`` over all processes.

    Call :meth:`reduce` after :func:`~spikelfp.lfp.lfp_step` (with ``optimizer=None``) and before
    ``optimizer.step()``. Parameters are grouped into buckets of up to ``bucket_cap_mb``
    megabytes, from the output layer backwards (the order in which LFP's feedback arrives). Each
    bucket's grads are flattened into one buffer, all-reduced asynchronously (the next bucket is
    flattened while the previous one is on the wire), and handed back as views of the reduced
    buffer. ``bucket_cap_mb <= 0`` disables bucketing: every parameter's ``.grad`` is all-reduced
    in place on its own.

    ``op="sum"`` (default) makes N processes with batch B/N equal one process with batch B at the
    same learning rate (see the module docstring); ``op="mean"`` divides by N.

    ``overlap=True`` registers ``register_post_accumulate_grad_hook`` on every parameter: a
    bucket's all-reduce starts during the backward pass as soon as all its parameters' feedback
    has arrived (buckets are launched strictly in order, so every process issues the same
    collectives). Then every backward pass must be followed by :meth:`reduce` (or
    :meth:`reset`). Call :meth:`remove` to take the hooks off.

    A parameter without feedback on a process contributes zeros; after :meth:`reduce` every
    trainable parameter has a ``.grad``. Without a process group (world 1), :meth:`reduce` does
    nothing.

    Timing of the last :meth:`reduce` (seconds): ``last_reduce_s`` (time spent inside it: the
    exposed communication), ``last_hook_s`` (flattening/launching done inside the backward pass
    with ``overlap=True``).

    >>> net = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    >>> r = FeedbackAllReducer(net, bucket_cap_mb=25)
    >>> r.bucket_names()
    [['1.bias', '1.weight', '0.bias', '0.weight']]
    >>> r.reduce()   # world 1: nothing to do
    """

    def __init__(
        self,
        model: nn.Module,
        bucket_cap_mb: float = 25.0,
        op: str = "sum",
        overlap: bool = False,
        process_group=None,
    ):
        if op not in ("sum", "mean"):
            raise ValueError(f"op must be 'sum' or 'mean', got {op!r}")
        self.op = op
        self.overlap = bool(overlap)
        self.group = process_group
        self.bucket_cap_bytes = bucket_cap_mb * 2**20
        names = {id(p): n for n, p in model.named_parameters()}
        params = [p for p in model.parameters() if p.requires_grad]
        self._names = names
        self.buckets = self._make_buckets(list(reversed(params)))
        self._bucket_of = {id(p): b for b in self.buckets for p in b.params}
        self._next = 0
        self._handles = []
        self.last_reduce_s = 0.0
        self.last_hook_s = 0.0
        self._hook_s = 0.0
        if self.overlap:
            for p in params:
                self._handles.append(p.register_post_accumulate_grad_hook(self._on_grad_ready))

    def _make_buckets(self, params: list[nn.Parameter]) -> list[_Bucket]:
        buckets: list[_Bucket] = []
        current: list[nn.Parameter] = []
        size = 0
        for p in params:
            fits = (
                current
                and current[0].dtype == p.dtype
                and current[0].device == p.device
                and size + p.numel() * p.element_size() <= self.bucket_cap_bytes
            )
            if current and not fits:
                buckets.append(_Bucket(len(buckets), current))
                current, size = [], 0
            current.append(p)
            size += p.numel() * p.element_size()
        if current:
            buckets.append(_Bucket(len(buckets), current))
        return buckets

    def bucket_names(self) -> list[list[str]]:
        """The parameter names in each bucket, in launch order."""
        return [[self._names.get(id(p), "?") for p in b.params] for b in self.buckets]

    @property
    def world_size(self) -> int:
        """Number of processes the feedback is reduced over (1 without a process group)."""
        return dist.get_world_size(self.group) if _active() else 1

    # -- launching ---------------------------------------------------------------------------
    def _launch(self, b: _Bucket) -> None:
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in b.params]
        if len(b.params) == 1 and grads[0].is_contiguous():
            flat = grads[0]
            if b.params[0].grad is None:
                b.params[0].grad = flat
        else:
            flat = torch.cat([g.reshape(-1) for g in grads])
        b.flat = flat
        with _collective("all-reduce of the LFP feedback"):
            b.work = dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.group, async_op=True)
        b.launched = True

    def _on_grad_ready(self, param: torch.Tensor) -> None:
        if not _active():
            return
        t0 = time.perf_counter()
        b = self._bucket_of[id(param)]
        b.ready += 1
        while self._next < len(self.buckets):
            nb = self.buckets[self._next]
            if nb.launched or nb.ready < len(nb.params):
                break
            self._launch(nb)
            self._next += 1
        self._hook_s += time.perf_counter() - t0

    # -- public ------------------------------------------------------------------------------
    def reduce(self) -> None:
        """All-reduce every parameter's ``.grad``; returns when the reduced feedback is in place."""
        t0 = time.perf_counter()
        if not _active() or self.world_size == 1:
            self.reset()
            self.last_reduce_s = time.perf_counter() - t0
            return
        try:
            for b in self.buckets:
                if not b.launched:
                    self._launch(b)
            world = self.world_size
            for b in self.buckets:
                with _collective("all-reduce of the LFP feedback"):
                    b.work.wait()
                flat = b.flat
                if self.op == "mean":
                    flat.div_(world)
                if len(b.params) == 1 and flat.data_ptr() == b.params[0].grad.data_ptr():
                    continue  # reduced in place
                offset = 0
                for p, n in zip(b.params, b.numels, strict=True):
                    p.grad = flat[offset : offset + n].view_as(p)
                    offset += n
        finally:
            self.last_hook_s = self._hook_s
            self.reset()
        self.last_reduce_s = time.perf_counter() - t0

    def reset(self) -> None:
        """Forget partially launched buckets (call if a backward pass was not reduced)."""
        for b in self.buckets:
            b.ready = 0
            b.work = None
            b.flat = None
            b.launched = False
        self._next = 0
        self._hook_s = 0.0

    def remove(self) -> None:
        """Remove the overlap hooks from the parameters."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.overlap = False

    def __repr__(self) -> str:
        mb = [f"{b.nbytes / 2**20:.2f}" for b in self.buckets]
        return (
            f"FeedbackAllReducer(op={self.op!r}, overlap={self.overlap}, "
            f"buckets={len(self.buckets)} [{', '.join(mb)} MB])"
        )


def _strip_nproc(argv: Sequence[str]) -> list[str]:
    """Remove ``--nproc N`` / ``--nproc=N`` so that the workers do not launch workers again."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        out.append(a)
    return out


def _default_module() -> str:
    if importlib.util.find_spec("spikelfp.__main__") is not None:
        return "spikelfp"
    return "spikelfp.training.cli"


def launch_local(
    nproc: int,
    argv: Sequence[str],
    *,
    module: str | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run ``nproc`` workers on this machine with torchrun; returns torchrun's exit code.

    Runs ``python -m torch.distributed.run --standalone --nproc-per-node N --max-restarts 0
    -m <module> <argv>`` where ``module`` defaults to ``spikelfp`` (``spikelfp.training.cli``
    if the package has no ``__main__``) and ``argv`` is e.g. ``["train", "--config", ...]``
    (any ``--nproc`` is removed). ``--standalone`` picks a free port. Unless set,
    ``OMP_NUM_THREADS`` is the number of CPU cores divided by ``nproc``. When a worker fails,
    torchrun stops the others and this returns non-zero. Ctrl-C is passed on to the workers.
    """
    nproc = int(nproc)
    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {nproc}")
    module = module or _default_module()
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    for k in (
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "LOCAL_WORLD_SIZE",
        "GROUP_RANK",
        "TORCHELASTIC_RUN_ID",
    ):
        child_env.pop(k, None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "--max-restarts",
        "0",
        "-m",
        module,
        *_strip_nproc(argv),
    ]
    proc = subprocess.Popen(cmd, env=child_env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


# -- self-check: torchrun --standalone --nproc-per-node 2 -m spikelfp.training.distributed ----
def _selfcheck(argv: Sequence[str] | None = None) -> int:
    from spikelfp import LIF, Sequential
    from spikelfp.lfp import lfp_step, rate_coded_reward

    ap = argparse.ArgumentParser(
        prog="python -m spikelfp.training.distributed",
        description="Train a tiny network data-parallel and check that all copies stay equal.",
    )
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=16, help="global batch")
    ap.add_argument("--overlap", action="store_true")
    ap.add_argument(
        "--simulate-failure",
        type=int,
        default=None,
        metavar="RANK",
        help="this rank exits abruptly after the first step (tests teardown)",
    )
    ap.add_argument("--timeout", type=float, default=None, help="collective timeout (s)")
    args = ap.parse_args(argv)
    info = init_distributed(device="cpu", timeout_s=args.timeout)
    torch.manual_seed(1234 + info.rank)  # different on purpose: broadcast must fix it
    net = Sequential(
        nn.Linear(20, 16),
        LIF(beta=0.9, threshold=0.5),
        nn.Linear(16, 4),
        LIF(beta=0.9, threshold=0.5),
    ).double()
    broadcast_parameters(net)
    reducer = FeedbackAllReducer(net, bucket_cap_mb=0.001, overlap=args.overlap)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    b = local_batch_size(args.batch_size, info.world_size)
    g = torch.Generator().manual_seed(7)
    m = {"acc": float("nan")}
    for step in range(args.steps):
        x = (torch.rand(10, args.batch_size, 20, generator=g) < 0.3).double()
        y = torch.randint(0, 4, (args.batch_size,), generator=g)
        sl = slice(info.rank * b, (info.rank + 1) * b)
        res = lfp_step(net, x[:, sl], y[sl], rate_coded_reward)
        reducer.reduce()
        opt.step()
        if args.simulate_failure == info.rank and step == 0:
            sys.stderr.write(f"rank {info.rank}: simulating a crash\n")
            sys.stderr.flush()
            os._exit(3)
        acc = (res.output.sum(0).argmax(-1) == y[sl]).double().mean()
        m = reduce_metrics({"acc": acc})
    diff = max_parameter_difference(net)
    if info.is_main:
        print(
            f"spikelfp distributed self-check: world {info.world_size} ({info.backend}), "
            f"{args.steps} steps, {reducer}, last acc {m['acc']:.3f}, "
            f"max |w - w_rank0| = {diff:.3g}",
            flush=True,
        )
    barrier()
    shutdown()
    return 0 if diff == 0.0 or math.isclose(diff, 0.0, abs_tol=1e-12) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_selfcheck())
