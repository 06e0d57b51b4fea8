"""Quantisation and the integer simulator: folding, rounding errors, bit-identical spikes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from spikelfp import IF, LI, LIF, RLIF, CubaLIF, Sequential
from spikelfp.hw_export import (
    HardwareProfile,
    QuantizedNeuron,
    SumPool2d,
    neuron_outputs,
    quantize,
    simulate,
)
from spikelfp.hw_export._decay import decay_numpy, decay_torch, quantize_decay

PROFILES = [
    "int8",
    "xylo",
    "loihi2",
    HardwareProfile(
        "tiny", weight_bits=4, state_bits=10, decay="shift", max_shift=4, decay_rounding="trunc"
    ),
]


def _spikes(n, b, shape, p, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, b, *shape, generator=g) < p).float()


def _assert_identical(q, x):
    sim = simulate(q, x)
    torch_outs = neuron_outputs(q.model, x.double())
    assert len(torch_outs) == len(sim.layer_outputs)
    for t, s in zip(torch_outs, sim.layer_outputs, strict=True):
        assert np.array_equal(t.numpy().astype(np.int64), s)
    return sim


def _mixed_net(reset, delay, seed):
    torch.manual_seed(seed)
    return Sequential(
        nn.Linear(10, 12),
        LIF(beta=0.9, threshold=0.4, reset=reset, reset_delay=delay),
        nn.Linear(12, 12),
        RLIF(12, beta=0.8, threshold=0.3, reset=reset, reset_delay=delay),
        nn.Linear(12, 8),
        CubaLIF(alpha=0.6, beta=0.85, threshold=0.3, reset=reset),
        nn.Linear(8, 6),
        IF(threshold=0.5, reset=reset),
        nn.Linear(6, 3),
        LI(beta=0.7),
    )


@settings(max_examples=25, deadline=None)
@given(
    profile=st.sampled_from(PROFILES),
    bits=st.sampled_from([2, 3, 4, 8]),
    reset=st.sampled_from(["zero", "subtract", "none"]),
    delay=st.booleans(),
    seed=st.integers(0, 10_000),
    rate=st.floats(0.05, 0.9),
)
def test_simulator_bit_identical_to_quantized_torch_model(profile, bits, reset, delay, seed, rate):
    q = quantize(_mixed_net(reset, delay, seed), bits, profile)
    _assert_identical(q, _spikes(12, 3, (10,), rate, seed))


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 1000), profile=st.sampled_from(PROFILES[:3]))
def test_simulator_identical_for_conv_networks(seed, profile):
    torch.manual_seed(seed)
    net = Sequential(
        nn.Conv2d(2, 4, 3, padding=1, stride=1),
        IF(threshold=0.4),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1, groups=2),
        LIF(beta=0.8, threshold=0.3, shape=(4, 1, 1)),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
        LIF(beta=0.9, threshold=0.3),
    )
    q = quantize(net, 8, profile, input_shape=(2, 8, 8))
    _assert_identical(q, _spikes(5, 2, (2, 8, 8), 0.4, seed))


def test_event_count_inputs_and_non_integer_input_refused():
    q = quantize(Sequential(nn.Linear(4, 3), LIF(threshold=0.5)), 8)
    counts = torch.randint(0, 4, (5, 2, 4)).float()
    _assert_identical(q, counts)
    with pytest.raises(ValueError, match="integer input"):
        simulate(q, counts + 0.5)


def test_scale_folding_is_exact_for_representable_weights():
    """Weights that are integer multiples of the chosen scale: quantised spikes == float spikes.

    Each row's largest weight is 127 * 2**-7, so with threshold 1 (or 0.75) the scale is
    exactly 2**-7 and the integer threshold 128 (or 96): only folding, no rounding.
    """
    g = torch.Generator().manual_seed(0)
    step = 2.0**-7
    net = Sequential(
        nn.Linear(16, 10),
        IF(threshold=1.0),
        nn.Linear(10, 4),
        IF(threshold=0.75),
        nn.Linear(4, 3),
        LIF(beta=0.0, threshold=0.25, reset="subtract"),
    )
    with torch.no_grad():
        for lin in (net[0], net[2], net[4]):
            k = torch.randint(-10, 41, lin.weight.shape, generator=g).float()
            k[:, 0] = 127
            lin.weight.copy_(k * step)
            lin.bias.copy_(torch.randint(-3, 4, lin.bias.shape, generator=g) * step)
    net = net.double()
    q = quantize(net, 8, "int8", scale_method="max")
    assert all(r.max_weight_error in (None, 0.0) for r in q.report.layers)
    assert all(r.max_threshold_error in (None, 0.0) for r in q.report.layers)
    assert float(q.model[3].threshold) == 96.0
    x = _spikes(30, 8, (16,), 0.5, 1)
    outs = neuron_outputs(net, x.double())
    assert outs[0].sum() > 0 and outs[-1].sum() > 0
    for a, b in zip(outs, neuron_outputs(q.model, x.double()), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("bits", [8, 4, 2])
@pytest.mark.parametrize("method", ["max", "mse"])
def test_weights_in_range_and_error_reported(bits, method):
    torch.manual_seed(0)
    net = Sequential(nn.Linear(30, 20), LIF(beta=0.9, threshold=0.8), nn.Linear(20, 5), LI())
    q = quantize(net, bits, "int8", scale_method=method)
    qmax = 2 ** (bits - 1) - 1
    for layer, row in zip(q.model, q.report.layers, strict=True):
        if isinstance(layer, nn.Linear):
            w = layer.weight
            assert torch.equal(w, w.round()) and int(w.abs().max()) <= qmax
            scale = q.weight_scales[row.index]
            w_float = net[row.index].weight.detach().double()
            err = (w_float - scale[:, None] * w).abs().max().item()
            assert row.max_weight_error == pytest.approx(err)
            if method == "max":
                assert row.clipped == 0
                assert err <= scale.max().item() / 2 + 1e-12
    th = q.model[1].threshold
    assert torch.equal(th, th.round())
    assert q.report.layers[1].max_threshold_error == pytest.approx(0.0, abs=1e-12)
    text = str(q.report)
    assert "max weight err" in text and "| 0 | Linear |" in text


def test_mse_scale_helps_at_low_bits():
    torch.manual_seed(0)
    net = Sequential(nn.Linear(200, 20), LIF(beta=0.9, threshold=0.5))
    with torch.no_grad():
        net[0].weight.copy_(torch.randn(20, 200) * 0.05)
        net[0].weight[:, 0] = 0.5  # one outlier per row
    err = {m: quantize(net, 2, scale_method=m).model[0].weight for m in ("max", "mse")}
    # with "max" the outlier sets the scale and (almost) every other weight rounds to 0
    assert (err["max"] != 0).float().mean() < (err["mse"] != 0).float().mean()


def test_li_readout_gets_one_scale_per_layer():
    torch.manual_seed(0)
    net = Sequential(nn.Linear(8, 6), LIF(threshold=0.4), nn.Linear(6, 4), LI(beta=0.9))
    q = quantize(net, 8)
    s = q.weight_scales[2]
    assert torch.all(s == s[0])
    assert torch.all(q.output_scale == s[0])


def test_shared_threshold_profile_folds_per_neuron_thresholds():
    torch.manual_seed(0)
    net = Sequential(nn.Linear(8, 6), LIF(beta=0.9, threshold=torch.linspace(0.2, 1.2, 6)))
    q = quantize(net, 8, "loihi2")
    assert q.model[1].threshold.dim() == 0  # one integer threshold for the layer
    torch.testing.assert_close(
        q.weight_scales[0] * q.model[1].threshold, torch.linspace(0.2, 1.2, 6).double()
    )
    per = quantize(net, 8, "int8")
    assert per.model[1].threshold.numel() == 6  # per-channel: one integer each


def test_avgpool_becomes_sum_pool_with_scale_folded():
    net = Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        LIF(threshold=0.5),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * 2 * 2, 2),
        LIF(threshold=0.3),
    )
    q = quantize(net, 8, input_shape=(1, 4, 4))
    assert isinstance(q.model[2], SumPool2d)
    # the next synapse sees integer sums: its float weights are divided by k^2 = 4
    w_eff = net[4].weight.detach().double() / 4
    s = q.weight_scales[4]
    assert (w_eff - s[:, None] * q.model[4].weight).abs().max() <= s.max() / 2 + 1e-12


def test_decay_representations():
    k, bq = quantize_decay(np.array([0.5, 0.75, 0.9, 0.97, 1.0]), "shift", max_shift=15)
    assert k.tolist() == [1, 2, 3, 5, 15]
    d, bq = quantize_decay(np.array([0.9, 1.0, 0.0]), "mult", bits=12)
    assert d.tolist() == [410, 0, 4096]
    v = np.array([-1000, -7, -1, 0, 1, 7, 1000], dtype=np.int64)
    vt = torch.from_numpy(v.astype(np.float64))
    for mode, p in (("shift", 3), ("mult", 410), ("none", 0)):
        for rounding in ("floor", "trunc"):
            a = decay_numpy(v, mode, np.int64(p), 12, rounding)
            b = decay_torch(vt, mode, torch.tensor(float(p), dtype=torch.float64), 12, rounding)
            assert np.array_equal(a, b.numpy().astype(np.int64))
    assert decay_numpy(v, "shift", np.int64(3), 12, "floor").tolist()[:3] == [-875, -6, 0]
    assert decay_numpy(v, "mult", np.int64(410), 12, "trunc").tolist()[-1] == 899


def test_saturation_is_counted_and_identical():
    prof = HardwareProfile("narrow", state_bits=8, decay="mult")
    torch.manual_seed(0)
    net = Sequential(nn.Linear(40, 4), LIF(beta=0.95, threshold=5.0), nn.Linear(4, 2), LI(0.9))
    with torch.no_grad():
        net[0].weight.abs_()
    q = quantize(net, 8, prof)
    sim = _assert_identical(q, torch.ones(10, 2, 40))
    assert sim.saturations[1] > 0


def test_quantized_neuron_validation():
    with pytest.raises(ValueError, match="integers"):
        QuantizedNeuron("LIF", threshold=torch.tensor(1.5))
    with pytest.raises(ValueError, match="i_decay"):
        QuantizedNeuron("CubaLIF", threshold=torch.tensor(3.0))
    with pytest.raises(ValueError, match="kind"):
        QuantizedNeuron("ALIF", threshold=torch.tensor(3.0))


def test_quantize_argument_errors():
    net = Sequential(nn.Linear(4, 3), LIF())
    with pytest.raises(ValueError, match="bits"):
        quantize(net, 1)
    with pytest.raises(ValueError, match="granularity"):
        quantize(net, 8, granularity="neuron")
    with pytest.raises(ValueError, match="threshold must be > 0"):
        LIF(threshold=-1.0)  # refused where it is made
    negative = LIF()
    with torch.no_grad():
        negative.threshold.fill_(-1.0)  # e.g. learned or loaded below zero
    with pytest.raises(ValueError, match="positive thresholds"):
        quantize(Sequential(nn.Linear(4, 3), negative), 8)
    with pytest.raises(ValueError, match="unknown hardware target"):
        quantize(net, 8, "truenorth")
    with pytest.raises(ValueError, match="input_scale"):
        quantize(net, 8, input_scale=0)
