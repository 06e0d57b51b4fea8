"""The training configuration: one flat dataclass, filled from defaults, a file and flags.

Precedence: built-in defaults < ``--config FILE`` (YAML ``.yaml``/``.yml`` or TOML ``.toml``)
< command-line flags. The resolved configuration is saved as ``config.yaml`` in the run folder
and inside every checkpoint.

>>> cfg = TrainConfig(epochs=3)
>>> cfg.epochs, cfg.dataset, cfg.method
(3, 'digits-events', 'lfp')
>>> TrainConfig.from_dict({"batch-size": 8}).batch_size
8
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "TrainConfig",
    "ConfigError",
    "DATASETS",
    "METHODS",
    "ENCODINGS",
    "REWARDS",
    "OPTIMIZERS",
    "load_config_file",
    "default_data_dir",
]

DATASETS = ("digits-events", "nmnist", "dvsgesture", "mnist", "braille")
#: spike encoders of static-image datasets (``spikelfp.datasets.ENCODERS``)
ENCODINGS = ("direct", "rate", "poisson", "latency", "sigma-delta", "sigma-delta-or")
#: encodings of analogue-sensor datasets (braille): the signal as a current, or sigma-delta
#: events (ON/OFF channels, or OR-ed into one per sensor)
SENSOR_ENCODINGS = ("direct", "sigma-delta", "sigma-delta-or")
NEURONS = ("lif", "if")
SYNAPSE_RULES = ("epsilon", "zplus", "gamma")
#: frame augmentations of the training split (``spikelfp.datasets.augment``) and their types
AUGMENTATIONS = {"shift": int, "drop": float}
#: training methods: LFP, the BPTT baseline and the local rules of ``local_rules.LOCAL_RULES``
METHODS = ("lfp", "bptt", "dfa", "drtp", "eprop")
REWARDS = ("rate", "softmax")
#: ``adam`` adds ``weight_decay · w`` to the update before Adam's normalisation (L2);
#: ``adamw`` decays the weights apart from it, ``w ← w − lr · weight_decay · w``
#: (Loshchilov & Hutter), which also shrinks weights that receive no feedback in a step
OPTIMIZERS = ("sgd", "adam", "adamw")
SPLITS = ("train", "tune", "val", "test")
#: the largest float32: settings beyond it overflow to inf in the (float32) model
_FLOAT32_MAX = 3.4028234663852886e38


class ConfigError(ValueError):
    """A configuration value (from a file or a flag) is invalid; the message says which."""


@dataclass
class TrainConfig:
    """Everything that determines a training run (see ``docs/cli.md`` for each field)."""

    # data
    dataset: str = "digits-events"
    data_dir: str | None = None
    cache_dir: str | None = None
    time_bins: int = 16
    val_fraction: float = 0.0
    tune_fraction: float = 0.0
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    eval_split: str = "auto"
    split_seed: int = 0
    input_clamp: float | None = 1.0
    bin_ms: float | None = None
    encoding: str = "direct"
    #: braille: the letters to learn (``all`` or a list such as ``Space,A,E,I,O,U,Y``)
    letters: str = "all"
    #: braille: the taxels to read (indices 0-11; ``None``: all 12)
    taxels: list[int] | None = None
    #: sigma-delta encodings: the threshold θ, in the sensor's units
    delta_threshold: float = 1.0
    augment: dict[str, Any] = field(default_factory=dict)
    download: bool = False
    # model
    model: str = "mlp"
    hidden: int = 256
    channels: list[int] | None = None
    neuron: str = "lif"
    bias: bool = True
    batch_norm: bool = False
    pool: str = "avg"
    #: dropout before every Linear that reads hidden spikes (``--dropout P``): one mask per
    #: sample for all time steps (:class:`spikelfp.SequenceDropout`); training only
    dropout: float = 0.0
    beta: float = 0.9
    threshold: float = 1.0
    reset: str = "zero"
    #: hardware target trained for (``spikelfp train --target``): a profile name or file;
    #: ``None``: a float network
    target: str | None = None
    #: a NIR graph to start from instead of a zoo model (``spikelfp train --init GRAPH.nir``):
    #: fine-tune a network trained elsewhere; ``None``: the zoo model of ``model``
    init: str | None = None
    init_rate: list[float] | float | None = field(default_factory=lambda: [0.15, 0.1])
    # training
    method: str = "lfp"
    reward: str = "rate"
    #: temperature of the softmax reward (``--reward-temperature TAU``): the spike counts are
    #: divided by ``TAU`` before the softmax, so a larger ``TAU`` keeps rewarding until the
    #: correct class leads by more spikes; only with ``reward: softmax``
    reward_temperature: float = 1.0
    synapse_rule: str = "epsilon"
    #: the stabiliser ε of every synapse rule (``--epsilon E``): ``n = ρ / (z + ε sign z)``, so
    #: units whose input ``|z|`` is small next to ε pass on less reward; 0: LFP-0, lfprop's
    epsilon: float = 0.0
    lower_rule: str = "epsilon"
    lower_layers: int = 0
    optimizer: str = "adam"
    lr: float = 2e-3
    lr_scaling: str = "none"
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"
    #: linear warm-up (``--lr-warmup E``): the learning rate rises step by step from
    #: ``lr/(E·steps per epoch)`` to the schedule's over the first ``E`` epochs; 0: none
    lr_warmup: float = 0.0
    epochs: int = 10
    batch_size: int = 32
    surrogate_slope: float = 25.0
    #: online LFP (``--online-window K``): windows of ``K`` steps, state carried, feedback summed
    #: over the sequence and frames made one window at a time; ``None``: whole-sequence LFP
    online_window: int | None = None
    bptt_loss: str = "mse"
    #: pruning during training (``--prune-to S``): the final sparsity of the cubic schedule of
    #: ``training.pruning_schedule``; 0: no pruning
    prune_to: float = 0.0
    #: how pruning events rank the weights: ``magnitude`` or ``feedback`` (LFP feedback)
    prune_method: str = "magnitude"
    #: the epoch after which pruning starts, and the one at whose end ``prune_to`` is reached
    #: (``None``: the last epoch)
    prune_start: int = 0
    prune_end: int | None = None
    #: also prune after every N-th optimiser step (0: at the end of each epoch only)
    prune_every: int = 0
    prune_scope: str = "global"
    #: homeostatic synaptic scaling (``--rate-floor R``, ``training.homeostasis.RateFloor``):
    #: a hidden layer firing below ``R`` spikes per neuron and step gets its synapse scaled up
    #: after each step; 0: off
    rate_floor: float = 0.0
    seed: int = 0
    #: the recipe the settings came from (``None``: none; provenance only)
    recipe: str | None = None
    # runtime (may change when resuming)
    out: str = "runs/run"
    num_workers: int = 0
    threads: int | None = 1
    progress: bool = True
    nproc: int = 1
    device: str = "auto"

    #: fields that may differ between a run and its ``--resume`` (runtime only)
    RUNTIME = (
        "out",
        "num_workers",
        "threads",
        "progress",
        "nproc",
        "epochs",
        "cache_dir",
        "data_dir",
        "device",
        "download",
    )

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
        """A config from ``values`` (keys may use ``-`` or ``_``) on top of ``base``."""
        names = set(cls.field_names())
        out = dataclasses.asdict(base) if base is not None else {}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            if name not in names:
                raise ConfigError(
                    f"unknown configuration key {key!r}; valid keys: {', '.join(sorted(names))}"
                )
            out[name] = value
        cfg = cls(**out)
        cfg.validate()
        return cfg

    @classmethod
    def from_stored(cls, values: dict[str, Any]) -> TrainConfig:
        """The config a checkpoint stored, read as the spikelfp that wrote it meant it: before
        ``split_seed`` existed the held-out split was drawn with ``seed``.

        >>> TrainConfig.from_stored({"seed": 3, "val_fraction": 0.2}).split_seed
        3
        """
        values = dict(values)
        if "split_seed" not in values:
            values["split_seed"] = values.get("seed", 0)
        return cls.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        cfg = dataclasses.replace(self, **changes)
        cfg.validate()
        return cfg

    # -- checks -----------------------------------------------------------------------------
    def validate(self) -> None:
        """Coerce types and raise :class:`ConfigError` with a clear message on a bad value."""

        def choice(name, options):
            value = getattr(self, name)
            if value not in options:
                raise ConfigError(
                    f"unknown {name.replace('_', '-')} {value!r}; choose one of "
                    f"{', '.join(options)}"
                )

        def number(name, kind, low=None, allow_none=False, low_open=False):
            value = getattr(self, name)
            if value is None and allow_none:
                return
            try:
                if isinstance(value, bool):
                    raise TypeError
                coerced = kind(value)
                if kind is int and coerced != float(value):
                    raise ValueError
            except (TypeError, ValueError):
                what = "an integer" if kind is int else "a number"
                raise ConfigError(
                    f"{name.replace('_', '-')} must be {what}, got {value!r}"
                ) from None
            if kind is float and not abs(coerced) <= _FLOAT32_MAX:  # NaN fails too
                raise ConfigError(
                    f"{name.replace('_', '-')} must be a finite number (at most "
                    f"{_FLOAT32_MAX:.3g}, float32's largest), got {value!r}"
                )
            if low is not None and (coerced <= low if low_open else coerced < low):
                raise ConfigError(
                    f"{name.replace('_', '-')} must be {'>' if low_open else '>='} {low}, "
                    f"got {value!r}"
                )
            setattr(self, name, coerced)

        def fraction(name, what="", example=""):
            """A number in [0, 1): ``what`` and ``example`` go into the message."""
            number(name, float, 0.0)
            if not getattr(self, name) < 1:
                raise ConfigError(
                    f"{name.replace('_', '-')} must be {what}in [0, 1){example}, "
                    f"got {getattr(self, name)!r}"
                )

        choice("dataset", DATASETS)
        choice("method", METHODS)
        choice("reward", REWARDS)
        choice("optimizer", OPTIMIZERS)
        from .models import MODELS

        choice("model", tuple(MODELS))
        choice("encoding", ENCODINGS)
        choice("neuron", NEURONS)
        choice("pool", ("avg", "sum"))
        choice("synapse_rule", SYNAPSE_RULES)
        choice("lower_rule", SYNAPSE_RULES)
        choice("lr_scaling", ("none", "weight"))
        choice("reset", ("zero", "subtract", "none"))
        choice("lr_schedule", ("cosine", "none"))
        choice("bptt_loss", ("mse", "ce"))
        choice("eval_split", ("auto", *SPLITS))
        number("time_bins", int, 1)
        number("epochs", int, 0)
        number("batch_size", int, 1)
        number("hidden", int, 1)
        number("lr_warmup", float, 0.0)
        fraction("rate_floor", "a spike rate ", " (0.05: 5% of the neuron-steps)")
        number("seed", int, 0)
        number("split_seed", int, 0)
        number("lower_layers", int, 0)
        number("online_window", int, 1, allow_none=True)
        if self.online_window is not None and self.method != "lfp":
            raise ConfigError(
                f"--online-window runs LFP in windows; --method {self.method} cannot: use "
                "--method lfp or drop --online-window"
            )
        if self.online_window is not None and self.target is not None:
            raise ConfigError("--online-window trains a float network; drop --target")
        _check_pruning(self, choice, number)
        number("bin_ms", float, 0.0, allow_none=True, low_open=True)
        number("num_workers", int, 0)
        number("nproc", int, 1)
        number("threads", int, 1, allow_none=True)
        number("max_train_samples", int, 1, allow_none=True)
        number("max_eval_samples", int, 1, allow_none=True)
        number("lr", float, 0.0, low_open=True)
        number("reward_temperature", float, 0.0, low_open=True)
        number("epsilon", float, 0.0)
        fraction("dropout", "a probability ", " (0.5: half the units)")
        if self.reward_temperature != 1.0 and self.reward != "softmax":
            raise ConfigError(
                f"reward-temperature divides the counts of the softmax reward; --reward "
                f"{self.reward} has none: use --reward softmax or drop --reward-temperature"
            )
        number("momentum", float, 0.0)
        number("weight_decay", float, 0.0)
        number("beta", float, 0.0)
        number("threshold", float, 0.0, low_open=True)
        number("surrogate_slope", float, 0.0, low_open=True)
        number("delta_threshold", float, 0.0, low_open=True)
        _check_encoding(self)
        number("input_clamp", float, 0.0, allow_none=True, low_open=True)
        fraction("val_fraction")
        if self.beta > 1:
            raise ConfigError(f"beta must be in [0, 1], got {self.beta!r}")
        fraction("tune_fraction")
        if self.eval_split == "tune" and self.tune_fraction <= 0:
            raise ConfigError("eval-split 'tune' needs --tune-fraction > 0")
        if self.eval_split == "val" and self.val_fraction <= 0:
            raise ConfigError("eval-split 'val' needs --val-fraction > 0")
        if self.channels is not None:
            if not isinstance(self.channels, (list, tuple)) or not all(
                _is_int(c) and int(c) >= 1 for c in self.channels
            ):
                raise ConfigError(
                    f"channels must be a list of positive integers, got {self.channels!r}"
                )
            self.channels = [int(c) for c in self.channels]
        if self.target is not None and not (isinstance(self.target, str) and self.target):
            raise ConfigError(f"target must be a profile name or file, got {self.target!r}")
        if self.target is not None and self.method != "lfp":
            raise ConfigError(
                f"--target trains the integer network with LFP; --method {self.method} cannot "
                "(it needs a derivative of the forward pass): use --method lfp"
            )
        if self.init is not None:
            if not (isinstance(self.init, str) and self.init.endswith(".nir")):
                raise ConfigError(f"init must be a NIR graph file (.nir), got {self.init!r}")
            if self.dropout > 0:
                raise ConfigError(
                    "--dropout adds layers to a zoo model; an --init graph keeps its own "
                    "layers: drop --dropout"
                )
            if self.target is not None:
                raise ConfigError(
                    "--init starts from a float NIR graph; --target builds its own integer "
                    "model: drop one of them"
                )
        if self.target is not None and self.nproc != 1:
            raise ConfigError("--target trains in one process; drop --nproc")
        if self.target is not None and getattr(self, "online_window", None) is not None:
            raise ConfigError(
                "--target trains on whole recordings; drop --online-window (not combined yet)"
            )
        for name in ("bias", "batch_norm", "download"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"{name.replace('_', '-')} must be true or false, got {getattr(self, name)!r}"
                )
        self.augment = _check_augment(self.augment)
        rates = self.init_rate
        if rates is not None:
            rates = [rates] if isinstance(rates, (int, float)) else list(rates)
            if not rates or any(not 0 <= float(r) < 1 for r in rates):
                raise ConfigError(f"init-rate must be rates in [0, 1), got {self.init_rate!r}")
            self.init_rate = [float(r) for r in rates]
        self.progress = bool(self.progress)
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        ):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        for name in ("data_dir", "cache_dir", "out"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, os.fspath(value))

    @property
    def resolved_eval_split(self) -> str:
        """``eval_split``, with ``auto`` meaning ``tune`` when a tuning part is held out, else
        ``val`` when a validation part is, else ``test``."""
        if self.eval_split != "auto":
            return self.eval_split
        if self.tune_fraction > 0:
            return "tune"
        return "val" if self.val_fraction > 0 else "test"


def _check_pruning(cfg: TrainConfig, choice, number) -> None:
    """The pruning-during-training settings (``--prune-to`` and its schedule)."""
    from .pruning_schedule import PRUNE_METHODS, PRUNE_SCOPES

    choice("prune_method", PRUNE_METHODS)
    choice("prune_scope", PRUNE_SCOPES)
    number("prune_to", float, 0.0)
    number("prune_start", int, 0)
    number("prune_end", int, 1, allow_none=True)
    number("prune_every", int, 0)
    if not cfg.prune_to < 1:
        raise ConfigError(
            f"prune-to must be a fraction in [0, 1) (0.8: 80% of the weights removed), "
            f"got {cfg.prune_to!r}"
        )
    if cfg.prune_to == 0:
        return
    if cfg.prune_method == "feedback" and cfg.method != "lfp":
        raise ConfigError(
            f"--prune-method feedback ranks weights by their LFP feedback; --method "
            f"{cfg.method} has none: use --prune-method magnitude or --method lfp"
        )
    end = cfg.epochs if cfg.prune_end is None else cfg.prune_end
    if cfg.prune_end is not None and cfg.prune_end < cfg.prune_start:
        raise ConfigError(
            f"--prune-end {cfg.prune_end} is before --prune-start {cfg.prune_start}: the "
            "schedule ends at or after it starts"
        )
    if cfg.epochs and end > cfg.epochs:
        raise ConfigError(
            f"--prune-end {end} is after the last epoch (--epochs {cfg.epochs}): --prune-to "
            f"would never be reached; use --prune-end {cfg.epochs} or less"
        )
    if cfg.epochs and cfg.prune_start >= cfg.epochs:
        raise ConfigError(
            f"--prune-start {cfg.prune_start} leaves no epoch to prune in (--epochs "
            f"{cfg.epochs}); use --prune-start {cfg.epochs - 1} or less"
        )


def _check_encoding(cfg: TrainConfig) -> None:
    """The encoding must suit the dataset; ``letters`` must name Braille letters."""
    sensor = cfg.dataset == "braille"
    allowed = SENSOR_ENCODINGS if sensor else ENCODINGS[:4]
    if cfg.dataset in ("braille", "mnist") and cfg.encoding not in allowed:  # others: unused
        kind = "a sensor dataset" if sensor else f"dataset {cfg.dataset!r}"
        raise ConfigError(
            f"encoding {cfg.encoding!r} does not apply to {kind}; choose one of "
            f"{', '.join(allowed)}"
        )
    if not isinstance(cfg.letters, str):
        if isinstance(cfg.letters, (list, tuple)):
            cfg.letters = ",".join(str(v) for v in cfg.letters)
        else:
            raise ConfigError(f"letters must be 'all' or a list of letters, got {cfg.letters!r}")
    from ..datasets.braille import parse_letters

    try:
        parse_letters(cfg.letters)
    except ValueError as err:
        raise ConfigError(str(err).rstrip(".")) from None
    if cfg.taxels is not None:
        t = cfg.taxels
        if not isinstance(t, (list, tuple)) or not t or not all(_is_int(v) for v in t):
            raise ConfigError(f"taxels must be a list of taxel indices (0-11), got {t!r}")
        if any(not 0 <= v < 12 for v in t) or len(set(t)) != len(t):
            raise ConfigError(f"taxels must be distinct indices in 0..11, got {list(t)!r}")
        cfg.taxels = [int(v) for v in t]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_augment(value: Any) -> dict[str, Any]:
    """``augment`` as a dict of known augmentations with values of the right type."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(
            f"augment must be a mapping such as {{shift: 2, drop: 0.1}}, got {value!r}"
        )
    out = {}
    for key, v in value.items():
        kind = AUGMENTATIONS.get(str(key))
        if kind is None:
            raise ConfigError(
                f"unknown augmentation {key!r}; choose from {', '.join(AUGMENTATIONS)}"
            )
        ok = _is_int(v) if kind is int else isinstance(v, (int, float)) and not isinstance(v, bool)
        if not ok or v < 0 or (key == "drop" and not v < 1):
            what = "an integer >= 0" if kind is int else "a number in [0, 1)"
            raise ConfigError(f"augment {key} must be {what}, got {v!r}")
        out[str(key)] = kind(v)
    return out


def _toml_module():
    try:
        import tomllib  # Python >= 3.11
    except ImportError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise ConfigError(
                "reading TOML config files on Python 3.10 needs the package 'tomli' "
                "(pip install tomli), or use a YAML file"
            ) from None
    return tomllib


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML or TOML config file into a dict (keys are config fields).

    A ``train:`` (YAML) or ``[train]`` (TOML) section is used when present.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    toml = _toml_module() if path.suffix.lower() == ".toml" else None
    try:
        if toml is not None:
            with open(path, "rb") as f:
                data = toml.load(f)
        else:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f)
    except (OSError, ValueError, yaml.YAMLError) as err:  # TOMLDecodeError is a ValueError
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot read config file {path}: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, got {type(data)}")
    if isinstance(data.get("train"), dict):
        data = data["train"]
    return data


def default_data_dir(dataset: str) -> Path | None:
    """Where a dataset lives when ``--data-dir`` is not given: ``None`` for ``digits-events``
    (generated on first use in :class:`spikelfp.datasets.DigitsEvents`' default folder,
    ``$SPIKELFP_HOME/datasets`` or ``~/.cache/spikelfp/datasets``); the others need the flag.
    """
    return None
