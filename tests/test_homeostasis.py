"""Homeostatic synaptic scaling (``--rate-floor``): a hidden layer below the floor gets its
synapse scaled up by the documented gain, the output layer and layers above the floor never,
and the trainer applies it after every step (resumed runs stay exact)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikelfp import IF, Sequential
from spikelfp.training import Trainer
from spikelfp.training.config import ConfigError, TrainConfig
from spikelfp.training.homeostasis import RateFloor


def _net():
    torch.manual_seed(0)
    return Sequential(
        nn.Linear(6, 8), IF(threshold=1.0), nn.Linear(8, 8), IF(threshold=1.0),
        nn.Linear(8, 3), IF(threshold=1e6),
    )  # fmt: skip


def test_gain_follows_the_rate_below_the_floor_and_is_capped():
    net = _net()
    x = (torch.rand(10, 4, 6) < 0.5).float()
    with RateFloor(net, floor=0.9, eta=0.5, max_gain=10.0) as floor:
        out1, _ = net[:2](x)
        out2, _ = net(x)
        r1 = float(out1.detach().mean())  # the first layer ran twice: its mean over both
        rates = floor.rates()
    assert rates[0] == pytest.approx(r1) and len(rates) == 2  # the output layer is not scaled
    w = [net[0].weight.detach().clone(), net[2].weight.detach().clone()]
    b0 = net[0].bias.detach().clone()
    out_w = net[4].weight.detach().clone()
    gains = floor.after_step()
    for g, r in zip(gains, rates, strict=True):
        assert g == pytest.approx(min(10.0, (0.9 / max(r, 1e-4)) ** 0.5))
    torch.testing.assert_close(net[0].weight, gains[0] * w[0])
    torch.testing.assert_close(net[0].bias, gains[0] * b0)
    torch.testing.assert_close(net[2].weight, gains[1] * w[1])
    assert torch.equal(net[4].weight, out_w)
    assert floor.rates() == [None, None]  # counting starts afresh
    # capped: a silent layer gets max_gain; a layer at or above the floor gets nothing
    assert RateFloor(net, 0.5, max_gain=1.05).after_step([0.0, 0.7]) == [1.05, 1.0]


def test_hooks_are_removed_on_exit():
    net = _net()
    with RateFloor(net, 0.1):
        pass
    assert all(not m._forward_hooks for m in net)


@pytest.mark.parametrize(
    ("kw", "what"),
    [
        ({"floor": 0.0}, "floor"),
        ({"floor": 1.0}, "floor"),
        ({"floor": 0.1, "eta": 0.0}, "eta"),
        ({"floor": 0.1, "max_gain": 1.0}, "max_gain"),
    ],
)
def test_bad_settings_are_refused(kw, what):
    with pytest.raises(ValueError, match=what):
        RateFloor(_net(), **kw)


def test_config_refuses_a_rate_floor_outside_0_1():
    with pytest.raises(ConfigError, match="rate-floor"):
        TrainConfig.from_dict({"rate_floor": 1.5})
    with pytest.raises(ConfigError, match="rate-floor"):
        TrainConfig.from_dict({"rate_floor": -0.1})


def _cfg(root, out, **kw):
    settings = dict(
        data_dir=str(root), out=str(out), model="mlp", hidden=16, time_bins=6, epochs=2,
        batch_size=16, max_train_samples=64, max_eval_samples=32, progress=False,
        lr_schedule="none", rate_floor=0.5, seed=1,
    )  # fmt: skip
    settings.update(kw)
    return TrainConfig.from_dict(settings)


def test_the_trainer_scales_silent_layers_after_each_step_and_resumes_exactly(
    digits_root, tmp_path
):
    plain = Trainer(_cfg(digits_root, tmp_path / "p", rate_floor=0.0, epochs=1), log=print)
    floored = Trainer(_cfg(digits_root, tmp_path / "f", epochs=1), log=print)
    assert plain.rate_floor is None and floored.rate_floor is not None
    p_hist, f_hist = plain.fit(), floored.fit()
    # a floor of 0.5 spikes per step is far above what the hidden layer fires at: it is
    # scaled up at every step and fires more than without the floor
    assert f_hist[-1]["train_spike_rate"]["hidden1"] > p_hist[-1]["train_spike_rate"]["hidden1"]
    full = Trainer(_cfg(digits_root, tmp_path / "full"), log=print)
    history = full.fit()
    part = Trainer(_cfg(digits_root, tmp_path / "part", epochs=1), log=print)
    part.fit()
    resumed = Trainer.resume(part.run_dir, {"epochs": 2}, log=print)
    strip = lambda h: [{k: v for k, v in m.items() if not k.endswith(("_s", "per_s"))} for m in h]  # noqa: E731
    assert strip(resumed.fit()) == strip(history)
    for a, b in zip(
        full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_a_floor_below_every_rate_changes_nothing_and_the_epoch_rates_stay_exact(
    digits_root, tmp_path
):
    """The trainer reads its epoch spike rates from the floor's own recorder (each spike is
    counted once): with a floor no layer falls below, the run equals a run without it, spike
    rates included (a recorder restarted at every step would report the last step's)."""
    plain = Trainer(_cfg(digits_root, tmp_path / "p", rate_floor=0.0), log=print)
    floored = Trainer(_cfg(digits_root, tmp_path / "f", rate_floor=1e-9), log=print)
    strip = lambda h: [{k: v for k, v in m.items() if not k.endswith(("_s", "per_s"))} for m in h]  # noqa: E731
    assert strip(floored.fit()) == strip(plain.fit())
    assert all(not m._forward_hooks for m in floored.model)
