"""``spikelfp train``: train a zoo model (or a NIR graph, ``--init``) with LFP or a baseline.

Flags override the recipe of the dataset and the ``--config`` file; ``--resume`` continues a
run; ``--nproc N`` relaunches the command under torchrun (``docs/cli.md``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

from ._common import (
    UsageError,
    add_memory_option,
    apply_memory_setting,
    bool_flag,
    check_output,
    echo,
)

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``train`` command to the ``spikelfp`` sub-parsers ``sub``."""
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
    add_memory_option(p)
    return p


def _add_train_options(p: argparse.ArgumentParser) -> None:
    """Training flags; defaults are SUPPRESSed so that only given flags override the config."""
    from ..training.config import DATASETS, ENCODINGS, METHODS, OPTIMIZERS, REWARDS, SYNAPSE_RULES
    from ..training.models import MODELS

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
    bool_flag(g, "download", "download the dataset if it is missing (needs internet)")
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
    bool_flag(g, "bias", "biases in the synapses (--no-bias for chips without them)")
    bool_flag(g, "batch-norm", "batch norm after each conv (folded into it at export)")
    g.add_argument(
        "--dropout",
        type=float,
        default=S,
        metavar="P",
        help="dropout before every Linear that reads hidden spikes, one mask per sample for "
        "all time steps (0: none); training only, removed at export",
    )
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
        "--epsilon",
        type=float,
        default=S,
        metavar="E",
        help="stabiliser of the LFP synapse rules: n = reward / (z + E sign z) (0, lfprop's); "
        "a larger E passes less reward through units with a small input z",
    )
    g.add_argument(
        "--reward-temperature",
        type=float,
        default=S,
        metavar="TAU",
        help="softmax reward: divide the spike counts by TAU before the softmax (1); a larger "
        "TAU keeps rewarding until the correct class leads by more spikes",
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
    g.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default=S,
        help="adam (default), adamw (decoupled --weight-decay) or sgd",
    )
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
    g.add_argument(
        "--lr-warmup",
        type=float,
        default=S,
        metavar="E",
        help="linear learning-rate warm-up, step by step, over the first E epochs (0: none)",
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
    g.add_argument(
        "--rate-floor",
        type=float,
        default=S,
        metavar="R",
        help="homeostatic synaptic scaling: after each step, scale up the synapse of every "
        "hidden layer firing below R spikes per neuron and step (0: off)",
    )
    g = p.add_argument_group("pruning during training (docs/export.md)")
    g.add_argument(
        "--prune-to",
        type=float,
        default=S,
        metavar="S",
        help="prune during training to sparsity S (0.8: 80%% of the weights zero) along the "
        "cubic schedule S(1-(1-p)^3); 0 (default): no pruning",
    )
    g.add_argument(
        "--prune-method",
        choices=("magnitude", "feedback"),
        default=S,
        help="rank the weights by |w| (magnitude, default) or by the LFP feedback they "
        "carried since the last pruning (feedback; --method lfp only)",
    )
    g.add_argument(
        "--prune-start",
        type=int,
        default=S,
        metavar="E",
        help="start pruning after epoch E (0)",
    )
    g.add_argument(
        "--prune-end",
        type=int,
        default=S,
        metavar="E",
        help="reach --prune-to at the end of epoch E (default: the last epoch); later epochs "
        "fine-tune the pruned network",
    )
    g.add_argument(
        "--prune-every",
        type=int,
        default=S,
        metavar="N",
        help="also prune after every N-th optimiser step (0, default: at each epoch's end only)",
    )
    g.add_argument(
        "--prune-scope",
        choices=("global", "layer"),
        default=S,
        help="rank all layers together (global, default) or prune each layer to the sparsity",
    )
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
    bool_flag(g, "progress", "show progress bars (default on)")
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


def _train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    from ..training.config import TrainConfig

    names = set(TrainConfig.field_names())
    out = {k: v for k, v in vars(args).items() if k in names}
    if "augment" in out:  # [(name, value), ...] from --augment
        items = out["augment"]
        out["augment"] = {} if any(n == "none" for n, _ in items) else dict(items)
    return out


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run ``spikelfp train`` (``argv``: the words after ``train``); returns the exit code."""
    from ..training import distributed as _dist
    from ..training.config import ConfigError, TrainConfig, load_config_file
    from ..training.recipes import resolve_config
    from ..training.trainer import Trainer

    overrides = _train_overrides(args)
    apply_memory_setting(args)
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
            from ..training.data import _resolve_data_dir

            check_output(cfg.out, "--out", "train", folder=True)
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
        echo(f"run: {trainer.run_dir}")
        if last:
            msg = f"final: epoch {last['epoch']} train acc {last['train_acc']:.4f}"
            if "eval_acc" in last:
                msg += f", {last['eval_split']} acc {last['eval_acc']:.4f}"
            echo(msg)
    return 0
