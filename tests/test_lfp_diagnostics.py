"""LFPDiagnostics: model untouched, reward conserved, silent layers found, real updates."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import spikelfp
from spikelfp.lfp import (
    LFPDiagnostics,
    ZPlusRule,
    default_composite,
    lfp_step,
    rate_coded_reward,
)

T, B = 12, 6


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _data(n_in: int = 10, n_classes: int = 3, p: float = 0.5):
    x = (torch.rand(T, B, n_in) < p).float()
    y = torch.arange(B) % n_classes
    return x, y


def _mlp(bias: bool = True, threshold: float = 0.3) -> spikelfp.Sequential:
    return spikelfp.Sequential(
        nn.Linear(10, 16, bias=bias),
        spikelfp.LIF(threshold=threshold),
        nn.Linear(16, 3, bias=bias),
        spikelfp.LIF(threshold=threshold),
    )


def _by_name(stats):
    return {s["name"]: s for s in stats}


def _state(model: nn.Module):
    return {
        name: (
            sorted(m.__dict__),
            {k: sorted(getattr(m, k)) for k in m.__dict__ if k.endswith("hooks")},
        )
        for name, m in model.named_modules()
    }


def test_model_untouched_after_context():
    net = _mlp()
    x, y = _data()
    before_sd = {k: v.clone() for k, v in net.state_dict().items()}
    before = _state(net)
    params_before = {n: sorted(p.__dict__) for n, p in net.named_parameters()}
    with LFPDiagnostics(net) as diag:
        lfp_step(net, x, y, rate_coded_reward)  # no optimiser: the weights stay
    sd = net.state_dict()
    assert sd.keys() == before_sd.keys()
    assert all(torch.equal(before_sd[k], sd[k]) for k in sd)
    assert _state(net) == before
    assert {n: sorted(p.__dict__) for n, p in net.named_parameters()} == params_before
    for m in net.modules():
        assert not m._forward_hooks and not m._backward_hooks
        assert not m._forward_pre_hooks and not m._backward_pre_hooks
    assert diag.steps == 1
    json.dumps(diag.summary())  # plain, JSON-able values


def test_model_untouched_when_the_block_raises():
    net = _mlp()
    x, y = _data()
    with pytest.raises(RuntimeError, match="boom"), LFPDiagnostics(net):
        lfp_step(net, x, y, rate_coded_reward)
        raise RuntimeError("boom")
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def test_linear_without_bias_conserves_reward():
    """ε = 0, no bias: the reward reaching a Linear's input is all the reward at its output."""
    net = _mlp(bias=False)
    x, y = _data()
    diag = LFPDiagnostics(net)
    with diag:
        for _ in range(2):
            lfp_step(net, x, y, rate_coded_reward, torch.optim.Adam(net.parameters(), 1e-3))
    stats = _by_name(diag.summary())
    for name in ("0", "2"):
        s = stats[name]
        assert s["kind"] == "synapse" and s["steps"] == 2
        assert s["reward_out_abs"] > 0
        assert math.isclose(s["reward_in"], s["reward_out"], rel_tol=1e-6, abs_tol=1e-9)
        assert s["to_bias"] == 0.0
        assert abs(s["absorbed"]) <= 1e-6 * s["reward_out_abs"]
        assert math.isclose(s["input_frac_abs"], 1.0, rel_tol=1e-5)
        assert s["bias_frac_abs"] == 0.0
    # the reward between layers: a neuron's input reward is its synapse's output reward
    assert math.isclose(stats["1"]["reward_in"], stats["0"]["reward_out"], rel_tol=1e-6)
    assert math.isclose(stats["2"]["reward_in"], stats["1"]["reward_out"], rel_tol=1e-6)
    assert stats["3"]["reward_out_rel"] == 1.0


