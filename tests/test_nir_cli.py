"""``spikelfp eval GRAPH.nir`` on real N-MNIST recordings (skips without SPIKELFP_DATA)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from spikelfp import IF, Sequential
from spikelfp.cli import main
from spikelfp.hw_export import export_nir, from_nir
from spikelfp.training.config import TrainConfig
from spikelfp.training.data import open_split

pytest.importorskip("nir", reason="the NIR tests need the optional package 'nir'")

FRAMES = ["--time-bins", "6", "--bin-ms", "20", "--input-clamp", "none", "--val-fraction", "0.2"]


@pytest.fixture()
def nmnist(shared_data):
    root = shared_data / "nmnist"
    if not root.is_dir():
        pytest.skip(f"no N-MNIST recordings under {root}")
    return root


def _graph(tmp_path, flat: bool):
    torch.manual_seed(0)
    layers = [nn.Linear(2 * 34 * 34, 10)] if flat else [nn.Flatten(), nn.Linear(2 * 34 * 34, 10)]
    net = Sequential(*layers, IF(threshold=2.0))
    with torch.no_grad():
        net[-2].weight.mul_(4)
    path = tmp_path / "g.nir"
    export_nir(net, path, input_shape=None if flat else (2, 34, 34))
    return path


@pytest.mark.parametrize("flat", [False, True])
def test_eval_nir_graph_matches_a_direct_evaluation(flat, nmnist, tmp_path, capsys):
    path = _graph(tmp_path, flat)
    out = tmp_path / "r.json"
    argv = ["eval", str(path), "--dataset", "nmnist", "--data-dir", str(nmnist)]
    argv += [*FRAMES, "--max-samples", "20", "--split", "val", "--json", str(out)]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["n_samples"] == 20 and result["graph"] == str(path)
    # the same frames, the same graph, by hand: raw counts (no clamp), 20 ms bins
    cfg = TrainConfig(
        dataset="nmnist", data_dir=str(nmnist), time_bins=6, bin_ms=20.0, input_clamp=None,
        max_eval_samples=20, max_train_samples=20, val_fraction=0.2,
    )  # fmt: skip
    data = open_split(cfg, "val")
    net = from_nir(path)
    correct = 0
    for i in range(len(data.dataset)):
        x, y = data.dataset[i][:2]
        assert x.max() > 1  # raw counts reach the graph
        o, _ = net(x.reshape(6, 1, *((2312,) if flat else (2, 34, 34))))
        correct += int(o.sum(0).argmax(-1).item() == int(y))
    assert result["accuracy"] == pytest.approx(correct / 20)
    assert "accuracy" in capsys.readouterr().out


def test_eval_nir_errors(nmnist, tmp_path, capsys):
    path = _graph(tmp_path, flat=False)
    assert main(["eval", str(path)]) == 2
    assert "needs --dataset" in capsys.readouterr().err
    wrong = tmp_path / "w.nir"
    export_nir(Sequential(nn.Linear(5, 10), IF()), wrong)
    argv = ["eval", str(wrong), "--dataset", "nmnist", "--data-dir", str(nmnist), *FRAMES]
    assert main([*argv, "--split", "val", "--max-samples", "10"]) == 2
    err = capsys.readouterr().err
    assert "takes inputs of shape (5,)" in err and "\n" not in err.strip()
    run = tmp_path / "run"
    run.mkdir()
    assert main(["eval", str(run), "--bin-ms", "10"]) == 2
    assert "apply to a NIR graph" in capsys.readouterr().err
