"""The trainer: LFP (or surrogate-gradient BPTT) training of a zoo model on an event dataset.

>>> from spikelfp.training import Trainer, TrainConfig          # doctest: +SKIP
>>> trainer = Trainer(TrainConfig(epochs=5, out="runs/digits"))  # doctest: +SKIP
>>> history = trainer.fit()                                       # doctest: +SKIP
>>> Trainer.resume("runs/digits").fit()   # after a crash: continues exactly  # doctest: +SKIP

A run folder holds ``config.yaml`` (the resolved configuration), ``checkpoint.pt`` (written
atomically after every epoch), ``metrics.jsonl`` (one JSON object per epoch) and
``accuracy.png`` and ``spike_rates.png`` (redrawn after every epoch); ``docs/run_folder.md``
describes each file.

Determinism: the order of the training samples in epoch ``e`` is a function of ``(seed, e)``
only, and the checkpoint stores the model, optimiser, schedule and all RNG states after each
completed epoch, so a run resumed from its checkpoint ends with exactly the metrics of an
uninterrupted run with the same seed (a run killed mid-epoch restarts that epoch).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader

from .. import __version__
from ..datasets.augment import make_augmentation
from ..hw_export.errors import NIRImportError
from ..lfp import lfp_step, rate_coded_reward, spike_count_softmax_reward
from ..lfp.composites import SYNAPSE_TYPES, UnsupportedModuleError
from ..lfp.online import Windowed, augment_sparse, online_lfp_step
from ..sequential import Sequential, event_input_layer
from . import distributed as _dist
from .bptt import BPTT_LOSSES, surrogate
from .checkpoint import (
    CHECKPOINT_NAME,
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    error_text,
    load_checkpoint,
    output_problem,
    rng_state,
    save_atomic,
    set_rng_state,
    write_text_atomic,
)
from .config import ConfigError, TrainConfig
from .data import (
    SparseLoader,
    collate,
    epoch_permutation,
    open_split,
    sparse_batch,
    stack_samples,
)
from .evaluate import SpikeRecorder, evaluate, predict
from .homeostasis import RateFloor
from .local_rules import LOCAL_RULES, make_local_rule
from .models import ModelSpec, build_model, calibrate_firing, calibrate_firing_online, neuron_layers

__all__ = [
    "Trainer",
    "RunExistsError",
    "TrainingDivergedError",
    "make_reward",
    "make_composite",
    "build_from_checkpoint",
]

METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.yaml"
#: metrics that measure the machine, not the training (differ between identical runs)
TIMING_KEYS = ("epoch_time_s", "samples_per_s")


class RunExistsError(ValueError):
    """The output folder already holds a run (resume it or choose another folder)."""


class TrainingDivergedError(FloatingPointError):
    """Training produced a NaN or infinite loss, reward, feedback or weight; training stopped
    before saving it, so the run's last checkpoint (if any) holds the last good epoch."""