def test_synapse_split_matches_the_epsilon_rule():
    """bias share + input share + absorbed == output, each part checked against the ε-rule."""
    eps = 0.05
    comp = default_composite(synapse_epsilon=eps)
    net = spikelfp.Sequential(nn.Linear(10, 16), spikelfp.LIF(threshold=0.3))
    with torch.no_grad():
        net[0].bias.uniform_(-0.5, 0.5)
    x, y = _data(p=0.4)
    seen = {}

    def capture(module, args, out):
        seen["z"] = out.detach()
        out.register_hook(lambda g: seen.__setitem__("rho", g.detach()))

    diag = LFPDiagnostics(net, composite=comp)
    handle = net[0].register_forward_hook(capture)
    try:
        with diag:
            lfp_step(net, x, torch.zeros(B, dtype=torch.long), rate_coded_reward, composite=comp)
    finally:
        handle.remove()
    s = _by_name(diag.summary())["0"]
    z, rho, b = seen["z"], seen["rho"], net[0].bias.detach()
    sign = torch.where(z >= 0, 1.0, -1.0)
    n = rho / (z + eps * sign)
    assert math.isclose(s["reward_out"], float(rho.sum()), rel_tol=1e-5)
    assert math.isclose(s["to_bias"], float((b * n).sum()), rel_tol=1e-4, abs_tol=1e-6)
    assert math.isclose(s["absorbed"], float((eps * sign * n).sum()), rel_tol=1e-3, abs_tol=1e-5)
    total = s["to_input"] + s["to_bias"] + s["absorbed"]
    assert math.isclose(total, s["reward_out"], rel_tol=1e-6, abs_tol=1e-9)
    assert abs(s["absorbed"]) > 1e-4  # the check above is not 0 == 0
    assert math.isclose(s["input_frac"] + s["bias_frac"] + s["absorbed_frac"], 1.0, rel_tol=1e-6)
    # element-wise, |R|-weighted split
    sr, den = rho.sign(), float(rho.abs().sum())
    assert math.isclose(s["bias_frac_abs"], float((sr * b * n).sum()) / den, rel_tol=1e-4)
    assert math.isclose(
        s["absorbed_frac_abs"], float((sr * eps * sign * n).sum()) / den, rel_tol=1e-3
    )
    parts = s["input_frac_abs"] + s["bias_frac_abs"] + s["absorbed_frac_abs"]
    assert math.isclose(parts, 1.0, rel_tol=1e-6)
    assert s["past_frac_abs"] is None


@pytest.mark.parametrize("keyed", ["type", "name"])
def test_zplus_split_uses_the_rules_weights(keyed):
    if keyed == "type":
        comp = default_composite().with_rules({nn.Linear: ZPlusRule()})
    else:  # a rule for one module, by its name
        comp = default_composite().with_names({"0": ZPlusRule()})
    net = spikelfp.Sequential(nn.Linear(10, 16), spikelfp.LIF(threshold=0.3))
    x, y = _data(p=0.4)
    seen = {}

    def capture(module, args, out):
        seen["x"] = args[0].detach()
        out.register_hook(lambda g: seen.__setitem__("rho", g.detach()))

    handle = net[0].register_forward_hook(capture)
    try:
        with LFPDiagnostics(net, composite=comp) as diag:
            lfp_step(net, x, y % 2, rate_coded_reward, composite=comp)
    finally:
        handle.remove()
    s = _by_name(diag.summary())["0"]
    w2, b2 = net[0].weight.detach().clamp(min=0), net[0].bias.detach().clamp(min=0)
    z2 = seen["x"] @ w2.t() + b2
    rho = seen["rho"]
    n = torch.where(z2 == 0, 0.0, rho / torch.where(z2 == 0, 1.0, z2))
    assert math.isclose(s["to_bias"], float((b2 * n).sum()), rel_tol=1e-4, abs_tol=1e-6)
    total = s["to_input"] + s["to_bias"] + s["absorbed"]
    assert math.isclose(total, s["reward_out"], rel_tol=1e-6, abs_tol=1e-9)
    expected = float((rho.sign() * b2 * n).sum() / rho.abs().sum())
    assert math.isclose(s["bias_frac_abs"], expected, rel_tol=1e-4)
    parts = s["input_frac_abs"] + s["bias_frac_abs"] + s["absorbed_frac_abs"]
    assert math.isclose(parts, 1.0, rel_tol=1e-6)


