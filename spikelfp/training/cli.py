"""The ``spikelfp`` command line: ``train``, ``eval``, ``export``, ``info``, ``demo``, ``explain``.

Run ``spikelfp COMMAND --help`` for the options of each command; ``docs/cli.md`` has examples.
Bad input (an unknown choice, a missing data folder, an unreadable checkpoint, a resume with
different settings) prints one ``spikelfp COMMAND: error: ...`` line on stderr and exits with
code 2; a runtime failure (divergence, a failed write) prints one such line and exits with 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser", "UsageError"]

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad command-line input: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line on stderr (no usage dump) and exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UsageError(f"{self.prog}: {message}")


# -- helpers ----------------------------------------------------------------------------------
def _print(text: str = "") -> None:
    print(text, flush=True)


def _bool_flag(parser, name: str, help_text: str) -> None:
    parser.add_argument(
        f"--{name}",
        dest=name.replace("-", "_"),
        action=argparse.BooleanOptionalAction,
        default=argparse.SUPPRESS,
        help=help_text,
    )


def _add_train_options(p: argparse.ArgumentParser) -> None:
    """Training flags; defaults are SUPPRESSed so that only given flags override the config."""
    from .config import DATASETS, ENCODINGS, METHODS, OPTIMIZERS, REWARDS, SYNAPSE_RULES
    from .models import MODELS

    S = argparse.SUPPRESS
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        choices=DATASETS,
        default=S,
        help="event dataset (default: digits-events, built in, generated offline)",
    )
    g.add_argument(
        "--data-dir",
        default=S,
        metavar="DIR",
        help="dataset folder (digits-events: generated there on first use; "
        "default $SPIKELFP_HOME/datasets, i.e. ~/.cache/spikelfp/datasets)",
    )
    g.add_argument(
        "--cache-dir",
        default=S,
        metavar="DIR",
        help="HDF5 frame cache folder (built once, reused by later runs)",
    )
    g.add_argument(
        "--time-bins", type=int, default=S, metavar="T", help="frames per recording (default 16)"
    )
    g.add_argument(
        "--val-fraction",
        type=float,
        default=S,
        metavar="F",
        help="hold out this stratified fraction of the training recordings as the "
        "'val' split (default 0)",
    )
    g.add_argument(
        "--tune-fraction",
        type=float,
        default=S,
        metavar="F",
        help="also hold out this fraction of the remaining training recordings as the 'tune' "
        "split, to choose settings on without looking at 'val' (default 0)",
    )
    g.add_argument(
        "--eval-split",
        choices=("auto", "train", "tune", "val", "test"),
        default=S,
        help="split evaluated after every epoch (auto: tune if held out, else val if held "
        "out, else test)",
    )
    g.add_argument(
        "--bin-ms",
        type=float,
        default=S,
        metavar="MS",
        help="bin events by duration: --time-bins frames of MS milliseconds from each "
        "recording's start (default: --time-bins frames over each recording's span)",
    )
    g.add_argument(
        "--encoding",
        choices=ENCODINGS,
        default=S,
        help="spike encoding of static images (mnist): direct current, rate (Bernoulli), "
        "poisson or latency; of sensor signals (braille): direct, sigma-delta (ON/OFF "
        "events) or sigma-delta-or (ON or OFF, one channel per sensor)",
    )
    g.add_argument(
        "--letters",
        default=S,
        metavar="LIST",
        help="braille: the letters to learn, 'all' (27) or e.g. Space,A,E,I,O,U,Y",
    )
    g.add_argument(
        "--taxels",
        nargs="+",
        type=int,
        default=S,
        metavar="I",
        help="braille: read only these taxels (0-11; default all 12; 1 2 6 10 are the ones "
        "that change in the shared recordings)",
    )
    g.add_argument(
        "--delta-threshold",
        type=float,
        default=S,
        metavar="THETA",
        help="sigma-delta encodings: the threshold (sensor units, 1.0)",
    )
    g.add_argument(
        "--augment",
        nargs="+",
        default=S,
        metavar="NAME=VALUE",
        type=_augment_item,
        help="augment the training frames: shift=PIXELS (random translation), drop=P "
        "(drop spikes); 'none' turns the recipe's augmentation off",
    )
    _bool_flag(g, "download", "download the dataset if it is missing (needs internet)")
    g.add_argument(
        "--split-seed",
        type=int,
        default=S,
        metavar="S",
        help="seed of the --val-fraction hold-out (0); fixed across --seed, so runs with "
        "different seeds are scored on the same recordings",
    )
    g.add_argument(
        "--input-clamp",
        type=float,
        default=S,
        metavar="C",
        help="clip event counts per pixel and bin at C (1: binary spikes, default)",
    )
    g.add_argument(
        "--max-train-samples",
        type=int,
        default=S,
        metavar="N",
        help="train on a stratified subset of N recordings",
    )
    g.add_argument(
        "--max-eval-samples",
        type=int,
        default=S,
        metavar="N",
        help="evaluate on a stratified subset of N recordings",
    )
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        choices=MODELS,
        default=S,
        help="architecture from the zoo (spikelfp info --models lists them; default: the "
        "dataset's recipe)",
    )
    g.add_argument("--hidden", type=int, default=S, help="hidden neurons of the dense layer")
    g.add_argument(
        "--channels",
        type=int,
        nargs="+",
        default=S,
        metavar="C",
        help="channels of the model's conv layers (default: the model's own)",
    )
    g.add_argument(
        "--neuron", choices=("lif", "if"), default=S, help="spiking neuron of every layer"
    )
    _bool_flag(g, "bias", "biases in the synapses (--no-bias for chips without them)")
    _bool_flag(g, "batch-norm", "batch norm after each conv (folded into it at export)")
    g.add_argument(
        "--pool",
        choices=("avg", "sum"),
        default=S,
        help="pooling layers: avg (default) or sum; both export as sum pooling",
    )
    g.add_argument("--beta", type=float, default=S, help="membrane decay of every LIF (0.9)")
    g.add_argument("--threshold", type=float, default=S, help="LIF threshold (1.0)")
    g.add_argument(
        "--reset",
        choices=("zero", "subtract", "none"),
        default=S,
        help="LIF reset (zero: what NIR expresses)",
    )
    g.add_argument(
        "--init-rate",
        type=float,
        nargs="+",
        default=S,
        metavar="R",
        help="target spike rates at initialisation: hidden layers..., output (0.15 0.1)",
    )
    g = p.add_argument_group("training")
    g.add_argument(
        "--target",
        default=S,
        metavar="T",
        help="train the integer network of hardware target T (int8, loihi2, speck, xylo or a "
        "profile file): the model is built within T's limits (refused before training if T "
        "cannot run it) and its forward pass is T's integer network",
    )
    g.add_argument(
        "--init",
        default=S,
        metavar="GRAPH.nir",
        help="start from a NIR graph written by spikelfp or another framework (snntorch, sinabs, "
        "norse, rockpool; conventions detected) instead of a zoo model: fine-tune it with LFP, "
        "then export it again (docs/interop.md)",
    )
    g.add_argument(
        "--method",
        choices=METHODS,
        default=S,
        help="lfp (default), bptt (surrogate-gradient baseline, same model), or the "
        "backprop-free dfa, drtp, eprop (docs/methods.md)",
    )
    g.add_argument(
        "--online-window",
        type=int,
        default=S,
        metavar="K",
        help="online LFP: run each recording in windows of K time bins (neuron state carried "
        "over, feedback summed over the recording), frames made one window at a time: memory "
        "independent of --time-bins (docs/lfp_rules.md, Online LFP)",
    )
    g.add_argument(
        "--reward",
        choices=REWARDS,
        default=S,
        help="LFP reward: rate (lfprop's rate-coded reward, default) or softmax",
    )
    g.add_argument(
        "--bptt-loss",
        choices=("mse", "ce"),
        default=S,
        help="BPTT loss on the output spike counts: mse (targets 0.8 T / 0.2 T, "
        "default) or ce (cross-entropy)",
    )
    g.add_argument(
        "--surrogate-slope",
        type=float,
        default=S,
        help="fast-sigmoid slope of the BPTT surrogate and of the dfa/drtp/eprop "
        "pseudo-derivative (25)",
    )
    g.add_argument(
        "--synapse-rule",
        choices=SYNAPSE_RULES,
        default=S,
        help="LRP rule of the Linear/Conv layers (epsilon)",
    )
    g.add_argument(
        "--lower-rule",
        choices=SYNAPSE_RULES,
        default=S,
        help="LRP rule of the first --lower-layers synapse layers (input side)",
    )
    g.add_argument(
        "--lower-layers",
        type=int,
        default=S,
        metavar="N",
        help="how many synapse layers, from the input, use --lower-rule (0)",
    )
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=S, help="adam (default) or sgd")
    g.add_argument(
        "--lr-scaling",
        choices=("none", "weight"),
        default=S,
        help="per-layer learning rate: none, or weight (lr times the layer's initial mean "
        "|weight|)",
    )
    g.add_argument("--lr", type=float, default=S, help="learning rate (2e-3)")
    g.add_argument("--momentum", type=float, default=S, help="SGD momentum (0.9)")
    g.add_argument("--weight-decay", type=float, default=S, help="weight decay (0)")
    g.add_argument(
        "--lr-schedule",
        choices=("cosine", "none"),
        default=S,
        help="learning-rate schedule over the epochs (cosine)",
    )
    g.add_argument("--epochs", type=int, default=S, help="epochs (10)")
    g.add_argument(
        "--batch-size",
        type=int,
        default=S,
        metavar="B",
        help="batch size (global over --nproc processes) (32)",
    )
    g.add_argument("--seed", type=int, default=S, help="seed of weights and data order (0)")
    g = p.add_argument_group("run")
    g.add_argument("--out", default=S, metavar="RUN_DIR", help="run folder (runs/run)")
    g.add_argument("--num-workers", type=int, default=S, help="DataLoader workers (0)")
    g.add_argument(
        "--threads",
        type=int,
        default=S,
        help="torch CPU threads (1: the LFP step is a loop over time of small "
        "operations; more threads rarely help on a few cores and hurt on a busy machine)",
    )
    g.add_argument("--device", default=S, help="auto (default), cpu or cuda")
    _bool_flag(g, "progress", "show progress bars (default on)")
    g.add_argument(
        "--nproc", type=int, default=S, help="data-parallel processes on this machine (torchrun)"
    )


def _augment_item(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` of ``--augment`` (``none``: no augmentation)."""
    if text == "none":
        return ("none", None)
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (e.g. shift=2), got {text!r}")
    try:
        number = int(value) if value.strip().lstrip("-").isdigit() else float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: not a number: {value!r}") from None
    return (name, number)


