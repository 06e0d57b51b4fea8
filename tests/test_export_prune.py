"""Pruning: exact sparsity, copies not mutation, feedback scores, the sparsity report."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikelfp import LIF, RLIF, Sequential
from spikelfp.hw_export import (
    FeedbackAccumulator,
    NonFiniteParameterError,
    accumulate_feedback,
    apply_masks_,
    feedback_prune,
    magnitude_prune,
    prunable_parameters,
    prune_masks,
    sparsity_report,
)
from spikelfp.lfp import lfp_step, rate_coded_reward


def _net(seed=0):
    torch.manual_seed(seed)
    return Sequential(
        nn.Linear(20, 16),
        LIF(threshold=0.3),
        nn.Linear(16, 16),
        RLIF(16, threshold=0.3),
        nn.Linear(16, 4),
        LIF(threshold=0.3),
    )


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.8, 0.9, 1.0])
def test_magnitude_prune_hits_the_target_and_returns_a_copy(scope, sparsity):
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    pruned = magnitude_prune(net, sparsity, scope)
    assert pruned is not net
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])  # never mutates its input
    params = prunable_parameters(pruned)
    total = sum(p.numel() for p in params.values())
    zeros = sum(int((p == 0).sum()) for p in params.values())
    assert zeros == round(sparsity * total) or scope == "layer"
    assert abs(zeros / total - sparsity) < 0.01
    if scope == "layer":
        for p in params.values():
            assert abs(float((p == 0).float().mean()) - sparsity) < 1.0 / p.numel() + 1e-9
    assert torch.equal(pruned[0].bias, net[0].bias)  # biases are kept


def test_global_magnitude_prunes_the_smallest_weights():
    net = _net()
    pruned = magnitude_prune(net, 0.7)
    kept = torch.cat([p[p != 0].abs() for p in prunable_parameters(pruned).values()])
    gone = torch.cat(
        [
            o[n == 0].abs()
            for o, n in zip(
                prunable_parameters(net).values(), prunable_parameters(pruned).values(), strict=True
            )
        ]
    )
    assert gone.max() <= kept.min()


def test_feedback_prune_follows_the_scores_not_the_magnitude():
    net = _net()
    params = prunable_parameters(net)
    scores = {n: torch.ones_like(p) for n, p in params.items()}
    w = net[0].weight.detach().abs()
    big = w > w.median()
    scores["0.weight"] = (~big).float()  # the large weights never received feedback
    total = sum(p.numel() for p in params.values())
    pruned = feedback_prune(net, scores, big.sum().item() / total)
    assert bool((pruned[0].weight[big] == 0).all())  # exactly those are removed
    assert bool((pruned[0].weight[~big] != 0).all())


def test_feedback_accumulator_and_accumulate_feedback():
    net = _net()
    x = (torch.rand(8, 6, 20) < 0.4).float()
    y = torch.randint(0, 4, (6,))
    acc = FeedbackAccumulator(net)
    with pytest.raises(RuntimeError, match="lfp_step"):
        acc.update()
    for _ in range(2):
        lfp_step(net, x, y, rate_coded_reward)
        acc.update()
    assert acc.steps == 2
    assert set(acc.scores) == {"0.weight", "2.weight", "3.recurrent_weight", "4.weight"}
    assert all(bool((s >= 0).all()) for s in acc.scores.values())
    assert acc.scores["0.weight"].sum() > 0
    scores = accumulate_feedback(net, [(x, y), (x, y)], rate_coded_reward)
    torch.testing.assert_close(scores["0.weight"], acc.scores["0.weight"])
    pruned = feedback_prune(net, acc, 0.8)
    assert abs(sparsity_report(pruned).sparsity - 0.8) < 1e-3


def test_masks_in_place_and_errors():
    net = _net()
    masks = prune_masks(net, 0.5)
    same = apply_masks_(net, masks)
    assert same is net
    assert abs(sparsity_report(net).sparsity - 0.5) < 1e-3
    with pytest.raises(ValueError, match="fraction"):
        magnitude_prune(net, 80)
    with pytest.raises(ValueError, match="scope"):
        magnitude_prune(net, 0.5, scope="neuron")
    with pytest.raises(KeyError, match="unknown"):
        prune_masks(net, 0.5, scores={"nope": torch.ones(1)})
    with pytest.raises(ValueError, match="no prunable"):
        magnitude_prune(Sequential(LIF()), 0.5)
    bad = _net()
    with torch.no_grad():
        bad[0].weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteParameterError, match="0.weight"):
        magnitude_prune(bad, 0.5)


def test_sparsity_report_counts():
    net = Sequential(nn.Linear(4, 3), LIF(), nn.Linear(3, 2), LIF())
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [1.0, 1.0, 0, 0], [0, 0, 0, 0]]))
        net[2].weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [0, 0, 0]]))
    rep = sparsity_report(net)
    first, second = rep.layers
    assert (first.weights, first.nonzero, first.synapses) == (12, 3, 3)
    assert (first.fan_in_max, first.dead_neurons, first.unused_inputs) == (2, 1, 2)
    assert first.fan_out_max == 2
    assert (second.dead_neurons, second.fan_in_mean) == (1, 1.5)
    assert rep.nonzero == 6 and rep.sparsity == pytest.approx(1 - 6 / 18)
    assert "dead neurons" in str(rep)
    assert rep.to_dict()["layers"][0]["sparsity"] == pytest.approx(0.75)


def test_sparsity_report_conv_synapses_and_silent_neurons():
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 1.0  # centre tap only
        conv.weight[0, 0, 0, 0] = 1.0  # corner tap: misses the padded border
    net = Sequential(conv, LIF(threshold=0.5))
    rep = sparsity_report(net, input_shape=(1, 4, 4))
    assert rep.layers[0].synapses == 16 + 9
    data = torch.zeros(3, 2, 1, 4, 4)
    rep = sparsity_report(net, input_shape=(1, 4, 4), data=data)
    assert rep.silent["1"] == (16, 16)
