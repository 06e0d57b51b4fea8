"""The surrogate-gradient baseline: same model, same forward, a gradient that flows."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikelfp import IF, LI, LIF, RLIF, CubaLIF, Sequential
from spikelfp.neurons import ALIF
from spikelfp.training import TrainConfig, Trainer
from spikelfp.training.bptt import fast_sigmoid_spike, spike_count_ce_loss, surrogate
from spikelfp.training.models import ModelSpec, build_model

NEURONS = [
    lambda: LIF(beta=0.9, threshold=0.5),
    lambda: LIF(beta=0.8, threshold=0.5, reset="subtract", reset_delay=True),
    lambda: LIF(beta=0.8, threshold=0.5, reset="none"),
    lambda: IF(threshold=0.5),
    lambda: CubaLIF(alpha=0.5, beta=0.8, threshold=0.5),
    lambda: ALIF(beta=0.9, threshold=0.5),
    lambda: RLIF(6, beta=0.9, threshold=0.5),
    lambda: LI(beta=0.9),
]


@pytest.mark.parametrize("make", NEURONS)
def test_surrogate_forward_is_the_same_network(make):
    torch.manual_seed(1)
    net = Sequential(nn.Linear(4, 6), make())
    x = torch.rand(12, 3, 4) * 2
    ref, ref_state = net(x)
    keys = set(net.state_dict())
    with surrogate(net):
        out, state = net(x)
    assert torch.equal(ref, out)
    for a, b in zip(ref_state[1], state[1], strict=True):
        assert torch.allclose(a, b)
    assert set(net.state_dict()) == keys and "forward" not in vars(net[1])


def test_gradient_flows_only_with_surrogate():
    torch.manual_seed(0)
    net = build_model(ModelSpec("mlp", (2, 6, 6), 4, hidden=16, threshold=0.3))
    x = (torch.rand(8, 5, 2, 6, 6) < 0.3).float()
    y = torch.tensor([0, 1, 2, 3, 0])
    spike_count_ce_loss(net(x)[0], y).backward()
    assert all(float(p.grad.abs().sum()) == 0 for p in net.parameters())  # Heaviside: zero
    net.zero_grad()
    with surrogate(net):
        loss = spike_count_ce_loss(net(x)[0], y)
    loss.backward()
    assert float(net[1].weight.grad.abs().sum()) > 0


def test_fast_sigmoid_derivative():
    v = torch.linspace(-1, 1, 5, requires_grad=True)
    fast_sigmoid_spike(v, slope=4.0).sum().backward()
    assert torch.allclose(v.grad, 1 / (4 * v.detach().abs() + 1) ** 2)


def test_bptt_trains_the_same_architecture(digits_root, tmp_path):
    common = dict(
        data_dir=str(digits_root),
        time_bins=16,
        hidden=64,
        max_train_samples=200,
        max_eval_samples=60,
        batch_size=10,
        epochs=3,
        progress=False,
        seed=1,
    )
    bptt = Trainer(TrainConfig(method="bptt", lr=2e-3, out=str(tmp_path / "bptt"), **common))
    before = {k: v.clone() for k, v in bptt.model.state_dict().items()}
    history = bptt.fit()
    after = bptt.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["train_acc"] > 0.3  # 10 classes: chance is 0.1
    lfp = Trainer(
        TrainConfig(
            method="lfp",
            epochs=0,
            out=str(tmp_path / "lfp"),
            **{k: v for k, v in common.items() if k != "epochs"},
        )
    )
    # identical parameters and state_dict layout: checkpoints are interchangeable
    assert {k: v.shape for k, v in lfp.model.state_dict().items()} == {
        k: v.shape for k, v in after.items()
    }
    ckpt = torch.load(tmp_path / "bptt" / "checkpoint.pt", weights_only=True)
    lfp.model.load_state_dict(ckpt["model"])