def make_reward(
    name: str, time_bins: int, temperature: float = 1.0
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The reward function of a config: ``rate`` (lfprop's rate-coded correct-class reward,
    scaled by ``1/T``) or ``softmax`` (cross-entropy error of the spike counts divided by
    ``temperature``, ``/T``)."""
    if name == "rate":
        return partial(rate_coded_reward, scale=1.0 / time_bins)
    if name == "softmax":
        return partial(spike_count_softmax_reward, temperature=temperature)
    raise ConfigError(f"unknown reward {name!r}")


def spec_from_config(cfg: TrainConfig, frame_shape, n_classes: int) -> ModelSpec:
    """The zoo model a config describes, for frames ``(P, H, W)`` and ``n_classes``.

    >>> spec_from_config(TrainConfig(model="speck-cnn", neuron="if"), (2, 34, 34), 10).channels
    (16, 16, 8)
    """
    return ModelSpec(
        name=cfg.model,
        input_shape=tuple(frame_shape),
        n_classes=int(n_classes),
        hidden=cfg.hidden,
        channels=None if cfg.channels is None else tuple(cfg.channels),
        beta=cfg.beta,
        threshold=cfg.threshold,
        reset=cfg.reset,
        neuron=cfg.neuron,
        bias=cfg.bias,
        batch_norm=cfg.batch_norm,
        pool=cfg.pool,
        dropout=cfg.dropout,
    )


def make_composite(cfg: TrainConfig, model: nn.Module):
    """The LFP composite of a config: ``synapse_rule`` for every Linear/Conv, except the first
    ``lower_layers`` of them (input side), which get ``lower_rule`` (LRP's practice for CNNs:
    z⁺ or γ near the input, ε above). Both rules get the stabiliser ``epsilon``.

    >>> from spikelfp import Sequential, LIF
    >>> net = Sequential(nn.Linear(4, 4), LIF(), nn.Linear(4, 2), LIF())
    >>> comp = make_composite(TrainConfig(lower_rule="zplus", lower_layers=1), net)
    >>> dict(comp.names)
    {'0': ZPlusRule(epsilon=0.0)}
    """
    from ..lfp import default_composite
    from ..lfp.synapse_rules import EpsilonRule, GammaRule, ZPlusRule

    rules = {"epsilon": EpsilonRule, "zplus": ZPlusRule, "gamma": GammaRule}
    comp = default_composite(synapse_rule=rules[cfg.synapse_rule](epsilon=cfg.epsilon))
    return comp.with_lower_rule(model, rules[cfg.lower_rule](epsilon=cfg.epsilon), cfg.lower_layers)


def _param_groups(cfg: TrainConfig, model: nn.Module) -> list[dict[str, Any]]:
    """One group per synapse layer (its weight and bias, and a batch norm after it).

    ``lr_scaling: weight`` gives each layer the learning rate ``lr · mean|W₀|`` (its initial
    mean absolute weight after :func:`calibrate_firing`): Adam's step is about ``lr`` per
    weight whatever the weight's size, so one global rate moves small-weight layers (wide
    fan-in, or after sum pooling) far more, relative to their weights, than large-weight ones.
    The scale is fixed at the start and stored with the optimizer's state.
    """
    groups: list[dict[str, Any]] = []
    seen: set[int] = set()
    current: dict[str, Any] | None = None
    for m in model.modules():
        own = [p for p in m.parameters(recurse=False) if p.requires_grad and id(p) not in seen]
        if not own:
            continue
        seen.update(id(p) for p in own)
        if isinstance(m, SYNAPSE_TYPES) or current is None:
            scale = 1.0
            if cfg.lr_scaling == "weight" and isinstance(m, SYNAPSE_TYPES):
                scale = float(m.weight.detach().abs().mean())
            current = {"params": [], "lr": cfg.lr * scale}
            groups.append(current)
        current["params"].extend(own)
    return groups


def _make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.lr_scaling == "none":  # one group, as checkpoints before lr_scaling have
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    else:
        groups = _param_groups(cfg, model)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def warmup_factor(warmup: float, epoch: int, batch: int, n_batches: int) -> float:
    """The linear warm-up's factor on the scheduled learning rate at optimiser step ``batch``
    (from 0) of ``epoch`` (from 0), ``n_batches`` steps per epoch, over ``warmup`` epochs:

    .. math:: f = \\min\\big(1,\\ (e\\,n + b + 1) / (E\\,n)\\big)

    It depends on the step only, so a resumed run warms up exactly as an uninterrupted one.

    >>> [warmup_factor(2, e, b, 2) for e in (0, 1, 2) for b in (0, 1)]
    [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    >>> warmup_factor(0, 0, 0, 10)
    1.0
    """
    if warmup <= 0:
        return 1.0
    return min(1.0, (epoch * n_batches + batch + 1) / (warmup * max(n_batches, 1)))


def _make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer):
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(cfg.epochs, 1))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


def build_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """The trained model stored in a loaded checkpoint (in eval mode)."""
    try:
        spec = ModelSpec.from_dict(ckpt["model_spec"])
        model = _build(spec, ckpt.get("init_graph"))
        model.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, ValueError, RuntimeError, NIRImportError) as err:
        first = error_text(err)
        raise CheckpointError(
            f"{ckpt.get('path', 'checkpoint')}: cannot rebuild the model ({first})"
        ) from None
    return model.eval()


def _build(spec: ModelSpec, init_graph: bytes | None = None) -> nn.Module:
    """The zoo model of ``spec``, in the layer types of its hardware target if it has one; or,
    with ``init_graph`` (a NIR file's bytes, ``train --init``), the network it holds."""
    if init_graph is not None:
        return _model_from_graph(init_graph, spec.input_shape, spec.n_classes)
    model = build_model(spec)
    if (spec.extra or {}).get("target") is None:
        return model
    from ..hw_export.target import model_for_target

    return model_for_target(model, spec)


def _model_from_graph(data: bytes, frame_shape, n_classes: int) -> nn.Module:
    """The :class:`~spikelfp.Sequential` in a NIR file's bytes (its producer's conventions
    detected), taking frames of ``frame_shape``; refuses a graph that does not fit the data or
    that LFP cannot train as a chain."""
    import tempfile

    from .nir_eval import FramesAs, load_nir_model

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "init.nir"
        path.write_bytes(data)
        model, n_out = load_nir_model(path, frame_shape)
    if n_out != n_classes:
        raise NIRImportError(
            f"the --init graph has {n_out} outputs but the data has {n_classes} classes"
        )
    if isinstance(model, FramesAs) and isinstance(model.net, Sequential) and len(model.shape) == 1:
        # a graph with a flat input (snntorch, norse; load_nir_model checked the size)
        model = Sequential(nn.Flatten(), *model.net)
    if not isinstance(model, Sequential):
        raise NIRImportError(
            f"the --init graph imports as a {type(model).__name__}; train --init takes chains "
            "(spikelfp.Sequential), not branching graphs or reshaped inputs"
        )
    return model


def resolve_target(target: str):
    """The :class:`~spikelfp.hw_export.HardwareProfile` a ``--target`` names.

    Args:
        target: a registered profile's name (``int8``, ``loihi2``, ``speck``, ``xylo``, any
            case) or a profile file (``.json``/``.toml``/``.yaml`` of its fields).

    Returns:
        The profile; ``None`` when the hardware export is not installed.

    Raises :class:`ConfigError` (one line) for an unknown name or an invalid profile file.
    """
    try:
        from ..hw_export.profiles import PROFILE_SUFFIXES, PROFILES, load_profile
    except ImportError:  # the caller reports the missing export
        return None
    if Path(target).suffix.lower() in PROFILE_SUFFIXES:
        try:
            return load_profile(target)
        except ValueError as err:
            raise ConfigError(f"--target {err}") from None
    if target.lower() not in PROFILES:
        raise ConfigError(
            f"unknown --target {target!r}; choose one of {', '.join(sorted(PROFILES))}, or give "
            "a profile file (.json/.toml/.yaml)"
        )
    return PROFILES[target.lower()]


def _target_spec(spec: ModelSpec, target: str, log) -> ModelSpec:
    """``spec`` adapted to ``target`` (``train --target``); refuses, before any training, a
    model the target cannot run."""
    from ..hw_export.target import adapt_spec, model_for_target, refuse_text, structural_violations

    prof = resolve_target(target)
    new, changes = adapt_spec(spec, prof)
    bad = structural_violations(
        model_for_target(build_model(new), new), prof, new.input_shape, prof.weight_bits
    )
    if bad:
        raise ConfigError(refuse_text(bad, prof))
    if changes:
        log(f"--target {prof.name}: {', '.join(changes)}")
    return new


def _target_training(model: nn.Module, spec: ModelSpec):
    if (spec.extra or {}).get("target") is None:
        return None
    from ..hw_export.target import TargetTraining, target_of

    return TargetTraining(model, target_of(spec), input_shape=spec.input_shape)


def _make_pruner(cfg: TrainConfig, model: nn.Module, optimizer):
    """The :class:`~spikelfp.training.pruning_schedule.GradualPruner` of ``--prune-to``
    (``None`` without pruning)."""
    if not cfg.prune_to:
        return None
    from .pruning_schedule import GradualPruner, PruneSchedule

    schedule = PruneSchedule(
        cfg.prune_to,
        method=cfg.prune_method,
        start=cfg.prune_start,
        end=cfg.epochs if cfg.prune_end is None else cfg.prune_end,
        every=cfg.prune_every,
        scope=cfg.prune_scope,
    )
    try:
        return GradualPruner(model, schedule, optimizer)
    except ValueError as err:
        raise ConfigError(f"--prune-to: {err}") from None


def _read_init(path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"--init {path}: cannot read it ({err.strerror or err})") from None


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seed the legacy global RNG too
    random.seed(seed)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Trainer:
    """Trains one run (see the module docstring).

    Args:
        config: the run's :class:`TrainConfig` (``config.out`` is the run folder).
        overwrite: start afresh even if ``config.out`` already holds a checkpoint.
        log: function printing one status line (default: stderr, main process only).
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        overwrite: bool = False,
        log: Callable[[str], None] | None = None,
        _checkpoint: dict[str, Any] | None = None,
    ):
        config.validate()
        try:
            self.dist = _dist.init_distributed(device=config.device)
        except (ValueError, RuntimeError) as err:  # incl. DistributedError, missing MASTER_ADDR
            raise ConfigError(f"could not start training: {err}") from None
        self.main = _dist.is_main_process()
        self.log = log or (_log if self.main else (lambda msg: None))
        if self.dist.world_size > 1:  # launch_local strips --nproc from the workers' argv
            config = config.replace(nproc=self.dist.world_size)
        if _checkpoint is None:
            config = config.replace(**_absolute_paths(config))
        self.config = cfg = config
        self.run_dir = Path(cfg.out)
        if _checkpoint is None and not overwrite and (self.run_dir / CHECKPOINT_NAME).exists():
            raise RunExistsError(
                f"{self.run_dir} already holds a run; continue it with --resume {self.run_dir} "
                "or choose another --out (or pass --overwrite)"
            )
        problem = output_problem(self.run_dir)
        if problem is not None:  # before any data is read or generated
            raise ConfigError(
                f"cannot write the run folder --out {self.run_dir}: {problem}; choose another --out"
            )
        self.device = self.dist.device
        _seed_everything(cfg.seed)
        _fixed_mmap_threshold()

        self.train_data = open_split(cfg, "train")
        self.eval_split = cfg.resolved_eval_split
        self.eval_data = (
            self.train_data if self.eval_split == "train" else open_split(cfg, self.eval_split)
        )
        self.classes = list(self.train_data.classes)
        if _checkpoint is not None:
            self.spec = ModelSpec.from_dict(_checkpoint["model_spec"])
            if tuple(self.spec.input_shape) != tuple(self.train_data.frame_shape):
                raise ConfigError(
                    f"incompatible resume: the data's frames are {self.train_data.frame_shape} "
                    f"but the run's model takes {tuple(self.spec.input_shape)}"
                )
        else:
            self.spec = spec_from_config(cfg, self.train_data.frame_shape, len(self.classes))
            if cfg.target is not None:  # the zoo model's options the target allows
                self.spec = _target_spec(self.spec, cfg.target, self.log)
        #: train --init: the NIR file's bytes (kept in every checkpoint, the model's source)
        self.init_graph = (
            _checkpoint.get("init_graph") if _checkpoint is not None else _read_init(cfg.init)
        )
        try:
            self.model = _build(self.spec, self.init_graph).to(self.device)
        except (ValueError, NIRImportError) as err:  # e.g. channels that do not fit the model
            raise ConfigError(" ".join(str(err).split())) from None
        self.reward_fn = make_reward(cfg.reward, cfg.time_bins, cfg.reward_temperature)
        self.composite = make_composite(cfg, self.model)
        if self.init_graph is not None and cfg.method == "lfp":
            try:  # a graph from elsewhere may hold modules LFP has no rule for
                self.composite.plan(self.model)
            except UnsupportedModuleError as err:
                listed = ", ".join(f"{name} ({kind})" for name, kind in err.missing)
                raise ConfigError(
                    f"--init graph: no LFP rule for: {listed} (a sinabs graph: write it again "
                    "with single-spike neurons, from_nir(path, convention='sinabs-single') then "
                    "export_nir)"
                ) from None
        #: train --target: the forward pass is the target's integer network
        self.target_training = _target_training(self.model, self.spec)
        if self.target_training is not None:
            self.composite = self.target_training.composite(self.composite)
        # dfa/drtp/eprop: fixed random feedback matrices (a resume restores the saved ones)
        self.local_rule = (
            make_local_rule(cfg, self.model, self.spec) if cfg.method in LOCAL_RULES else None
        )
        #: training batches stay events (SparseFrames): online LFP makes one window dense at a
        #: time; an LFP-trained first Linear is computed and decomposed from the events
        self.event_input = cfg.online_window is not None or (
            cfg.method == "lfp"
            and self.target_training is None
            and isinstance(self.model, Sequential)
            and event_input_layer(list(self.model), self.spec.input_shape) is not None
        )
        self.augmentation = make_augmentation(cfg.augment)
        if self.event_input and self.augmentation is not None:
            self.augmentation = partial(augment_sparse, self.augmentation)  # on sparse frames
        self.history: list[dict[str, Any]] = []
        self.epoch = 0
        self._plots_off = False
        self.calibration_gains: list[float] = []
        if _checkpoint is None and cfg.init_rate and self.init_graph is None:
            with _num_threads(cfg.threads):
                self._calibrate()
        # after calibration: lr_scaling reads the calibrated weights
        self.optimizer = _make_optimizer(cfg, self.model)
        self.scheduler = _make_scheduler(cfg, self.optimizer)
        #: --prune-to: pruning during training (masks restored by _load_state)
        self.pruner = _make_pruner(cfg, self.model, self.optimizer)
        if _checkpoint is not None:
            self._load_state(_checkpoint)
        # data parallel: the steps run through DDP (it broadcasts rank 0's weights here); LFP's
        # feedback is a sum over the batch, so its buckets are summed, the others averaged
        self.train_model = _dist.wrap_model(self.model, "sum" if cfg.method == "lfp" else "mean")
        self.train_composite = (  # named rules see the wrapper's names ("module.0")
            self.composite
            if self.train_model is self.model
            else make_composite(cfg, self.train_model)
        )
        self.sampler = _dist.make_sampler(self.train_data.dataset, shuffle=True, seed=cfg.seed)
        self.rate_floor = RateFloor(self.model, cfg.rate_floor) if cfg.rate_floor > 0 else None

    # -- construction helpers ------------------------------------------------------------------
    @classmethod
    def resume(
        cls,
        run_dir: str | os.PathLike[str],
        overrides: dict[str, Any] | None = None,
        log: Callable[[str], None] | None = None,
        allow_data_change: bool = False,
    ) -> Trainer:
        """Continue the run in ``run_dir`` from its last completed epoch.

        ``overrides`` may change runtime settings (threads, workers, progress bars, the cache
        folder); any other setting must equal the run's (``ConfigError`` otherwise).
        ``epochs`` may grow when the run has no learning-rate schedule. A different
        ``data_dir`` (other recordings) is refused unless ``allow_data_change``.
        """
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise CheckpointError(f"cannot resume: {run_dir} is not a run folder")
        if not (run_dir / CHECKPOINT_NAME).is_file():
            raise CheckpointError(
                f"cannot resume: {run_dir} has no {CHECKPOINT_NAME} (the run did not complete an "
                "epoch); start it again"
            )
        ckpt = load_checkpoint(run_dir / CHECKPOINT_NAME)
        try:
            cfg = TrainConfig.from_stored(ckpt["config"])
        except (ConfigError, TypeError) as err:
            raise CheckpointError(f"{ckpt['path']}: invalid stored config ({err})") from None
        changes = {}
        for key, value in (overrides or {}).items():
            key = key.replace("-", "_")
            current = getattr(cfg, key)
            if key == "out":
                if Path(value).resolve() != run_dir.resolve():
                    raise ConfigError(
                        f"incompatible resume: --out {value} is not the resumed run {run_dir}"
                    )
                continue
            if key in ("data_dir", "cache_dir") and value is not None:
                value = str(Path(value).expanduser().resolve())  # stored absolute
            if _same(value, current):
                continue
            if key == "data_dir" and not allow_data_change:
                raise ConfigError(
                    f"incompatible resume: --data-dir {value} differs from the run's "
                    f"{current or 'default folder'} (the run was trained on those recordings); "
                    "pass --allow-data-change to continue on the new data"
                )
            if key == "epochs":
                if cfg.lr_schedule != "none":
                    raise ConfigError(
                        f"incompatible resume: --epochs {value} differs from the run's "
                        f"{current} and its {cfg.lr_schedule} learning-rate schedule depends on it"
                    )
                if int(value) < int(ckpt["epoch"]):
                    raise ConfigError(
                        f"incompatible resume: --epochs {value} but the run already completed "
                        f"{ckpt['epoch']} epochs"
                    )
            elif key not in TrainConfig.RUNTIME:
                flag = "--" + key.replace("_", "-")
                raise ConfigError(
                    f"incompatible resume: {flag} {value} differs from the run's {current!r}"
                )
            changes[key] = value
        cfg = cfg.replace(out=str(run_dir.resolve()), **changes)
        return cls(cfg, log=log, _checkpoint=ckpt)

    def _calibrate(self) -> None:
        """Scale the initial weights so every layer spikes (LFP needs spiking neurons)."""
        data = self.train_data.dataset
        n = min(len(data), 128)
        order = epoch_permutation(len(data), self.config.seed, 0)[:n].tolist()
        rates = _layer_rates(list(self.config.init_rate), len(neuron_layers(self.model)))
        if self.config.online_window is not None:  # one window at a time: memory independent of T
            x, _ = sparse_batch(data, order)
            x = x.clamp_(self.config.input_clamp).to(self.device)
            self.calibration_gains = calibrate_firing_online(
                self.model, x, rates, window=self.config.online_window
            )
            return
        x = stack_samples(data, order, self.config.input_clamp).to(self.device)
        self.calibration_gains = calibrate_firing(self.model, x, rates)

    def _load_state(self, ckpt: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
        except (KeyError, ValueError, RuntimeError) as err:
            first = error_text(err)
            raise CheckpointError(f"{ckpt['path']}: cannot restore the run ({first})") from None
        if self.config.lr_schedule == "none" and self.config.lr_scaling == "none":
            for group in self.optimizer.param_groups:
                group["lr"] = self.config.lr
        # with lr_scaling the stored groups hold each layer's own rate (fixed at the start)
        self.epoch = int(ckpt["epoch"])
        self.history = list(ckpt["history"])
        self.calibration_gains = list(ckpt.get("calibration_gains", []))
        if self.pruner is not None:  # the masks, bit for bit
            try:
                self.pruner.load_state_dict(ckpt["pruning"])
            except (KeyError, ValueError) as err:
                raise CheckpointError(
                    f"{ckpt['path']}: cannot restore the pruning masks ({error_text(err)})"
                ) from None
        if self.local_rule is not None:  # the saved matrices, bit for bit (never redrawn)
            try:
                self.local_rule.load_state_dict(ckpt["local_rule"])
            except (KeyError, RuntimeError) as err:
                raise CheckpointError(
                    f"{ckpt['path']}: cannot restore the {self.config.method} feedback "
                    f"matrices ({error_text(err)})"
                ) from None
        if "rng" in ckpt:
            set_rng_state(ckpt["rng"])

    # -- the loop --------------------------------------------------------------------------------
    def _loader(self, dataset, sampler, train: bool = False) -> DataLoader:
        if self.config.online_window is not None or (train and self.event_input):  # events
            batch = _dist.local_batch_size(self.config.batch_size) if train else None
            return SparseLoader(dataset, sampler, batch or self.config.batch_size)
        return DataLoader(
            dataset,
            batch_size=_dist.local_batch_size(self.config.batch_size)
            if train
            else self.config.batch_size,
            sampler=sampler,
            num_workers=self.config.num_workers,
            collate_fn=collate,
        )

    def _train_step(self, x: torch.Tensor, y: torch.Tensor):
        cfg = self.config
        if cfg.method == "lfp" and self.target_training is not None:
            with self.target_training.integer_forward():  # shadow weights get the feedback
                res = lfp_step(self.model, x, y, self.reward_fn, composite=self.composite)
            out, reward = res.output, res.reward
            loss = nn.functional.cross_entropy(out.sum(0), y)
        elif cfg.method == "lfp":
            if cfg.online_window is None:
                res = lfp_step(
                    self.train_model, x, y, self.reward_fn, composite=self.train_composite
                )
            else:
                res = online_lfp_step(
                    self.train_model,
                    x,
                    y,
                    self.reward_fn,
                    composite=self.train_composite,
                    window=cfg.online_window,
                )
            out, reward = res.output, res.reward
            loss = nn.functional.cross_entropy(out.sum(0), y)
        elif self.local_rule is not None:  # dfa, drtp, eprop: .grad from the local rule
            self.optimizer.zero_grad(set_to_none=True)
            out = self.local_rule.step(self.model, x, y).output
            loss = nn.functional.cross_entropy(out.sum(0), y)
            reward = self.reward_fn(out, y)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            with surrogate(self.model, slope=cfg.surrogate_slope):
                out, _ = self.train_model(x)
            BPTT_LOSSES[cfg.bptt_loss](out, y).backward()
            loss = nn.functional.cross_entropy(out.detach().sum(0), y)
            out = out.detach()
            reward = self.reward_fn(out, y)
        if self.local_rule is not None:  # its passes bypass DDP's forward: reduce .grad here
            _dist.reduce_gradients(self.model, "mean")
        # the feedback and the weights are the same on every process (reduced), so every
        # process stops at the same batch; nothing non-finite is ever applied or saved
        params = [p for p in self.model.parameters() if p.requires_grad]
        what = "feedback (LFP weight updates)" if cfg.method == "lfp" else "gradients"
        _check_finite([p.grad for p in params if p.grad is not None], what)
        if self.pruner is not None:  # feedback scores; pruned weights get no update
            self.pruner.before_step()
        self.optimizer.step()
        if self.rate_floor is not None:  # homeostasis: scale up near-silent hidden layers
            rates = self.rate_floor.rates()
            if self.dist.world_size > 1 and None not in rates:  # the same gains everywhere
                mean = _dist.reduce_metrics({str(i): r for i, r in enumerate(rates)}, op="mean")
                rates = list(mean.values())
            self.rate_floor.after_step(rates)
        if self.pruner is not None:  # pruned weights stay exactly zero; pruning events
            self.pruner.after_step()
        _check_finite(params, "weights")
        # reward on the correct class (summed over time): what is still asked of the network
        target_reward = reward.gather(2, y.view(1, -1, 1).expand(reward.shape[0], -1, 1))
        return out, float(loss.detach()), float(target_reward.sum())

    def train_epoch(self, epoch: int) -> dict[str, float]:
        from tqdm.auto import tqdm

        cfg = self.config
        self.model.train()
        self.sampler.set_epoch(epoch)
        base = self.train_data.dataset
        while hasattr(base, "dataset"):  # subsets and caches down to the dataset itself
            base = base.dataset
        if hasattr(base, "set_epoch"):  # MNIST: new rate-coded spikes every epoch
            base.set_epoch(epoch)
        # augmentation draws depend on (seed, epoch, rank) only: a resumed run draws the same
        augment_rng = torch.Generator().manual_seed(
            (cfg.seed * 1_000_003 + epoch) * 1009 + self.dist.rank
        )
        loader = self._loader(self.train_data.dataset, self.sampler, train=True)
        if self.pruner is not None:
            self.pruner.begin_epoch(epoch, len(loader))
        sums = {"loss": 0.0, "reward": 0.0, "correct": 0.0, "n": 0.0}
        start = time.perf_counter()
        bar = tqdm(
            total=len(loader),
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            unit="batch",
            # None: tqdm shows the bar only on a terminal (no \r floods in log files)
            disable=True if not (self.main and cfg.progress) else None,
            leave=False,
            dynamic_ncols=True,
            file=sys.stderr,
        )
        # the rate floor counts the spikes it needs with its own recorder: read the epoch's
        # rates from that one, so that every step's spikes are counted once
        floor = self.rate_floor
        rec = floor.recorder if floor is not None else SpikeRecorder(self.model)
        scheduled = self.scheduler.get_last_lr()  # this epoch's rates (warm-up scales them)
        with floor if floor is not None else rec, bar:
            for batch, (x, y) in enumerate(loader):
                if cfg.lr_warmup > epoch:  # within the warm-up: a step-wise rising rate
                    warm = warmup_factor(cfg.lr_warmup, epoch, batch, len(loader))
                    for group, lr in zip(self.optimizer.param_groups, scheduled, strict=True):
                        group["lr"] = lr * warm
                x = x.clamp_(max=cfg.input_clamp) if cfg.input_clamp is not None else x
                if self.augmentation is not None:
                    x = self.augmentation(x, augment_rng)
                x = x.to(self.device)
                y = y.to(self.device)
                try:
                    with _dist.collective("training step (DDP all-reduce)", mixed=True):
                        out, loss, reward = self._train_step(x, y)
                except TrainingDivergedError as err:
                    raise TrainingDivergedError(f"{err} in batch {batch + 1}") from None
                b = len(y)
                sums["loss"] += loss * b
                sums["reward"] += reward
                sums["correct"] += float((predict(out) == y).sum())
                sums["n"] += b
                elapsed = time.perf_counter() - start
                bar.update(1)
                bar.set_postfix(
                    loss=f"{sums['loss'] / sums['n']:.3f}",
                    reward=f"{sums['reward'] / sums['n']:.3f}",
                    acc=f"{sums['correct'] / sums['n']:.3f}",
                    samples_s=f"{sums['n'] * self.dist.world_size / max(elapsed, 1e-9):.0f}",
                    refresh=False,
                )
            sums.update(rec.state())
        if cfg.lr_warmup > epoch:  # the schedule steps on from its own rate
            for group, lr in zip(self.optimizer.param_groups, scheduled, strict=True):
                group["lr"] = lr
        elapsed = time.perf_counter() - start
        total = _dist.reduce_metrics(sums, op="sum")
        n = max(total["n"], 1.0)
        return {
            "train_loss": total["loss"] / n,
            "train_reward": total["reward"] / n,
            "train_acc": total["correct"] / n,
            "train_spike_rate": rec.rates(total),
            "n_train": int(total["n"]),
            "epoch_time_s": elapsed,
            "samples_per_s": total["n"] / max(elapsed, 1e-9),
        }

    def evaluate(self, split: str | None = None) -> dict[str, Any]:
        """Evaluate the current model on ``split`` (default: the run's evaluation split)."""
        split = split or self.eval_split
        data = self.eval_data if split == self.eval_split and self.eval_data else None
        if data is None:
            data = self.train_data if split == "train" else open_split(self.config, split)
        loader = self._loader(data.dataset, None)
        model = self.model
        if self.target_training is not None:  # the integer network: what was trained
            model = self.target_training.evaluation_model()
        if self.config.online_window is not None:
            model = Windowed(model, self.config.online_window)
        return evaluate(
            model,
            ((x.to(self.device), y.to(self.device)) for x, y in loader),
            n_classes=len(self.classes),
            input_clamp=self.config.input_clamp,
            class_names=self.classes,
        )

    def fit(self) -> list[dict[str, Any]]:
        """Train until ``config.epochs``; returns the metrics of every epoch."""
        with _num_threads(self.config.threads):
            return self._fit()

    def _fit(self) -> list[dict[str, Any]]:
        cfg = self.config
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(
                self.run_dir / CONFIG_NAME, yaml.safe_dump(cfg.to_dict(), sort_keys=False)
            )
            self._write_metrics()
            if self.epoch == 0:
                self.log(
                    f"training {cfg.model if cfg.init is None else Path(cfg.init).name} with "
                    f"{cfg.method} on {cfg.dataset}: "
                    f"{len(self.train_data.dataset)} train / "
                    f"{len(self.eval_data.dataset) if self.eval_data else 0} {self.eval_split} "
                    f"samples, frames {tuple(self.spec.input_shape)} x {cfg.time_bins} bins, "
                    f"{sum(p.numel() for p in self.model.parameters())} parameters "
                    f"-> {self.run_dir}"
                )
            else:
                self.log(f"resuming {self.run_dir} after epoch {self.epoch}/{cfg.epochs}")
        for epoch in range(self.epoch, cfg.epochs):
            metrics = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"]}
            try:
                metrics.update(self.train_epoch(epoch))
                if self.pruner is not None:  # fraction of prunable weights that are zero
                    metrics["sparsity"] = self.pruner.sparsity
            except TrainingDivergedError as err:
                raise self._diverged(f"{err} of epoch {epoch + 1}") from None
            self.scheduler.step()
            if self.main and self.eval_data is not None:
                ev = self.evaluate()
                metrics.update(
                    {
                        "eval_split": self.eval_split,
                        "eval_acc": ev["accuracy"],
                        "eval_loss": ev["loss"],
                        "eval_spike_rate": ev["spike_rates"],
                    }
                )
            for k in ("train_loss", "train_reward", "train_acc", "eval_acc", "eval_loss"):
                if k in metrics and not math.isfinite(metrics[k]):
                    raise self._diverged(f"{k} became {metrics[k]} in epoch {epoch + 1}")
            state = [t for t in self.model.state_dict().values() if t.is_floating_point()]
            try:  # never replace a good checkpoint with NaN weights (or batch-norm statistics)
                _check_finite(state, "weights")
            except TrainingDivergedError as err:
                raise self._diverged(f"{err} in epoch {epoch + 1}") from None
            self.history.append(metrics)
            self.epoch = epoch + 1
            if self.main:
                self._write_metrics()
                self.save_checkpoint()
                self._plot()  # after every epoch: an interrupted run keeps its plots
                self.log(_summary_line(metrics, cfg.epochs))
            _dist.barrier()
        return self.history

    def _plot(self) -> None:
        """Redraw ``accuracy.png`` and ``spike_rates.png``; without matplotlib (optional) say
        so once and draw nothing more. A failed plot never stops training."""
        if self._plots_off:
            return
        from .plots import plot_history

        try:
            plot_history(self.history, self.run_dir)
        except ImportError as err:  # matplotlib is optional
            self._plots_off = True
            self.log(f"no plots: {err}")
        except OSError as err:  # e.g. a full disk: the checkpoint matters, the plots do not
            self.log(f"plots not written: {err}")

    def _diverged(self, what: str) -> TrainingDivergedError:
        """The error that stops a diverging run, saying what is kept and what to change."""
        if self.epoch and self.main:
            kept = (
                f"the last good checkpoint (epoch {self.epoch}) is kept in "
                f"{self.run_dir / CHECKPOINT_NAME}"
            )
        elif self.main:
            kept = "no checkpoint was written"
        else:
            kept = "the last good checkpoint is kept"
        return TrainingDivergedError(
            f"training diverged: {what}; {kept}. Lower --lr (now {self.config.lr:g}) or "
            "check the data"
        )

    # -- persistence -----------------------------------------------------------------------------
    def checkpoint_dict(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "spikelfp_version": __version__,
            "config": cfg.to_dict(),
            "model_spec": self.spec.to_dict(),
            "classes": self.classes,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "history": self.history,
            "calibration_gains": self.calibration_gains,
            **({} if self.pruner is None else {"pruning": self.pruner.state_dict()}),
            **({} if self.local_rule is None else {"local_rule": self.local_rule.state_dict()}),
            **({} if self.init_graph is None else {"init_graph": self.init_graph}),
            "rng": rng_state(),
            "data_order": {
                "rule": "torch.randperm(n_train, generator=torch.Generator().manual_seed("
                "seed + epoch)); with N processes rank k takes perm[k::N] "
                "(DistributedSampler)",
                "seed": cfg.seed,
                "next_epoch": self.epoch,
                "n_train": len(self.train_data.dataset),
                "world_size": self.dist.world_size,
            },
        }

    def save_checkpoint(self) -> Path:
        return save_atomic(self.checkpoint_dict(), self.run_dir / CHECKPOINT_NAME)

    def _write_metrics(self) -> None:
        text = "".join(json.dumps(m, sort_keys=False) + "\n" for m in self.history)
        write_text_atomic(self.run_dir / METRICS_NAME, text)


@functools.cache
def _fixed_mmap_threshold(nbytes: int = 1 << 20) -> bool:
    """Fix glibc's mmap threshold at ``nbytes`` (Linux/glibc; a no-op elsewhere).

    glibc raises its threshold to the size of every freed mmap'ed block (up to 32 MiB), after
    which each recording's frames (MBs at hundreds of time bins) come from the heap, where
    small long-lived blocks (cached samples) pin them: a training process kept ~1 MB per
    time bin it had freed long ago. With a fixed threshold, every block of ``nbytes`` or more
    is mapped and given back to the system when freed.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(-3, int(nbytes)))  # M_MMAP_THRESHOLD


@contextlib.contextmanager
def _num_threads(n: int | None):
    """Use ``n`` torch CPU threads inside the block (``None``: leave the setting alone)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_finite(tensors: list[torch.Tensor], what: str) -> None:
    """Raise :class:`TrainingDivergedError` if any of ``tensors`` holds a NaN or inf (one pass
    and one synchronisation: the extremes of each, which NaN and inf propagate to)."""
    peaks = [v for t in tensors if t.numel() for v in torch.aminmax(t.detach())]
    if peaks and not bool(torch.isfinite(torch.stack(peaks)).all()):
        raise TrainingDivergedError(f"the {what} became NaN or infinite")


def _layer_rates(rates: list[float], n_layers: int) -> list[float]:
    """Per-layer target rates from ``init_rate``: one value for all layers, or hidden
    rates (the last one repeated for deeper hidden layers) followed by the output rate.

    >>> _layer_rates([0.1], 3), _layer_rates([0.2, 0.05], 3), _layer_rates([0.3, 0.2, 0.1], 2)
    ([0.1, 0.1, 0.1], [0.2, 0.2, 0.05], [0.3, 0.1])
    """
    if len(rates) == 1:
        return rates * n_layers
    hidden, output = rates[:-1], rates[-1]
    hidden = (hidden + [hidden[-1]] * n_layers)[: n_layers - 1]
    return hidden + [output]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    if isinstance(a, str) and isinstance(b, str) and ("/" in a or "/" in b):
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    return a == b


def _absolute_paths(cfg: TrainConfig) -> dict[str, str]:
    out = {"out": str(Path(cfg.out).expanduser().resolve())}
    for name in ("data_dir", "cache_dir"):
        value = getattr(cfg, name)
        if value is not None:
            out[name] = str(Path(value).expanduser().resolve())
    return out


def _summary_line(m: dict[str, Any], epochs: int) -> str:
    line = (
        f"epoch {m['epoch']}/{epochs}: train acc {m['train_acc']:.3f} loss {m['train_loss']:.3f} "
        f"reward {m['train_reward']:.3f}"
    )
    if "eval_acc" in m:
        line += f" | {m['eval_split']} acc {m['eval_acc']:.3f}"
    if "sparsity" in m:
        line += f" | sparsity {m['sparsity']:.3f}"
    rates = " ".join(f"{k} {v:.3f}" for k, v in m["train_spike_rate"].items())
    return line + f" | spike rates {rates} | {m['samples_per_s']:.0f} samples/s"
