"""NIR export/import: parameter mapping, exact round trips, resets, snntorch, atomic writes."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

from spikelfp import IF, LI, LIF, RLIF, CubaLIF, Sequential
from spikelfp.hw_export import (
    ExportWriteError,
    NIRImportError,
    ResetNotExpressibleError,
    SumPool2d,
    UnsupportedLayerError,
    export_nir,
    from_nir,
    neuron_outputs,
    quantize,
    read_nir,
    to_nir,
    write_nir,
)

nir = pytest.importorskip("nir", reason="the NIR tests need the optional package 'nir'")

DT = 1e-3


def _spikes(n=20, b=4, shape=(12,), p=0.4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, b, *shape, generator=g) < p).float()


def _round_trip(net, tmp_path, x, input_shape=None, dt=DT):
    path = tmp_path / "net.nir"
    write_nir(to_nir(net, dt, input_shape), path)
    back = from_nir(path)
    a = neuron_outputs(net, x)
    b = neuron_outputs(back, x)
    assert len(a) == len(b)
    for p, q in zip(a, b, strict=True):
        assert torch.equal(p, q)
    return back


HIDDEN = {
    "LIF": lambda: LIF(beta=0.85, threshold=0.4),
    "LIF-per-neuron": lambda: LIF(
        beta=torch.linspace(0.5, 0.95, 16), threshold=torch.linspace(0.2, 0.6, 16)
    ),
    "LIF-beta0": lambda: LIF(beta=0.0, threshold=0.2),
    "IF": lambda: IF(threshold=0.7),
    "CubaLIF": lambda: CubaLIF(alpha=0.6, beta=0.85, threshold=0.4),
    "CubaLIF-per-neuron": lambda: CubaLIF(
        alpha=torch.linspace(0.2, 0.8, 16), beta=torch.linspace(0.6, 0.9, 16), threshold=0.3
    ),
    "RLIF": lambda: RLIF(16, beta=0.8, threshold=0.4),
    "RLIF-per-neuron": lambda: RLIF(
        16, beta=torch.linspace(0.5, 0.9, 16), threshold=0.4, per_neuron=True
    ),
}


@pytest.mark.parametrize("name", list(HIDDEN))
def test_round_trip_identical_spikes_every_neuron_type(name, tmp_path):
    torch.manual_seed(1)
    net = Sequential(
        nn.Linear(12, 16), HIDDEN[name](), nn.Linear(16, 5), LIF(beta=0.9, threshold=0.3)
    )
    back = _round_trip(net, tmp_path, _spikes())
    assert type(back[1]) is type(net[1])


@pytest.mark.parametrize("beta", [0.8, 1.0])
def test_round_trip_li_readout(beta, tmp_path):
    torch.manual_seed(2)
    net = Sequential(nn.Linear(12, 8), LIF(beta=0.9, threshold=0.3), nn.Linear(8, 3), LI(beta))
    x = _spikes()
    back = _round_trip(net, tmp_path, x)
    assert torch.equal(net(x)[0], back(x)[0])  # membrane trace, not only spikes
    node = read_nir(tmp_path / "net.nir").nodes["l3_li"]
    assert isinstance(node, nir.I if beta == 1.0 else nir.LI)


def test_round_trip_conv_pool_flatten(tmp_path):
    torch.manual_seed(3)
    net = Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        LIF(beta=torch.rand(4, 1, 1) * 0.5 + 0.4, threshold=0.5, shape=(4, 1, 1)),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 6),
        IF(threshold=0.4),
        nn.Linear(6, 3, bias=False),
        LIF(beta=0.9, threshold=torch.rand(3) + 0.2),
    )
    x = _spikes(shape=(2, 8, 8))
    back = _round_trip(net, tmp_path, x, input_shape=(2, 8, 8))
    assert isinstance(back[2], nn.AvgPool2d) and isinstance(back[3], nn.Flatten)
    graph = read_nir(tmp_path / "net.nir")
    assert list(graph.nodes["input"].input_type["input"]) == [2, 8, 8]  # no batch dimension
    assert graph.nodes["l3_flatten"].start_dim == 0  # torch's start_dim=1 minus the batch
    assert isinstance(graph.nodes["l6_linear"], nir.Linear)


def test_conv1d_round_trip(tmp_path):
    torch.manual_seed(4)
    net = Sequential(
        nn.Conv1d(3, 4, 3, padding=1, stride=2),
        LIF(beta=0.8, threshold=0.3),
        nn.Flatten(),
        nn.Linear(4 * 5, 3),
        LIF(beta=0.9, threshold=0.3),
    )
    _round_trip(net, tmp_path, _spikes(shape=(3, 10)), input_shape=(3, 10))


def test_continuous_time_parameters_for_explicit_dt():
    beta = torch.tensor([0.5, 0.9, 0.99])
    net = Sequential(nn.Linear(4, 3), LIF(beta=beta, threshold=torch.tensor([0.3, 0.4, 0.5])))
    for dt in (1e-3, 1e-4):
        node = to_nir(net, dt).nodes["l1_lif"]
        b = beta.double().numpy()
        np.testing.assert_allclose(node.tau, dt / (1 - b), rtol=1e-12)
        np.testing.assert_allclose(node.r, 1 / (1 - b), rtol=1e-12)
        # forward Euler: v' = (1 - dt/tau) v + dt r / tau I  ->  beta and unit gain
        np.testing.assert_allclose(1 - dt / node.tau, b, rtol=1e-12)
        np.testing.assert_allclose(dt * node.r / node.tau, 1.0, rtol=1e-12)
        np.testing.assert_array_equal(node.v_leak, 0)
        np.testing.assert_array_equal(node.v_reset, 0)
        np.testing.assert_allclose(node.v_threshold, [0.3, 0.4, 0.5], rtol=1e-6)
    cuba = to_nir(Sequential(nn.Linear(2, 2), CubaLIF(alpha=0.5, beta=0.75)), 1e-3)
    node = cuba.nodes["l1_cubalif"]
    np.testing.assert_allclose(node.tau_syn, 2e-3)
    np.testing.assert_allclose(node.w_in, 2.0)
    np.testing.assert_allclose(node.tau_mem, 4e-3)
    np.testing.assert_allclose(node.r, 4.0)
    node = to_nir(Sequential(nn.Linear(2, 2), IF()), 1e-3).nodes["l1_if"]
    np.testing.assert_allclose(node.r, 1.0)  # r = per-step gain, as sinabs/norse/snntorch read it


def test_per_neuron_arrays_have_the_layer_shape():
    net = Sequential(nn.Conv2d(1, 3, 3), LIF(beta=0.9, threshold=0.5))
    node = to_nir(net, DT, input_shape=(1, 6, 6)).nodes["l1_lif"]
    assert node.tau.shape == node.v_threshold.shape == (3, 4, 4)


def test_subtract_and_delayed_reset_refused_unless_allowed(tmp_path):
    net = Sequential(
        nn.Linear(6, 5),
        LIF(reset="subtract"),
        nn.Linear(5, 4),
        LIF(reset_delay=True),
        nn.Linear(4, 3),
        LIF(reset="none"),
    )
    with pytest.raises(ResetNotExpressibleError) as err:
        to_nir(net, DT)
    msg = str(err.value)
    assert "layer 1" in msg and "layer 3" in msg and "layer 5" in msg
    assert "allow_reset_change=True" in msg
    with pytest.warns(UserWarning, match="changed reset"):
        graph = to_nir(net, DT, allow_reset_change=True)
    np.testing.assert_array_equal(graph.nodes["l1_lif"].v_reset, 0)  # NIR: reset to zero
    path = write_nir(graph, tmp_path / "r.nir")
    back = from_nir(path)  # the metadata restores the original resets
    assert (back[1].reset, back[3].reset_delay, back[5].reset) == ("subtract", True, "none")
    x = _spikes(shape=(6,), p=0.6)
    for p, q in zip(neuron_outputs(net, x), neuron_outputs(back, x), strict=True):
        assert torch.equal(p, q)


def test_quantized_network_round_trip_is_exact_and_records_scales(tmp_path):
    torch.manual_seed(5)
    net = Sequential(
        nn.Linear(12, 16),
        LIF(beta=0.9, threshold=0.5),
        nn.Linear(16, 16),
        RLIF(16, beta=0.8, threshold=0.4),
        nn.Linear(16, 8),
        CubaLIF(alpha=0.5, beta=0.9, threshold=0.3),
        nn.Linear(8, 4),
        LI(beta=0.9),
    )
    for profile in ("xylo", "loihi2", "int8"):
        q = quantize(net, 8, profile)
        path = tmp_path / f"{profile}.nir"
        write_nir(to_nir(q, DT), path)
        graph = read_nir(path)
        node = graph.nodes["l0_linear"]
        w = node.weight
        assert np.array_equal(w, np.round(w)) and np.abs(w).max() <= 127
        np.testing.assert_allclose(node.metadata["weight_scale"], q.weight_scales[0].numpy())
        back = from_nir(path)
        x = _spikes(p=0.5)
        for p, r in zip(
            neuron_outputs(q.model, x.double()), neuron_outputs(back, x.double()), strict=True
        ):
            assert torch.equal(p, r)


def test_quantized_sum_pool_written_as_nir_sumpool(tmp_path):
    net = Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        IF(threshold=0.5),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * 3 * 3, 2),
        IF(threshold=0.5),
    )
    q = quantize(net, 8, "int8", input_shape=(1, 6, 6))
    assert isinstance(q.model[2], SumPool2d)
    graph = to_nir(q, DT)
    assert isinstance(graph.nodes["l2_sumpool2d"], nir.SumPool2d)
    back = from_nir(write_nir(graph, tmp_path / "p.nir"))
    assert isinstance(back[2], SumPool2d)


SNNTORCH_NETS = {
    "lif": lambda: Sequential(
        nn.Linear(20, 16),
        LIF(beta=0.5, threshold=0.5),
        nn.Linear(16, 4),
        LIF(beta=torch.tensor([0.5, 0.75, 0.5, 0.75]), threshold=0.25),  # per-neuron beta
    ),
    "rlif": lambda: Sequential(
        nn.Linear(20, 16), RLIF(16, beta=0.5, threshold=0.5), nn.Linear(16, 4), LIF(beta=0.5)
    ),
}


@pytest.mark.parametrize("name", list(SNNTORCH_NETS))
def test_snntorch_reads_our_file_and_agrees(name, tmp_path):
    """snntorch's importer hard-codes dt = 1e-4 and needs one threshold per layer.

    Weights are multiples of 1/16, decays 1/2 or 3/4 and T = 16, so both simulators compute
    exactly (snntorch keeps a Leaky membrane in float64 but an RLeaky one in float32, and adds
    the recurrent input in another order): equality is guaranteed, not rounding luck.
    """
    snn_import = pytest.importorskip("snntorch.import_nir")
    torch.manual_seed(6)
    net = SNNTORCH_NETS[name]()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randint(-6, 9, p.shape) / 16)
    net = net.double()
    path = export_nir(net, tmp_path / "s.nir", dt=1e-4)
    snn_net = snn_import.import_from_nir(read_nir(path))
    assert "torchvision" not in sys.modules
    x = _spikes(n=16, b=5, shape=(20,))
    ref, _ = net(x.double())
    out, state = [], None
    for t in range(x.shape[0]):
        # one step at a time: membranes live inside the snntorch modules, but the recurrent
        # edge of a sub-graph is carried in nirtorch's state dict, which must be passed back
        o, state = snn_net(x[t], state)
        out.append(o)
    out = torch.stack(out).double()
    assert all(o.sum() > 0 for o in neuron_outputs(net, x.double()))
    assert torch.equal(out, ref)


def test_from_nir_errors():
    lif = nir.LIF(tau=np.full(2, 0.05), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))
    graph = nir.NIRGraph.from_list(nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)), lif)
    with pytest.raises(NIRImportError, match="dt="):
        from_nir(graph)  # r = 1, tau = 50 ms: no producer writes this; no dt recorded
    leaky = nir.NIRGraph.from_list(
        nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)),
        nir.LIF(tau=np.ones(2), r=np.ones(2), v_leak=np.ones(2), v_threshold=np.ones(2)),
    )
    with pytest.raises(NIRImportError, match="v_leak"):
        from_nir(leaky, dt=1e-3)
    branch = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([3])),
            "a": nir.Linear(weight=np.ones((2, 3))),
            "b": nir.Linear(weight=2 * np.ones((2, 3))),
            "output": nir.Output(output_type=np.array([2])),
        },
        edges=[("input", "a"), ("input", "b"), ("a", "output"), ("b", "output")],
    )
    out, _ = from_nir(branch)(torch.ones(1, 1, 3))  # branches are summed (GraphNet)
    assert out.flatten().tolist() == [9.0, 9.0]
    with pytest.raises(NIRImportError, match="Delay"):
        from_nir(nir.NIRGraph.from_list(nir.Delay(delay=np.ones(3))), dt=1e-3)


def test_from_nir_folds_foreign_input_gain():
    """A file from another tool with r != tau/dt: the gain goes into the synapse."""
    dt, tau = 1e-3, 5e-3
    graph = nir.NIRGraph.from_list(
        nir.Affine(weight=np.full((2, 3), 0.5), bias=np.zeros(2)),
        nir.LIF(tau=np.full(2, tau), r=np.full(2, 2.0), v_leak=np.zeros(2), v_threshold=np.ones(2)),
    )
    net = from_nir(graph, dt=dt)
    gain = dt * 2.0 / tau
    torch.testing.assert_close(net[0].weight, torch.full((2, 3), 0.5 * gain))
    assert net[1].beta.item() == pytest.approx(1 - dt / tau)


def test_unsupported_export_layers_and_dt():
    with pytest.raises(UnsupportedLayerError, match="MaxPool2d"):
        to_nir(Sequential(nn.Conv2d(1, 1, 3), LIF(), nn.MaxPool2d(2)), DT, input_shape=(1, 6, 6))
    with pytest.raises(ValueError, match="dt"):
        to_nir(Sequential(nn.Linear(2, 2), LIF()), dt=0)
    with pytest.raises(UnsupportedLayerError, match="alpha = 1"):
        to_nir(Sequential(nn.Linear(2, 2), CubaLIF(alpha=1.0)), DT)


def test_write_is_atomic_when_the_writer_fails(tmp_path, monkeypatch):
    net = Sequential(nn.Linear(4, 3), LIF())
    graph = to_nir(net, DT)
    target = tmp_path / "net.nir"
    target.write_bytes(b"previous export")

    def broken(path, graph, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"half a file")
        raise RuntimeError("disk full")

    monkeypatch.setattr(nir, "write", broken)
    with pytest.raises(ExportWriteError, match="disk full"):
        write_nir(graph, target)
    assert target.read_bytes() == b"previous export"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.nir"]  # no temp file left
    target.unlink()
    with pytest.raises(ExportWriteError):
        write_nir(graph, target)
    assert not target.exists()


def test_write_to_unwritable_paths(tmp_path):
    graph = to_nir(Sequential(nn.Linear(4, 3), LIF()), DT)
    with pytest.raises(ExportWriteError, match="does not exist"):
        write_nir(graph, tmp_path / "missing" / "net.nir")
    with pytest.raises(ExportWriteError, match="folder"):
        write_nir(graph, tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportWriteError):
        write_nir(graph, blocker / "net.nir")


def test_missing_nir_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "nir", None)
    with pytest.raises(ImportError, match=r"spikelfp\[export\]"):
        to_nir(Sequential(nn.Linear(2, 2), LIF()), DT)


@pytest.mark.parametrize(
    ("where", "value", "needle"),
    [
        ("weight", float("nan"), "node 'l0_linear' (Affine): weight holds 1 NaN or infinite value"),
        ("bias", float("inf"), "node 'l0_linear' (Affine): bias holds 1 NaN or infinite value"),
        ("tau", float("nan"), "node 'l1_lif' (LIF): tau holds 1 NaN or infinite value"),
        ("v_threshold", -float("inf"), "node 'l1_lif' (LIF): v_threshold holds 1 NaN"),
        ("w_rec", float("nan"), "node 'l1_rlif/w_rec' (Linear): weight holds 1 NaN"),
    ],
)
def test_from_nir_refuses_non_finite_parameters(tmp_path, where, value, needle):
    """A NIR file with a NaN/inf parameter is refused on import with one line naming the node."""
    hidden = RLIF(4, beta=0.8, threshold=0.4) if where == "w_rec" else LIF(beta=0.8)
    net = Sequential(nn.Linear(3, 4), hidden)
    graph = to_nir(net, DT)
    lif = graph.nodes["l1_rlif" if where == "w_rec" else "l1_lif"]
    array = {
        "weight": graph.nodes["l0_linear"].weight,
        "bias": graph.nodes["l0_linear"].bias,
        "w_rec": lif.nodes["w_rec"].weight if where == "w_rec" else None,
    }.get(where)
    if array is None:
        array = getattr(lif, where)
    array.reshape(-1)[1] = value
    path = write_nir(graph, tmp_path / "bad.nir")
    with pytest.raises(NIRImportError) as info:
        from_nir(path)
    message = str(info.value)
    assert message.startswith(needle) and "\n" not in message, message
    assert "Re-export it from a finite model" in message
    from_nir(write_nir(to_nir(net, DT), tmp_path / "good.nir"))  # a finite file imports
