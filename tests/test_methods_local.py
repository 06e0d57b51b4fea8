"""The backprop-free local methods (dfa, drtp, eprop): their updates against the equations,
their errors for layers they cannot train, checkpoint/resume of the feedback matrices, and
learning on the built-in dataset."""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn

from spikelfp import ALIF, IF, LIF, Sequential
from spikelfp.cli import main
from spikelfp.training import ModelSpec, TrainConfig, Trainer, build_model
from spikelfp.training.checkpoint import load_checkpoint, save_atomic
from spikelfp.training.config import ConfigError
from spikelfp.training.eprop import EProp, low_pass, running_rate
from spikelfp.training.feedback_alignment import (
    DFA,
    DRTP,
    UnsupportedLayerError,
    pseudo_derivative,
    rate_error,
    spike_membrane,
)
from spikelfp.training.local_rules import LOCAL_RULES, make_local_rule


def _mlp(beta=0.9, reset="zero", threshold=0.5):
    torch.manual_seed(1)
    return build_model(
        ModelSpec("mlp", (1, 4, 4), 3, hidden=8, beta=beta, reset=reset, threshold=threshold)
    )


def _batch(t=7, b=5):
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(t, b, 1, 4, 4, generator=g) < 0.5).float()
    return x, torch.tensor([0, 1, 2, 0, 1])[:b]


def _by_hand(net, x):
    """Hidden input, hidden spikes/membrane, output spikes/membrane, by the equations."""
    x1 = x.flatten(2)
    z1 = x1 @ net[1].weight.t() + net[1].bias
    s1, _ = net[2](z1)
    v1 = spike_membrane(z1, s1, net[2])
    z2 = s1 @ net[3].weight.t() + net[3].bias
    s2, _ = net[4](z2)
    v2 = spike_membrane(z2, s2, net[4])
    return x1, s1, v1, s2, v2


@pytest.mark.parametrize("reset", ["zero", "subtract", "none"])
@pytest.mark.parametrize("delay", [False, True])
def test_spike_membrane_is_what_the_spikes_are_read_from(reset, delay):
    lif = LIF(beta=0.8, threshold=0.7, reset=reset, reset_delay=delay)
    z = torch.rand(20, 3, 6) * 0.9
    s, _ = lif(z)
    v = spike_membrane(z, s, lif)
    assert s.sum() > 0
    assert torch.equal((v > 0.7).float(), s)


@pytest.mark.parametrize("rule_cls, hidden_sign", [(DFA, None), (DRTP, -1.0)])
def test_dfa_drtp_updates_follow_the_equations(rule_cls, hidden_sign):
    net = _mlp()
    x, y = _batch()
    rule = rule_cls(net, (1, 4, 4), 3, seed=4, slope=5.0)
    res = rule.step(net, x, y)
    x1, s1, v1, s2, v2 = _by_hand(net, x)
    assert torch.equal(res.output, s2)
    assert s1.mean() > 0.05 and s2.mean() > 0.02  # the check below is not vacuous
    e = s2.mean(0) - torch.where(nn.functional.one_hot(y, 3) > 0, 0.8, 0.2)
    assert torch.allclose(res.error, e)
    d2 = e * pseudo_derivative(v2, 0.5, 5.0) / len(y)
    signal = e if hidden_sign is None else hidden_sign * nn.functional.one_hot(y, 3).float()
    d1 = (signal @ rule.feedback[0].t()) * pseudo_derivative(v1, 0.5, 5.0) / len(y)
    torch.testing.assert_close(net[3].weight.grad, torch.einsum("tbj,tbi->ji", d2, s1))
    torch.testing.assert_close(net[3].bias.grad, d2.sum((0, 1)))
    torch.testing.assert_close(net[1].weight.grad, torch.einsum("tbj,tbi->ji", d1, x1))
    torch.testing.assert_close(net[1].bias.grad, d1.sum((0, 1)))


