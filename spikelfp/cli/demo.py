"""``spikelfp demo``: the main job. Train an MLP with LFP on the built-in digits-events
dataset (the settings are :data:`spikelfp.training.demo.DEMO_CONFIG`), evaluate it on its test
split and export it as int8 NIR."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..training.runs import evaluate_checkpoint
from ._common import (
    add_memory_option,
    apply_memory_setting,
    bool_flag,
    echo,
    format_eval,
    write_json,
)
from .export import check_export_options, run_export

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``demo`` command to the ``spikelfp`` sub-parsers ``sub``."""
    p = sub.add_parser(
        "demo",
        help="train, evaluate and export on the built-in dataset",
        description="The main job: train an MLP with LFP on the built-in "
        "digits-events dataset (generated offline), evaluate it on "
        "its test split and export it as int8 NIR.",
    )
    p.add_argument("--out", default="runs/demo", metavar="RUN_DIR", help="run folder")
    add_memory_option(p)
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
    bool_flag(p, "progress", "show progress bars (default on)")
    return p


def run(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    """Run ``spikelfp demo``; returns the exit code (1 when the accuracy is below 90 %)."""
    from ..training.config import TrainConfig
    from ..training.demo import DEMO_CONFIG
    from ..training.trainer import Trainer

    apply_memory_setting(args)
    if not args.no_export:
        check_export_options(args.target, 8, 0.0, 1e-3)
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
    echo(
        f"spikelfp demo: LFP training of a spiking MLP on the built-in digits-events dataset "
        f"({cfg.epochs} epochs) -> {Path(cfg.out)}"
    )
    trainer = Trainer(cfg, overwrite=True)
    trainer.fit()
    from ..training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(trainer.run_dir)
    result = evaluate_checkpoint(ckpt, trainer.config, "test")
    write_json(trainer.run_dir / "eval_test.json", result)
    echo(format_eval(result))
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
        write_json(trainer.run_dir / "export_report.json", out)
    echo(
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
