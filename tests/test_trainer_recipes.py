"""The trainer with the zoo's conv models and the recipe-level settings (augmentation,
per-depth rules, per-layer learning rates, tuning split): it learns, and a resumed run is
exactly the uninterrupted one."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from spikelfp.lfp.synapse_rules import EpsilonRule, GammaRule
from spikelfp.training.config import ConfigError, TrainConfig
from spikelfp.training.trainer import TIMING_KEYS, Trainer, make_composite


def _cfg(root: Path, out: Path, **kw) -> TrainConfig:
    settings = dict(
        data_dir=str(root),
        out=str(out),
        model="speck-cnn",
        channels=[4, 8, 8],
        hidden=32,
        neuron="if",
        reset="subtract",
        reward="softmax",
        time_bins=6,
        epochs=2,
        batch_size=16,
        max_train_samples=96,
        max_eval_samples=40,
        val_fraction=0.2,
        tune_fraction=0.25,
        augment={"shift": 1, "drop": 0.05},
        lower_rule="gamma",
        lower_layers=2,
        lr_scaling="weight",
        lr=0.05,
        progress=False,
        seed=2,
    )
    settings.update(kw)
    return TrainConfig.from_dict(settings)


def _strip(history):
    return [{k: v for k, v in m.items() if k not in TIMING_KEYS} for m in history]


def test_resume_with_augmentation_and_scaled_lrs_is_exact(digits_root, tmp_path):
    # no schedule, so a 1-epoch run may be resumed to 2 epochs (interrupting without a kill)
    full = Trainer(_cfg(digits_root, tmp_path / "full", lr_schedule="none"), log=lambda m: None)
    assert full.eval_split == "tune"
    history = full.fit()
    assert len(history) == 2 and history[-1]["eval_split"] == "tune"

    part = Trainer(
        _cfg(digits_root, tmp_path / "part", lr_schedule="none", epochs=1), log=lambda m: None
    )
    part.fit()
    resumed = Trainer.resume(part.run_dir, {"epochs": 2}, log=lambda m: None)
    assert [g["lr"] for g in resumed.optimizer.param_groups] == [
        g["lr"] for g in full.optimizer.param_groups
    ]
    assert _strip(resumed.fit()) == _strip(history)
    for (name, a), b in zip(
        full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_per_layer_learning_rates_follow_the_calibrated_weights(digits_root, tmp_path):
    trainer = Trainer(_cfg(digits_root, tmp_path / "r", epochs=1), log=lambda m: None)
    synapses = [m for m in trainer.model if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    groups = trainer.optimizer.param_groups
    assert len(groups) == len(synapses)
    for group, layer in zip(groups, synapses, strict=True):
        assert group["lr"] == pytest.approx(0.05 * float(layer.weight.detach().abs().mean()))
        assert any(p is layer.weight for p in group["params"])
    one = Trainer(
        _cfg(digits_root, tmp_path / "s", epochs=1, lr_scaling="none"), log=lambda m: None
    )
    assert len(one.optimizer.param_groups) == 1


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_adamw_decays_apart_from_the_update(optimizer):
    """A weight that gets no feedback in a step (gradient 0): AdamW shrinks it by
    ``lr · decay``; Adam's L2 becomes the whole normalised update, a step of ``lr``."""
    from spikelfp.training.trainer import _make_optimizer

    layer = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -0.5]]))
    cfg = TrainConfig(optimizer=optimizer, lr=0.01, weight_decay=0.1)
    opt = _make_optimizer(cfg, layer)
    layer.weight.grad = torch.zeros_like(layer.weight)
    opt.step()
    want = (
        [0.5 * (1 - 0.01 * 0.1), -0.5 * (1 - 0.01 * 0.1)] if optimizer == "adamw" else [0.49, -0.49]
    )
    assert layer.weight.detach()[0].tolist() == pytest.approx(want, rel=1e-5)


def test_composite_by_depth():
    from spikelfp import IF, Sequential

    net = Sequential(
        torch.nn.Conv2d(2, 4, 3), IF(), torch.nn.Flatten(), torch.nn.Linear(4, 3), IF()
    )
    comp = make_composite(TrainConfig(lower_rule="gamma", lower_layers=1), net)
    assert isinstance(comp.rule_for(net[0], "0"), GammaRule)
    assert isinstance(comp.rule_for(net[3], "3"), EpsilonRule)
    plain = make_composite(TrainConfig(), net)
    assert plain.names == {}
    # --epsilon E: the stabiliser of every synapse rule, lower layers' included; the neuron
    # rules keep theirs
    eps = make_composite(TrainConfig(lower_rule="gamma", lower_layers=1, epsilon=0.25), net)
    assert eps.rule_for(net[0], "0").epsilon == eps.rule_for(net[3], "3").epsilon == 0.25
    assert plain.rule_for(net[3], "3").epsilon == 0.0
    assert eps.rule_for(net[1], "1") == plain.rule_for(net[1], "1")
    with pytest.raises(ConfigError, match="epsilon must be >= 0"):
        TrainConfig.from_dict({"epsilon": -0.1})


