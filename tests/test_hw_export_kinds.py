"""The converter registry of ``hw_export`` (``spikelfp.hw_export.kinds``): one converter per
layer kind, looked up by type; the integer neuron steps in torch and numpy per kind."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from spikelfp import ALIF, IF, LI, LIF, RLIF, CubaLIF, Sequential
from spikelfp.hw_export import (
    QuantizedNeuron,
    SumPool2d,
    _intsim,
    _layers,
    kind_of,
    kinds,
    quantize,
    simulate,
)
from spikelfp.hw_export._layers import NEURON_TYPES, SYNAPSE_TYPES, converter_for
from spikelfp.hw_export.simulator import _integer_neuron as _integer_neuron_arrays


def test_layers_resolve_to_their_kind():
    cases = [
        (nn.Linear(3, 2), "Linear", "synapse"),
        (nn.Conv1d(1, 2, 3), "Conv1d", "synapse"),
        (nn.Conv2d(1, 2, 3), "Conv2d", "synapse"),
        (nn.AvgPool2d(2), "AvgPool2d", "pool"),
        (SumPool2d(2), "SumPool2d", "pool"),
        (nn.Flatten(), "Flatten", "reshape"),
        (LIF(beta=0.9), "LIF", "neuron"),
        (LIF(beta=1.0), "IF", "neuron"),
        (IF(), "IF", "neuron"),
        (CubaLIF(), "CubaLIF", "neuron"),
        (LI(), "LI", "neuron"),
        (RLIF(3), "RLIF", "neuron"),
        (nn.Dropout(), "", "dropped"),
        (nn.BatchNorm1d(3), "", "batchnorm"),
        (nn.MaxPool2d(2), "", "unsupported"),
        (ALIF(), "", "unsupported"),
        (nn.GELU(), "", "unsupported"),
    ]
    got = [(converter_for(m).name, converter_for(m).role) for m, _, _ in cases]
    assert got == [(name, role) for _, name, role in cases]
    assert [kind_of(m) for m, _, _ in cases[-5:]] == [
        "Dropout",
        "BatchNorm1d",
        "MaxPool2d",
        "ALIF",
        "GELU",
    ]
    assert SYNAPSE_TYPES == (nn.Linear, nn.Conv1d, nn.Conv2d)
    assert NEURON_TYPES == (LIF, IF, CubaLIF, LI, RLIF)
    assert list(kinds.INTEGER_KINDS) == ["LIF", "IF", "CubaLIF", "LI", "RLIF"]
    # a subclass is found along the MRO; an integer neuron is its kind
    assert converter_for(type("MyLIF", (LIF,), {})(beta=0.5)) is kinds.lif.LIF_KIND
    qn = QuantizedNeuron("CubaLIF", threshold=3.0, v_decay=100.0, i_decay=200.0)
    assert converter_for(qn) is kinds.cuba.CUBA_KIND
    with pytest.raises(dataclasses.FrozenInstanceError):
        kinds.lif.LIF_KIND.name = "x"


def _integer_neuron(kind: str, n: int) -> QuantizedNeuron:
    g = torch.Generator().manual_seed(3)
    spiking = kinds.INTEGER_KINDS[kind].spiking
    return QuantizedNeuron(
        kind,
        threshold=torch.randint(5, 40, (n,), generator=g).double() if spiking else None,
        decay_mode="mult",
        v_decay=torch.randint(0, 4096, (n,), generator=g).double(),
        i_decay=torch.randint(0, 4096, (n,), generator=g).double() if kind == "CubaLIF" else None,
        rounding="floor",
        reset="subtract" if kind in ("LIF", "RLIF") else "zero",
        reset_delay=kind == "CubaLIF",
        state_bits=8,
        w_rec=torch.randint(-9, 10, (n, n), generator=g).double() if kind == "RLIF" else None,
    )


@pytest.mark.parametrize("kind", ["LIF", "IF", "CubaLIF", "LI", "RLIF"])
def test_each_kind_steps_the_same_in_torch_and_numpy(kind):
    """The kind's torch step (neuron kernel + integer hooks) and its numpy step (the
    independent simulator) agree bit for bit, saturation included."""
    n = 6
    neuron = _integer_neuron(kind, n)
    z = torch.randint(-100, 150, (25, 4, n), generator=torch.Generator().manual_seed(4)).double()
    out, _ = neuron(z)
    conv = kinds.INTEGER_KINDS[kind]
    sat = _intsim.Saturation(8)
    ref = conv.simulate(z.numpy().astype(np.int64), _integer_neuron_arrays(neuron), sat)
    assert np.array_equal(out.numpy().astype(np.int64), ref)
    assert sat.count > 0  # the states did saturate: the check covers the clipping
    if conv.spiking:
        assert 0 < out.sum() < out.numel()


def test_numpy_steps_share_no_code_with_the_torch_kernels():
    kernels = {"lif_update", "li_update", "cuba_update", "rlif_update", "torch"}
    for kind, conv in kinds.INTEGER_KINDS.items():
        assert not kernels & set(conv.simulate.__code__.co_names), kind
    tree = ast.parse(Path(_intsim.__file__).read_text())
    imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level}
    assert not any(m.startswith("neurons") or m.startswith(".neurons") for m in imported)
    assert imported == {"_decay"}


class Negate(nn.Module):
    """A layer no kind file knows: ``-x``."""

    def forward(self, x):
        return -x


def test_a_new_kind_is_one_converter(monkeypatch):
    """Registering one converter is all quantisation and the simulator need."""
    net = Sequential(Negate(), nn.Linear(5, 4), LIF(beta=0.9, threshold=0.5))
    with pytest.raises(Exception, match="Negate is not supported for export"):
        quantize(net, input_shape=(5,))
    negate = kinds.Converter(
        "Negate",
        "reshape",
        quantize=lambda layer, scale, shape: (Negate(), scale, None),
        compile=lambda layer: None,
        run=lambda x, op: -x,
    )
    monkeypatch.setitem(_layers.CONVERTERS, Negate, negate)
    torch.manual_seed(0)
    q = quantize(net, input_shape=(5,))
    assert [r.kind for r in q.report.layers] == ["Negate", "Linear", "LIF"]
    x = -(torch.rand(20, 3, 5) < 0.5).double()
    res = simulate(q, x)
    assert np.array_equal(res.output, q(x)[0].numpy().astype(np.int64))
    assert res.output.sum() > 0
