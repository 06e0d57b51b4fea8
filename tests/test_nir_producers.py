"""NIR graphs written by other frameworks: built and exported with the producer itself,
imported with no dt or convention argument, spikes compared with the producer's own simulation.

snntorch and norse are in the ``baselines`` extra; sinabs and rockpool in ``nir-producers``
(rockpool is AGPL). Each test skips with the reason when its producer is missing.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from spikelfp import IF, CubaLIF
from spikelfp.hw_export import from_nir, neuron_outputs, read_nir, write_nir
from spikelfp.hw_export.nir_graph import RecurrentNeuron

nir = pytest.importorskip("nir", reason="the NIR tests need the optional package 'nir'")

T, B = 25, 4


def _spikes(shape, p=0.4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, *shape, generator=g) < p).float()


def _assert_same(ref, got):
    assert len(ref) == len(got)
    for i, (a, b) in enumerate(zip(ref, got, strict=True)):
        a = a.to(b.dtype)
        assert a.shape == b.shape, i
        assert a.sum() > 0, f"layer {i} never spikes: the test would prove nothing"
        assert torch.equal(a, b), f"layer {i}: {int((a != b).sum())} of {a.numel()} differ"


def _file_round(graph, tmp_path):
    """Through a file, as a user gets it."""
    return read_nir(write_nir(graph, tmp_path / "g.nir"))


# --------------------------------------------------------------------------- snntorch


def _snntorch():
    snn = pytest.importorskip("snntorch", reason="snntorch not installed (spikelfp[baselines])")
    export = pytest.importorskip("snntorch.export_nir").export_to_nir
    return snn, export


def _run_snntorch(snn, net, x):
    """Step the snntorch net (init_hidden) and record every neuron's spikes."""
    import snntorch.utils

    rec: dict[str, list] = {}
    hooks = [
        m.register_forward_hook(
            lambda mod, i, o, n=name: rec.setdefault(n, []).append(
                o[0] if isinstance(o, tuple) else o
            )
        )
        for name, m in net.named_modules()
        if isinstance(m, snn.SpikingNeuron)
    ]
    snntorch.utils.reset(net)
    with torch.no_grad():
        for t in range(x.shape[0]):
            net(x[t])
    for h in hooks:
        h.remove()
    return [torch.stack(v) for v in rec.values()]


def _vec(n, v):
    return torch.full((n,), float(v))


def _snn_export(export, net, shape):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export(net, torch.zeros(1, *shape), ignore_dims=[0])


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_snntorch_leaky_synaptic_chain(reset, tmp_path):
    snn, export = _snntorch()
    torch.manual_seed(0)
    kw = dict(reset_mechanism=reset, init_hidden=True)
    net = nn.Sequential(
        nn.Linear(12, 16),
        snn.Leaky(beta=_vec(16, 0.8), threshold=_vec(16, 0.5), **kw),
        nn.Linear(16, 16),
        snn.Synaptic(alpha=_vec(16, 0.6), beta=_vec(16, 0.85), threshold=_vec(16, 0.4), **kw),
        nn.Linear(16, 4),
        snn.Leaky(beta=_vec(4, 0.9), threshold=_vec(4, 0.3), output=True, **kw),
    )
    x = _spikes((12,))
    ref = _run_snntorch(snn, net, x)
    graph = _file_round(_snn_export(export, net, (12,)), tmp_path)
    # the file cannot say which reset snntorch used: subtract (its default) unless told
    back = from_nir(graph) if reset == "subtract" else from_nir(graph, reset="zero")
    assert isinstance(back[3], CubaLIF) and back[1].reset == reset
    _assert_same(ref, neuron_outputs(back, x))


@pytest.mark.parametrize("cls", ["RLeaky", "RSynaptic"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_snntorch_recurrent_flat_cycle(cls, reset, tmp_path):
    """snntorch writes recurrence as a flat cycle lif -> w_rec -> lif (the Braille RNNs)."""
    snn, export = _snntorch()
    torch.manual_seed(1)
    kw = dict(reset_mechanism=reset, init_hidden=True)
    extra = {"alpha": _vec(16, 0.6)} if cls == "RSynaptic" else {}
    rec = getattr(snn, cls)(
        beta=_vec(16, 0.8), threshold=_vec(16, 0.5), linear_features=16, **extra, **kw
    )
    net = nn.Sequential(
        nn.Linear(12, 16),
        rec,
        nn.Linear(16, 4),
        snn.Leaky(beta=_vec(4, 0.9), threshold=_vec(4, 0.3), output=True, **kw),
    )
    x = _spikes((12,), seed=1)
    ref = _run_snntorch(snn, net, x)
    graph = _file_round(_snn_export(export, net, (12,)), tmp_path)
    assert any(isinstance(n, nir.NIRGraph) for n in graph.nodes.values()) is False  # flat
    back = from_nir(graph) if reset == "subtract" else from_nir(graph, reset="zero")
    assert isinstance(back[1], RecurrentNeuron)  # the recurrent bias of snntorch's Linear
    _assert_same(ref, neuron_outputs(back, x))


def test_snntorch_conv(tmp_path):
    snn, export = _snntorch()
    torch.manual_seed(2)
    kw = dict(init_hidden=True)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        snn.Leaky(beta=torch.full((4, 8, 8), 0.8), threshold=torch.full((4, 8, 8), 0.5), **kw),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 4, 3),
        snn.Leaky(beta=torch.full((4, 2, 2), 0.7), threshold=torch.full((4, 2, 2), 0.3), **kw),
    )
    x = _spikes((2, 8, 8), p=0.5, seed=2)
    ref = _run_snntorch(snn, net, x)
    graph = _file_round(_snn_export(export, net, (2, 8, 8)), tmp_path)
    back = from_nir(graph)
    _assert_same(ref, neuron_outputs(back, x))


