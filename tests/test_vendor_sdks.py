"""Vendor SDK round trips: a network quantised for Xylo, in rockpool's bit-accurate XyloSim.

rockpool (AGPL-3.0) and xylosim (C++ extension) are the optional extra ``spikelfp[xylo]``; the
simulator tests skip when they are absent. SynSense's ``samna`` (chip configuration, Speck's
simulator, sinabs' DynapCNN backend) is not installable from PyPI, so no test here needs it.

The ``xylo`` profile's integer network is Xylo's neuron: spikelfp's :func:`simulate`, the torch
integer model and rockpool's XyloSim give the same spikes, hidden layer included, for LIF, RLIF
and CubaLIF networks. :func:`xylo_reference` (numpy, always runs) is Xylo's neuron with each
difference from spikelfp's own integer neuron (the other profiles') a switch: with every
switch on Xylo's side it is XyloSim and :func:`simulate`, with every switch on spikelfp's side
it is :func:`simulate` of the same network quantised with spikelfp's own neuron.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import numpy as np
import pytest
import torch
from torch import nn

from spikelfp import LIF, RLIF, CubaLIF, Sequential
from spikelfp.hw_export import XYLO, quantize, simulate
from spikelfp.hw_export.vendor_xylo import (
    XYLO_DIFFERENCES,
    load_xylo_sim,
    rockpool_xylo_simulate,
    rockpool_xylo_spec,
    xylo_reference,
)

_NO_XYLOSIM = "rockpool/xylosim not installed (pip install 'spikelfp[xylo]')"
_HAVE_XYLOSIM = all(importlib.util.find_spec(m) is not None for m in ("rockpool", "xylosim"))

#: The xylo profile with spikelfp's own integer neuron (what every other profile runs).
PLAIN = dataclasses.replace(
    XYLO,
    name="xylo-plain",
    fire_at=">",
    min_decay=False,
    current_stage=False,
    max_spikes=1,
    output_delay=False,
    input_clip=None,
)


def _need_xylosim():
    for mod in ("rockpool", "xylosim"):
        pytest.importorskip(mod, reason=_NO_XYLOSIM)


def _braille_float(seed=0, n_in=8, hidden=40, n_out=7, kind="RLIF"):
    """Taxels' ON/OFF events → (recurrent) hidden → 7 letters, as in docs/braille.md."""
    torch.manual_seed(seed)
    kw = dict(beta=0.9375, threshold=1.0, reset="subtract")
    if kind == "CubaLIF":
        ckw = dict(alpha=0.75, **kw)
        hid, out = CubaLIF(**ckw), CubaLIF(**ckw)
    else:
        hid, out = (RLIF(hidden, **kw) if kind == "RLIF" else LIF(**kw)), LIF(**kw)
    net = Sequential(
        nn.Linear(n_in, hidden, bias=False), hid, nn.Linear(hidden, n_out, bias=False), out
    )
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[2].weight.mul_(3.0)
    return net


def _braille_shaped(seed=0, kind="RLIF", profile="xylo"):
    return quantize(_braille_float(seed, kind=kind), 8, profile, input_shape=(8,))


def _raster(seed, t=60, b=4, n_in=8, p=0.3, max_count=1):
    g = np.random.default_rng(seed)
    return (g.random((t, b, n_in)) < p).astype(np.int64) * g.integers(
        1, max_count + 1, (t, b, n_in)
    )


def test_spec_is_the_quantised_network_in_rockpools_layout():
    q = _braille_shaped()
    spec = rockpool_xylo_spec(q)
    lin0, rlif, lin2, lif = q.model
    assert np.array_equal(spec["weights_in"], lin0.weight.numpy().T.astype(np.int64))
    assert np.array_equal(spec["weights_rec"], rlif.w_rec.numpy().T.astype(np.int64))
    assert np.array_equal(spec["weights_out"], lin2.weight.numpy().T.astype(np.int64))
    assert np.array_equal(spec["threshold"], np.broadcast_to(rlif.threshold.numpy(), (40,)))
    assert np.array_equal(spec["threshold_out"], np.broadcast_to(lif.threshold.numpy(), (7,)))
    assert spec["bias"].tolist() == [0] * 40 and spec["bias_out"].tolist() == [0] * 7
    assert spec["dash_mem"].tolist() == [4] * 40 and spec["dash_mem_out"].tolist() == [4] * 7
    assert spec["dash_syn"].tolist() == [1] * 40  # LIF/RLIF: the profile's synaptic_shift
    assert all(np.abs(spec[k]).max() <= 127 for k in ("weights_in", "weights_rec", "weights_out"))
    shift2 = dataclasses.replace(XYLO, name="xylo-syn2", synaptic_shift=2)
    spec2 = rockpool_xylo_spec(quantize(_braille_float(), 8, shift2, input_shape=(8,)))
    assert spec2["dash_syn_out"].tolist() == [2] * 7


