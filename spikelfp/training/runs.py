"""A run folder in Python: the trained model, its configuration and its checkpoint.

>>> from spikelfp.training import load_run                      # doctest: +SKIP
>>> model, config, checkpoint = load_run("runs/digits")          # doctest: +SKIP
>>> load_run("runs/digits").evaluate("test")["accuracy"]         # doctest: +SKIP
0.95

``docs/run_folder.md`` describes every file of a run folder.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

from torch import nn

from .checkpoint import CheckpointError, load_checkpoint
from .config import ConfigError, TrainConfig

__all__ = ["LoadedRun", "evaluate_checkpoint", "load_run", "trained_network"]


class LoadedRun(NamedTuple):
    """What :func:`load_run` returns; unpacks as ``model, config, checkpoint``.

    Attributes:
        model: the trained :class:`spikelfp.Sequential` (eval mode) with the weights of the
            last completed epoch; for a run trained with ``--target``, the target's integer
            network (``spikelfp.training.runs.trained_network``).
        config: the run's :class:`~spikelfp.training.TrainConfig` (as ``config.yaml`` holds it).
        checkpoint: the loaded checkpoint dict (``epoch``, ``history``, ``classes``,
            ``model_spec``, optimiser state, ...; ``path`` is the file it came from).
    """

    model: nn.Module
    config: TrainConfig
    checkpoint: dict[str, Any]

    @property
    def epoch(self) -> int:
        """Completed epochs."""
        return int(self.checkpoint["epoch"])

    @property
    def history(self) -> list[dict[str, Any]]:
        """The metrics of every completed epoch (as ``metrics.jsonl``)."""
        return list(self.checkpoint["history"])

    @property
    def classes(self) -> list[str]:
        """Class names, indexed by output neuron."""
        n = int(self.checkpoint["model_spec"]["n_classes"])
        return [str(c) for c in self.checkpoint.get("classes", range(n))]

    def evaluate(self, split: str = "test", **changes: Any) -> dict[str, Any]:
        """Accuracy, per-class accuracy, confusion matrix, loss and spike rates of the model on
        ``split`` (``train``, ``tune``, ``val``, ``test``) of the run's dataset, as
        ``spikelfp eval`` computes them, on the whole split. ``changes`` override config
        fields for the data (e.g. ``data_dir=...``, ``max_eval_samples=200``,
        ``batch_size=256``)."""
        # like `spikelfp eval`: the whole split unless asked otherwise
        settings = {"max_train_samples": None, "max_eval_samples": None, **changes}
        cfg = self.config.replace(**settings)
        return evaluate_checkpoint(self.checkpoint, cfg, split, model=self.model)


def trained_network(ckpt: dict[str, Any]) -> nn.Module:
    """The network a checkpoint's run trained: the float model rebuilt from its spec and
    weights, or for a run trained with ``--target`` the target's integer network (what the
    run trained and evaluated)."""
    from .models import ModelSpec
    from .trainer import _target_training, build_from_checkpoint

    model = build_from_checkpoint(ckpt)
    trained = _target_training(model, ModelSpec.from_dict(ckpt["model_spec"]))
    return model if trained is None else trained.evaluation_model()


def evaluate_checkpoint(
    ckpt: dict[str, Any], cfg: TrainConfig, split: str, model: nn.Module | None = None
) -> dict[str, Any]:
    """Evaluate a checkpoint's model (or ``model``) on ``split`` of ``cfg``'s dataset, as
    ``spikelfp eval`` does.

    Args:
        ckpt: a loaded checkpoint (:func:`~spikelfp.training.load_checkpoint`).
        cfg: the data settings (dataset, folders, frames, batch size, subsets).
        split: ``train``, ``tune``, ``val`` or ``test``.
        model: the network to evaluate; default: the checkpoint's, rebuilt (for a run trained
            with ``--target``, the target's integer network, which is what was trained).

    Returns:
        :func:`~spikelfp.training.evaluate`'s dict (accuracy, per-class accuracy, confusion
        matrix, loss, spike rates) plus ``dataset``, ``split`` and ``classes``. Raises
        :class:`~spikelfp.training.CheckpointError` when the data's frames or classes do not
        fit the model.
    """
    from torch.utils.data import DataLoader

    from .data import collate, open_split
    from .evaluate import evaluate

    if model is None:
        model = trained_network(ckpt)
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


def load_run(path: str | os.PathLike[str], *, device: str = "cpu") -> LoadedRun:
    """Load a run folder (or its ``checkpoint.pt``): ``model, config, checkpoint``.

    The model is rebuilt from the checkpoint's model spec, loaded with the weights of the last
    completed epoch and put in eval mode on ``device``; for a run trained with ``--target`` it
    is the target's integer network, which is what the run trained and what ``spikelfp eval``
    scores (``spikelfp.training.runs.trained_network``). Raises
    :class:`~spikelfp.training.CheckpointError` (one line: what is wrong with which file) when
    the folder holds no readable checkpoint.
    """
    ckpt = load_checkpoint(path)
    try:
        config = TrainConfig.from_stored(ckpt["config"])
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"{ckpt['path']}: invalid stored config ({err})") from None
    model = trained_network(ckpt).to(device).eval()
    return LoadedRun(model, config, ckpt)