# --------------------------------------------------------------------------- sinabs


def _sinabs():
    sinabs = pytest.importorskip("sinabs", reason="sinabs not installed (spikelfp[nir-producers])")
    return sinabs, pytest.importorskip("sinabs.layers"), pytest.importorskip("sinabs.activation")


def _run_squeezed(net, x, neuron_types):
    """sinabs's *Squeeze layers take (B*T, ...) batch-major; return (T, B, ...) per neuron."""
    rec = []
    hooks = [
        m.register_forward_hook(lambda mod, i, o: rec.append(o))
        for m in net
        if isinstance(m, neuron_types)
    ]
    t, b = x.shape[:2]
    with torch.no_grad():
        net(x.transpose(0, 1).reshape(b * t, *x.shape[2:]))
    for h in hooks:
        h.remove()
    return [r.reshape(b, t, *r.shape[1:]).transpose(0, 1) for r in rec]


@pytest.mark.parametrize("spike_fn", ["MultiSpike", "SingleSpike"])
def test_sinabs_if_cnn_needs_no_dt(spike_fn, tmp_path):
    """The N-MNIST-style IF CNN (Conv2d, IAF, SumPool2d, Flatten, Linear, IAF; r = 1)."""
    sinabs, sl, act = _sinabs()
    torch.manual_seed(3)
    fn = getattr(act, spike_fn)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False),
        sl.IAFSqueeze(batch_size=B, spike_fn=fn),
        sl.SumPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 10, bias=False),
        sl.IAFSqueeze(batch_size=B, spike_fn=fn),
    )
    if spike_fn == "MultiSpike":
        with torch.no_grad():
            net[0].weight.mul_(3.0)  # strong enough for several spikes in one step
    x = _spikes((2, 8, 8), p=0.5, seed=3)
    ref = _run_squeezed(net, x, sl.IAFSqueeze)
    for m in net:
        if isinstance(m, sl.IAFSqueeze):
            m.reset_states()
    graph = sinabs.to_nir(net, torch.zeros(B, 2, 8, 8))  # nir 1.0.8 cannot write it (None types)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no implausible-gain warning
        back = (
            from_nir(graph)
            if spike_fn == "MultiSpike"
            else from_nir(graph, convention="sinabs-single")
        )
    if spike_fn == "MultiSpike":
        assert max(float(r.max()) for r in ref) >= 2  # several spikes in one step happen
    else:
        assert isinstance(back[1], IF) and back[1].reset == "subtract"
    _assert_same(ref, neuron_outputs(back, x))


def test_sinabs_lif(tmp_path):
    sinabs, sl, act = _sinabs()
    torch.manual_seed(4)
    # sinabs's importer reads its LIF with norm_input=False: build it so
    net = nn.Sequential(
        nn.Linear(12, 16),
        sl.LIFSqueeze(
            tau_mem=torch.full((16,), 8.0),
            spike_threshold=torch.full((16,), 1.0),  # nir wants all parameters one shape
            batch_size=B,
            norm_input=False,
        ),
        nn.Linear(16, 4),
        sl.LIFSqueeze(
            tau_mem=torch.full((4,), 5.0),
            spike_threshold=torch.full((4,), 0.5),
            batch_size=B,
            norm_input=False,
        ),
    )
    x = _spikes((12,), seed=4)
    ref = _run_squeezed(net, x, sl.LIFSqueeze)
    for m in net:
        if isinstance(m, sl.LIFSqueeze):
            m.reset_states()
    graph = sinabs.to_nir(net, torch.zeros(B, 12))
    _assert_same(ref, neuron_outputs(from_nir(graph), x))


# --------------------------------------------------------------------------- norse