def test_drtp_hidden_update_ignores_the_output():
    net = _mlp()
    x, y = _batch()
    rule = DRTP(net, (1, 4, 4), 3, seed=0)
    rule.step(net, x, y)
    hidden, out = net[1].weight.grad.clone(), net[3].weight.grad.clone()
    with torch.no_grad():
        net[3].weight.mul_(-3.0)  # a different output layer: other output spikes
    rule.step(net, x, y)
    assert torch.equal(net[1].weight.grad, hidden)
    assert not torch.equal(net[3].weight.grad, out)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_eprop_matches_the_online_rule_step_by_step(reset):
    """The time-batched implementation equals the online form: traces and weight updates
    accumulated one step at a time, with the error of that step only."""
    net = _mlp(beta=0.8, reset=reset)
    x, y = _batch()
    rule = EProp(net, (1, 4, 4), 3, seed=5, slope=4.0)
    res = rule.step(net, x, y)
    target = torch.where(nn.functional.one_hot(y, 3) > 0, 0.8, 0.2)
    w1, b1, w2, b2 = net[1].weight, net[1].bias, net[3].weight, net[3].bias
    g = rule.feedback[0]
    u1 = torch.zeros(len(y), 8)
    u2 = torch.zeros(len(y), 3)
    xbar1, xbar2 = torch.zeros(len(y), 16), torch.zeros(len(y), 8)
    cbar = 0.0
    count = torch.zeros(len(y), 3)
    acc = [torch.zeros_like(p) for p in (w1, b1, w2, b2)]
    with torch.no_grad():
        for t in range(x.shape[0]):
            x1 = x[t].flatten(1)
            v1 = 0.8 * u1 + x1 @ w1.t() + b1
            s1 = (v1 > 0.5).float()
            u1 = v1 * (1 - s1) if reset == "zero" else v1 - 0.5 * s1
            v2 = 0.8 * u2 + s1 @ w2.t() + b2
            s2 = (v2 > 0.5).float()
            u2 = v2 * (1 - s2) if reset == "zero" else v2 - 0.5 * s2
            xbar1 = 0.8 * xbar1 + x1
            xbar2 = 0.8 * xbar2 + s1
            cbar = 0.8 * cbar + 1.0
            e = (count / t if t else torch.zeros_like(count)) - target
            count += s2
            d2 = e * pseudo_derivative(v2, 0.5, 4.0) / len(y)
            d1 = (e @ g.t()) * pseudo_derivative(v1, 0.5, 4.0) / len(y)
            acc[0] += d1.t() @ xbar1
            acc[1] += d1.sum(0) * cbar
            acc[2] += d2.t() @ xbar2
            acc[3] += d2.sum(0) * cbar
    assert res.output.sum() > 0
    for p, want in zip((w1, b1, w2, b2), acc, strict=True):
        torch.testing.assert_close(p.grad, want)


def test_eprop_with_a_constant_error_and_no_leak_is_dfa():
    """β = 0 makes the trace the input itself; with the final error at every step (not
    e-prop's online error) e-prop's update is DFA's: the two share their machinery."""
    import spikelfp.training.eprop as eprop_mod

    net = _mlp(beta=0.0, threshold=0.3)
    x, y = _batch()
    DFA(net, (1, 4, 4), 3, seed=0).step(net, x, y)
    want = [p.grad.clone() for p in net.parameters()]
    saved = eprop_mod.running_rate
    eprop_mod.running_rate = lambda s: s.mean(0, keepdim=True).expand_as(s)
    try:
        EProp(net, (1, 4, 4), 3, seed=0).step(net, x, y)
    finally:
        eprop_mod.running_rate = saved
    for p, w in zip(net.parameters(), want, strict=True):
        torch.testing.assert_close(p.grad, w)


def test_helpers():
    assert low_pass(torch.ones(4), 0.5).tolist() == [1.0, 1.5, 1.75, 1.875]
    s = torch.tensor([[1.0], [1.0], [0.0], [0.0]])
    assert running_rate(s).flatten().tolist() == pytest.approx([0.0, 1.0, 1.0, 2.0 / 3.0])
    assert rate_error(torch.ones(4, 1, 2), torch.tensor([1]))[0].tolist() == pytest.approx(
        [0.8, 0.2]
    )


def test_conv_models_with_batch_norm_train_with_dfa():
    spec = ModelSpec("conv", (2, 12, 12), 4, channels=(3, 5), batch_norm=True)
    torch.manual_seed(0)
    net = build_model(spec)
    rule = DFA(net, spec.input_shape, 4, seed=1, slope=2.0)
    assert [tuple(g.shape) for g in rule.feedback] == [(3 * 12 * 12, 4), (5 * 6 * 6, 4)]
    x = (torch.rand(5, 3, 2, 12, 12) < 0.3).float()
    rule.step(net, x, torch.tensor([0, 1, 3]))
    for p in net.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert net[0].weight.grad.abs().sum() > 0 and net[1].weight.grad.abs().sum() > 0


def test_feedback_is_seeded_and_leaves_the_global_rng_alone():
    net = _mlp()
    state = torch.random.get_rng_state()
    a = DFA(net, (1, 4, 4), 3, seed=7).feedback[0]
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a, DFA(net, (1, 4, 4), 3, seed=7).feedback[0])
    assert not torch.equal(a, DFA(net, (1, 4, 4), 3, seed=8).feedback[0])


