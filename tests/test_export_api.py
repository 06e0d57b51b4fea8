"""export(): the one-call pipeline, its report, and clear errors on bad input."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from spikelfp import ALIF, LIF, Sequential
from spikelfp.hw_export import (
    ExportReport,
    ExportWriteError,
    NonFiniteParameterError,
    ProfileViolationError,
    UnsupportedLayerError,
    evaluate,
    export,
    from_nir,
    spike_agreement,
)

nir = pytest.importorskip("nir", reason="export() writes NIR files")

T, F_IN, C = 12, 16, 4


def _task(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (n,), generator=g)
    rates = torch.full((n, F_IN), 0.05)
    for c in range(C):
        rates[y == c, c * 4 : (c + 1) * 4] = 0.7
    return (torch.rand(T, n, F_IN, generator=g) < rates).float(), y


def _trained_like(reset="zero"):
    """A network that solves the task by construction (no training needed)."""
    net = Sequential(
        nn.Linear(F_IN, 8),
        LIF(beta=0.8, threshold=0.5, reset=reset),
        nn.Linear(8, C),
        LIF(beta=0.8, threshold=0.5, reset=reset),
    )
    with torch.no_grad():
        w1 = torch.zeros(8, F_IN)
        for c in range(C):
            w1[2 * c : 2 * c + 2, c * 4 : (c + 1) * 4] = 0.4
        net[0].weight.copy_(w1 + 0.01 * torch.randn(8, F_IN))
        net[0].bias.zero_()
        w2 = torch.zeros(C, 8)
        for c in range(C):
            w2[c, 2 * c : 2 * c + 2] = 0.6
        net[2].weight.copy_(w2)
        net[2].bias.zero_()
    return net


def test_export_end_to_end(tmp_path, capsys):
    torch.manual_seed(0)
    net = _trained_like()
    data = _task()
    path = tmp_path / "net.nir"
    rep = export(net, target="int8", bits=8, prune=0.5, dt=1e-3, path=path, data=data)
    assert isinstance(rep, ExportReport)
    printed = capsys.readouterr().out
    assert "constraints" in printed and "accuracy" in printed and "sparsity" in printed
    assert rep.path == path and path.is_file()
    assert rep.constraints.ok
    assert rep.sparsity.sparsity == pytest.approx(0.5, abs=1e-3)
    assert rep.accuracy_float >= 0.9
    assert rep.accuracy_drop_points is not None and rep.accuracy_drop_points <= 5
    assert rep.simulator_identical is True
    assert 0.9 <= rep.spike_agreement <= 1.0
    assert rep.n_samples == 64
    json.dumps(rep.to_dict())  # serialisable for the CLI
    back = from_nir(path)
    x, _ = data
    assert spike_agreement(back, rep.quantized, x) == 1.0


def test_export_reports_violations_or_raises_when_strict(tmp_path):
    net = _trained_like()
    rep = export(net, target="xylo", prune=0.0, path=None, verbose=False)
    assert not rep.constraints.ok
    assert {v.constraint for v in rep.constraints.violations} == {"reset"}
    with pytest.raises(ProfileViolationError, match="reset"):
        export(net, target="xylo", prune=0.0, path=tmp_path / "x.nir", strict=True, verbose=False)
    assert not (tmp_path / "x.nir").exists()


def test_export_subtract_reset_is_the_targets_own_reset(tmp_path):
    """Xylo neurons subtract: the file holds its reset in NIR metadata, listed as a note (no
    circular 'retrain with zero' advice); on a target that also resets to zero the same change
    is a warning, which --strict refuses; a reset the target lacks is a violation."""
    net = _trained_like(reset="subtract")
    rep = export(net, target="xylo", path=tmp_path / "x.nir", verbose=False)
    assert rep.constraints.ok, str(rep.constraints)
    assert {w.constraint for w in rep.constraints.warnings} == {"decay precision"}  # 0.8 -> 0.75
    assert any("spikelfp_reset" in n for n in rep.constraints.notes)
    back = from_nir(tmp_path / "x.nir")
    assert [m.reset for m in back if hasattr(m, "reset")] == ["subtract", "subtract"]
    rep = export(net, target="int8", path=None, verbose=False)
    assert [w.constraint for w in rep.constraints.warnings] == ["reset in NIR"]
    with pytest.raises(ProfileViolationError, match="reset in NIR"):
        export(net, target="int8", path=tmp_path / "i.nir", strict=True, verbose=False)
    assert not (tmp_path / "i.nir").exists()
    with pytest.raises(ProfileViolationError, match="reset"):
        export(_trained_like(), target="xylo", path=tmp_path / "z.nir", verbose=False)
    assert not (tmp_path / "z.nir").exists()
    rep = export(
        _trained_like(),
        target="xylo",
        path=tmp_path / "z.nir",
        allow_violations=True,
        verbose=False,
    )
    assert not rep.constraints.ok and (tmp_path / "z.nir").is_file()


def test_export_feedback_pruning_from_data(tmp_path):
    net = _trained_like()
    rep = export(
        net,
        target="loihi2",
        prune=0.6,
        prune_method="feedback",
        path=None,
        data=_task(),
        verbose=False,
    )
    assert rep.sparsity.sparsity == pytest.approx(0.6, abs=1e-3)
    with pytest.raises(ValueError, match="feedback_scores"):
        export(net, prune=0.5, prune_method="feedback", path=None, verbose=False)


def test_bad_inputs_give_clear_errors(tmp_path):
    net = _trained_like()
    with pytest.raises(UnsupportedLayerError, match="ALIF"):
        export(
            Sequential(nn.Linear(4, 3), ALIF(), nn.Linear(3, 2), nn.ReLU()),
            path=None,
            verbose=False,
        )
    with pytest.raises(TypeError, match="spikelfp.Sequential"):
        export(nn.Sequential(nn.Linear(4, 3)), path=None, verbose=False)
    bad = _trained_like()
    with torch.no_grad():
        bad[2].weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteParameterError, match="2.weight"):
        export(bad, path=None, verbose=False)
    with pytest.raises(ExportWriteError, match="does not exist"):
        export(net, target="int8", path=tmp_path / "no" / "net.nir", verbose=False)
    with pytest.raises(ValueError, match="fraction"):
        export(net, prune=80, path=None, verbose=False)
    with pytest.raises(ValueError, match="integer input"):
        export(
            net,
            target="int8",
            path=None,
            data=(torch.rand(T, 8, F_IN), torch.zeros(8)),
            verbose=False,
        )


def test_interrupted_export_leaves_no_file(tmp_path, monkeypatch):
    net = _trained_like()
    target = tmp_path / "net.nir"

    def interrupted(path, graph, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"\x89HDF partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(nir, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export(net, target="int8", path=target, verbose=False)
    assert list(tmp_path.iterdir()) == []


def test_evaluate_helpers():
    net = _trained_like()
    x, y = _task()
    acc = evaluate(net, (x, y))
    assert acc == evaluate(net, [(x[:, :32], y[:32]), (x[:, 32:], y[32:])])
    with pytest.raises(ValueError, match="time-first"):
        evaluate(net, (x[0], y))


def test_export_defaults_write_nothing_and_target_int8(tmp_path, monkeypatch):
    """No file appears in the working directory unless a path is given; the default target is
    the generic int8 profile (as ``spikelfp export``)."""
    monkeypatch.chdir(tmp_path)
    rep = export(_trained_like(), verbose=False)
    assert rep.path is None and list(tmp_path.iterdir()) == []
    assert rep.target == "int8" and rep.constraints.ok
    assert rep.quantized is not None


def test_export_takes_the_input_shape_from_data(tmp_path):
    """A convolutional network needs no input_shape when data is given (a tensor pair, a list
    of batches or a one-shot generator)."""
    torch.manual_seed(0)
    net = Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        LIF(beta=0.8, threshold=0.3),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 3),
        LIF(beta=0.8, threshold=0.3),
    )
    x = (torch.rand(5, 8, 2, 6, 6) < 0.3).float()
    y = torch.randint(0, 3, (8,))
    with pytest.raises(ValueError, match="input_shape"):
        export(net, prune=0.0, verbose=False)  # no data: the shape cannot be known
    for data in ((x, y), [(x[:, :4], y[:4]), (x[:, 4:], y[4:])], ((x, y) for _ in range(1))):
        rep = export(net, prune=0.0, data=data, path=tmp_path / "conv.nir", verbose=False)
        assert rep.quantized.input_shape == (2, 6, 6)
        assert rep.n_samples == 8 and rep.simulator_identical is True


def test_accuracy_drop_is_a_deprecated_alias():
    rep = export(_trained_like(), data=_task(), verbose=False)
    assert rep.to_dict()["accuracy_drop_points"] == rep.accuracy_drop_points
    with pytest.warns(DeprecationWarning, match="accuracy_drop_points"):
        assert rep.accuracy_drop == rep.accuracy_drop_points
