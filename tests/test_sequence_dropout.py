"""SequenceDropout: one dropout mask per sample for all time steps, in the zoo, under LFP and BPTT,
removed at export."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikelfp import IF, SequenceDropout, Sequential
from spikelfp.hw_export import canonicalize
from spikelfp.lfp import DropoutRule, lfp_step, spike_count_softmax_reward
from spikelfp.training.config import ConfigError, TrainConfig
from spikelfp.training.models import ModelSpec, build_model, calibrate_firing, model_summary
from spikelfp.training.trainer import spec_from_config


def test_one_mask_per_sample_for_all_steps():
    torch.manual_seed(0)
    drop = SequenceDropout(0.5)
    y = drop(torch.ones(5, 3, 4, 6))
    assert torch.equal(y, y[:1].expand_as(y))  # the same units at every step
    assert set(y.unique().tolist()) == {0.0, 2.0}  # kept units scaled by 1/(1-p)
    assert not torch.equal(y[0, 0], y[0, 1])  # each sample its own mask
    kept = (y[0] > 0).float().mean().item()
    assert 0.3 < kept < 0.7
    drop.eval()
    x = torch.rand(5, 3, 4)
    assert drop(x) is x
    flat = torch.rand(3, 4)
    assert drop(flat) is flat  # eval: identity for any shape


@pytest.mark.parametrize("p", [1.0, -0.1, True, "0.5"])
def test_bad_probability_is_one_line(p):
    with pytest.raises(ValueError, match=r"SequenceDropout: p must be a probability in \[0, 1\)"):
        SequenceDropout(p)


def test_needs_time_first_input_in_training():
    with pytest.raises(ValueError, match="time-first"):
        SequenceDropout(0.5)(torch.ones(3, 4))


def test_sequential_hands_it_the_time_first_tensor():
    torch.manual_seed(1)
    net = Sequential(nn.Linear(4, 8), SequenceDropout(0.5))
    y, _ = net(torch.rand(6, 2, 4) + 1.0)
    dropped = y == 0
    assert dropped.any() and torch.equal(dropped, dropped[:1].expand_as(dropped))


def test_lfp_rule_rewards_kept_units_unscaled_and_dropped_ones_not_at_all():
    torch.manual_seed(2)
    drop = SequenceDropout(0.5)
    x = torch.rand(4, 3, 10, requires_grad=True)
    y = DropoutRule().forward(drop, x)
    keep = y.detach() != 0
    assert torch.equal(keep, keep[:1].expand_as(keep))
    r = torch.rand(4, 3, 10)
    (grad,) = torch.autograd.grad(y, x, r)
    assert torch.equal(grad, r * keep)  # reward of a kept unit passes on whole
    drop.eval()
    assert DropoutRule().forward(drop, x) is x


def test_lfp_step_gives_no_update_to_units_dropped_for_the_sequence():
    torch.manual_seed(3)
    net = Sequential(nn.Linear(6, 16), IF(), SequenceDropout(0.5), nn.Linear(16, 3), IF())
    x = (torch.rand(8, 1, 6) < 0.5).float()
    calibrate_firing(net, x, 0.3)
    seen = {}
    net[2].register_forward_hook(lambda m, i, o: seen.update(inp=i[0], out=o))
    lfp_step(net, x, torch.tensor([1]), spike_count_softmax_reward)
    active = seen["inp"][:, 0].sum(0) > 0
    dropped = active & (seen["out"][:, 0].sum(0) == 0)
    kept = active & (seen["out"][:, 0].sum(0) > 0)
    assert dropped.any() and kept.any()
    grad = net[0].weight.grad
    assert torch.all(grad[dropped] == 0)
    assert grad[kept].abs().sum() > 0


def test_zoo_places_it_before_every_linear_that_reads_spikes():
    spec = ModelSpec("nmnist-cnn", (2, 8, 8), 4, channels=(3, 3), hidden=12, dropout=0.25)
    kinds = [type(m).__name__ for m in build_model(spec)]
    assert kinds[-7:] == ["Flatten", "SequenceDropout", "Linear", "LIF"] + [
        "SequenceDropout",
        "Linear",
        "LIF",
    ]
    assert all(m.p == 0.25 for m in build_model(spec) if isinstance(m, SequenceDropout))
    mlp = [type(m).__name__ for m in build_model(ModelSpec("mlp", (2, 4, 4), 3, dropout=0.5))]
    assert mlp == ["Flatten", "Linear", "LIF", "SequenceDropout", "Linear", "LIF"]  # not the input
    plain = ModelSpec("nmnist-cnn", (2, 8, 8), 4, channels=(3, 3), hidden=12)
    assert not any(isinstance(m, nn.Dropout) for m in build_model(plain))
    assert model_summary(spec)["synops"] == model_summary(plain)["synops"]
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    old = plain.to_dict()
    del old["dropout"]  # a checkpoint from before dropout existed
    assert ModelSpec.from_dict(old).dropout == 0.0
    with pytest.raises(ValueError, match=r"dropout must be a probability in \[0, 1\)"):
        ModelSpec("mlp", (2, 4, 4), 3, dropout=1.0)


def test_export_removes_it_and_keeps_the_outputs():
    torch.manual_seed(4)
    spec = ModelSpec("nmnist-cnn", (2, 8, 8), 4, channels=(3, 3), hidden=12, dropout=0.5)
    net = build_model(spec).eval()
    canon = canonicalize(net)
    assert not any(isinstance(m, nn.Dropout) for m in canon.modules())
    x = (torch.rand(5, 2, 2, 8, 8) < 0.3).float()
    assert torch.equal(canon(x)[0], net(x)[0])


def test_config_and_cli_value():
    spec = spec_from_config(TrainConfig(model="mlp", dropout=0.3), (2, 4, 4), 3)
    assert spec.dropout == 0.3
    with pytest.raises(ConfigError, match=r"dropout must be a probability in \[0, 1\)"):
        TrainConfig.from_dict({"dropout": 1.0})
    with pytest.raises(ConfigError, match="dropout must be >= 0"):
        TrainConfig.from_dict({"dropout": -0.5})


def test_a_hardware_target_trains_without_it_and_init_graphs_refuse_it():
    from spikelfp.hw_export.target import adapt_spec

    spec = ModelSpec("speck-cnn", (2, 34, 34), 10, dropout=0.25)
    new, changes = adapt_spec(spec, "speck")
    assert new.dropout == 0.0 and "dropout=0.0" in changes  # kept spikes would not be integers
    assert adapt_spec(ModelSpec("speck-cnn", (2, 34, 34), 10), "speck")[0].dropout == 0.0
    with pytest.raises(ConfigError, match="an --init graph keeps its own layers: drop --dropout"):
        TrainConfig.from_dict({"init": "net.nir", "dropout": 0.25})


def test_the_nmnist_recipe_sets_it_for_lfp_only_and_an_init_graph_goes_without():
    from spikelfp.training.recipes import resolve_config

    assert resolve_config({"dataset": "nmnist"}).dropout == 0.25
    assert resolve_config({"dataset": "nmnist", "method": "bptt"}).dropout == 0.0
    assert resolve_config({"dataset": "nmnist", "model": "speck-cnn"}).dropout == 0.0
    assert resolve_config({"dataset": "nmnist", "init": "net.nir"}).dropout == 0.0
    with pytest.raises(ConfigError, match="drop --dropout"):
        resolve_config({"dataset": "nmnist", "init": "net.nir", "dropout": 0.25})