@pytest.mark.parametrize(
    "layers, method, words",
    [
        (lambda: [nn.Flatten(), nn.Linear(16, 3), ALIF()], "dfa", "layer 2 (ALIF)"),
        (lambda: [nn.Flatten(), nn.Linear(16, 3), LIF(learn_beta=True)], "drtp", "learnable"),
        (lambda: [nn.Flatten(), nn.Linear(16, 3), LIF(), nn.Linear(3, 3)], "dfa", "ends with"),
        (lambda: [nn.Flatten(), nn.Linear(16, 3), nn.ReLU(), LIF()], "dfa", "layer 2 (ReLU)"),
        (lambda: [nn.Flatten(), nn.Linear(16, 3), nn.BatchNorm1d(3), IF()], "eprop", "batch"),
        (lambda: [nn.Flatten(), nn.Linear(16, 3), LIF(shape=(3,))], "eprop", "per-neuron"),
    ],
)
def test_layers_a_method_cannot_train_are_refused_in_one_line(layers, method, words):
    net = Sequential(*layers())
    with pytest.raises(UnsupportedLayerError, match=re.escape(words)) as info:
        LOCAL_RULES[method](net, (1, 4, 4), 3)
    assert "\n" not in str(info.value)


def test_cli_refuses_eprop_with_batch_norm_before_training(capsys, tmp_path):
    rc = main(
        ["train", "--method", "eprop", "--model", "conv", "--batch-norm", "--epochs", "1",
         "--max-train-samples", "8", "--out", str(tmp_path / "r"), "--no-progress"]
    )  # fmt: skip
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "eprop cannot train layer 1 (BatchNorm2d)" in lines[0]
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_make_local_rule_uses_the_config():
    spec = ModelSpec("mlp", (1, 4, 4), 3, hidden=8)
    rule = make_local_rule(TrainConfig(method="drtp", seed=3, surrogate_slope=2.0), _mlp(), spec)
    assert isinstance(rule, DRTP) and rule.slope == 2.0
    assert torch.equal(rule.feedback[0], DRTP(_mlp(), (1, 4, 4), 3, seed=3).feedback[0])
    with pytest.raises(ConfigError, match="not a local method"):
        make_local_rule(TrainConfig(method="bptt"), _mlp(), spec)


SMALL = dict(
    epochs=2,
    time_bins=6,
    hidden=24,
    max_train_samples=48,
    max_eval_samples=16,
    batch_size=8,
    lr_schedule="none",  # a resume may then extend --epochs
    progress=False,
)


@pytest.mark.parametrize("method", ["dfa", "eprop"])
def test_feedback_matrices_survive_checkpoint_and_resume_bit_identically(
    digits_root, tmp_path, method
):
    cfg = TrainConfig(data_dir=str(digits_root), method=method, out=str(tmp_path / "r"), **SMALL)
    full = Trainer(cfg.replace(out=str(tmp_path / "full")), log=lambda m: None)
    full.fit()
    first = Trainer(cfg.replace(epochs=1), log=lambda m: None)
    first.fit()
    ckpt_path = tmp_path / "r" / "checkpoint.pt"
    saved = load_checkpoint(ckpt_path)["local_rule"]
    assert set(saved) == {"feedback_0"}
    assert torch.equal(saved["feedback_0"], first.local_rule.feedback[0])
    # the resumed run uses the stored matrices (not ones drawn again): change them on disk
    ckpt = torch.load(ckpt_path, weights_only=True)
    marked = ckpt["local_rule"]["feedback_0"].clone()
    marked[0, 0] = 123.0
    ckpt["local_rule"]["feedback_0"] = marked
    save_atomic(ckpt, ckpt_path)
    resumed = Trainer.resume(tmp_path / "r", overrides={"epochs": 2}, log=lambda m: None)
    assert torch.equal(resumed.local_rule.feedback[0], marked)
    # and with the true matrices a resumed run ends exactly where the uninterrupted one does
    ckpt["local_rule"]["feedback_0"] = saved["feedback_0"]
    save_atomic(ckpt, ckpt_path)
    resumed = Trainer.resume(tmp_path / "r", overrides={"epochs": 2}, log=lambda m: None)
    resumed.fit()
    for a, b in zip(
        resumed.model.state_dict().values(), full.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    final = load_checkpoint(ckpt_path)["local_rule"]["feedback_0"]
    assert torch.equal(final, saved["feedback_0"])


@pytest.mark.parametrize("method", ["dfa", "drtp"])
def test_dfa_and_drtp_learn_the_builtin_dataset(digits_root, tmp_path, capsys, method):
    """Small scale (128 hidden neurons, 8 time bins, 3 epochs; chance is 10 %): the full
    claim, >= 80 % with the CLI's network in 5 epochs, is measured by
    benchmarks/local_methods_digits.py (docs/methods.md)."""
    out = tmp_path / method
    rc = main(
        ["train", "--data-dir", str(digits_root), "--method", method, "--epochs", "3",
         "--hidden", "128", "--time-bins", "8", "--batch-size", "8", "--lr", "2e-3",
         "--surrogate-slope", "5", "--max-eval-samples", "200", "--out", str(out),
         "--no-progress"]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    assert rows[-1]["eval_acc"] >= 0.5, rows
    assert rows[-1]["eval_acc"] > rows[0]["eval_acc"] or rows[0]["eval_acc"] >= 0.5
