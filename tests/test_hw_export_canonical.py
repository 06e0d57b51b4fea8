"""One canonicalisation per export: :class:`spikelfp.hw_export.CanonicalNet`, the typed
intermediate that checks, quantisation and NIR writing share."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikelfp import LIF, Sequential
from spikelfp.hw_export import (
    CanonicalNet,
    UnsupportedLayerError,
    _layers,
    canonicalize,
    check_model,
    export,
    magnitude_prune,
    quantize,
    sparsity_report,
)


def _net():
    torch.manual_seed(0)
    return Sequential(
        nn.Linear(12, 8),
        nn.BatchNorm1d(8),
        nn.Dropout(0.1),
        LIF(beta=0.9, threshold=0.5),
        nn.Linear(8, 3),
        LIF(beta=0.8, threshold=0.5),
    ).eval()


def _data():
    torch.manual_seed(1)
    return (torch.rand(10, 20, 12) < 0.3).float(), torch.randint(0, 3, (20,))


@pytest.fixture
def count_canonicalisations(monkeypatch):
    """Counts CanonicalNet.from_model and the layer walk it runs (canonical_layers)."""
    calls = {"from_model": 0, "canonical_layers": 0}
    from_model = CanonicalNet.from_model.__func__
    walk = _layers.canonical_layers

    def counting_from_model(cls, model, input_shape=None):
        calls["from_model"] += 1
        return from_model(cls, model, input_shape)

    def counting_walk(model):
        calls["canonical_layers"] += 1
        return walk(model)

    monkeypatch.setattr(CanonicalNet, "from_model", classmethod(counting_from_model))
    monkeypatch.setattr(_layers, "canonical_layers", counting_walk)
    return calls


@pytest.mark.parametrize("prune_method", ["magnitude", "feedback"])
def test_one_export_canonicalises_exactly_once(count_canonicalisations, tmp_path, prune_method):
    pytest.importorskip("nir")
    rep = export(
        _net(),
        target="int8",
        prune=0.5,
        prune_method=prune_method,
        path=tmp_path / "net.nir",
        data=_data(),
        verbose=False,
    )
    assert rep.simulator_identical and (tmp_path / "net.nir").is_file()
    assert count_canonicalisations == {"from_model": 1, "canonical_layers": 1}


def test_canonical_net_records_origin_kind_and_shapes():
    c = CanonicalNet.from_model(_net())
    assert [(r.origin, r.kind, r.in_shape, r.out_shape) for r in c.layers] == [
        (0, "Linear", (12,), (8,)),
        (3, "LIF", (8,), (8,)),
        (4, "Linear", (8,), (3,)),
        (5, "LIF", (3,), (3,)),
    ]
    assert c.shapes == ((12,), (8,), (8,), (3,), (3,)) and c.problems == ()
    # batch norm is folded into the Linear in front of it
    net = _net()
    x = torch.randn(7, 12)
    assert torch.allclose(c.model[0](x), net[1](net[0](x)), atol=1e-6)
    with pytest.raises(ValueError, match="same layers"):
        c.with_model(Sequential(nn.Linear(12, 8), LIF()))


def test_unsupported_layers_are_listed_not_raised_until_export():
    net = Sequential(nn.Linear(4, 4), nn.MaxPool1d(2), LIF())
    c = CanonicalNet.from_model(net)
    assert [(i, name) for i, name, _ in c.problems] == [(1, "MaxPool1d")]
    with pytest.raises(UnsupportedLayerError, match="layer 1 \\(MaxPool1d\\)"):
        c.require_exportable()


def test_public_functions_take_the_canonical_net():
    net, (x, _) = _net(), _data()
    c = CanonicalNet.from_model(net)
    qa, qb = quantize(net, bits=6), quantize(c, bits=6)
    for a, b in zip(qa.model.state_dict().values(), qb.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(qa(x)[0], qb(x)[0])
    assert check_model(net, "xylo").to_dict() == check_model(c, "xylo").to_dict()
    # a quantised network carries its canonical net; checking it canonicalises nothing
    assert qb.canonical is c and qa.canonical.origins == [0, 3, 4, 5]
    # pruning a CanonicalNet gives a CanonicalNet with the same pruned weights
    pa, pb = magnitude_prune(canonicalize(net), 0.6), magnitude_prune(c, 0.6)
    assert isinstance(pb, CanonicalNet) and pb.origins == c.origins
    for a, b in zip(pa.state_dict().values(), pb.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert float((pb.model[0].weight == 0).float().mean()) > 0.3
    assert str(sparsity_report(pa)) == str(sparsity_report(pb))
    assert not bool((c.model[0].weight == 0).any())  # the canonical net is not modified
