r"""Data-parallel training on torch's :class:`~torch.nn.parallel.DistributedDataParallel`.

LFP's feedback ``F`` of a parameter reaches ``param.grad = -F`` through autograd (the rules are
autograd Functions), so DDP's gradient hooks see it: DDP buckets it, all-reduces the buckets
while the backward pass still runs, and hands every process the reduced ``.grad``. This module
adds what DDP does not do and a trainer needs: joining the process group from torchrun's
environment with a finite timeout, a reduction that is right for LFP (:func:`wrap_model`),
sharding the data in the single-process order, reducing metrics, a one-line error when a peer
dies or stalls, and launching workers on one machine.

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
3. every process holds the same weights (DDP broadcasts rank 0's parameters and buffers when it
   wraps the model; equal feedback and a deterministic optimiser keep them equal).

Split the global batch into shards :math:`\mathcal B = \bigcup_k \mathcal B_k`, one per process.
Then :math:`\sum_k F^{(k)} = F`: a **sum** all-reduce of the per-shard feedback is exactly the
global batch's feedback, whatever the shard sizes. DDP *averages* by default
(:math:`\frac1N \sum_k`), right for losses that are batch means (the BPTT baseline: the mean of N
equal shards' mean gradients is the global batch's mean gradient) but :math:`N` times too small
for LFP. So :func:`wrap_model` with ``reduction="sum"`` registers :func:`sum_allreduce_hook`, a
DDP communication hook that all-reduces each bucket with SUM and does not divide. Then **N
processes with batch B/N each, at learning rate lr, equal one process with batch B at the same
lr** (to floating-point reassociation of the sums: ~1e-16 relative in float64; spikes are
thresholds, so in float32 long runs can drift apart like any data-parallel run). The documented
equivalent without a hook, plain DDP at learning rate ``N · lr``, is the same step for SGD but
not exactly for Adam (whose ``eps`` does not scale with the feedback) nor with weight decay,
hence the hook. ``--batch-size`` is the *global* batch; each process loads ``B / N`` samples
(:func:`local_batch_size`).

:func:`make_sampler` hands rank ``k`` the indices ``perm[k::N]`` of the same seeded permutation a
single process's :class:`~spikelfp.training.data.EpochSampler` uses, so step ``s`` of the N
processes covers exactly the samples ``perm[s·B : (s+1)·B]`` of the single-process run with
batch ``B``.

**Failures.** A collective that fails (a peer died: its sockets close; or it stalled beyond the
timeout of :func:`init_distributed`) raises :class:`DistributedError` with a message that says
so, instead of hanging (:func:`collective` turns torch's error into it; the trainer runs each
DDP step inside it). Under ``torchrun``, the launcher also stops the remaining workers when one
fails (SIGTERM, handled by printing a line and exiting) and reports the first failure.
Checkpoints must be written atomically by rank 0 (temporary file + rename), so the last complete
checkpoint survives any of this.

Self-check of a launch setup (two processes training a tiny network through DDP; prints whether
the weights stayed equal)::

    torchrun --standalone --nproc-per-node 2 -m spikelfp.cli._ddp_check --steps 5
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import math
import os
import signal
import subprocess
import sys
import threading
import weakref
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler, Sampler

from .data import EpochSampler

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
    "EpochSampler",
    "init_distributed",
    "shutdown",
    "get_info",
    "is_main_process",
    "barrier",
    "collective",
    "wrap_model",
    "sum_allreduce_hook",
    "reduce_gradients",
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


# Words of the errors torch's process groups raise when a peer is gone or late (gloo: "Connection
# reset by peer", "Timed out waiting 4000ms ..."; NCCL: "NCCL error", watchdog "timeout").
_COMM_WORDS = (
    "gloo",
    "nccl",
    "c10d",
    "processgroup",
    "connection",
    "timed out",
    "timeout",
    "peer",
    "socket",
    "broken pipe",
)


def _is_comm_failure(err: BaseException, only_comm: bool) -> bool:
    if isinstance(err, DistributedError) or not isinstance(err, RuntimeError):
        return False
    if only_comm and not _active():  # one process: nothing to communicate, nothing to blame
        return False
    if not only_comm or isinstance(err, getattr(dist, "DistError", ())):
        return True
    text = str(err).lower()
    return any(w in text for w in _COMM_WORDS)


@contextlib.contextmanager
def collective(what: str, *, mixed: bool = False) -> Iterator[None]:
    """Turn a collective that fails into a :class:`DistributedError` that says what happened.

    Args:
        what: what the block does, for the message (e.g. ``"barrier"``).
        mixed: the block also computes (a DDP training step: forward, backward with the
            all-reduce inside). Then only errors that come from the process group (torch's
            ``DistError``, or a message about gloo/NCCL, a connection, a timeout or a peer)
            are turned into :class:`DistributedError`, and only while a process group is
            active; any other error passes unchanged.

    Raises:
        DistributedError: one line: which rank, what failed, that another process most likely
            died or stalled, that rank 0's last checkpoint is intact, and torch's error.

    >>> with collective("a step", mixed=True):
    ...     pass
    """
    global _FAILURE
    try:
        yield
    except RuntimeError as err:
        if not _is_comm_failure(err, only_comm=mixed):
            raise
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
        device: where to compute; default (``None`` or ``"auto"``) ``cuda:LOCAL_RANK`` when CUDA
            is available, else CPU. ``"cuda"`` means ``cuda:LOCAL_RANK``.
        timeout_s: how long joining and each collective may wait for a peer before raising
            (default :data:`DEFAULT_TIMEOUT_S` or ``$SPIKELFP_DIST_TIMEOUT``), so that a stalled
            peer cannot hang the job forever. With NCCL, the timeout is enforced by the NCCL
            watchdog (``TORCH_NCCL_ASYNC_ERROR_HANDLING``, on by default).
        handle_sigterm: under torchrun, print a clear line and exit when the launcher stops this
            worker because another one failed.

    Returns:
        This process's :class:`DistInfo` (also returned by :func:`get_info` from then on).

    Raises:
        DistributedError: the group could not be joined within the timeout.
        RuntimeError: CUDA requested but not available, or ``WORLD_SIZE`` without
            ``MASTER_ADDR``/``MASTER_PORT``.

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

    if device is None or device == "auto":
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


# The DDP wrappers of wrap_model, so that shutdown() can release their reducers first.
_WRAPPERS: weakref.WeakSet[DistributedDataParallel] = weakref.WeakSet()


def shutdown() -> None:
    """Leave the process group (call once at the end of training; harmless without one).

    The wrappers of :func:`wrap_model` cannot train after this: their DDP reducers are released
    first. (A reducer with a Python communication hook that outlives the group holds its last
    reference; freeing it later deadlocks: the gloo group's destructor joins its worker
    thread, which waits for the GIL that the freeing thread holds.)
    """
    global _INFO
    if _active():
        for ddp in list(_WRAPPERS):
            for name in ("logger", "reducer"):  # both hold the process group
                ddp.__dict__.pop(name, None)
        _WRAPPERS.clear()
        gc.collect()
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
        with collective("barrier"):
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


def max_parameter_difference(model: nn.Module) -> float:
    """Largest ``|w - w_rank0|`` over all parameters and processes (0.0 when not distributed).

    A cheap consistency check (one broadcast and one all-reduce of the flat weights).
    """
    if not _active():
        return 0.0
    params = [p.detach().reshape(-1) for p in model.parameters()]
    if not params:
        return 0.0
    with torch.no_grad(), collective("parameter consistency check"):
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
    with collective(f"reduce_metrics({', '.join(keys)})"):
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


def make_sampler(
    dataset,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
    *,
    num_replicas: int | None = None,
    rank: int | None = None,
) -> Sampler[int]:
    """This process's sampler: ``DistributedSampler`` when world > 1, else the single-process
    :class:`~spikelfp.training.data.EpochSampler` (the same seeded permutation, unsplit).

    Both draw ``torch.randperm(n)`` from a generator seeded with ``seed + epoch``; rank ``k`` of
    ``N`` takes ``perm[k::N]``. Both have ``set_epoch(epoch)``; call it at the start of every
    epoch (otherwise every epoch repeats the first epoch's order). Pass the sampler to
    ``DataLoader(sampler=...)`` and ``batch_size=local_batch_size(B, world)``.

    Args:
        dataset: anything with ``len()``.
        shuffle: permute (else the dataset's order).
        seed: the permutation's seed (plus the epoch).
        drop_last: world > 1 only: drop the tail instead of padding the dataset with repeated
            samples to a multiple of the world size (``DistributedSampler``'s rule).
        num_replicas: number of processes (default: the process group's).
        rank: this process's rank (default: the process group's).

    Returns:
        A ``torch.utils.data.Sampler`` of dataset indices with ``set_epoch``.

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
    return EpochSampler(len(dataset), seed=seed, shuffle=shuffle)


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


def sum_allreduce_hook(process_group, bucket):  # no annotations: DDP checks them
    r"""DDP communication hook: all-reduce a gradient bucket with SUM and do not divide.

    DDP's default hook computes :math:`\frac1N \sum_k g^{(k)}`; LFP's feedback is a sum over the
    batch, so the global batch's feedback is :math:`\sum_k F^{(k)}` (module docstring). Register
    it with ``ddp.register_comm_hook(None, sum_allreduce_hook)`` (:func:`wrap_model` does).

    Args:
        process_group: the group to reduce over (``None``: the default group).
        bucket: DDP's ``GradBucket``; its flat ``buffer()`` is reduced in place.

    Returns:
        A future holding the summed buffer, which DDP copies back into the parameters' ``.grad``.
    """
    group = process_group if process_group is not None else dist.group.WORLD
    fut = dist.all_reduce(bucket.buffer(), group=group, async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


_REDUCTIONS = ("sum", "mean")


def wrap_model(model: nn.Module, reduction: str = "sum", **ddp_kwargs) -> nn.Module:
    """The module to run data-parallel training steps through: ``model`` in
    :class:`~torch.nn.parallel.DistributedDataParallel` when a process group with more than
    one process is active, else ``model`` itself.

    Run the forward pass through the returned module (``lfp_step(wrapped, ...)`` or
    ``wrapped(x)`` then ``.backward()``): DDP all-reduces ``.grad`` bucket by bucket during the
    backward pass, so when the backward returns every process holds the reduced ``.grad`` and
    the optimiser of ``model.parameters()`` steps as usual. Keep using ``model`` itself for
    evaluation, ``state_dict()`` and checkpoints (its names have no ``module.`` prefix). With
    CUDA, ``device_ids`` is this process's GPU. Wrapping broadcasts rank 0's parameters and
    buffers to every process. An LFP composite that names modules must be built for the
    wrapper (its names gain ``module.``).

    Args:
        model: the network, already on this process's device.
        reduction: ``"sum"`` for LFP (registers :func:`sum_allreduce_hook`: N processes with
            batch B/N equal one process with batch B at the same learning rate); ``"mean"``
            for losses that are batch means (plain DDP, e.g. the BPTT baseline).
        **ddp_kwargs: passed to ``DistributedDataParallel`` (``bucket_cap_mb``,
            ``find_unused_parameters``, ``gradient_as_bucket_view``, ``static_graph``...).

    Returns:
        The ``DistributedDataParallel`` wrapper, or ``model`` when not distributed.

    Raises:
        ValueError: ``reduction`` is neither ``"sum"`` nor ``"mean"``.
        DistributedError: a peer died or stalled while the weights were broadcast.

    >>> net = nn.Linear(3, 2)
    >>> wrap_model(net) is net   # not distributed: nothing to wrap
    True
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    if not _active() or dist.get_world_size() == 1:
        return model
    device = get_info().device
    if device.type == "cuda":
        ddp_kwargs.setdefault("device_ids", [device.index])
    with collective(
        "wrapping the model in DistributedDataParallel (broadcast of rank 0's weights)"
    ):
        ddp = DistributedDataParallel(model, **ddp_kwargs)
    if reduction == "sum":
        ddp.register_comm_hook(None, sum_allreduce_hook)
    _WRAPPERS.add(ddp)
    return ddp


def reduce_gradients(model: nn.Module, reduction: str = "mean") -> None:
    r"""All-reduce the ``.grad`` of ``model``'s parameters, for updates that do not run through
    a DDP forward pass (the local rules dfa/drtp/eprop write ``.grad`` from their own passes
    over the layers, which DDP's hooks ignore). No-op without a process group.

    Only parameters that have a ``.grad`` take part, in ``model.parameters()`` order, packed
    into one buffer per dtype and device; every process must have ``.grad`` on the same
    parameters (deterministic rules do).

    Args:
        model: the network (not the DDP wrapper).
        reduction: ``"mean"`` (:math:`\frac1N\sum_k g^{(k)}`, for batch-mean updates) or
            ``"sum"``.

    Raises:
        ValueError: ``reduction`` is neither ``"sum"`` nor ``"mean"``.
        DistributedError: a peer died or stalled.

    >>> net = nn.Linear(2, 1)
    >>> net(torch.ones(1, 2)).sum().backward()
    >>> reduce_gradients(net)   # not distributed: unchanged
    >>> net.bias.grad
    tensor([1.])
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    if not _active() or dist.get_world_size() == 1:
        return
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for p in model.parameters():
        if p.grad is not None:
            groups.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
    world = dist.get_world_size()
    with collective("all-reduce of the gradients"):
        for grads in groups.values():
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            if reduction == "mean":
                flat /= world
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()


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
    return "spikelfp.cli"


def launch_local(
    nproc: int,
    argv: Sequence[str],
    *,
    module: str | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run ``nproc`` workers on this machine with torchrun; returns torchrun's exit code.

    Runs ``python -m torch.distributed.run --standalone --nproc-per-node N --max-restarts 0
    -m <module> <argv>`` where ``module`` defaults to ``spikelfp`` (``spikelfp.cli``
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


# -- self-check: torchrun --standalone --nproc-per-node 2 -m spikelfp.cli._ddp_check --------
def selfcheck(
    steps: int = 5,
    batch_size: int = 16,
    simulate_failure: int | None = None,
    timeout: float | None = None,
) -> int:
    """Train a tiny network data-parallel (run under torchrun) and check that all copies of
    the weights stay equal: ``max |w - w_rank0| = 0``.

    Args:
        steps: LFP steps.
        batch_size: the global batch (each process takes ``batch_size / world_size``).
        simulate_failure: this rank exits abruptly after the first step (tests teardown).
        timeout: collective timeout in seconds (default: :func:`init_distributed`'s).

    Returns:
        The exit code: 0 when the copies stayed equal, else 1.
    """
    from spikelfp import LIF, Sequential
    from spikelfp.lfp import lfp_step, rate_coded_reward

    info = init_distributed(device="cpu", timeout_s=timeout)
    torch.manual_seed(1234 + info.rank)  # different on purpose: DDP must broadcast rank 0's
    net = Sequential(
        nn.Linear(20, 16),
        LIF(beta=0.9, threshold=0.5),
        nn.Linear(16, 4),
        LIF(beta=0.9, threshold=0.5),
    ).double()
    wrapped = wrap_model(net, "sum")
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    b = local_batch_size(batch_size, info.world_size)
    g = torch.Generator().manual_seed(7)
    m = {"acc": float("nan")}
    for step in range(steps):
        x = (torch.rand(10, batch_size, 20, generator=g) < 0.3).double()
        y = torch.randint(0, 4, (batch_size,), generator=g)
        sl = slice(info.rank * b, (info.rank + 1) * b)
        with collective("DDP step (all-reduce of the LFP feedback)", mixed=True):
            res = lfp_step(wrapped, x[:, sl], y[sl], rate_coded_reward)
        opt.step()
        if simulate_failure == info.rank and step == 0:
            sys.stderr.write(f"rank {info.rank}: simulating a crash\n")
            sys.stderr.flush()
            os._exit(3)
        acc = (res.output.sum(0).argmax(-1) == y[sl]).double().mean()
        m = reduce_metrics({"acc": acc})
    diff = max_parameter_difference(net)
    if info.is_main:
        print(
            f"spikelfp distributed self-check: world {info.world_size} ({info.backend}), "
            f"{steps} steps through {type(wrapped).__name__}, last acc {m['acc']:.3f}, "
            f"max |w - w_rank0| = {diff:.3g}",
            flush=True,
        )
    barrier()
    shutdown()
    return 0 if diff == 0.0 or math.isclose(diff, 0.0, abs_tol=1e-12) else 1