def test_neuron_split_by_hand():
    """IF, θ = 1, Z = (0.6, 0.6), reward 1 on the spike at t = 1.

    t = 1: D = |U_0| + |V_1 - U_0| = 1.2, n = 1/1.2, ρ_1 = n·0.6 = 0.5, q_0 = U_0 n = 0.5;
    t = 0: r̃ = 0.5, D = 0.6, ρ_0 = 0.5, nothing to the initial state.
    """
    net = spikelfp.Sequential(spikelfp.IF(threshold=1.0))
    z = torch.full((2, 1, 1), 0.6)
    reward = torch.tensor([0.0, 1.0]).view(2, 1, 1)
    with LFPDiagnostics(net) as diag:
        res = lfp_step(net, z, None, reward, return_input_reward=True)
    assert res.output.flatten().tolist() == [0.0, 1.0]
    (s,) = diag.summary()
    assert math.isclose(s["reward_out"], 1.0)
    assert math.isclose(s["to_input"], 1.0, rel_tol=1e-5)
    assert math.isclose(s["to_past"], 0.5, rel_tol=1e-5)
    assert math.isclose(s["handled"], 1.5, rel_tol=1e-5)
    assert abs(s["absorbed"]) < 1e-5
    assert math.isclose(s["past_frac"], 1 / 3, rel_tol=1e-5)
    assert math.isclose(s["past_frac_abs"], 1 / 3, rel_tol=1e-5)
    assert math.isclose(s["input_frac_abs"], 2 / 3, rel_tol=1e-5)
    assert math.isclose(float(res.input_reward.sum()), 1.0, rel_tol=1e-5)


def test_neuron_split_through_time():
    """The membrane recursion is replayed exactly; an IF neuron sends reward into its past."""
    net = spikelfp.Sequential(nn.Linear(10, 16), spikelfp.IF(threshold=0.8))
    with torch.no_grad():
        net[0].weight.abs_()
    x, y = _data(p=0.5)
    diag = LFPDiagnostics(net)
    with diag:
        lfp_step(net, x, y % 2, rate_coded_reward)
    s = _by_name(diag.summary())["1"]
    assert s["replay_mismatch"] < 1e-4
    assert s["to_past"] != 0
    parts = s["to_input"] + s["to_past"] + s["absorbed"]
    assert math.isclose(parts, s["handled"], rel_tol=1e-6, abs_tol=1e-9)
    # starting at rest nothing reaches the initial state: out = input + absorbed
    assert math.isclose(s["to_input"] + s["absorbed"], s["reward_out"], rel_tol=1e-6)
    assert math.isclose(s["past_frac"] + s["input_frac"] + s["absorbed_frac"], 1.0, rel_tol=1e-6)
    parts = s["past_frac_abs"] + s["input_frac_abs"] + s["absorbed_frac_abs"]
    assert math.isclose(parts, 1.0, rel_tol=1e-6)


def test_dead_layer_is_found_and_gets_no_feedback():
    net = _mlp()
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.zero_()
    x, y = _data()
    diag = LFPDiagnostics(net)
    with diag:
        lfp_step(net, x, y, rate_coded_reward, torch.optim.SGD(net.parameters(), lr=0.1))
    stats = _by_name(diag.summary())
    silent = stats["1"]
    assert silent["dead_frac"] == 1.0 and silent["never_spiked_frac"] == 1.0
    assert silent["saturated_frac"] == 0.0 and silent["spike_rate"] == 0.0
    assert silent["rewarded_frac"] == 0.0  # no spike: no reward passed back to it
    assert stats["0"]["weight_nonzero_frac"] == 0.0  # its upstream weights learn nothing
    assert stats["0"]["update_ratio"] is None or stats["0"]["update_ratio"] == 0.0
    assert stats["2"]["weight_nonzero_frac"] == 0.0  # its outgoing weights see no input spike
    assert stats["3"]["rewarded_frac"] > 0


def test_saturated_neurons():
    net = spikelfp.Sequential(nn.Linear(10, 4), spikelfp.LIF(threshold=0.3))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.fill_(1.0)
    x, y = _data()
    with LFPDiagnostics(net) as diag:
        lfp_step(net, x, y, rate_coded_reward)
    s = _by_name(diag.summary())["1"]
    assert s["saturated_frac"] == 1.0 and s["dead_frac"] == 0.0


