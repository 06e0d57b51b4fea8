"""The trainer's backprop-free local methods, by name: ``dfa``, ``drtp``, ``eprop``.

:data:`LOCAL_RULES` maps a ``--method`` name to its rule class
(:class:`~spikelfp.training.feedback_alignment.DFA`,
:class:`~spikelfp.training.feedback_alignment.DRTP`,
:class:`~spikelfp.training.eprop.EProp`); :func:`make_local_rule` builds the rule of a config
for a model, or raises a one-line :class:`~spikelfp.training.config.ConfigError` naming the
layer the method cannot train. Equations and memory: ``docs/methods.md``.

>>> from spikelfp.training import TrainConfig, ModelSpec, build_model
>>> spec = ModelSpec("conv", (2, 8, 8), 3, batch_norm=True)
>>> make_local_rule(TrainConfig(method="eprop"), build_model(spec), spec)
Traceback (most recent call last):
...
spikelfp.training.config.ConfigError: eprop cannot train layer 1 (BatchNorm2d) between a synapse and its neurons (batch norm is not supported there); build the model without --batch-norm
"""  # noqa: E501

from __future__ import annotations

from torch import nn

from .config import ConfigError, TrainConfig
from .eprop import EProp
from .feedback_alignment import DFA, DRTP, UnsupportedLayerError
from .models import ModelSpec

__all__ = ["LOCAL_RULES", "make_local_rule"]

#: rule class per ``--method`` name
LOCAL_RULES: dict[str, type[DFA] | type[EProp]] = {"dfa": DFA, "drtp": DRTP, "eprop": EProp}


def make_local_rule(cfg: TrainConfig, model: nn.Module, spec: ModelSpec) -> DFA | EProp:
    """The local rule of ``cfg.method`` for ``model`` (a zoo model built from ``spec``): its
    feedback matrices seeded with ``cfg.seed``, its pseudo-derivative slope
    ``cfg.surrogate_slope``.

    Args:
        cfg: the run's configuration (``method`` must be a key of :data:`LOCAL_RULES`).
        model: the network.
        spec: its :class:`ModelSpec` (frame shape and classes).

    Returns:
        The rule (an ``nn.Module`` whose ``state_dict`` holds the feedback matrices).

    Raises:
        ConfigError: the method cannot train one of the model's layers (one line).
    """
    rule = LOCAL_RULES.get(cfg.method)
    if rule is None:
        raise ConfigError(
            f"{cfg.method!r} is not a local method; choose one of {', '.join(LOCAL_RULES)}"
        )
    try:
        return rule(
            model, spec.input_shape, spec.n_classes, seed=cfg.seed, slope=cfg.surrogate_slope
        )
    except UnsupportedLayerError as err:
        raise ConfigError(str(err)) from None
