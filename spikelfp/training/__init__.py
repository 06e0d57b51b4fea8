"""Training on event datasets: the :class:`Trainer`, its configuration, the model zoo, the
surrogate-gradient baseline and the ``spikelfp`` command line (:mod:`.cli`).

>>> from spikelfp.training import TrainConfig, Trainer      # doctest: +SKIP
>>> Trainer(TrainConfig(epochs=8, out="runs/digits")).fit()  # doctest: +SKIP
"""

from .bptt import fast_sigmoid_spike, spike_count_ce_loss, surrogate
from .checkpoint import CheckpointError, load_checkpoint
from .config import ConfigError, TrainConfig, load_config_file
from .data import DataError, open_split
from .evaluate import evaluate
from .models import MODELS, ModelSpec, build_model, calibrate_firing
from .trainer import RunExistsError, Trainer, build_from_checkpoint, make_reward

__all__ = [
    "MODELS",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ModelSpec",
    "RunExistsError",
    "TrainConfig",
    "Trainer",
    "build_from_checkpoint",
    "build_model",
    "calibrate_firing",
    "evaluate",
    "fast_sigmoid_spike",
    "load_checkpoint",
    "load_config_file",
    "make_reward",
    "open_split",
    "spike_count_ce_loss",
    "surrogate",
]
