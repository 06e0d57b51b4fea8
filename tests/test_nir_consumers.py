"""spikelfp's NIR files read by other frameworks' importers: spikes compared with spikelfp's.

Weights are multiples of 1/16 and decays 1/2 or 3/4, so every simulator computes exactly and
equality is guaranteed rather than rounding luck. Each test skips when its consumer is missing.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from spikelfp import IF, LI, LIF, CubaLIF, Sequential
from spikelfp.hw_export import (
    ResetNotExpressibleError,
    UnsupportedLayerError,
    from_nir,
    neuron_outputs,
    read_nir,
    to_nir,
    write_nir,
)

nir = pytest.importorskip("nir", reason="the NIR tests need the optional package 'nir'")

T, B = 16, 5


def _spikes(shape, p=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, *shape, generator=g) < p).float()


def _dyadic(net, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randint(-6, 12, p.shape) / 16)
    return net


def _through_file(net, tmp_path, **kw):
    return read_nir(write_nir(to_nir(net, **kw), tmp_path / "c.nir"))


def _check_round_trip(net, graph, x):
    """spikelfp reads its own file back exactly, whatever reader it was written for."""
    back = from_nir(graph, dtype=x.dtype)
    for a, b in zip(neuron_outputs(net, x), neuron_outputs(back, x), strict=True):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------- snntorch


def _snntorch_run(graph, x):
    snn_import = pytest.importorskip("snntorch.import_nir", reason="snntorch not installed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = snn_import.import_from_nir(graph)
    out, state = [], None
    with torch.no_grad():
        for t in range(x.shape[0]):
            o, state = net(x[t], state)
            out.append(o)
    return torch.stack(out)


def test_snntorch_reads_if_and_cubalif(tmp_path):
    """snntorch reads a NIR IF as Leaky(beta=0.9): convention='snntorch' writes IF as a LIF
    with beta = 1 (tau = 1e300), and dt = 1e-4 (snntorch's hard-coded step)."""
    net = _dyadic(
        Sequential(
            nn.Linear(12, 10),
            IF(threshold=0.5),
            nn.Linear(10, 8),
            CubaLIF(alpha=0.5, beta=0.75, threshold=0.5),
            nn.Linear(8, 4),
            LIF(beta=0.5, threshold=0.25),
        ),
        7,
    ).double()
    x = _spikes((12,), seed=7)
    graph = _through_file(net, tmp_path, convention="snntorch")
    assert isinstance(graph.nodes["l1_if"], nir.LIF)
    ref, _ = net(x.double())
    assert all(o.sum() > 0 for o in neuron_outputs(net, x.double()))
    assert torch.equal(_snntorch_run(graph, x).double(), ref)
    _check_round_trip(net, graph, x.double())
    # the default file: snntorch would simulate the IF as a leaky neuron
    plain = to_nir(net, 1e-4)
    assert isinstance(plain.nodes["l1_if"], nir.IF)


# --------------------------------------------------------------------------- norse


def _norse_run(graph, x):
    nt_nir = pytest.importorskip("norse.torch.utils.import_nir", reason="norse not installed")
    logging.disable(logging.WARNING)
    try:
        net = nt_nir.from_nir(graph, dt=1e-3)
    finally:
        logging.disable(logging.NOTSET)
    out, state = [], None
    with torch.no_grad():
        for t in range(x.shape[0]):
            o, state = net(x[t], state)
            out.append(o)
    return torch.stack(out)


@pytest.mark.parametrize("kind", ["LIF", "CubaLIF", "IF"])
def test_norse_reads_our_file(kind, tmp_path):
    hidden = {
        "LIF": lambda: LIF(beta=0.75, threshold=0.5),
        "CubaLIF": lambda: CubaLIF(alpha=0.5, beta=0.75, threshold=0.5),
        "IF": lambda: IF(threshold=0.5),
    }[kind]
    net = _dyadic(Sequential(nn.Linear(12, 10), hidden(), nn.Linear(10, 4), hidden()), 8)
    x = _spikes((12,), seed=8)
    graph = _through_file(net, tmp_path, dt=1e-3, convention="norse")
    ref, _ = net(x)
    assert all(o.sum() > 0 for o in neuron_outputs(net, x))
    assert torch.equal(_norse_run(graph, x), ref)
    _check_round_trip(net, graph, x)


def test_norse_default_file_differs_for_lif(tmp_path):
    """Why convention='norse' exists: norse ignores a LIF's r (with a warning)."""
    net = _dyadic(Sequential(nn.Linear(12, 10), LIF(beta=0.75, threshold=0.5)), 8)
    x = _spikes((12,), seed=8)
    ref, _ = net(x)
    assert not torch.equal(_norse_run(to_nir(net, 1e-3), x), ref)


# --------------------------------------------------------------------------- sinabs


def _sinabs_run(graph, x):
    sinabs = pytest.importorskip("sinabs", reason="sinabs not installed")
    t, b = x.shape[:2]
    net = sinabs.from_nir(graph, batch_size=b)
    with torch.no_grad():
        out = net(x.transpose(0, 1).reshape(b * t, *x.shape[2:]))
    out = out[0] if isinstance(out, tuple) else out
    return out.reshape(b, t, *out.shape[1:]).transpose(0, 1)


def test_sinabs_reads_subtract_reset_if_cnn(tmp_path):
    """sinabs resets by subtraction: a reset='subtract' IF CNN is expressible. Its importer
    clips the membrane at -threshold and emits trunc(V/threshold) spikes (MultiSpike), so the
    weights here are non-negative and no step's input reaches the threshold (V < 2 theta);
    sinabs spikes at V >= theta, spikelfp at V > theta: the threshold is no sum of weights."""
    net = Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False),
        IF(threshold=1.2, reset="subtract"),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 10, bias=False),
        IF(threshold=1.2, reset="subtract"),
    )
    with torch.no_grad():
        torch.manual_seed(9)
        net[0].weight.copy_(torch.randint(0, 2, net[0].weight.shape) / 16)  # sum <= 18/16
        net[4].weight.copy_(torch.randint(0, 2, net[4].weight.shape) / 64)  # sum <= 1
    from spikelfp.hw_export import SumPool2d

    net[2] = SumPool2d(2)  # sinabs reads SumPool2d, not AvgPool2d
    x = _spikes((2, 8, 8), seed=9)
    graph = to_nir(net, 1e-3, input_shape=(2, 8, 8), convention="sinabs")
    ref, _ = net(x)
    assert all(o.sum() > 0 for o in neuron_outputs(net, x))
    assert torch.equal(_sinabs_run(graph, x), ref)
    _check_round_trip(net, graph, x)
    zero = Sequential(nn.Linear(3, 2), IF(threshold=1.0))
    with pytest.raises(ResetNotExpressibleError, match="subtraction"):
        to_nir(zero, 1e-3, convention="sinabs")