def test_update_ratio_is_the_real_adam_change():
    net = _mlp()
    x, y = _data()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    lfp_step(net, x, y, rate_coded_reward, opt)  # Adam's first step is special: take a second
    w0 = {k: net[k].weight.detach().clone() for k in (0, 2)}
    with LFPDiagnostics(net) as diag:
        lfp_step(net, x, y, rate_coded_reward, opt)
        inside = _by_name(diag.summary())  # the update is already made: it is included
    stats = _by_name(diag.summary())
    for k in (0, 2):
        expected = float((net[k].weight.detach() - w0[k]).norm() / w0[k].norm())
        assert expected > 0
        assert math.isclose(stats[str(k)]["update_ratio"], expected, rel_tol=1e-5)
        assert math.isclose(inside[str(k)]["update_ratio"], expected, rel_tol=1e-5)
    assert stats["1"]["update_ratio"] is None  # LIF without learnable parameters


def test_manual_optimizer_step_and_zeroed_grads():
    """Trainer style: lfp_step(optimizer=None), then step and zero the grads yourself."""
    net = _mlp()
    x, y = _data()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    ratios, nonzero = [], []
    diag = LFPDiagnostics(net)
    with diag:
        for _ in range(3):
            w0 = net[0].weight.detach().clone()
            lfp_step(net, x, y, rate_coded_reward, optimizer=None)
            nonzero.append(float((net[0].weight.grad != 0).float().mean()))
            opt.step()
            opt.zero_grad(set_to_none=True)  # the diagnostics read the grads before this
            ratios.append(float((net[0].weight.detach() - w0).norm() / w0.norm()))
    s = _by_name(diag.summary())["0"]
    assert s["steps"] == 3
    assert math.isclose(s["update_ratio"], sum(ratios) / 3, rel_tol=1e-5)
    assert math.isclose(s["weight_nonzero_frac"], sum(nonzero) / 3, rel_tol=1e-6)
    assert s["weight_nonzero_frac"] > 0


def test_reset_table_and_order():
    net = _mlp()
    x, y = _data()
    diag = LFPDiagnostics(net)
    with diag:
        lfp_step(net, x, y, rate_coded_reward)
    assert [s["name"] for s in diag.summary()] == ["0", "1", "2", "3"]
    table = diag.to_table()
    lines = table.splitlines()
    assert len(lines) == 2 + 4 and lines[2].startswith("| 0 Linear |")
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    diag.reset()
    assert diag.steps == 0
    assert all(s["steps"] == 0 and s["reward_out_abs"] is None for s in diag.summary())


def test_conv_net_with_pooling():
    net = spikelfp.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        spikelfp.IF(threshold=0.5),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
        spikelfp.IF(threshold=0.5),
    )
    x = (torch.rand(6, 4, 2, 8, 8) < 0.4).float()
    with LFPDiagnostics(net) as diag:
        lfp_step(net, x, torch.tensor([0, 1, 2, 0]), rate_coded_reward)
    stats = _by_name(diag.summary())
    assert list(stats) == ["0", "1", "4", "5"]
    conv = stats["0"]
    assert conv["type"] == "Conv2d" and 0 <= conv["rewarded_frac"] <= 1
    total = conv["to_input"] + conv["to_bias"] + conv["absorbed"]
    assert math.isclose(total, conv["reward_out"], rel_tol=1e-6, abs_tol=1e-9)
    assert stats["1"]["replay_mismatch"] < 1e-4


def test_li_readout_and_the_eager_replay(monkeypatch):
    """LI readouts are replayed too; the eager replay gives what the fast one gives."""
    from spikelfp.lfp import diagnostics, membrane_softmax_reward

    net = spikelfp.Sequential(
        nn.Linear(10, 16), spikelfp.LIF(beta=0.8, threshold=0.3), nn.Linear(16, 3), spikelfp.LI()
    )
    x, y = _data()
    init = {k: v.clone() for k, v in net.state_dict().items()}

    def run():
        net.load_state_dict(init)
        with LFPDiagnostics(net) as diag:
            lfp_step(net, x, y, membrane_softmax_reward)
        return _by_name(diag.summary())

    fast = run()
    monkeypatch.setattr(diagnostics, "inplace_ok", lambda *a: False)
    eager = run()
    for name in ("1", "3"):
        assert fast[name]["replay_mismatch"] < 1e-4
        assert math.isclose(fast[name]["to_past"], eager[name]["to_past"], rel_tol=1e-5)
        assert math.isclose(fast[name]["past_frac_abs"], eager[name]["past_frac_abs"], rel_tol=1e-5)
    assert fast["3"]["dead_frac"] is None  # a readout does not spike
    assert fast["3"]["to_past"] != 0
