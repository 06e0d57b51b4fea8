"""The model zoo: every model builds, learns with LFP, calibrates, exports; specs round-trip."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from spikelfp import IF, LIF, RLIF, Sequential, SumPool2d
from spikelfp.hw_export import canonicalize, export
from spikelfp.lfp import default_composite, lfp_step, rate_coded_reward
from spikelfp.lfp.synapse_rules import AvgPoolRule
from spikelfp.neurons.base import NeuronModule
from spikelfp.training.models import (
    MODELS,
    ZOO,
    ModelSpec,
    build_model,
    calibrate_firing,
    describe_models,
    model_summary,
    models_table,
    neuron_layers,
)

# small frames and layers: every test runs in well under a second per model
SMALL = {
    "mlp": (2, 6, 6),
    "conv": (2, 8, 8),
    "speck-cnn": (2, 12, 12),
    "nmnist-cnn": (2, 8, 8),
    "dvsgesture-cnn": (2, 32, 32),
    "braille-rsnn": (6,),
    "braille-mlp": (6,),
}


def small_spec(name: str, **kw) -> ModelSpec:
    n = ZOO[name].n_channels
    kw.setdefault("channels", (3,) * n if n else None)
    kw.setdefault("hidden", 12)
    return ModelSpec(name, SMALL[name], 4, **kw)


def spikes(spec: ModelSpec, t: int = 6, b: int = 4, p: float = 0.3) -> torch.Tensor:
    return (torch.rand(t, b, *spec.input_shape) < p).float()


def test_registry_lists_every_model():
    assert MODELS == (
        "mlp",
        "conv",
        "speck-cnn",
        "nmnist-cnn",
        "dvsgesture-cnn",
        "braille-rsnn",
        "braille-mlp",
    )
    assert set(SMALL) == set(MODELS)
    for name, entry in ZOO.items():
        assert entry.name == name and entry.layout and entry.source
        assert len(entry.default_channels) == entry.n_channels


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("neuron", ["lif", "if"])
def test_builds_and_output_shape(name, neuron):
    spec = small_spec(name, neuron=neuron)
    net = build_model(spec)
    assert isinstance(net, Sequential)
    out, state = net(spikes(spec, t=5, b=3))
    assert out.shape == (5, 3, 4)
    kinds = {type(m) for _, m in neuron_layers(net)} - {RLIF}  # braille-rsnn's recurrent layer
    assert kinds == ({IF} if neuron == "if" else {LIF})
    assert not any(isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)) for m in net.modules())
    canonicalize(net)  # every layer has a hardware equivalent


@pytest.mark.parametrize("name", MODELS)
def test_default_sizes_build(name):
    spec = ModelSpec(name, (2, 34, 34), 10)
    assert spec.channels == ZOO[name].default_channels
    assert spec.hidden == ZOO[name].default_hidden
    net = build_model(spec)
    assert net(torch.zeros(1, 1, 2, 34, 34))[0].shape == (1, 1, 10)


def test_speck_cnn_is_the_nir_paper_layout():
    net = build_model(ModelSpec("speck-cnn", (2, 34, 34), 10, neuron="if", bias=False))
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (2, 16, (5, 5), (2, 2), (1, 1)),
        (16, 16, (3, 3), (1, 1), (1, 1)),
        (16, 8, (3, 3), (1, 1), (1, 1)),
    ]
    linears = [(m.in_features, m.out_features) for m in net if isinstance(m, nn.Linear)]
    assert linears == [(128, 256), (256, 10)]
    assert sum(isinstance(m, nn.AvgPool2d) for m in net) == 2
    net = build_model(ModelSpec("speck-cnn", (2, 34, 34), 10, pool="sum"))
    assert sum(isinstance(m, SumPool2d) for m in net) == 2


@pytest.mark.parametrize("shape", [(2, 128, 128), (2, 32, 32)])
def test_dvsgesture_cnn_takes_full_and_downsampled_frames(shape):
    net = build_model(ModelSpec("dvsgesture-cnn", shape, 11))
    assert net(torch.zeros(1, 1, *shape))[0].shape == (1, 1, 11)
    assert sum(isinstance(m, nn.Conv2d) for m in net) == 4


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("batch_norm", [False, True])
def test_summary_matches_the_built_model(name, batch_norm):
    if batch_norm and not ZOO[name].batch_norm:
        pytest.skip(f"{name} has no convolutions")
    spec = small_spec(name, batch_norm=batch_norm)
    net = build_model(spec)
    s = model_summary(spec)
    assert s["parameters"] == sum(p.numel() for p in net.parameters())
    x = torch.zeros(1, 1, *spec.input_shape)
    neurons = 0
    for layer in net:
        x = layer(x)[0] if isinstance(layer, NeuronModule) else Sequential(layer)(x)[0]
        neurons += x[0, 0].numel() if isinstance(layer, NeuronModule) else 0
    assert s["neurons"] == neurons
    assert s["layers"][-1]["output_shape"] == (4,)
    assert s["synops"] > 0


def test_summary_counts_by_hand():
    spec = ModelSpec("conv", (2, 8, 8), 3, channels=(4, 6))
    s = model_summary(spec)
    # conv1: 4·8·8 outputs × 2·3·3 fan-in; conv2: 6·4·4 × 4·3·3; linear: 3 × 6·2·2
    assert s["synops"] == 256 * 18 + 96 * 36 + 3 * 24
    assert s["pool_ops"] == 4 * 4 * 4 * 4 + 6 * 2 * 2 * 4
    assert s["neurons"] == 256 + 96 + 3
    assert s["parameters"] == 4 * 19 + 6 * 37 + 3 * 25
    rng = torch.get_rng_state()
    model_summary(spec)
    assert torch.equal(rng, torch.get_rng_state())  # building for a summary leaves the RNG


@pytest.mark.parametrize("name", MODELS)
def test_bias_free(name):
    net = build_model(small_spec(name, bias=False))
    synapses = [m for m in net if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert synapses and all(m.bias is None for m in synapses)
    assert not any(n.endswith("bias") for n, _ in net.named_parameters())


def test_batch_norm_follows_every_convolution():
    net = build_model(small_spec("nmnist-cnn", batch_norm=True))
    layers = list(net)
    for i, m in enumerate(layers):
        if isinstance(m, nn.Conv2d):
            assert isinstance(layers[i + 1], nn.BatchNorm2d)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in layers) == 2


def test_spec_round_trip_and_old_dicts():
    spec = ModelSpec("dvsgesture-cnn", (2, 32, 32), 11, neuron="if", bias=False, batch_norm=True)
    d = spec.to_dict()
    assert d["channels"] == [16, 32, 32, 64] and d["hidden"] == 256
    assert ModelSpec.from_dict(d) == spec
    old_mlp = {
        "name": "mlp",
        "input_shape": [2, 34, 34],
        "n_classes": 10,
        "hidden": 64,
        "channels": [12, 24],
        "beta": 0.9,
        "threshold": 1.0,
        "reset": "subtract",
        "reset_delay": False,
        "extra": {},
    }
    spec = ModelSpec.from_dict(old_mlp)
    assert (spec.neuron, spec.bias, spec.batch_norm, spec.hidden) == ("lif", True, False, 64)
    assert build_model(spec)[2].reset == "subtract"
    with pytest.raises(ValueError, match="unknown model spec fields"):
        ModelSpec.from_dict({**old_mlp, "colour": 1})
    with pytest.raises(ValueError, match="lacks"):
        ModelSpec.from_dict({"name": "mlp"})


def test_old_conv_checkpoint_loads_with_a_warning():
    old = Sequential(  # the conv of earlier versions, with max pooling
        nn.Conv2d(2, 12, 3, padding=1),
        LIF(),
        nn.MaxPool2d(2),
        nn.Conv2d(12, 24, 3, padding=1),
        LIF(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(24 * 8 * 8, 10),
        LIF(),
    )
    d = {
        "name": "conv",
        "input_shape": [2, 34, 34],
        "n_classes": 10,
        "hidden": 256,
        "channels": [12, 24],
        "beta": 0.9,
        "threshold": 1.0,
        "reset": "zero",
        "reset_delay": False,
        "extra": {},
    }
    with pytest.warns(UserWarning, match="max pooling"):
        spec = ModelSpec.from_dict(d)
    build_model(spec).load_state_dict(old.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ModelSpec.from_dict(spec.to_dict())  # saved by this version: no warning


def test_errors_are_one_line():
    cases = [
        (ModelSpec("resnet", (2, 34, 34), 10), "unknown model 'resnet'; choose one of mlp, conv"),
        (ModelSpec("speck-cnn", (2, 34, 34), 10, channels=(8, 8)), "speck-cnn takes 3 channel"),
        (ModelSpec("conv", (2, 34, 34), 10, channels=(1, 2, 3)), "conv takes 2 channel"),
        (ModelSpec("speck-cnn", (2, 8, 8), 10), r"speck-cnn needs frames of at least 9x9"),
        (ModelSpec("dvsgesture-cnn", (2, 16, 16), 11), "at least 31x31 pixels, got 16x16"),
        (ModelSpec("mlp", (2, 8, 8), 10, neuron="alif"), "unknown neuron 'alif'"),
        (ModelSpec("mlp", (2, 8, 8), 10, batch_norm=True), "mlp has no convolutions"),
        (ModelSpec("mlp", (34, 34), 10), r"must be \(P, H, W\)"),
    ]
    for spec, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            build_model(spec)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", MODELS)
def test_lfp_step_runs(name):
    spec = small_spec(name, batch_norm=name == "nmnist-cnn")
    net = build_model(spec)
    x = spikes(spec, t=4, b=3)
    calibrate_firing(net, x, 0.2)
    res = lfp_step(net, x, torch.tensor([0, 1, 2]), rate_coded_reward)
    assert res.output.shape == (4, 3, 4)
    for n, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
    assert any(p.grad.abs().sum() > 0 for p in net.parameters())


def _rates(net: Sequential, x: torch.Tensor) -> list[float]:
    rates = []
    with torch.no_grad():
        for layer in net:
            x = layer(x)[0] if isinstance(layer, NeuronModule) else Sequential(layer)(x)[0]
            if isinstance(layer, NeuronModule):
                rates.append(x.mean().item())
    return rates


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("variant", ["default", "if-no-bias", "batch-norm"])
def test_calibration_reaches_its_targets(name, variant):
    if variant == "batch-norm" and not ZOO[name].batch_norm:
        pytest.skip(f"{name} has no convolutions")
    kw = {"if-no-bias": {"neuron": "if", "bias": False}, "batch-norm": {"batch_norm": True}}
    spec = small_spec(name, **kw.get(variant, {}))
    net = build_model(spec)
    x = spikes(spec, t=8, b=8, p=0.2)
    n = len(neuron_layers(net))
    targets = [0.1] * (n - 1) + [0.05]
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    gains = calibrate_firing(net, x, targets)
    assert len(gains) == n
    after = net.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # BN stats restored
    rates = _rates(net, x)
    for got, want in zip(rates, targets, strict=True):
        assert abs(got - want) < 0.025, (rates, targets)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("neuron", ["lif", "if"])
def test_exports_to_int8_nir(name, neuron, tmp_path):
    pytest.importorskip("nir")
    pytest.importorskip("h5py")
    spec = small_spec(name, neuron=neuron, reset="zero", batch_norm=name == "nmnist-cnn")
    net = build_model(spec)
    x = spikes(spec, t=4, b=4)
    calibrate_firing(net, x, 0.2)
    path = tmp_path / f"{name}.nir"
    rep = export(
        net,
        target="int8",
        bits=8,
        prune=0.0,
        path=path,
        input_shape=spec.input_shape,
        data=(x, torch.tensor([0, 1, 2, 3])),
        verbose=False,
    )
    assert path.is_file() and path.stat().st_size > 0
    assert rep.constraints.ok and rep.simulator_identical


def test_sum_pool_lfp_conserves_reward_like_avg_pool():
    torch.manual_seed(1)
    x = torch.rand(3, 2, 6, 6) + 0.1  # positive: every window's sum is non-zero
    rho = torch.randn(3, 2, 3, 3)
    rule = default_composite().rule_for(SumPool2d(2))
    assert isinstance(rule, AvgPoolRule)
    xs = x.clone().requires_grad_(True)
    zs = rule.forward(SumPool2d(2), xs)
    zs.backward(rho)
    xa = x.clone().requires_grad_(True)
    za = AvgPoolRule().forward(nn.AvgPool2d(2), xa)
    za.backward(rho)
    assert torch.allclose(zs, 4 * za)  # the forward is the sum
    assert torch.allclose(xs.grad.sum(), rho.sum(), atol=1e-5)  # reward conserved
    assert torch.allclose(xs.grad, xa.grad, atol=1e-6)  # same split as average pooling


def test_sum_pool_network_learns_like_avg_pool_network():
    """Sum pooling then W equals average pooling then 4W, forward and LFP feedback alike."""
    torch.manual_seed(2)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    lin = nn.Linear(3 * 4 * 4, 4)
    a = Sequential(conv, LIF(threshold=0.3), SumPool2d(2), nn.Flatten(), lin, LIF(threshold=0.3))
    b = copy.deepcopy(a)
    b[2] = nn.AvgPool2d(2)
    with torch.no_grad():
        b[4].weight.mul_(4)
    x = (torch.rand(6, 5, 2, 8, 8) < 0.4).float()
    y = torch.tensor([0, 1, 2, 3, 0])
    ra = lfp_step(a, x, y, rate_coded_reward)
    rb = lfp_step(b, x, y, rate_coded_reward)
    assert torch.equal(ra.output, rb.output) and ra.output.sum() > 0
    assert torch.allclose(a[0].weight.grad, b[0].weight.grad, atol=1e-6)
    assert torch.allclose(a[4].weight.grad, b[4].weight.grad, atol=1e-6)


def test_describe_models_and_table():
    rows = describe_models((2, 34, 34), 10)
    assert [r["name"] for r in rows] == list(MODELS)
    for r in rows:
        assert r["error"] is None
        s = model_summary(ModelSpec(r["name"], (2, 34, 34), 10))
        assert (r["parameters"], r["neurons"], r["synops"]) == (
            s["parameters"],
            s["neurons"],
            s["synops"],
        )
    small = {r["name"]: r for r in describe_models((2, 16, 16), 11, neuron="if")}
    assert small["dvsgesture-cnn"]["parameters"] is None
    assert "31x31" in small["dvsgesture-cnn"]["error"]
    table = models_table((2, 34, 34), 10)
    assert all(name in table for name in MODELS)
    assert len(table.splitlines()) == 2 + len(MODELS)
