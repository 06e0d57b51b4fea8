"""Train for the chip: the training forward pass is the target's integer network.

The LFP forward of :class:`TargetTraining` must produce exactly the integer simulator's spikes;
its feedback must be LFP's (checked against the float rule where both compute the same
network); ``train --target`` builds within the target's limits or refuses before training; a
run trained for a target exports to it under ``--strict`` with the trained accuracy.
"""

from __future__ import annotations

import json

import _cli
import numpy as np
import pytest
import torch
from torch import nn

from spikelfp import IF, LIF, Sequential
from spikelfp.cli import main
from spikelfp.hw_export import HardwareProfile, SumPool2d, simulate
from spikelfp.hw_export.target import (
    TargetTraining,
    adapt_spec,
    linear_as_conv,
    structural_violations,
)
from spikelfp.lfp import default_composite, lfp_step, rate_coded_reward
from spikelfp.training import load_run
from spikelfp.training.models import ModelSpec, build_model


def _mlp(neuron="lif", bias=True):
    def n():
        return IF(threshold=1.0) if neuron == "if" else LIF(beta=0.875, threshold=1.0)

    return Sequential(nn.Linear(20, 12, bias=bias), n(), nn.Linear(12, 4, bias=bias), n())


def _inputs(shape=(20,), t=12, b=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(t, b, *shape, generator=g) < 0.4).float(), torch.arange(b) % 4


@pytest.mark.parametrize(
    ("target", "neuron", "conv"),
    [("int8", "lif", False), ("loihi2", "lif", False), ("speck", "if", True)],
)
def test_training_forward_is_the_integer_simulator(target, neuron, conv):
    torch.manual_seed(0)
    net = _mlp(neuron, bias=target != "speck")
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.weight.mul_(3.0)
    shape = (20,)
    if conv:  # Speck has no Linear: the same network as full-kernel convolutions
        shape = (5, 2, 2)
        net = linear_as_conv(Sequential(nn.Flatten(), *net), shape)
    x, y = _inputs(shape)
    tt = TargetTraining(net, target, input_shape=shape)
    shadow = [p.detach().clone() for p in net.parameters()]
    with tt.integer_forward() as q:
        res = lfp_step(net, x, y, rate_coded_reward, composite=tt.composite())
        sim = simulate(q, x.double())
    # the spikes trained on are the integer simulator's, bit for bit
    assert np.array_equal(res.output.numpy().astype(np.int64), sim.output)
    assert res.output.sum() > 0  # a non-trivial check: the network spikes
    # the shadow weights are back and received the feedback
    for p, s in zip(net.parameters(), shadow, strict=True):
        assert torch.equal(p.detach(), s)
        assert p.grad is not None and bool(torch.isfinite(p.grad).all())
    assert any(float(p.grad.abs().sum()) > 0 for p in net.parameters())


def _if_net():
    net = Sequential(nn.Linear(20, 12, bias=False), IF(threshold=150.0))
    net.append(nn.Linear(12, 4, bias=False))
    net.append(IF(threshold=140.0))
    return net


@pytest.mark.parametrize(
    "build",
    [_if_net, lambda: _cuba_mlp(alpha=1.0, beta=1.0, threshold=400.0)],
    ids=["IF", "CubaLIF"],
)
def test_integer_feedback_equals_lfp_feedback_on_an_integer_network(build):
    """Weights already integers with a 127 in every row, integer thresholds and no decay
    (IF; CubaLIF with α = β = 1): the integer network is the float one (exact arithmetic),
    so the integer rule's feedback must be the float LFP rule's."""
    torch.manual_seed(1)
    net = build()
    with torch.no_grad():
        for m in (net[0], net[2]):
            w = torch.randint(-127, 128, m.weight.shape).float()
            w[:, 0] = 127.0
            m.weight.copy_(w)
    x, y = _inputs()
    ref = lfp_step(net, x, y, rate_coded_reward, composite=default_composite())
    ref_grads = [p.grad.clone() for p in net.parameters()]
    tt = TargetTraining(net, "int8")
    with tt.integer_forward() as q:
        assert torch.equal(q.model[0].weight.float(), net[0].weight.detach())  # scale 1
        res = lfp_step(net, x, y, rate_coded_reward, composite=tt.composite())
    assert torch.equal(res.output, ref.output) and res.output.sum() > 0
    assert float(ref_grads[0].abs().sum()) > 0
    for p, g in zip(net.parameters(), ref_grads, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-6)