def test_spec_refuses_what_xylo_cannot_run_in_one_line():
    kw = dict(beta=0.9375, reset="subtract")

    def lin(i, o, bias=False):
        return nn.Linear(i, o, bias=bias)

    deep = Sequential(lin(4, 6), LIF(**kw), lin(6, 6), LIF(**kw), lin(6, 2), LIF(**kw))
    wide = Sequential(lin(17, 6), LIF(**kw), lin(6, 2), LIF(**kw))
    many = Sequential(lin(4, 6), LIF(**kw), lin(6, 9), LIF(**kw))
    biased = Sequential(lin(4, 6, True), LIF(**kw), lin(6, 2), LIF(**kw))
    small = Sequential(lin(4, 6), LIF(**kw), lin(6, 2), LIF(**kw))
    cases = [
        (quantize(deep, 8, "xylo"), "Linear, neuron, Linear, neuron"),
        (quantize(wide, 8, "xylo"), "17 inputs; Xylo has at most 16"),
        (quantize(many, 8, "xylo"), "9 output neurons; Xylo has at most 8"),
        (quantize(small, 8, "int8"), "not Xylo's neuron.*quantize with profile 'xylo'"),
        (quantize(small, 8, PLAIN), "not Xylo's neuron"),
        (quantize(biased, 8, "xylo"), "layer 0 has a bias.*train without bias"),
    ]
    for q, msg in cases:
        with pytest.raises(ValueError, match=msg) as e:
            rockpool_xylo_spec(q)
        assert len(str(e.value).splitlines()) == 1


def test_missing_sdk_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "xylosim" else real(n, *a)
    )
    with pytest.raises(ImportError, match=r"needs xylosim: pip install 'spikelfp\[xylo\]'"):
        load_xylo_sim()


@pytest.mark.parametrize("kind", ["RLIF", "LIF", "CubaLIF"])
def test_integer_simulator_is_xylos_neuron(kind):
    """The xylo profile's integer network is Xylo's neuron, spike for spike and step for step:
    simulate() (numpy), the torch integer model (what train --target xylo runs) and
    xylo_reference with every difference on Xylo's side (and XyloSim, where installed);
    multi-spike hidden steps, the readout delay and clipped input counts included."""
    q = _braille_shaped(seed=1, kind=kind)
    spec = rockpool_xylo_spec(q)
    x = _raster(1, b=3)
    x[::15, :, 0] = 18  # Xylo clips counts above 15
    res = simulate(q, x)
    hid, out = xylo_reference(spec, x)
    assert np.array_equal(res.layer_outputs[0], hid) and np.array_equal(res.output, out)
    assert (hid > 1).any() and out.sum() > 5  # multi-spike steps and output spikes occurred
    assert not (res.output[0] != 0).any()  # step 0's output reads the (silent) step -1
    assert np.array_equal(q(torch.from_numpy(x))[0].numpy().astype(np.int64), res.output)
    if _HAVE_XYLOSIM:
        assert np.array_equal(rockpool_xylo_simulate(spec, x), res.output)


@pytest.mark.parametrize("kind", ["RLIF", "CubaLIF"])
def test_saturating_states_agree_with_xylosim(kind):
    """Large weights and 15-event inputs saturate the 16-bit currents and membranes hundreds of
    times; XyloSim's hidden and output spikes are still simulate()'s."""
    _need_xylosim()
    net = _braille_float(seed=0, kind=kind)
    with torch.no_grad():
        net[0].weight.mul_(30.0)
        net[2].weight.mul_(10.0)
    q = quantize(net, 8, "xylo", input_shape=(8,))
    spec = rockpool_xylo_spec(q)
    x = _raster(0, b=2, p=0.6, max_count=15)
    res = simulate(q, x)
    assert res.saturations[1] > 10 and res.saturations[3] > 100
    sim = load_xylo_sim().from_specification(**spec)
    for b in range(x.shape[1]):
        sim.reset_state()
        o, _, rec = sim.evolve(x[:, b], record=True)
        assert np.array_equal(np.asarray(rec["Spikes"]), res.layer_outputs[0][:, b])
        assert np.array_equal(np.asarray(o), res.output[:, b])


