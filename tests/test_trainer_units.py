"""Trainer building blocks: config, data order, checkpoints, calibration, models."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from spikelfp.training import ConfigError, TrainConfig
from spikelfp.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_atomic,
    set_rng_state,
)
from spikelfp.training.data import EpochSampler, epoch_permutation
from spikelfp.training.models import ModelSpec, build_model, calibrate_firing


def test_epoch_order_is_a_function_of_seed_and_epoch():
    a = epoch_permutation(50, seed=4, epoch=2)
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(a, epoch_permutation(50, seed=4, epoch=2))
    assert not torch.equal(a, epoch_permutation(50, seed=4, epoch=3))
    s = EpochSampler(50, seed=4)
    s.set_epoch(2)
    assert list(s) == a.tolist()
    assert sorted(s) == list(range(50))


def test_sampler_matches_distributed_single_process_sampler():
    dist = pytest.importorskip("spikelfp.training.distributed")
    ours = EpochSampler(30, seed=7)
    theirs = dist.make_sampler(range(30), shuffle=True, seed=7)
    for epoch in range(3):
        ours.set_epoch(epoch)
        theirs.set_epoch(epoch)
        assert list(ours) == list(theirs)


def test_config_validation_messages():
    with pytest.raises(ConfigError, match="unknown dataset"):
        TrainConfig(dataset="cifar").validate()
    with pytest.raises(ConfigError, match="batch-size must be >= 1"):
        TrainConfig.from_dict({"batch_size": 0})
    with pytest.raises(ConfigError, match="unknown configuration key 'lrate'"):
        TrainConfig.from_dict({"lrate": 0.1})
    cfg = TrainConfig.from_dict({"init-rate": 0.2, "lr": "0.01"})
    assert cfg.init_rate == [0.2] and cfg.lr == 0.01
    assert TrainConfig(val_fraction=0.2).resolved_eval_split == "val"
    assert TrainConfig().resolved_eval_split == "test"


def test_atomic_checkpoint_and_rng_roundtrip(tmp_path):
    torch.manual_seed(5)
    np.random.seed(5)  # noqa: NPY002 - the legacy global RNG is what is saved
    random.seed(5)
    state = rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    path = save_atomic(
        {
            "format": "spikelfp-checkpoint",
            "version": 1,
            "config": {},
            "model_spec": {},
            "model": {},
            "epoch": 0,
            "history": [],
            "rng": state,
        },
        tmp_path / "c.pt",
    )
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary left behind
    ckpt = load_checkpoint(path)  # weights_only=True: plain values and tensors only
    set_rng_state(ckpt["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1]) and expected[2] == again[2]


def test_truncated_checkpoint_is_reported(tmp_path):
    path = save_atomic({"format": "spikelfp-checkpoint"}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="incomplete"):
        load_checkpoint(path)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(path)


@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_models_and_calibration(name):
    torch.manual_seed(0)
    spec = ModelSpec(name, (2, 16, 16), 5, hidden=40, channels=(4, 6))
    net = build_model(spec)
    x = (torch.rand(10, 16, 2, 16, 16) < 0.05).float()
    out, _ = net(x)
    assert out.shape == (10, 16, 5)
    n_neuron_layers = 2 if name == "mlp" else 3
    gains = calibrate_firing(net, x, [0.2] * (n_neuron_layers - 1) + [0.1])
    assert len(gains) == n_neuron_layers
    from spikelfp.training.evaluate import SpikeRecorder

    with SpikeRecorder(net) as rec:
        net(x)
    rates = list(rec.rates().values())
    assert all(0.05 < r < 0.4 for r in rates[:-1]), rates
    assert 0.02 < rates[-1] < 0.3, rates
    assert ModelSpec.from_dict(spec.to_dict()) == spec


def test_library_api_trains(digits_root, tmp_path):
    """The Trainer works without the CLI."""
    from spikelfp.training import Trainer

    cfg = TrainConfig(
        data_dir=str(digits_root),
        epochs=1,
        time_bins=4,
        hidden=16,
        max_train_samples=30,
        max_eval_samples=20,
        progress=False,
        out=str(tmp_path / "run"),
        reward="softmax",
        optimizer="sgd",
        lr=0.05,
    )
    history = Trainer(cfg).fit()
    assert len(history) == 1 and history[0]["n_train"] == 30
    ev = Trainer.resume(tmp_path / "run").evaluate("test")
    assert ev["n_samples"] == 20
