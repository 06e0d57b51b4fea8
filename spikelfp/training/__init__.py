"""Training on event datasets: the :class:`Trainer`, its configuration, the model zoo and the
surrogate-gradient baseline (the ``spikelfp`` command line on top of it is ``spikelfp.cli``).

>>> from spikelfp.training import TrainConfig, Trainer      # doctest: +SKIP
>>> Trainer(TrainConfig(epochs=8, out="runs/digits")).fit()  # doctest: +SKIP

The public API for your own code (all importable from ``spikelfp.training``):

* :func:`load_run` — a run folder as ``model, config, checkpoint`` (``.evaluate(split)``);
* :func:`evaluate` — accuracy, per-class accuracy, confusion matrix, loss and spike rates of
  any model on ``(x, y)`` batches;
* :func:`calibrate_firing` — scale a new network's initial weights until each layer fires at a
  target rate (LFP only moves reward along spikes: a silent layer gets no feedback);
* :class:`ModelSpec` / :func:`build_model` — the model zoo; :func:`open_split` — a dataset
  split as the trainer opens it; :class:`TrainConfig`, :class:`Trainer`;
* :class:`DFA`, :class:`DRTP`, :class:`EProp` — the backprop-free baselines
  (``--method dfa|drtp|eprop``, ``docs/methods.md``); :data:`LOCAL_RULES` maps the names to them;
* :class:`PruneSchedule`, :class:`GradualPruner` — pruning during training (``--prune-to``).
* :class:`RateFloor` — homeostatic synaptic scaling of near-silent hidden layers (``--rate-floor``).
"""

from .bptt import fast_sigmoid_spike, spike_count_ce_loss, surrogate
from .checkpoint import CheckpointError, load_checkpoint
from .config import ConfigError, TrainConfig, load_config_file
from .data import DataError, open_split
from .eprop import EProp
from .evaluate import evaluate
from .feedback_alignment import DFA, DRTP
from .homeostasis import RateFloor
from .local_rules import LOCAL_RULES
from .models import MODELS, ModelSpec, build_model, calibrate_firing, calibrate_firing_online
from .pruning_schedule import GradualPruner, PruneSchedule
from .runs import LoadedRun, load_run
from .trainer import RunExistsError, Trainer, build_from_checkpoint, make_reward

__all__ = [
    "DFA",
    "DRTP",
    "LOCAL_RULES",
    "MODELS",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "EProp",
    "GradualPruner",
    "LoadedRun",
    "ModelSpec",
    "PruneSchedule",
    "RateFloor",
    "RunExistsError",
    "TrainConfig",
    "Trainer",
    "build_from_checkpoint",
    "build_model",
    "calibrate_firing",
    "calibrate_firing_online",
    "evaluate",
    "fast_sigmoid_spike",
    "load_checkpoint",
    "load_config_file",
    "load_run",
    "make_reward",
    "open_split",
    "spike_count_ce_loss",
    "surrogate",
]