def test_xylosim_runs_the_equations_the_docs_state():
    """rockpool's XyloSim (bit-accurate, xylosim's C++) equals xylo_reference with every
    difference on Xylo's side: hidden and output spikes, multi-spike steps and clipped inputs
    included; and each difference alone, switched to spikelfp's side, changes the spikes."""
    _need_xylosim()
    q = _braille_shaped(seed=1)
    spec = rockpool_xylo_spec(q)
    sim = load_xylo_sim().from_specification(**spec)
    x = _raster(1, b=3)
    x[::15, :, 0] = 18  # Xylo clips counts above 15
    hid, out = [], []
    for b in range(x.shape[1]):
        sim.reset_state()
        o, _, rec = sim.evolve(x[:, b], record=True)
        hid.append(np.asarray(rec["Spikes"]))
        out.append(np.asarray(o))
    hid, out = np.stack(hid, 1), np.stack(out, 1)
    hid_ref, out_ref = xylo_reference(spec, x)
    assert np.array_equal(hid, hid_ref) and np.array_equal(out, out_ref)
    assert (hid > 1).any() and out.sum() > 0  # multi-spike steps occurred
    for name in XYLO_DIFFERENCES:
        h, o = xylo_reference(spec, x, xylo=tuple(n for n in XYLO_DIFFERENCES if n != name))
        assert not (np.array_equal(h, hid) and np.array_equal(o, out)), name


def test_xylo_reference_with_spikelfps_side_is_spikelfps_own_neuron():
    """xylo_reference with every difference on spikelfp's side is spikelfp's own integer
    neuron (the xylo profile with the other profiles' neuron semantics), spike for spike; the
    two neurons disagree on part of the outputs, which is why the xylo profile is Xylo's."""
    net = _braille_float(seed=2, kind="LIF")
    plain, xylo = (quantize(net, 8, p, input_shape=(8,)) for p in (PLAIN, "xylo"))
    spec = rockpool_xylo_spec(xylo)
    spec_plain = dict(
        spec, threshold=spec["threshold"] + 1, threshold_out=spec["threshold_out"] + 1
    )
    x = _raster(2, b=4)
    res = simulate(plain, x)
    hid_ref, out_ref = xylo_reference(spec_plain, x, xylo=())
    assert np.array_equal(hid_ref, res.layer_outputs[0])
    assert np.array_equal(out_ref, res.output) and res.output.sum() > 0
    assert not np.array_equal(simulate(xylo, x).output, res.output)
    with pytest.raises(ValueError, match="unknown Xylo differences"):
        xylo_reference(spec, x, xylo=("ge",))


def test_simulate_input_checks():
    _need_xylosim()
    spec = rockpool_xylo_spec(_braille_shaped())
    with pytest.raises(ValueError, match=r"\(T, B, 8\)"):
        rockpool_xylo_simulate(spec, np.zeros((5, 8)))
    with pytest.raises(ValueError, match="non-negative integer"):
        rockpool_xylo_simulate(spec, -np.ones((5, 1, 8)))


def test_profile_neuron_fields_are_validated():
    from spikelfp.hw_export import HardwareProfile

    for kwargs, msg in (
        ({"fire_at": ">>"}, "fire_at must be one of"),
        ({"min_decay": True, "decay": "mult"}, "min_decay needs decay='shift'"),
        ({"max_spikes": 0}, "max_spikes must be an integer >= 1"),
        ({"max_spikes": 3, "resets": ("zero",)}, "needs the subtract reset"),
        ({"synaptic_shift": 16}, "synaptic_shift must be an integer in 0..max_shift"),
        ({"input_clip": 0}, "input_clip must be an integer >= 1 or None"),
        ({"current_stage": "yes"}, "current_stage must be true or false"),
    ):
        with pytest.raises(ValueError, match=msg):
            HardwareProfile("mine", **kwargs)
    assert XYLO.chip_neuron and not HardwareProfile("mine").chip_neuron


def test_profile_file_sets_the_neuron_fields(tmp_path):
    """A user profile file may give its chip Xylo-like neuron semantics; bad values are one
    clear error naming the file."""
    from spikelfp.hw_export import load_profile

    path = tmp_path / "chip.json"
    fields = {"name": "chip", "decay": "shift", "resets": ["subtract"], "fire_at": ">="}
    path.write_text(json.dumps({**fields, "max_spikes": 3, "input_clip": None}))
    prof = load_profile(path)
    assert (prof.fire_at, prof.max_spikes, prof.input_clip, prof.chip_neuron) == (
        ">=",
        3,
        None,
        True,
    )
    net = _braille_float(seed=1, kind="LIF")
    q = quantize(net, 8, prof, input_shape=(8,))
    assert q.model[1].chip and q.model[1].max_spikes == 3 and q.model[3].max_spikes == 1
    x = _raster(1, b=2)
    assert np.array_equal(q(torch.from_numpy(x))[0].numpy().astype(np.int64), simulate(q, x).output)
    path.write_text(json.dumps({**fields, "fire_at": "=>"}))
    with pytest.raises(ValueError, match=r"chip\.json: fire_at must be one of"):
        load_profile(path)


