"""``spikelfp export``: prune, quantise and export a checkpoint to NIR for a hardware target,
with :func:`spikelfp.hw_export.export` (also the last step of ``spikelfp demo``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._common import UsageError, add_data_options, check_output, echo, eval_config, write_json

__all__ = ["add_parser", "run", "run_export"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``export`` command to the ``spikelfp`` sub-parsers ``sub``."""
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
    add_data_options(p, accuracy=True)
    return p


def _profile(target: str):
    """:func:`spikelfp.training.trainer.resolve_target`, its refusal as ``spikelfp export``'s
    one-line :class:`UsageError`."""
    from ..training.config import ConfigError
    from ..training.trainer import resolve_target

    try:
        return resolve_target(target)
    except ConfigError as err:
        raise UsageError(f"spikelfp export: {err}") from None


def check_export_options(target: str, bits: int, prune: float, dt: float):
    """The export's settings, checked before the checkpoint is loaded; returns the profile."""
    import math

    prof = _profile(target)
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
    print_fn=echo,
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

    from ..training.data import collate, open_split
    from ..training.trainer import build_from_checkpoint

    export = _export_fn()
    model = build_from_checkpoint(ckpt)
    spec = ckpt["model_spec"]
    prof = _profile(target) if isinstance(target, str) else target
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
            from ..training.checkpoint import CheckpointError

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
    from ..training.models import ModelSpec

    return target_of(ModelSpec.from_dict(spec)) == prof and bits == prof.weight_bits


class _Batches:
    """Re-iterable ``(x, y)`` batches (the exporter goes over the data several times)."""

    def __init__(self, loader, clamp):
        self.loader, self.clamp = loader, clamp

    def __iter__(self):
        from ..training.evaluate import prepare_input

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


def run(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    """Run ``spikelfp export``; returns the exit code."""
    from ..training.checkpoint import load_checkpoint

    prof = check_export_options(args.target, args.bits, args.prune, args.dt)
    if args.bits is None:
        args.bits = prof.weight_bits if prof is not None else 8
    check_output(args.output, "--output", "export")
    if args.json:
        check_output(args.json, "--json", "export")
    ckpt = load_checkpoint(args.checkpoint)
    data_cfg = eval_config(ckpt, args) if args.dataset is not None or args.data_dir else None
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
        write_json(args.json, out)
        echo(f"wrote {args.json}")
    return 0