def test_linear_as_conv_computes_the_same_network():
    torch.manual_seed(2)
    net = Sequential(nn.Flatten(), *_mlp("if", bias=False))
    x, _ = _inputs((5, 2, 2))
    conv = linear_as_conv(net, (5, 2, 2))
    assert not any(isinstance(m, nn.Linear) for m in conv)
    assert torch.equal(net(x)[0], conv(x)[0])


def test_adapt_spec_builds_within_the_target():
    spec = ModelSpec("conv", (2, 34, 34), 10, channels=(4, 4))
    new, changes = adapt_spec(spec, "speck")
    assert (new.neuron, new.pool, new.reset) == ("if", "sum", "subtract")
    assert {"neuron=if", "pool=sum", "reset=subtract"} <= set(changes)
    nobias = HardwareProfile("nobias", resets=("subtract",), allow_bias=False)
    nb, changes = adapt_spec(spec, nobias)
    assert (nb.bias, nb.reset) == (False, "subtract") and "bias=False" in changes
    assert new.extra["target"]["name"] == "speck"
    model = linear_as_conv(build_model(new), new.input_shape)
    assert structural_violations(model, "speck", new.input_shape) == []
    lo, _ = adapt_spec(ModelSpec("mlp", (2, 34, 34), 10, beta=0.9), "loihi2")
    assert lo.beta == pytest.approx(1 - 410 / 4096)  # the nearest 12-bit decay
    assert not any(isinstance(m, SumPool2d) for m in build_model(lo))  # mlp: no pooling