def test_sinabs_simulates_the_exported_speck_network():
    """Speck: sinabs (DYNAP-CNN's SDK) reads the exported integer IF CNN from NIR and simulates
    it with its own IAF layers (multi-spike, subtract reset, ``min_v_mem = -threshold``), spike
    for spike as spikelfp's integer simulator: the ``speck`` profile is DYNAP-CNN's neuron as
    sinabs simulates it. Each of the three semantics matters (switching one to spikelfp's
    plain neuron changes the spikes). sinabs' DynapcnnNetwork (the chip configuration) needs
    samna, which does not install from PyPI."""
    sinabs = pytest.importorskip("sinabs", reason="sinabs not installed (make setup)")
    pytest.importorskip("nir", reason="nir not installed (pip install 'spikelfp[export]')")
    from sinabs.activation import MembraneSubtract, SingleSpike

    from spikelfp import IF
    from spikelfp.hw_export import SumPool2d, to_nir

    torch.manual_seed(0)
    kw = dict(threshold=1.0, reset="subtract")
    net = Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False), IF(**kw), SumPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1, bias=False), IF(**kw), SumPool2d(2),
        nn.Flatten(), nn.Linear(32, 10, bias=False), IF(**kw),
    )  # fmt: skip
    with torch.no_grad():  # some layers far above threshold: several spikes per step
        net[3].weight.mul_(3.0)
    q = quantize(net, 8, "speck", input_shape=(2, 8, 8))
    neurons = [m for m in q.model if hasattr(m, "v_floor")]
    assert len(neurons) == 3 and all(n.chip and n.v_floor == "-threshold" for n in neurons)
    x = torch.from_numpy((np.random.default_rng(0).random((20, 3, 2, 8, 8)) < 0.3) * 1.0)
    ref = simulate(q, x, return_all=True)
    graph = to_nir(q, 1.0, input_shape=(2, 8, 8), convention="sinabs")

    def run(change: str | None = None) -> list[np.ndarray]:
        snet = sinabs.from_nir(graph, batch_size=x.shape[1]).float()
        iafs = [m for m in snet.modules() if isinstance(m, sinabs.layers.IAFSqueeze)]
        assert len(iafs) == 3
        for m in iafs:
            th = float(m.spike_threshold.detach().flatten()[0])
            if change == "one spike per step":
                m.spike_fn = SingleSpike
            elif change == "no floor":
                m.min_v_mem = None
            elif change == "fire above threshold":
                with torch.no_grad():
                    m.spike_threshold.fill_(th + 1)
                m.reset_fn = MembraneSubtract(subtract_value=th)
        recorded = []
        hooks = [m.register_forward_hook(lambda _m, _i, o: recorded.append(o)) for m in iafs]
        t, b = x.shape[:2]
        with torch.no_grad():
            snet(x.float().transpose(0, 1).reshape(b * t, 2, 8, 8))
        for h in hooks:
            h.remove()
        return [o.reshape(b, t, -1).transpose(0, 1).numpy().astype(np.int64) for o in recorded]

    spikes = [o.reshape(20, 3, -1).astype(np.int64) for o in ref.layer_outputs]
    assert spikes[-1].sum() > 0 and max(int(s.max()) for s in spikes) > 1  # multi-spike steps
    for ours, theirs in zip(spikes, run(), strict=True):
        assert np.array_equal(theirs, ours)
    for change in ("one spike per step", "no floor", "fire above threshold"):
        assert any(
            not np.array_equal(theirs, ours)
            for ours, theirs in zip(spikes, run(change), strict=True)
        ), change


def test_cubalif_network_maps_its_current_decay():
    """CubaLIF layers keep their own current decay as dash_syn (the current decays after the
    input is added, as on Xylo)."""
    spec = rockpool_xylo_spec(_braille_shaped(seed=3, kind="CubaLIF"))
    assert spec["dash_syn"].tolist() == [2] * 40 and spec["dash_syn_out"].tolist() == [2] * 7


def test_nir_file_keeps_xylos_neuron(tmp_path):
    """The written NIR file holds the chip's neuron semantics in its nodes' metadata; reading
    it back gives the same integer network, spike for spike."""
    pytest.importorskip("nir", reason="nir not installed (pip install 'spikelfp[export]')")
    from spikelfp.hw_export import from_nir, read_nir, to_nir, write_nir

    q = _braille_shaped(seed=1)
    with pytest.warns(UserWarning, match="changed reset"):
        graph = to_nir(q, 1e-3, input_shape=(8,), allow_reset_change=True)
    back = from_nir(read_nir(write_nir(graph, tmp_path / "x.nir")))
    assert back[1].chip and back[3].input_delay and back[1].max_spikes == 31
    x = _raster(1, b=3)
    assert np.array_equal(simulate(back, x).output, simulate(q.model, x).output)