def test_sinabs_reads_lif(tmp_path):
    net = _dyadic(
        Sequential(
            nn.Linear(12, 10),
            LIF(beta=0.75, threshold=0.4, reset="subtract"),
            nn.Linear(10, 4),
            LIF(beta=0.75, threshold=0.4, reset="subtract"),
        ),
        10,
    )
    with torch.no_grad():  # >= 0 (sinabs clips at -threshold), sums < theta (one spike a step)
        for p in net.parameters():
            p.copy_(torch.randint(0, 3, p.shape) / 64)
    x = _spikes((12,), p=0.8, seed=10)
    graph = to_nir(net, 1e-3, convention="sinabs")
    ref, _ = net(x)
    assert all(o.sum() > 0 for o in neuron_outputs(net, x))
    got = _sinabs_run(graph, x)
    np.testing.assert_array_equal(got.detach().numpy(), ref.detach().numpy())
    _check_round_trip(net, graph, x)


def test_consumer_conventions_refuse_what_the_reader_lacks():
    cuba = Sequential(nn.Linear(3, 2), CubaLIF(reset="subtract"))
    with pytest.raises(UnsupportedLayerError, match="sinabs"):
        to_nir(cuba, 1e-3, convention="sinabs")
    with pytest.raises(ValueError, match="unknown export convention"):
        to_nir(Sequential(nn.Linear(3, 2), LI(beta=0.5)), 1e-3, convention="lava")
