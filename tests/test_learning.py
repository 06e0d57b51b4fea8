"""LFP learns with hard spikes, for every neuron type; plain autograd learns nothing."""

import pytest
import torch
from torch import nn

from spikelfp import ALIF, IF, LI, LIF, RLIF, CubaLIF, Sequential
from spikelfp.lfp import (
    discrete_feedback_reward,
    feedback,
    lfp_step,
    membrane_softmax_reward,
    rate_coded_reward,
    spike_count_softmax_reward,
)

T, F_IN, C = 16, 24, 4


def _task(n, seed):
    """Four classes, each a different set of strongly firing input channels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (n,), generator=g)
    rates = torch.full((n, F_IN), 0.05)
    for c in range(C):
        rates[labels == c, c * 6 : (c + 1) * 6] = 0.6
    x = (torch.rand(T, n, F_IN, generator=g) < rates).float()
    return x, labels


def _accuracy(net, x, y, readout="spikes"):
    with torch.no_grad():
        out, _ = net(x)
    score = out.sum(0) if readout == "spikes" else out.mean(0)
    return (score.argmax(-1) == y).float().mean().item()


HIDDEN = {
    "LIF": lambda: LIF(beta=0.9, threshold=0.5),
    "LIF-subtract-delay": lambda: LIF(beta=0.9, threshold=0.5, reset="subtract", reset_delay=True),
    "IF": lambda: IF(threshold=0.8),
    "CubaLIF": lambda: CubaLIF(alpha=0.5, beta=0.8, threshold=0.5),
    "ALIF": lambda: ALIF(
        beta=0.9, threshold=0.5, kappa=0.3, learn_threshold=True, learn_kappa=True
    ),
    "RLIF": lambda: RLIF(32, beta=0.9, threshold=0.5),
    "LIF-learnable": lambda: LIF(
        beta=0.9, threshold=0.5, shape=(32,), learn_beta=True, learn_threshold=True
    ),
}


@pytest.mark.parametrize("name", list(HIDDEN))
def test_every_neuron_type_trains(name):
    torch.manual_seed(1)
    net = Sequential(
        nn.Linear(F_IN, 32), HIDDEN[name](), nn.Linear(32, C), LIF(beta=0.9, threshold=0.5)
    )
    x, y = _task(256, seed=0)
    xv, yv = _task(256, seed=1)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    before = _accuracy(net, xv, yv)
    for _ in range(3):
        for i in range(0, 256, 32):
            lfp_step(
                net,
                x[:, i : i + 32],
                y[i : i + 32],
                lambda o, t: rate_coded_reward(o, t, scale=1 / T),
                opt,
            )
    after = _accuracy(net, xv, yv)
    assert after >= 0.85 and after > before + 0.2, (before, after)
    fb = feedback(net)
    assert all(torch.isfinite(v).all() for v in fb.values())
    for pname, _p in net.named_parameters():
        assert pname in fb and fb[pname].abs().sum() > 0, pname


def test_li_readout_with_softmax_reward_trains():
    torch.manual_seed(2)
    net = Sequential(
        nn.Linear(F_IN, 32), LIF(beta=0.9, threshold=0.5), nn.Linear(32, C), LI(beta=0.9)
    )
    x, y = _task(256, seed=0)
    xv, yv = _task(256, seed=1)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    for _ in range(3):
        for i in range(0, 256, 32):
            lfp_step(net, x[:, i : i + 32], y[i : i + 32], membrane_softmax_reward, opt)
    assert _accuracy(net, xv, yv, readout="membrane") >= 0.85


def test_discrete_human_feedback_trains():
    """+1/-1 per sample, no labels given to the reward: LFP still learns."""
    torch.manual_seed(3)
    net = Sequential(
        nn.Linear(F_IN, 32),
        LIF(beta=0.9, threshold=0.5),
        nn.Linear(32, C),
        LIF(beta=0.9, threshold=0.5),
    )
    x, y = _task(512, seed=0)
    xv, yv = _task(256, seed=1)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    for _ in range(4):
        for i in range(0, 512, 32):
            xb, yb = x[:, i : i + 32], y[i : i + 32]

            def judge(out, labels):
                right = out.sum(0).argmax(-1) == labels
                return discrete_feedback_reward(out, right.float() * 2 - 1)

            lfp_step(net, xb, yb, judge, opt)
    assert _accuracy(net, xv, yv) >= 0.7


def test_spike_count_softmax_reward_trains():
    torch.manual_seed(4)
    net = Sequential(
        nn.Linear(F_IN, 32),
        LIF(beta=0.9, threshold=0.5),
        nn.Linear(32, C),
        LIF(beta=0.9, threshold=0.5),
    )
    x, y = _task(256, seed=0)
    xv, yv = _task(256, seed=1)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    for _ in range(3):
        for i in range(0, 256, 32):
            lfp_step(net, x[:, i : i + 32], y[i : i + 32], spike_count_softmax_reward, opt)
    assert _accuracy(net, xv, yv) >= 0.85


def test_no_surrogate_gradient_anywhere():
    """Plain backprop through hard spikes gives exactly zero weight gradients, while the LFP
    step on the same network and data learns."""
    torch.manual_seed(5)
    net = Sequential(
        nn.Linear(F_IN, 32),
        LIF(beta=0.9, threshold=0.5),
        nn.Linear(32, C),
        LIF(beta=0.9, threshold=0.5),
    )
    x, y = _task(128, seed=0)
    out, _ = net(x)
    loss = nn.functional.cross_entropy(out.sum(0), y)
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.count_nonzero(p.grad) == 0, name
    net.zero_grad()
    res = lfp_step(net, x, y, lambda o, t: rate_coded_reward(o, t, scale=1 / T))
    assert all(torch.count_nonzero(p.grad) > 0 for p in net.parameters())
    assert res.output.shape == (T, 128, C)
