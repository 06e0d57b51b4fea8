"""``spikelfp explain RUN --index I -o FILE.png``: which events drove a trained network's decision.

Loads a run's checkpoint, opens a split of its dataset as ``spikelfp eval`` does, explains one
recording with :func:`spikelfp.explain_events` (relevance of every event for a class) and
draws :func:`spikelfp.explain.plot_explanation` (and with ``--gif`` an animation). Static
datasets (``mnist``) have no events: their frames are explained with :func:`spikelfp.explain`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._common import UsageError, check_output, echo, eval_config

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``explain`` command to the ``spikelfp`` sub-parsers ``sub``."""
    from ..explain.core import COMPOSITES, REWARDS
    from ..training.config import DATASETS

    p = sub.add_parser(
        "explain",
        help="picture of the events that drove a trained network's decision",
        description="Explain one recording of a split: the relevance of every event for a "
        "class (LRP relevance, computed by LFP's own rules), drawn as per-frame heatmaps, "
        "relevance over time per polarity and the events coloured by relevance.",
    )
    p.add_argument("checkpoint", metavar="RUN", help="checkpoint.pt or its run folder")
    p.add_argument(
        "--index", type=int, required=True, metavar="I", help="which recording of the split"
    )
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default=None, help="dataset (default: the run's)")
    g.add_argument(
        "--data-dir", default=None, metavar="DIR", help="dataset folder (default: the run's)"
    )
    g.add_argument("--cache-dir", default=None, metavar="DIR", help="HDF5 frame cache folder")
    g.add_argument(
        "--split",
        choices=("train", "tune", "val", "test"),
        default=None,
        help="split (default: val if the run held one out, else test)",
    )
    p.add_argument(
        "--target",
        default="label",
        metavar="C",
        help="class to explain: a class index, 'label' (the recording's, default) or 'predicted'",
    )
    p.add_argument(
        "--rule",
        choices=tuple(COMPOSITES),
        default="epsilon",
        help="explanation composite: epsilon (LFP's training rules, default), zplus, gamma, or "
        "depth (z+ in the convolutions, epsilon above)",
    )
    p.add_argument(
        "--reward",
        choices=REWARDS,
        default="output",
        help="output reward of the class: output (its spike train, default) or uniform (1/T "
        "at every step)",
    )
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="picture to write (.png)")
    p.add_argument("--gif", metavar="FILE", help="also write an animation (.gif)")
    return p


def _target(text: str, label: int, n_classes: int):
    if text == "label":
        return label
    if text == "predicted":
        return None
    try:
        target = int(text)
    except ValueError:
        raise UsageError(
            f"spikelfp explain: --target must be a class index, 'label' or 'predicted', got "
            f"{text!r}"
        ) from None
    if not 0 <= target < n_classes:
        raise UsageError(
            f"spikelfp explain: --target {target} is outside the classes 0..{n_classes - 1}"
        )
    return target


def run(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    """Run ``spikelfp explain``; returns the exit code."""
    import numpy as np

    from ..explain import explain, explain_events, make_composite, recording
    from ..explain.plots import plot_explanation, save_relevance_gif
    from ..training.checkpoint import CheckpointError, load_checkpoint
    from ..training.data import open_split
    from ..training.evaluate import prepare_input
    from ..training.trainer import build_from_checkpoint

    check_output(args.output, "-o", "explain")
    if args.gif:
        check_output(args.gif, "--gif", "explain")
    ckpt = load_checkpoint(args.checkpoint)
    cfg = eval_config(ckpt, args)  # the run's config with the data flags, as eval does
    split = args.split or ("val" if cfg.val_fraction > 0 else "test")
    data = open_split(cfg, split)
    spec = ckpt["model_spec"]
    if tuple(data.frame_shape) != tuple(spec["input_shape"]):
        raise CheckpointError(
            f"the checkpoint's model takes frames {tuple(spec['input_shape'])} but "
            f"{cfg.dataset} gives {tuple(data.frame_shape)}"
        )
    n = len(data.dataset)
    if not 0 <= args.index < n:
        raise UsageError(
            f"spikelfp explain: --index {args.index} is out of range: the {split} split of "
            f"{cfg.dataset} has {n} recordings (0..{n - 1})"
        )
    model = build_from_checkpoint(ckpt)
    n_classes = int(spec["n_classes"])
    composite = make_composite(args.rule, model)
    try:
        events, prep, sensor, label = recording(data.dataset, args.index)
    except TypeError:  # a static dataset: explain its frames
        events = None
        frames_t, label = data.dataset[args.index]
    target = _target(args.target, int(label), n_classes)
    try:
        if events is not None:
            result = explain_events(
                model,
                events,
                prep,
                sensor,
                target=target,
                composite=composite,
                input_clamp=cfg.input_clamp,
                reward=args.reward,
            )
            frames, frame_rel, output = result.frames, result.frame_relevance, result.output
            explained = result.target
            shown: Any = result
        else:
            x = prepare_input(frames_t.float(), cfg.input_clamp).unsqueeze(1)
            rel, out = explain(model, x, target, composite, reward=args.reward, return_output=True)
            frames = frames_t.numpy()
            frame_rel = rel[:, 0].double().numpy()
            output = out[:, 0].double().numpy()
            explained = int(np.argmax(output.sum(0))) if target is None else int(target)
            shown = (frame_rel, frames)
    except (ValueError, TypeError) as err:
        raise UsageError(f"spikelfp explain: {' '.join(str(err).split())}") from None
    predicted = int(np.argmax(output.sum(0)))
    classes = list(data.classes)
    title = (
        f"{cfg.dataset} {split} #{args.index}: label {classes[int(label)]}, predicted "
        f"{classes[predicted]}; relevance for {classes[explained]} ({args.rule})"
    )
    fig = plot_explanation(shown, title=title)
    Path(args.output).expanduser().parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(Path(args.output).expanduser(), dpi=110)
    total = float(frame_rel.sum())
    spikes = float(output.sum(0)[explained])
    echo(title)
    what = f"{len(events)} events" if events is not None else f"{frames.size} input elements"
    reward_total = spikes if args.reward == "output" else 1.0
    echo(
        f"total relevance {total:.4g} over {what} (output reward {reward_total:.4g}: "
        f"{spikes:.0f} output spikes of class {classes[explained]}); most relevant time bin "
        f"{int(np.argmax(frame_rel.sum(axis=(1, 2, 3))))}"
    )
    echo(f"wrote {args.output}")
    if args.gif:
        save_relevance_gif(frame_rel, args.gif, frames=frames, title=f"class {explained}")
        echo(f"wrote {args.gif}")
    return 0