def test_norse_lif_cuba_if_li(tmp_path):
    nt = pytest.importorskip("norse.torch", reason="norse not installed (spikelfp[baselines])")
    from norse.torch.functional.iaf import IAFParameters
    from norse.torch.functional.leaky_integrator_box import LIBoxParameters
    from norse.torch.functional.lif import LIFParameters
    from norse.torch.functional.lif_box import LIFBoxParameters
    from norse.torch.utils.export_nir import to_nir as norse_to_nir

    torch.manual_seed(5)
    net = nt.SequentialState(
        nn.Linear(12, 16),
        nt.LIFBoxCell(LIFBoxParameters(tau_mem_inv=torch.tensor(200.0), v_th=torch.tensor(0.1))),
        nn.Linear(16, 16),
        nt.LIFCell(
            LIFParameters(
                tau_mem_inv=torch.tensor(150.0),
                tau_syn_inv=torch.tensor(300.0),
                v_th=torch.tensor(0.1),
            )
        ),
        nn.Linear(16, 16),
        nt.IAFCell(IAFParameters(v_th=torch.tensor(0.5))),
        nn.Linear(16, 4),
        nt.LIBoxCell(LIBoxParameters(tau_mem_inv=torch.tensor(100.0))),
    )
    rec: dict[str, list] = {}
    hooks = [
        m.register_forward_hook(lambda mod, i, o, n=name: rec.setdefault(n, []).append(o[0]))
        for name, m in net.named_children()
        if not isinstance(m, nn.Linear)
    ]
    x = _spikes((12,), seed=5)
    state = None
    with torch.no_grad():
        for t in range(T):
            _, state = net(x[t], state)
    for h in hooks:
        h.remove()
    ref = [torch.stack(v) for v in rec.values()]
    graph = norse_to_nir(net, torch.zeros(1, 12), dt=1e-3)  # 0-d tensors: nir cannot write it
    back = from_nir(graph)  # norse's tau = dt / tau_mem_inv, its dt = 1e-3: detected
    got = neuron_outputs(back, x)
    _assert_same(ref[:3], got[:3])
    torch.testing.assert_close(got[3], ref[3], rtol=1e-5, atol=1e-6)  # the LI readout


# --------------------------------------------------------------------------- rockpool


def test_rockpool_lif_multi_spike(tmp_path):
    pytest.importorskip("rockpool", reason="rockpool not installed (spikelfp[nir-producers])")
    from rockpool.nn.combinators import Sequential as RockSequential
    from rockpool.nn.modules import LIFTorch, LinearTorch
    from rockpool.nn.modules.torch.nir import to_nir as rockpool_to_nir

    torch.manual_seed(6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = RockSequential(
            LinearTorch((12, 16), has_bias=False),
            LIFTorch(16, tau_mem=0.02, tau_syn=0.01, threshold=0.3, dt=1e-3),
            LinearTorch((16, 4), has_bias=False),
            LIFTorch(4, tau_mem=0.03, tau_syn=0.005, threshold=0.2, dt=1e-3),
        )
        x = _spikes((12,), seed=6)
        with torch.no_grad():
            _, _, rec = net(x.transpose(0, 1), record=True)
        graph = _file_round(rockpool_to_nir(net), tmp_path)
    ref = [rec[k].transpose(0, 1) for k in ("1_LIFTorch_output", "3_LIFTorch_output")]
    _assert_same(ref, neuron_outputs(from_nir(graph), x))


def test_fine_tune_an_snntorch_graph_with_lfp_and_export_it_again(tmp_path):
    """Import a graph trained elsewhere, train it with LFP, write it again: still exact."""
    from spikelfp.hw_export import to_nir
    from spikelfp.lfp import lfp_step, rate_coded_reward

    snn, export = _snntorch()
    torch.manual_seed(7)
    kw = dict(init_hidden=True, reset_mechanism="zero")
    net = nn.Sequential(
        nn.Linear(12, 16),
        snn.Leaky(beta=_vec(16, 0.8), threshold=_vec(16, 0.5), **kw),
        nn.Linear(16, 4),
        snn.Leaky(beta=_vec(4, 0.9), threshold=_vec(4, 0.3), output=True, **kw),
    )
    graph = _file_round(_snn_export(export, net, (12,)), tmp_path)
    model = from_nir(graph, reset="zero")
    before = [p.detach().clone() for p in model.parameters()]
    x, y = _spikes((12,), seed=7), torch.arange(B) % 4
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        lfp_step(model, x, y, lambda o, t: rate_coded_reward(o, t, scale=1 / T), opt)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    again = from_nir(write_nir(to_nir(model, 1e-3), tmp_path / "tuned.nir"))
    a, b = neuron_outputs(model, x), neuron_outputs(again, x)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