def _add_memory_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--reuse-memory",
        choices=("peak", "all", "off"),
        default="peak",
        help="reuse of the LFP rules' freed large tensors (spikelfp.reuse_freed_memory): "
        "'peak' (default) keeps them only within a step's memory peak; 'all' keeps every one "
        "(fastest for conv nets and long T, more memory); 'off' gives them back at once",
    )


def _memory_setting(args: argparse.Namespace) -> None:
    mode = getattr(args, "reuse_memory", "peak")
    if mode != "peak":
        from ..allocator import reuse_freed_memory

        reuse_freed_memory(mode)


def _train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    from .config import TrainConfig

    names = set(TrainConfig.field_names())
    out = {k: v for k, v in vars(args).items() if k in names}
    if "augment" in out:  # [(name, value), ...] from --augment
        items = out["augment"]
        out["augment"] = {} if any(n == "none" for n, _ in items) else dict(items)
    return out


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from .config import DATASETS

    parser = _Parser(
        prog="spikelfp",
        description="Train spiking neural networks with Layer-wise Feedback Propagation "
        "(no surrogate gradients), evaluate them and export them to hardware.",
    )
    parser.add_argument("--version", action="version", version=f"spikelfp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser(
        "train",
        help="train a network (LFP or BPTT) on an event dataset",
        description="Train a zoo model; writes config.yaml, checkpoint.pt "
        "(every epoch), metrics.jsonl and plots into --out.",
    )
    p.add_argument(
        "--config", metavar="FILE", help="YAML or TOML file of settings (flags override it)"
    )
    p.add_argument(
        "--resume", metavar="RUN_DIR", help="continue a run from its last completed epoch"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="start afresh even if --out already holds a run"
    )
    p.add_argument(
        "--allow-data-change",
        action="store_true",
        help="with --resume: continue on a different --data-dir than the run was trained on",
    )
    _add_train_options(p)
    _add_memory_option(p)

    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint",
        description="Accuracy (overall, per class), spike rates per layer and "
        "the confusion matrix of a checkpoint on a split.",
    )
    p.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        help="checkpoint.pt or its run folder, or a NIR graph (.nir) from any framework",
    )
    _add_data_options(p)
    p.add_argument(
        "--split",
        choices=("train", "tune", "val", "test"),
        default="test",
        help="split to evaluate (val: the part held out by --val-fraction)",
    )
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    _add_nir_eval_options(p)

    p = sub.add_parser(
        "export",
        help="prune, quantise and export a checkpoint to NIR",
        description="Export a trained network for neuromorphic hardware.",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint.pt or its run folder")
    p.add_argument(
        "--target",
        default="int8",
        help="hardware target: int8 (a generic 8-bit integer chip, default, as "
        "spikelfp.hw_export.export), xylo, loihi2, speck, or a profile file (.json/.toml/.yaml "
        "of HardwareProfile fields)",
    )
    p.add_argument(
        "--bits",
        type=int,
        default=None,
        help="weight bits (default: the target's weight width, 8 for the built-in targets)",
    )
    p.add_argument(
        "--prune",
        type=float,
        default=0.0,
        help="fraction of the weights set to zero (default 0: no pruning)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="also refuse warnings (clipped weights, a decay rounded far, a state that may "
        "saturate, a reset NIR cannot express, an accuracy drop over 1 point)",
    )
    p.add_argument(
        "--allow-violations",
        action="store_true",
        help="write the file even if the network breaks the target's constraints (otherwise "
        "the export is refused with a non-zero exit and nothing is written)",
    )
    p.add_argument(
        "--scale-method",
        choices=("mse", "max"),
        default=None,
        help="weight scale: mse (least squared error; may clip outliers, reported) or max "
        "(no weight clipped). Default: max for a run trained with --target for this target "
        "(its exported network is then the trained one), else mse",
    )
    p.add_argument("--dt", type=float, default=1e-3, help="time step in seconds (1e-3)")
    p.add_argument(
        "-o", "--output", default="net.nir", metavar="FILE", help="NIR file to write (net.nir)"
    )
    p.add_argument("--json", metavar="OUT", help="also write the export report as JSON")
    _add_data_options(p, accuracy=True)

    p = sub.add_parser(
        "info",
        help="show a checkpoint's config, epoch, metrics and size, or the model zoo",
        description="Show a checkpoint (CHECKPOINT), or with --models the model zoo: "
        "parameters, neurons and synaptic operations per sample of every model for a dataset.",
    )
    p.add_argument(
        "checkpoint", nargs="?", metavar="CHECKPOINT", help="checkpoint.pt or its run folder"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--models", action="store_true", help="list the model zoo")
    p.add_argument(
        "--dataset",
        choices=DATASETS,
        default="nmnist",
        help="with --models: size the models for this dataset's frames (nmnist)",
    )

    p = sub.add_parser(
        "demo",
        help="train, evaluate and export on the built-in dataset",
        description="The main job: train an MLP with LFP on the built-in "
        "digits-events dataset (generated offline), evaluate it on "
        "its test split and export it as int8 NIR.",
    )
    p.add_argument("--out", default="runs/demo", metavar="RUN_DIR", help="run folder")
    _add_memory_option(p)
    p.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="where the built-in dataset is generated "
        "(default $SPIKELFP_HOME/datasets, i.e. ~/.cache/spikelfp/datasets)",
    )
    p.add_argument("--epochs", type=int, default=None, help="override the demo's epochs")
    p.add_argument(
        "--target", default="int8", help="export target (int8: generic 8-bit integer chip)"
    )
    p.add_argument("--no-export", action="store_true", help="skip the export step")
    _bool_flag(p, "progress", "show progress bars (default on)")
    from .explain_cli import add_parser as add_explain_parser

    add_explain_parser(sub)
    return parser


def _add_data_options(p: argparse.ArgumentParser, accuracy: bool = False) -> None:
    from .config import DATASETS

    what = "to measure accuracy before/after export" if accuracy else "(default: the run's)"
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default=None, help=f"dataset {what}")
    g.add_argument(
        "--data-dir", default=None, metavar="DIR", help="dataset folder (default: the run's)"
    )
    g.add_argument("--cache-dir", default=None, metavar="DIR", help="HDF5 frame cache folder")
    if accuracy:
        g.add_argument(
            "--split",
            choices=("train", "val", "test"),
            default="test",
            help="split for the accuracy (test)",
        )
    g.add_argument("--batch-size", type=int, default=None, help="evaluation batch size")
    g.add_argument(
        "--max-samples",
        type=int,
        default=None,
        metavar="N",
        help="evaluate on a stratified subset of N recordings",
    )


# -- commands -------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from . import distributed as _dist
    from .config import ConfigError, TrainConfig, load_config_file
    from .recipes import resolve_config
    from .trainer import Trainer

    overrides = _train_overrides(args)
    _memory_setting(args)
    if args.resume and (args.config or args.overwrite):
        raise UsageError(
            "spikelfp train: --resume continues a run with its own config; "
            "do not combine it with --config or --overwrite"
        )
    cfg = None
    if not args.resume:
        file_settings = load_config_file(args.config) if args.config else None
        if file_settings is not None:
            try:  # check the file on its own first, so an error names it
                TrainConfig.from_dict(file_settings)
            except ConfigError as err:
                raise ConfigError(f"{args.config}: {err}") from None
        cfg = resolve_config(overrides, file_settings)
        if cfg.epochs == 0:
            raise UsageError("spikelfp train: --epochs 0 trains nothing; give --epochs 1 or more")
    nproc = cfg.nproc if cfg is not None else int(overrides.get("nproc", 1))
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        if cfg is not None:  # report bad input once, not from every worker
            from .data import _resolve_data_dir

            _check_output(cfg.out, "--out", "train", folder=True)
            _resolve_data_dir(cfg)
            if cfg.batch_size % nproc:
                raise UsageError(
                    f"spikelfp train: --batch-size {cfg.batch_size} must be a multiple of "
                    f"--nproc {nproc} (each process trains on batch-size / nproc samples)"
                )
        return _dist.launch_local(nproc, ["train", *argv])
    if args.resume:
        trainer = Trainer.resume(args.resume, overrides, allow_data_change=args.allow_data_change)
    else:
        trainer = Trainer(cfg, overwrite=args.overwrite)
    try:
        history = trainer.fit()
    finally:
        _dist.shutdown()
    if trainer.main:
        last = history[-1] if history else {}
        _print(f"run: {trainer.run_dir}")
        if last:
            msg = f"final: epoch {last['epoch']} train acc {last['train_acc']:.4f}"
            if "eval_acc" in last:
                msg += f", {last['eval_split']} acc {last['eval_acc']:.4f}"
            _print(msg)
    return 0


def _eval_config(ckpt: dict[str, Any], args: argparse.Namespace):
    from .config import TrainConfig

    cfg = TrainConfig.from_stored(ckpt["config"])
    changes: dict[str, Any] = {"max_train_samples": None, "max_eval_samples": None}
    if args.dataset is not None and args.dataset != cfg.dataset:
        changes["dataset"] = args.dataset
        changes["data_dir"] = None
    if args.data_dir is not None:
        changes["data_dir"] = args.data_dir
    if args.cache_dir is not None:
        changes["cache_dir"] = args.cache_dir
    if getattr(args, "batch_size", None) is not None:
        changes["batch_size"] = args.batch_size
    if getattr(args, "max_samples", None) is not None:
        changes["max_eval_samples"] = args.max_samples
        changes["max_train_samples"] = args.max_samples
    return cfg.replace(**changes)


def run_evaluation(ckpt: dict[str, Any], cfg, split: str, model=None) -> dict[str, Any]:
    """Evaluate a checkpoint's model (or ``model``) on ``split`` of ``cfg``'s dataset."""
    from torch.utils.data import DataLoader

    from .checkpoint import CheckpointError
    from .data import collate, open_split
    from .evaluate import evaluate
    from .trainer import build_from_checkpoint

    if model is None:
        from .models import ModelSpec
        from .trainer import _target_training

        model = build_from_checkpoint(ckpt)
        trained = _target_training(model, ModelSpec.from_dict(ckpt["model_spec"]))
        if trained is not None:  # train --target: the integer network is what was trained
            model = trained.evaluation_model()
    data = open_split(cfg, split)
    spec_shape = tuple(ckpt["model_spec"]["input_shape"])
    if tuple(data.frame_shape) != spec_shape:
        raise CheckpointError(
            f"the checkpoint's model takes frames {spec_shape} but {cfg.dataset} gives "
            f"{tuple(data.frame_shape)}"
        )
    n_classes = int(ckpt["model_spec"]["n_classes"])
    if len(data.classes) != n_classes:
        raise CheckpointError(
            f"the checkpoint's model has {n_classes} outputs but {cfg.dataset} has "
            f"{len(data.classes)} classes"
        )
    loader = DataLoader(data.dataset, batch_size=cfg.batch_size, collate_fn=collate)
    result = evaluate(model, loader, n_classes, cfg.input_clamp, list(data.classes))
    result.update({"dataset": cfg.dataset, "split": split, "classes": list(data.classes)})
    return result


def _format_eval(r: dict[str, Any]) -> str:
    lines = [
        f"{r['dataset']} {r['split']}: accuracy {r['accuracy']:.4f} "
        f"({round(r['accuracy'] * r['n_samples'])}/{r['n_samples']}), "
        f"loss {r['loss']:.4f}"
    ]
    lines.append(
        "per class: "
        + "  ".join(
            f"{c}: {'-' if a is None else f'{a:.3f}'}" for c, a in r["per_class_accuracy"].items()
        )
    )
    lines.append(
        "spike rates (spikes per neuron and step): "
        + "  ".join(f"{k} {v:.4f}" for k, v in r["spike_rates"].items())
    )
    lines.append("confusion matrix (rows: true class, columns: predicted):")
    classes = r["classes"]
    width = max(
        4,
        max(len(str(v)) for row in r["confusion_matrix"] for v in row) + 1,
        max(len(c) for c in classes) + 1,
    )
    lines.append(" " * width + "".join(f"{c:>{width}}" for c in classes))
    for c, row in zip(classes, r["confusion_matrix"], strict=True):
        lines.append(f"{c:>{width}}" + "".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)


def _check_output(path: str, flag: str, command: str, folder: bool = False) -> None:
    """Refuse, before any work, an output that cannot be written (``folder``: a folder to
    create or fill, else a file)."""
    from .checkpoint import output_problem

    p = Path(path).expanduser()
    if not folder and p.is_dir():
        problem = f"{p} is a folder; give a file name"
    else:
        problem = output_problem(p if folder else p.parent)
    if problem is not None:
        raise UsageError(f"spikelfp {command}: cannot write {flag} {path}: {problem}")


def resolve_target(target: str, command: str = "export"):
    """The :class:`~spikelfp.hw_export.HardwareProfile` a ``--target`` names: a registered
    profile, or a profile file (``.json``/``.toml``/``.yaml``); ``None`` when the hardware
    export is not installed. Bad input is a one-line :class:`UsageError`."""
    try:
        from ..hw_export.profiles import PROFILE_SUFFIXES, PROFILES, load_profile
    except ImportError:  # reported by _export_fn
        return None
    if Path(target).suffix.lower() in PROFILE_SUFFIXES:
        try:
            return load_profile(target)
        except ValueError as err:
            raise UsageError(f"spikelfp {command}: --target {err}") from None
    if target.lower() not in PROFILES:
        raise UsageError(
            f"spikelfp {command}: unknown --target {target!r}; choose one of "
            f"{', '.join(sorted(PROFILES))}, or give a profile file (.json/.toml/.yaml)"
        )
    return PROFILES[target.lower()]


def _check_export_options(target: str, bits: int, prune: float, dt: float):
    """The export's settings, checked before the checkpoint is loaded; returns the profile."""
    import math

    prof = resolve_target(target)
    if bits is not None and not 2 <= bits <= 31:
        raise UsageError(f"spikelfp export: --bits must be in 2..31 (8: int8), got {bits}")
    if bits is not None and prof is not None and bits > prof.weight_bits:
        raise UsageError(
            f"spikelfp export: --bits {bits} is more than {prof.name} stores "
            f"({prof.weight_bits}-bit weights); use --bits 2..{prof.weight_bits}"
        )
    if not 0 <= prune < 1:
        raise UsageError(f"spikelfp export: --prune must be in [0, 1), got {prune}")
    if not (math.isfinite(dt) and dt > 0):
        raise UsageError(
            f"spikelfp export: --dt must be a positive time step in seconds (1e-3), got {dt}"
        )
    return prof


def _write_json(path: str, obj: Any) -> None:
    from .checkpoint import write_text_atomic

    try:
        write_text_atomic(Path(path), json.dumps(obj, indent=2) + "\n")
    except OSError as err:  # checked up front, but a disk can fill up meanwhile
        raise OSError(err.errno, f"cannot write {path}: {err.strerror or err}") from None


def _add_nir_eval_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("NIR graph (CHECKPOINT is a .nir file)")
    g.add_argument(
        "--convention",
        default=None,
        help="the producer's convention (nir, spikelfp, snntorch, sinabs, sinabs-single, norse, "
        "rockpool); default: detected from the graph",
    )
    g.add_argument(
        "--dt", type=float, default=None, help="time step in seconds (only if not detected)"
    )
    g.add_argument("--time-bins", type=int, default=None, help="frames per recording (16)")
    g.add_argument(
        "--bin-ms", type=float, default=None, metavar="MS", help="frames of MS milliseconds"
    )
    g.add_argument(
        "--input-clamp",
        default=None,
        metavar="C",
        help="clip counts per pixel and bin at C (1: binary, default), or 'none' (raw counts)",
    )
    g.add_argument("--val-fraction", type=float, default=None, help="hold out for 'val'")
    g.add_argument("--tune-fraction", type=float, default=None, help="hold out for 'tune'")
    g.add_argument("--split-seed", type=int, default=None, help="seed of the held-out splits")


_NIR_EVAL_FIELDS = (
    "time_bins", "bin_ms", "input_clamp", "val_fraction", "tune_fraction", "split_seed"
)  # fmt: skip


def _cmd_eval_nir(args: argparse.Namespace) -> int:
    from .config import TrainConfig
    from .nir_eval import evaluate_nir

    if args.dataset is None:
        raise UsageError("spikelfp eval: a NIR graph needs --dataset (and --data-dir)")
    changes: dict[str, Any] = {"dataset": args.dataset}
    for name in ("data_dir", "cache_dir", "batch_size", *_NIR_EVAL_FIELDS):
        if getattr(args, name, None) is not None:
            changes[name] = getattr(args, name)
    if args.max_samples is not None:
        changes["max_eval_samples"] = changes["max_train_samples"] = args.max_samples
    clamp = changes.get("input_clamp")
    if isinstance(clamp, str):
        try:
            changes["input_clamp"] = None if clamp.lower() == "none" else float(clamp)
        except ValueError:
            raise UsageError(
                f"spikelfp eval: --input-clamp must be a number or 'none', got {clamp!r}"
            ) from None
    cfg = TrainConfig().replace(**changes)
    result = evaluate_nir(args.checkpoint, cfg, args.split, convention=args.convention, dt=args.dt)
    result = {"graph": str(args.checkpoint), **result}
    _print(_format_eval(result))
    if args.json:
        _write_json(args.json, result)
        _print(f"wrote {args.json}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint

    if args.json:
        _check_output(args.json, "--json", "eval")
    if str(args.checkpoint).lower().endswith(".nir"):
        return _cmd_eval_nir(args)
    used = [f"--{n.replace('_', '-')}" for n in ("convention", "dt", *_NIR_EVAL_FIELDS)]
    used = [flag for flag in used if getattr(args, flag[2:].replace("-", "_")) is not None]
    if used:
        raise UsageError(
            f"spikelfp eval: {', '.join(used)} apply to a NIR graph (.nir) only; a checkpoint "
            "is evaluated with the frames it was trained on"
        )
    ckpt = load_checkpoint(args.checkpoint)
    cfg = _eval_config(ckpt, args)
    result = run_evaluation(ckpt, cfg, args.split)
    result = {"checkpoint": ckpt["path"], "epoch": int(ckpt["epoch"]), **result}
    _print(_format_eval(result))
    if args.json:
        _write_json(args.json, result)
        _print(f"wrote {args.json}")
    return 0


def _export_fn():
    try:
        from ..hw_export import export
    except ImportError as err:
        raise UsageError(f"spikelfp export: the hardware export is not available ({err})") from None
    return export


def run_export(
    ckpt,
    *,
    target,
    bits,
    prune,
    dt,
    output,
    data_cfg=None,
    split="test",
    print_fn=_print,
    strict=False,
    allow_violations=False,
    scale_method=None,
) -> dict[str, Any]:
    """Export a checkpoint with :func:`spikelfp.hw_export.export`; returns a JSON-able report.

    With ``data_cfg`` the exporter measures the accuracy on ``split`` of that dataset before
    (float) and after pruning and quantisation, and checks its integer simulator on it.
    A refused export (violations, or warnings with ``strict``) prints its report and raises
    :class:`~spikelfp.hw_export.ProfileViolationError`; nothing is written.
    """
    import inspect

    from torch.utils.data import DataLoader

    from .data import collate, open_split
    from .trainer import build_from_checkpoint

    export = _export_fn()
    model = build_from_checkpoint(ckpt)
    spec = ckpt["model_spec"]
    prof = resolve_target(target) if isinstance(target, str) else target
    trained = _trained_for(spec, prof, bits)
    if scale_method is None:
        scale_method = "max" if trained else "mse"
    kwargs: dict[str, Any] = {
        "target": prof if prof is not None else target,
        "bits": bits,
        "prune": prune,
        "dt": dt,
        "path": str(output),
        "input_shape": tuple(spec["input_shape"]),
        "verbose": False,
        "strict": strict,
        "allow_violations": allow_violations,
        "scale_method": scale_method,
        "trained_for_target": trained and scale_method == "max",
    }
    if data_cfg is not None:
        data = open_split(data_cfg, split)
        if tuple(data.frame_shape) != tuple(spec["input_shape"]):
            from .checkpoint import CheckpointError

            raise CheckpointError(
                f"the checkpoint's model takes frames {tuple(spec['input_shape'])} but "
                f"{data_cfg.dataset} gives {tuple(data.frame_shape)}"
            )
        kwargs["data"] = _Batches(
            DataLoader(data.dataset, batch_size=256, collate_fn=collate), data_cfg.input_clamp
        )
    params = inspect.signature(export).parameters
    kwargs = {k: v for k, v in kwargs.items() if k in params or _accepts_kwargs(params)}
    try:
        report = export(model, **kwargs)
    except Exception as err:
        refused = getattr(err, "report", None)
        if refused is not None:  # a refused export: show what was found, then the one line
            print_fn(str(refused))
        raise
    drop = report.accuracy_drop_points
    if any(w.constraint == "accuracy" for w in report.constraints.warnings):
        print(
            f"spikelfp export: WARNING: the exported network loses {drop:.2f} accuracy points "
            f"({100 * report.accuracy_float:.2f}% -> {100 * report.accuracy_quantized:.2f}%)",
            file=sys.stderr,
            flush=True,
        )
    out = {
        "checkpoint": ckpt["path"],
        "output": str(output),
        "target": report.target,
        "bits": bits,
        "prune": prune,
        "dt": dt,
    }
    if data_cfg is not None:
        out.update({"dataset": data_cfg.dataset, "split": split})
    out["report"] = _jsonable(report)
    print_fn(str(report))
    return out


def _trained_for(spec: dict, prof, bits: int) -> bool:
    """Whether the run was trained with ``--target`` for ``prof`` at ``bits``: its float
    weights are shadows of the integer network that export() writes."""
    if prof is None or not (spec.get("extra") or {}).get("target"):
        return False
    from ..hw_export.target import target_of
    from .models import ModelSpec

    return target_of(ModelSpec.from_dict(spec)) == prof and bits == prof.weight_bits


class _Batches:
    """Re-iterable ``(x, y)`` batches (the exporter goes over the data several times)."""

    def __init__(self, loader, clamp):
        self.loader, self.clamp = loader, clamp

    def __iter__(self):
        from .evaluate import prepare_input

        for x, y in self.loader:
            yield prepare_input(x, self.clamp), y


def _accepts_kwargs(params) -> bool:
    import inspect

    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _jsonable(obj: Any) -> Any:
    import dataclasses

    import numpy as np
    import torch

    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return _jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def cmd_export(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint

    prof = _check_export_options(args.target, args.bits, args.prune, args.dt)
    if args.bits is None:
        args.bits = prof.weight_bits if prof is not None else 8
    _check_output(args.output, "--output", "export")
    if args.json:
        _check_output(args.json, "--json", "export")
    ckpt = load_checkpoint(args.checkpoint)
    data_cfg = _eval_config(ckpt, args) if args.dataset is not None or args.data_dir else None
    out = run_export(
        ckpt,
        target=args.target,
        bits=args.bits,
        prune=args.prune,
        dt=args.dt,
        output=args.output,
        data_cfg=data_cfg,
        split=args.split,
        strict=args.strict,
        allow_violations=args.allow_violations,
        scale_method=args.scale_method,
    )
    if args.json:
        _write_json(args.json, out)
        _print(f"wrote {args.json}")
    return 0


def checkpoint_info(ckpt: dict[str, Any]) -> dict[str, Any]:
    """Config, epoch, last metrics and parameter counts of a loaded checkpoint."""
    counts = {name: int(t.numel()) for name, t in ckpt["model"].items()}
    from .trainer import build_from_checkpoint

    model = build_from_checkpoint(ckpt)
    trainable = {n: p.numel() for n, p in model.named_parameters()}
    history = ckpt["history"]
    return {
        "checkpoint": ckpt["path"],
        "spikelfp_version": ckpt.get("spikelfp_version"),
        "epoch": int(ckpt["epoch"]),
        "epochs": int(ckpt["config"].get("epochs", 0)),
        "config": ckpt["config"],
        "model_spec": ckpt["model_spec"],
        "model": repr(model),
        "parameters": trainable,
        "n_parameters": int(sum(trainable.values())),
        "state_tensors": counts,
        "last_metrics": history[-1] if history else None,
        "history": history,
    }


def cmd_info(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint

    if args.models:
        return _info_models(args)
    if args.checkpoint is None:
        raise UsageError(
            "spikelfp info: give a CHECKPOINT (checkpoint.pt or its run folder), or --models"
        )
    info = checkpoint_info(load_checkpoint(args.checkpoint))
    if args.json:
        _print(json.dumps(info, indent=2))
        return 0
    cfg = info["config"]
    _print(f"checkpoint: {info['checkpoint']} (spikelfp {info['spikelfp_version']})")
    _print(
        f"epoch: {info['epoch']}/{info['epochs']}"
        + ("" if info["epoch"] >= info["epochs"] else " (incomplete: --resume to continue)")
    )
    _print(
        textwrap.fill(
            ", ".join(f"{k}={v}" for k, v in cfg.items()),
            width=100,
            initial_indent="config: ",
            subsequent_indent="  ",
            break_on_hyphens=False,
        )
    )
    _print("model:")
    _print("  " + info["model"].replace("\n", "\n  "))
    _print(f"parameters: {info['n_parameters']:,}")
    for name, n in info["parameters"].items():
        _print(f"  {name:<12} {n:>10,}")
    m = info["last_metrics"]
    if m:
        _print(
            textwrap.fill(
                ", ".join(f"{k}={_fmt(v)}" for k, v in m.items()),
                width=100,
                initial_indent="last epoch: ",
                subsequent_indent="  ",
                break_on_hyphens=False,
            )
        )
    return 0


def _info_models(args: argparse.Namespace) -> int:
    from .data import DATASET_SHAPES
    from .models import describe_models, models_table

    shape, n_classes = DATASET_SHAPES[args.dataset]
    if args.json:
        _print(json.dumps(describe_models(shape, n_classes), indent=2))
        return 0
    _print(f"model zoo for {args.dataset} (frames {shape}, {n_classes} classes):")
    _print(models_table(shape, n_classes))
    return 0


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    return str(v)


def cmd_demo(args: argparse.Namespace) -> int:
    from .config import TrainConfig
    from .demo import DEMO_CONFIG
    from .trainer import Trainer

    _memory_setting(args)
    if not args.no_export:
        _check_export_options(args.target, 8, 0.0, 1e-3)
    t0 = time.perf_counter()
    settings = dict(DEMO_CONFIG)
    settings["out"] = args.out
    if args.data_dir is not None:
        settings["data_dir"] = args.data_dir
    if args.epochs is not None:
        settings["epochs"] = args.epochs
    if getattr(args, "progress", None) is not None:
        settings["progress"] = args.progress
    cfg = TrainConfig.from_dict(settings)
    _print(
        f"spikelfp demo: LFP training of a spiking MLP on the built-in digits-events dataset "
        f"({cfg.epochs} epochs) -> {Path(cfg.out)}"
    )
    trainer = Trainer(cfg, overwrite=True)
    trainer.fit()
    from .checkpoint import load_checkpoint

    ckpt = load_checkpoint(trainer.run_dir)
    result = run_evaluation(ckpt, trainer.config, "test")
    _write_json(trainer.run_dir / "eval_test.json", result)
    _print(_format_eval(result))
    if not args.no_export:
        out = run_export(
            ckpt,
            target=args.target,
            bits=8,
            prune=0.0,
            dt=1e-3,
            output=trainer.run_dir / "net.nir",
            data_cfg=trainer.config,
            split="test",
        )
        _write_json(trainer.run_dir / "export_report.json", out)
    _print(
        f"final test accuracy: {result['accuracy']:.2%} "
        f"({round(result['accuracy'] * result['n_samples'])}/{result['n_samples']} "
        f"recordings) in {time.perf_counter() - t0:.0f} s"
    )
    if args.epochs is None and result["accuracy"] < 0.9:
        print(
            "spikelfp demo: the test accuracy is below the expected 90 %",
            file=sys.stderr,
        )
        return 1
    return 0


# -- entry point -------------------------------------------------------------------------------
def _expected_errors() -> tuple[type[BaseException], ...]:
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .data import DataError
    from .trainer import RunExistsError

    errors: list[type[BaseException]] = [
        UsageError,
        ConfigError,
        DataError,
        CheckpointError,
        RunExistsError,
    ]
    try:
        from ..datasets import errors as ds_errors

        errors += [
            ds_errors.DatasetNotFoundError,
            ds_errors.DatasetLayoutError,
            ds_errors.CorruptRecordingError,
        ]
    except ImportError:
        pass
    try:
        from ..hw_export.errors import ExportError

        errors.append(ExportError)
    except ImportError:
        pass
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spikelfp`` command (also ``python -m spikelfp``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = "spikelfp"  # "spikelfp COMMAND" once the command is known: the errors' prefix
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is not None:
            prog = f"spikelfp {args.command}"
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        if args.command == "train":
            sub = argv[argv.index("train") + 1 :]
            return cmd_train(args, sub)
        from .explain_cli import cmd_explain

        handler = {
            "eval": cmd_eval,
            "export": cmd_export,
            "info": cmd_info,
            "demo": cmd_demo,
            "explain": cmd_explain,
        }[args.command]
        return handler(args)
    except KeyboardInterrupt:
        print("spikelfp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `spikelfp info RUN | head -3`: the reader left, stop quietly
        _silence_stdout()
        return 1
    except Exception as err:  # noqa: BLE001 - sorted below
        text = " ".join(worker_error_message(str(err)).split())
        if type(err).__name__ == "DistributedError":  # a peer died: not bad input
            print(f"{prog}: error: {text}", file=sys.stderr, flush=True)
            return 1
        from .trainer import TrainingDivergedError

        if isinstance(err, TrainingDivergedError):  # a runtime failure, not bad input
            print(f"{prog}: error: {text}", file=sys.stderr, flush=True)
            return 1
        if isinstance(err, _expected_errors()) or isinstance(err, ImportError):
            msg = text or type(err).__name__
            if not msg.startswith("spikelfp"):
                msg = f"{prog}: error: {msg}"
            elif ": error:" not in msg:
                head, _, rest = msg.partition(": ")
                msg = f"{head}: error: {rest}"
            print(msg, file=sys.stderr, flush=True)
            return EXIT_USAGE
        if isinstance(err, OSError):  # a write failed (disk full, permissions): runtime
            print(f"{prog}: error: {text or type(err).__name__}", file=sys.stderr, flush=True)
            return 1
        raise


_WORKER_ERROR = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.\n")
_EXCEPTION_PREFIX = re.compile(r"^[A-Za-z_][\w.]*: ")


def worker_error_message(text: str) -> str:
    """The original message of an exception that a DataLoader worker raised (torch re-raises
    it in the main process with the worker's whole traceback as its message); other messages
    unchanged.

    >>> worker_error_message(
    ...     "Caught ValueError in DataLoader worker process 0.\\nOriginal Traceback (most "
    ...     "recent call last):\\n  File \\"x.py\\", line 1, in f\\n    g()\\n"
    ...     "spikelfp.datasets.errors.CorruptRecordingError: 3.bin is bad\\n"
    ... )
    '3.bin is bad'
    """
    if not _WORKER_ERROR.match(text):
        return text
    lines = text.rstrip("\n").splitlines()
    # the traceback's frames are indented; the exception (type: message) follows the last one
    last_frame = max((i for i, line in enumerate(lines) if line.startswith(" ")), default=0)
    tail = "\n".join(lines[last_frame + 1 :]).strip()
    return _EXCEPTION_PREFIX.sub("", tail, count=1) or lines[-1]


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not raise again
    (what the Python docs advise for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor (tests)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
