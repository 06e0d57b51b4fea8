"""NIR import of graph shapes beyond chains, conventions and bad input (no producer needed)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from spikelfp import IF, LIF, RLIF, CubaLIF, Sequential
from spikelfp.hw_export import NIRImportError, from_nir, neuron_outputs, to_nir
from spikelfp.hw_export.nir_conventions import convention, detect_convention
from spikelfp.hw_export.nir_graph import GraphNet, MultiSpike, RecurrentNeuron
from spikelfp.hw_export.nir_io import NIRConventionWarning

nir = pytest.importorskip("nir", reason="the NIR tests need the optional package 'nir'")


def _lif(n, tau=2e-3, r=None, theta=0.5):
    tau = np.full(n, tau)
    return nir.LIF(
        tau=tau,
        r=tau / 1e-3 if r is None else np.full(n, r),
        v_leak=np.zeros(n),
        v_threshold=np.full(n, theta),
        v_reset=np.zeros(n),
    )


def _x(shape, T=12, B=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, *shape, generator=g) < 0.5).float()


def test_residual_graph_runs_as_graphnet_and_sums_merges():
    """input -> a -> lif1 -> b -> lif2, plus a skip input -> c -> lif2 (merge = sum)."""
    rng = np.random.default_rng(0)
    wa, wb, wc = rng.normal(size=(6, 4)), rng.normal(size=(5, 6)), rng.normal(size=(5, 4))
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([4])),
            "a": nir.Linear(weight=wa),
            "lif1": _lif(6),
            "b": nir.Linear(weight=wb),
            "c": nir.Linear(weight=wc),
            "lif2": _lif(5, theta=0.3),
            "output": nir.Output(output_type=np.array([5])),
        },
        edges=[
            ("input", "a"), ("a", "lif1"), ("lif1", "b"), ("b", "lif2"),
            ("input", "c"), ("c", "lif2"), ("lif2", "output"),
        ],
        metadata={"dt": 1e-3},
    )  # fmt: skip
    net = from_nir(graph)
    assert isinstance(net, GraphNet)
    x = _x((4,))
    out, state = net(x)
    # the same network by hand: spikelfp's own neurons
    lif1, lif2 = LIF(beta=0.5, threshold=0.5), LIF(beta=0.5, threshold=0.3)
    f = lambda w: torch.from_numpy(w).float()  # noqa: E731
    s1, _ = lif1(x @ f(wa).T)
    s2, _ = lif2(s1 @ f(wb).T + x @ f(wc).T)
    assert s2.sum() > 0 and torch.equal(out, s2)
    out2, _ = net(x, state)  # state carries over
    assert out2.shape == out.shape


def test_flat_cycle_becomes_rlif_and_cuba_cycle_a_recurrent_neuron():
    n = 5
    rng = np.random.default_rng(1)
    w_in, w_rec = rng.normal(size=(n, 3)), 0.3 * rng.normal(size=(n, n))
    for neuron in ("lif", "cuba"):
        node = (
            _lif(n)
            if neuron == "lif"
            else nir.CubaLIF(
                tau_syn=np.full(n, 2e-3), tau_mem=np.full(n, 4e-3), r=np.full(n, 4.0),
                v_leak=np.zeros(n), v_threshold=np.full(n, 0.5), v_reset=np.zeros(n),
                w_in=np.full(n, 2.0),
            )
        )  # fmt: skip
        graph = nir.NIRGraph(
            nodes={
                "input": nir.Input(input_type=np.array([3])),
                "fc": nir.Linear(weight=w_in),
                "n": node,
                "rec": nir.Linear(weight=w_rec),
                "output": nir.Output(output_type=np.array([n])),
            },
            edges=[("input", "fc"), ("fc", "n"), ("n", "rec"), ("rec", "n"), ("n", "output")],
            metadata={"dt": 1e-3},
        )
        net = from_nir(graph)
        layer = net[1]
        x = _x((3,), seed=2)
        z = x @ torch.from_numpy(w_in).float().T
        if neuron == "lif":
            assert isinstance(layer, RLIF)
            ref = RLIF(n, beta=0.5, threshold=0.5)
        else:
            assert isinstance(layer, RecurrentNeuron)
            ref = RecurrentNeuron(CubaLIF(alpha=0.5, beta=0.75, threshold=0.5), torch.eye(n), None)
        with torch.no_grad():
            ref.recurrent_weight.copy_(torch.from_numpy(w_rec).float())
        s, _ = ref(z)
        assert s.sum() > 0 and torch.equal(neuron_outputs(net, x)[0], s)


def test_cycle_that_is_not_a_recurrent_neuron_is_refused():
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([2])),
            "a": nir.Linear(weight=np.eye(2)),
            "b": nir.Linear(weight=np.eye(2)),
            "n": _lif(2),
            "output": nir.Output(output_type=np.array([2])),
        },
        edges=[("input", "a"), ("a", "b"), ("b", "a"), ("a", "n"), ("n", "output")],
        metadata={"dt": 1e-3},
    )
    with pytest.raises(NIRImportError, match="cycle through a, b .*not a recurrent neuron"):
        from_nir(graph)


def test_shape_mismatch_names_the_node():
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([3])),
            "fc1": nir.Affine(weight=np.ones((4, 3)), bias=np.zeros(4)),
            "fc2": nir.Affine(weight=np.ones((2, 5)), bias=np.zeros(2)),  # takes 5, gets 4
            "if": nir.IF(r=np.ones(2), v_threshold=np.ones(2)),
            "output": nir.Output(output_type=np.array([2])),
        },
        edges=[("input", "fc1"), ("fc1", "fc2"), ("fc2", "if"), ("if", "output")],
        type_check=False,
    )
    with pytest.raises(NIRImportError, match="shape mismatch at node 'fc2'") as err:
        from_nir(graph)
    assert "\n" not in str(err.value)


def test_unknown_nodes_are_all_listed():
    graph = nir.NIRGraph.from_list(
        nir.Delay(delay=np.ones(3)), nir.CubaLI(
            tau_syn=np.ones(3), tau_mem=np.ones(3), r=np.ones(3), v_leak=np.zeros(3)
        )
    )  # fmt: skip
    with pytest.raises(NIRImportError) as err:
        from_nir(graph, dt=1e-3)
    assert "Delay" in str(err.value) and "CubaLI" in str(err.value)


def test_if_graph_needs_no_dt_and_wrong_dt_warns():
    """sinabs's IF (r = 1): the gain is 1 per step. dt=1e-3 (NIR semantics) warns: 1000x."""
    graph = nir.NIRGraph.from_list(
        nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)),
        nir.IF(r=np.ones(2), v_threshold=np.ones(2)),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = from_nir(graph)
    assert isinstance(net[1], MultiSpike)  # sinabs's default IAF: several spikes per step
    x = torch.ones(3, 1, 3)
    assert net(x)[0].flatten().tolist() == [3.0, 3.0, 3.0, 3.0, 3.0, 3.0]
    with pytest.warns(NIRConventionWarning, match="implausible"):
        slow = from_nir(graph, dt=1e-3)
    assert float(slow[0].weight.detach().abs().max()) == pytest.approx(1e-3)
    single = from_nir(graph, convention="sinabs-single")
    assert isinstance(single[1], IF) and single[1].reset == "subtract"
    zero = from_nir(graph, convention="norse")
    assert isinstance(zero[1], IF) and zero[1].reset == "zero"