def test_speck_cnn_learns_with_lfp(digits_root, tmp_path):
    cfg = _cfg(
        digits_root,
        tmp_path / "learn",
        epochs=3,
        max_train_samples=400,
        tune_fraction=0.0,
        augment={},
        lower_layers=0,
        lr_scaling="none",
        lr=3e-3,
        channels=[8, 16, 16],
        hidden=64,
    )
    history = Trainer(cfg, log=lambda m: None).fit()
    assert history[-1]["eval_acc"] > 0.3, history[-1]  # chance: 0.1


def test_lr_warmup_rises_step_by_step_then_follows_the_schedule_and_resumes_exactly(
    digits_root, tmp_path
):
    """``--lr-warmup 1.5``: every optimiser step's rate (each layer's own, under lr scaling)
    is the schedule's times ``min(1, step / (1.5 · steps per epoch))``; the cosine schedule
    itself is unchanged by it, and a run resumed after its first epoch steps as the whole."""
    cfg = _cfg(digits_root, tmp_path / "w", epochs=3, lr_warmup=1.5)
    tr = Trainer(cfg, log=lambda m: None)
    seen = []
    tr.optimizer.register_step_pre_hook(
        lambda opt, *_: seen.append([g["lr"] for g in opt.param_groups])
    )
    history = tr.fit()
    n = len(seen) // 3
    assert n > 1 and len(seen) == 3 * n
    base = [g["initial_lr"] for g in tr.optimizer.param_groups]
    for step, lrs in enumerate(seen):
        epoch, batch = divmod(step, n)
        cos = 0.5 * (1 + math.cos(math.pi * epoch / 3))
        warm = min(1.0, (step + 1) / (1.5 * n))
        assert lrs == pytest.approx([b * cos * warm for b in base], rel=1e-9), step
    assert [m["lr"] for m in history] == pytest.approx(
        [base[0] * 0.5 * (1 + math.cos(math.pi * e / 3)) for e in range(3)], rel=1e-9
    )

    def run(out, **kw):
        return _cfg(digits_root, tmp_path / out, lr_schedule="none", lr_warmup=1.5, **kw)

    full = Trainer(run("full"), log=lambda m: None)
    history = full.fit()
    part = Trainer(run("part", epochs=1), log=lambda m: None)
    part.fit()
    resumed = Trainer.resume(part.run_dir, {"epochs": 2}, log=lambda m: None)
    assert _strip(resumed.fit()) == _strip(history)
    for a, b in zip(
        full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_lr_warmup_must_not_be_negative():
    with pytest.raises(ConfigError, match="lr.warmup"):
        TrainConfig.from_dict({"lr_warmup": -1})


def test_reward_temperature_divides_the_counts_of_the_softmax_reward(digits_root, tmp_path):
    """``--reward-temperature 2``: the trainer's reward is the softmax error of counts / 2, and
    a reward that has no softmax refuses a temperature in one line."""
    trainer = Trainer(
        _cfg(digits_root, tmp_path / "t", epochs=0, reward_temperature=2.0), log=lambda m: None
    )
    spikes = torch.zeros(4, 2, 3)
    spikes[:, 0, 1] = 1  # sample 0: class 1 fires at every step, 4 spikes
    labels = torch.tensor([0, 2])
    onehot = torch.nn.functional.one_hot(labels, 3).float()
    want = (onehot - torch.softmax(spikes.sum(0) / 2.0, dim=-1)) / 4
    torch.testing.assert_close(trainer.reward_fn(spikes, labels), want.expand(4, 2, 3))
    # τ = 1 would reward the silent correct class of sample 0 more: 1 − 1/(2 + e⁴) vs 1 − 1/(2 + e²)
    assert want[0, 0] < (1 - 1 / (2 + math.e**4)) / 4
    with pytest.raises(ConfigError, match="use --reward softmax or drop --reward-temperature"):
        TrainConfig.from_dict({"reward": "rate", "reward_temperature": 2.0})
    with pytest.raises(ConfigError, match="reward-temperature must be > 0"):
        TrainConfig.from_dict({"reward": "softmax", "reward_temperature": 0.0})