def test_train_target_refuses_what_the_target_cannot_run(digits_root, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--data-dir", str(digits_root), "--target", "xylo", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "--target xylo cannot run this model" in err
    assert "2312 input channels" in err and "<= 16" in err and "<= 8" in err
    assert not (out / "checkpoint.pt").exists()
    rc = main(["train", "--data-dir", str(digits_root), "--target", "tpu", "--out", str(out)])
    assert rc == 2 and "unknown --target 'tpu'" in capsys.readouterr().err
    rc = main(["train", "--target", "int8", "--method", "bptt", "--out", str(out)])
    assert rc == 2 and "use --method lfp" in capsys.readouterr().err


TINY = [*_cli.TINY, "--max-eval-samples", "30"]


def test_trained_for_speck_exports_strictly_as_trained(digits_root, tmp_path, capsys):
    pytest.importorskip("nir")
    run = tmp_path / "run"
    rc = main(
        ["train", "--data-dir", str(digits_root), *TINY, "--target", "speck", "--out", str(run)]
    )
    assert rc == 0
    capsys.readouterr()
    data = ["--dataset", "digits-events", "--data-dir", str(digits_root), "--max-samples", "30"]
    assert main(["eval", str(run), *data[2:], "--json", str(tmp_path / "e.json")]) == 0
    trained = json.loads((tmp_path / "e.json").read_text())["accuracy"]
    # the Python API scores what `spikelfp eval` scores: the integer network that was trained
    loaded = load_run(run)
    assert loaded.evaluate("test", data_dir=str(digits_root), max_eval_samples=30)["accuracy"] == (
        trained
    )
    nir_path = tmp_path / "net.nir"
    rc = main(
        ["export", str(run), "--target", "speck", "--strict", "-o", str(nir_path), *data]
        + ["--json", str(tmp_path / "x.json")]
    )
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((tmp_path / "x.json").read_text())["report"]
    assert rep["constraints"]["violations"] == [] and rep["constraints"]["warnings"] == []
    assert rep["simulator_identical"] is True
    assert rep["accuracy_quantized"] == trained  # the exported network is the trained one
    assert nir_path.is_file()
    # a plain (float-trained) network breaks Speck: refused, nothing written
    plain = tmp_path / "plain"
    assert main(["train", "--data-dir", str(digits_root), *TINY, "--out", str(plain)]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.nir"
    rc = main(["export", str(plain), "--target", "speck", "--strict", "-o", str(bad), *data])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and not bad.exists()
    assert "refused" in err and "layer type" in err and len(err.splitlines()) == 1


def test_recurrent_training_forward_is_xylos_integer_network():
    """The Braille shape for Xylo: Xylo's own neuron (synaptic current, fire at V >= θ, minimum
    decay, up to 31 hidden spikes per step, one-step readout delay, inputs clipped to 15) with
    integer recurrent weights is what trains, spike for spike equal to simulate() (and to
    rockpool's XyloSim where installed), and every weight gets feedback."""
    import importlib.util

    from spikelfp import RLIF

    torch.manual_seed(2)
    kw = dict(beta=0.9375, threshold=1.0, reset="subtract")
    net = Sequential(
        nn.Linear(6, 10, bias=False), RLIF(10, **kw), nn.Linear(10, 3, bias=False), LIF(**kw)
    )
    with torch.no_grad():
        net[0].weight.mul_(4.0)
        net[1].recurrent_weight.mul_(2.0)
    g = torch.Generator().manual_seed(2)
    x, y = (torch.rand(20, 6, 6, generator=g) < 0.4).float(), torch.arange(6) % 3
    x[3, :, 0] = 20.0  # clipped to 15, as on the chip
    tt = TargetTraining(net, "xylo", input_shape=(6,))
    shadow = [p.detach().clone() for p in net.parameters()]
    with tt.integer_forward() as q:
        res = lfp_step(net, x, y, rate_coded_reward, composite=tt.composite())
        sim = simulate(q, x.double())
        unclipped = simulate(q.model, x.double())
    assert np.array_equal(res.output.numpy().astype(np.int64), sim.output)
    assert not np.array_equal(unclipped.layer_outputs[0], sim.layer_outputs[0])
    assert res.output.sum() > 0 and q.model[1].kind == "RLIF" and q.model[1].chip
    assert sim.layer_outputs[0].max() > 1 and not sim.output[0].any()  # multi-spike, delay
    if all(importlib.util.find_spec(m) for m in ("rockpool", "xylosim")):
        from spikelfp.hw_export.vendor_xylo import rockpool_xylo_simulate, rockpool_xylo_spec

        assert np.array_equal(rockpool_xylo_simulate(rockpool_xylo_spec(q), x), sim.output)
    for p, s in zip(net.parameters(), shadow, strict=True):
        assert torch.equal(p.detach(), s)  # the shadow weights are back
    assert float(net[1].recurrent_weight.grad.abs().sum()) > 0
    assert float(net[0].weight.grad.abs().sum()) > 0 and float(net[2].weight.grad.abs().sum()) > 0


def test_readout_delay_moves_the_output_feedback_one_step_back():
    """Under Xylo's readout delay the output layer's step t integrates the input of step t-1:
    the feedback of step t goes to z_{t-1}, so the last step's input gets none."""
    from spikelfp.hw_export.target import IntegerLIFRule

    torch.manual_seed(0)
    lif = LIF(beta=0.9375, threshold=1.0, reset="subtract")
    net = Sequential(nn.Linear(5, 4, bias=False), lif)
    with torch.no_grad():
        net[0].weight.abs_().mul_(3.0)
    tt = TargetTraining(net, "xylo", input_shape=(5,))
    x = (torch.rand(8, 2, 5) < 0.6).float()
    with tt.integer_forward() as q:
        assert q.model[1].input_delay  # the only neuron layer is the output layer
        z = net[0](x).detach().requires_grad_(True)
        s, _ = IntegerLIFRule(tt).forward(lif, z)
        s.sum().backward()
    assert torch.equal(s.double(), q.model[1](z.detach())[0])
    assert float(z.grad[-1].abs().sum()) == 0.0 and float(z.grad[:-1].abs().sum()) > 0


def test_xylo_evaluation_and_saved_specs_use_xylos_neuron():
    """The evaluation model clips inputs as the chip does (== simulate of the QuantizedNetwork);
    a spec saved before the neuron fields existed gets the built-in profile's values; the other
    profiles keep spikelfp's own neuron."""
    import dataclasses

    from spikelfp.hw_export import INT8, XYLO
    from spikelfp.hw_export.target import target_of

    torch.manual_seed(1)
    net = Sequential(
        nn.Linear(4, 6, bias=False), LIF(beta=0.9375, reset="subtract"),
        nn.Linear(6, 3, bias=False), LIF(beta=0.9375, reset="subtract"),
    )  # fmt: skip
    with torch.no_grad():
        net[0].weight.abs_()
    tt = TargetTraining(net, "xylo", input_shape=(4,))
    x = torch.randint(0, 40, (15, 3, 4)).float()
    ev = tt.evaluation_model()(x)[0].numpy().astype(np.int64)
    assert np.array_equal(ev, simulate(tt.quantized(), x).output)
    old = {k: v for k, v in dataclasses.asdict(XYLO).items() if k not in ("fire_at", "max_spikes")}
    spec = ModelSpec("braille-rsnn", (8,), 7, extra={"target": old})
    assert target_of(spec) == XYLO
    assert not INT8.chip_neuron and not any(
        getattr(m, "chip", False) for m in TargetTraining(_mlp(), "int8").quantized().model
    )


def _cuba_mlp(alpha=0.75, beta=0.875, threshold=1.0, reset="subtract", learn=False):
    from spikelfp import CubaLIF

    def n():
        return CubaLIF(
            alpha=alpha,
            beta=beta,
            threshold=threshold,
            reset=reset,
            learn_alpha=learn,
            learn_beta=learn,
            learn_threshold=learn,
        )

    return Sequential(nn.Linear(20, 12, bias=False), n(), nn.Linear(12, 4, bias=False), n())


@pytest.mark.parametrize(
    ("target", "reset"), [("int8", "subtract"), ("loihi2", "zero"), ("xylo", "subtract")]
)
def test_cuba_training_forward_is_the_integer_simulator(target, reset):
    """CubaLIF layers train as the target's integer current-based neuron (Xylo: its own
    neuron with the current stage, multi-spike steps and readout delay), spike for spike equal
    to simulate(), and the weights, decays and thresholds get feedback."""
    torch.manual_seed(3)
    net = _cuba_mlp(reset=reset, learn=True)
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.weight.mul_(2.0)
    x, y = _inputs()
    tt = TargetTraining(net, target, input_shape=(20,))
    shadow = [p.detach().clone() for p in net.parameters()]
    with tt.integer_forward() as q:
        res = lfp_step(net, x, y, rate_coded_reward, composite=tt.composite())
        sim = simulate(q, x.double())
    assert q.model[1].kind == "CubaLIF" and q.model[1].chip == (target == "xylo")
    assert np.array_equal(res.output.numpy().astype(np.int64), sim.output)
    assert res.output.sum() > 0
    for p, s in zip(net.parameters(), shadow, strict=True):
        assert torch.equal(p.detach(), s)
        assert p.grad is not None and bool(torch.isfinite(p.grad).all())
    for name in ("0.weight", "1.alpha", "1.beta", "1.threshold", "2.weight"):
        assert float(net.get_parameter(name).grad.abs().sum()) > 0, name