def test_detection_of_each_convention():
    def graph_of(node, meta=None):
        return {"n": node}, meta or {}

    snn_beta = 0.8
    tau = 1e-4 / (1 - snn_beta)
    cases = {
        "snntorch": graph_of(_lif(3, tau=tau, r=tau / 1e-4)),
        "sinabs": graph_of(_lif(3, tau=8.0, r=1.0)),
        "norse": graph_of(_lif(3, tau=5e-6, r=1.0)),
        "rockpool": graph_of(_lif(3, tau=0.02, r=0.02 * np.exp(-1e-3 / 0.02) / 1e-3)),
        "spikelfp": graph_of(_lif(3), {"producer": "spikelfp", "dt": 1e-3}),
    }
    for name, (nodes, meta) in cases.items():
        conv, dt, reason = detect_convention(nir, nodes, meta)
        assert conv is not None and conv.name == name, (name, reason)
        if name in ("snntorch", "rockpool"):
            assert dt == pytest.approx(1e-4 if name == "snntorch" else 1e-3, rel=1e-6)
    assert detect_convention(nir, {"n": _lif(3, tau=0.05, r=1.0)}, {})[0] is None
    with pytest.raises(ValueError, match="unknown NIR convention"):
        convention("lava")


def test_decay_outside_unit_interval_is_explained():
    graph = nir.NIRGraph.from_list(nir.Linear(weight=np.eye(2)), _lif(2, tau=5e-6, r=1.0))
    with pytest.raises(NIRImportError, match="not a decay in \\[0, 1\\] under convention 'nir'"):
        from_nir(graph, dt=1e-3)  # norse's tau read with NIR semantics: 1 - 200 < 0


def test_gain_without_own_synapse_gets_a_scale_node():
    """A neuron fed straight from the input (no synapse to fold its gain into)."""
    graph = nir.NIRGraph.from_list(_lif(3, tau=2e-3, r=1.0))  # gain dt r / tau = 0.5
    net = from_nir(graph, dt=1e-3)
    x = torch.full((4, 1, 3), 1.2)
    ref, _ = LIF(beta=0.5, threshold=0.5)(0.5 * x)
    assert torch.equal(net(x)[0], ref)


def test_spikelfp_file_written_for_another_reader_reads_back_exactly():
    torch.manual_seed(3)
    net = Sequential(nn.Linear(4, 6), LIF(beta=0.7, threshold=0.4), nn.Linear(6, 3), IF())
    x = _x((4,), seed=3)
    for conv in ("nir", "snntorch", "norse"):
        back = from_nir(to_nir(net, 1e-3, convention=conv))
        for a, b in zip(neuron_outputs(net, x), neuron_outputs(back, x), strict=True):
            assert torch.equal(a, b), conv


def test_scale_and_threshold_nodes():
    graph = nir.NIRGraph.from_list(
        nir.Linear(weight=np.array([[1.0, -1.0], [0.5, 0.5]])),
        nir.Scale(scale=np.array([2.0, 4.0])),
        nir.Threshold(threshold=np.array([0.5, 1.5])),
    )
    net = from_nir(graph)  # no neuron with a time constant: no dt needed
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])  # (T=1, B=3, 2)
    z = x @ torch.tensor([[1.0, -1.0], [0.5, 0.5]]).T * torch.tensor([2.0, 4.0])
    out, _ = net(x)
    assert torch.equal(out, (z > torch.tensor([0.5, 1.5])).float())
    assert out.sum() > 0 and out.sum() < out.numel()
