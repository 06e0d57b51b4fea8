"""``spikelfp info``: a checkpoint's config, epoch, metrics and size, or (``--models``) the
model zoo sized for a dataset."""

from __future__ import annotations

import argparse
import json
import textwrap
from collections.abc import Sequence
from typing import Any

from ._common import UsageError, echo

__all__ = ["add_parser", "checkpoint_info", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``info`` command to the ``spikelfp`` sub-parsers ``sub``."""
    from ..training.config import DATASETS

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
    return p


def checkpoint_info(ckpt: dict[str, Any]) -> dict[str, Any]:
    """Config, epoch, last metrics and parameter counts of a loaded checkpoint."""
    counts = {name: int(t.numel()) for name, t in ckpt["model"].items()}
    from ..training.trainer import build_from_checkpoint

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


def run(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    """Run ``spikelfp info``; returns the exit code."""
    from ..training.checkpoint import load_checkpoint

    if args.models:
        return _info_models(args)
    if args.checkpoint is None:
        raise UsageError(
            "spikelfp info: give a CHECKPOINT (checkpoint.pt or its run folder), or --models"
        )
    info = checkpoint_info(load_checkpoint(args.checkpoint))
    if args.json:
        echo(json.dumps(info, indent=2))
        return 0
    cfg = info["config"]
    echo(f"checkpoint: {info['checkpoint']} (spikelfp {info['spikelfp_version']})")
    echo(
        f"epoch: {info['epoch']}/{info['epochs']}"
        + ("" if info["epoch"] >= info["epochs"] else " (incomplete: --resume to continue)")
    )
    echo(
        textwrap.fill(
            ", ".join(f"{k}={v}" for k, v in cfg.items()),
            width=100,
            initial_indent="config: ",
            subsequent_indent="  ",
            break_on_hyphens=False,
        )
    )
    echo("model:")
    echo("  " + info["model"].replace("\n", "\n  "))
    echo(f"parameters: {info['n_parameters']:,}")
    for name, n in info["parameters"].items():
        echo(f"  {name:<12} {n:>10,}")
    m = info["last_metrics"]
    if m:
        echo(
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
    from ..training.data import DATASET_SHAPES
    from ..training.models import describe_models, models_table

    shape, n_classes = DATASET_SHAPES[args.dataset]
    if args.json:
        echo(json.dumps(describe_models(shape, n_classes), indent=2))
        return 0
    echo(f"model zoo for {args.dataset} (frames {shape}, {n_classes} classes):")
    echo(models_table(shape, n_classes))
    return 0


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    return str(v)
