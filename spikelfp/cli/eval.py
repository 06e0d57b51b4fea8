"""``spikelfp eval``: accuracy, per-class accuracy, spike rates and confusion matrix of a
checkpoint, or of a NIR graph written by any framework, on a split of a dataset."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from ..training.runs import evaluate_checkpoint
from ._common import (
    UsageError,
    add_data_options,
    check_output,
    echo,
    eval_config,
    format_eval,
    write_json,
)

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` command to the ``spikelfp`` sub-parsers ``sub``."""
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
    add_data_options(p)
    p.add_argument(
        "--split",
        choices=("train", "tune", "val", "test"),
        default="test",
        help="split to evaluate (val: the part held out by --val-fraction)",
    )
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    _add_nir_eval_options(p)
    return p


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
    from ..training.config import TrainConfig
    from ..training.nir_eval import evaluate_nir

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
    echo(format_eval(result))
    if args.json:
        write_json(args.json, result)
        echo(f"wrote {args.json}")
    return 0


def run(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    """Run ``spikelfp eval``; returns the exit code."""
    from ..training.checkpoint import load_checkpoint

    if args.json:
        check_output(args.json, "--json", "eval")
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
    cfg = eval_config(ckpt, args)
    result = evaluate_checkpoint(ckpt, cfg, args.split)
    result = {"checkpoint": ckpt["path"], "epoch": int(ckpt["epoch"]), **result}
    echo(format_eval(result))
    if args.json:
        write_json(args.json, result)
        echo(f"wrote {args.json}")
    return 0
