"""``spikelfp train --init GRAPH.nir``: fine-tune a graph another framework wrote, with LFP, and
export it again."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from _cli import one_line_error
from torch import nn

from spikelfp.cli import main
from spikelfp.training import load_run

nir = pytest.importorskip("nir", reason="the NIR tests need the optional package 'nir'")
snn = pytest.importorskip("snntorch", reason="snntorch not installed (spikelfp[baselines])")
export_to_nir = pytest.importorskip("snntorch.export_nir").export_to_nir

FRAME = (2, 34, 34)  # digits-events


def _snntorch_graph(path, n_out=10, seed=0):
    """A flat-input snntorch network (2312 -> 64 -> n_out, subtract reset) written as NIR."""
    from spikelfp.hw_export import write_nir

    torch.manual_seed(seed)
    kw = dict(init_hidden=True, reset_mechanism="subtract")
    net = nn.Sequential(
        nn.Linear(2 * 34 * 34, 64),
        snn.Leaky(beta=torch.full((64,), 0.9), threshold=torch.full((64,), 0.5), **kw),
        nn.Linear(64, n_out),
        snn.Leaky(beta=torch.full((n_out,), 0.9), threshold=torch.full((n_out,), 0.5), **kw),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = export_to_nir(net, torch.zeros(1, 2 * 34 * 34), ignore_dims=[0])
    return write_nir(graph, path)


def test_train_init_fine_tunes_an_snntorch_graph_and_exports_it(digits_root, tmp_path, capsys):
    from spikelfp.hw_export import from_nir

    graph = _snntorch_graph(tmp_path / "snn.nir")
    start = from_nir(graph)
    run = tmp_path / "run"
    argv = ["train", "--init", str(graph), "--data-dir", str(digits_root), "--epochs", "2"]
    argv += ["--max-train-samples", "320", "--max-eval-samples", "100", "--no-progress"]
    assert main([*argv, "--out", str(run)]) == 0
    loaded = load_run(run)
    model = loaded.model
    # the graph's own network, moved by LFP (not a zoo model, not recalibrated)
    assert isinstance(model[0], nn.Flatten) and model[1].out_features == 64
    assert not torch.equal(model[1].weight, start[0].weight)
    assert torch.equal(model[2].threshold, start[1].threshold)  # thresholds are not trained
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["init_graph"] == graph.read_bytes()  # the run does not need the file again
    graph.unlink()
    assert main(["eval", str(run), "--split", "test", "--json", str(tmp_path / "e.json")]) == 0
    acc = json.loads((tmp_path / "e.json").read_text())["accuracy"]
    assert acc > 0.25  # learned from the random graph (10 classes) in two short epochs
    # and out again as NIR: the tuned network, spike for spike
    out = tmp_path / "tuned.nir"
    assert main(["export", str(run), "--target", "int8", "--allow-violations", "-o", str(out)]) == 0
    again = from_nir(out)
    assert sum(isinstance(m, nn.Linear) for m in again) == 2


def test_train_init_bad_input_is_one_line(digits_root, tmp_path, capsys):
    base = ["train", "--data-dir", str(digits_root), "--epochs", "1", "--no-progress"]
    base += ["--out", str(tmp_path / "r")]
    wrong = _snntorch_graph(tmp_path / "seven.nir", n_out=7)
    assert "7 outputs but the data has 10 classes" in one_line_error(
        capsys, [*base, "--init", str(wrong)]
    )
    assert "cannot read it" in one_line_error(capsys, [*base, "--init", str(tmp_path / "no.nir")])
    assert "drop one of them" in one_line_error(
        capsys, [*base, "--init", str(wrong), "--target", "int8"]
    )
    assert "NIR graph file" in one_line_error(capsys, [*base, "--init", str(tmp_path / "x.pt")])
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_train_init_refuses_a_graph_lfp_cannot_train(digits_root, tmp_path, capsys, monkeypatch):
    """Multi-spike neurons (sinabs' default, rockpool) have no LFP rule: refused before training."""
    import spikelfp.training.trainer as trainer_module
    from spikelfp import Sequential
    from spikelfp.hw_export.nir_graph import MultiSpike

    def multi_spike_graph(data, frame_shape, n_classes):
        return Sequential(nn.Flatten(), nn.Linear(2312, n_classes), MultiSpike(1.0, 1.0))

    monkeypatch.setattr(trainer_module, "_model_from_graph", multi_spike_graph)
    graph = _snntorch_graph(tmp_path / "g.nir")
    line = one_line_error(
        capsys,
        ["train", "--init", str(graph), "--data-dir", str(digits_root), "--epochs", "1"]
        + ["--no-progress", "--out", str(tmp_path / "r")],
    )
    assert "no LFP rule for" in line and "MultiSpike" in line and "sinabs-single" in line
    assert not (tmp_path / "r" / "checkpoint.pt").exists()
