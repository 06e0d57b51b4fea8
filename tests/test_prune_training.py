"""Pruning during training (``spikelfp train --prune-to S``): the cubic schedule's values,
monotone masks with exact zeros and no resurrection by Adam, the feedback ranking, exact
resume, one-line configuration errors, and exports that keep the trained sparsity (strictly,
with ``--target int8``)."""

from __future__ import annotations

import json

import _cli
import pytest
import torch
from torch import nn

from spikelfp import LIF, Sequential
from spikelfp.cli import main
from spikelfp.lfp import lfp_step, rate_coded_reward
from spikelfp.training import ConfigError, GradualPruner, PruneSchedule, TrainConfig, Trainer
from spikelfp.training.trainer import TIMING_KEYS

TINY = [*_cli.TINY, "--max-eval-samples", "30"]


def test_schedule_values_at_known_steps():
    s = PruneSchedule(0.8, start=1, end=5)
    # s(t) = 0.8 (1 - (1 - p)^3), p = (t - 1) / 4
    expected = {0: 0.0, 1: 0.0, 2: 0.8 * (1 - 0.75**3), 3: 0.7, 4.5: 0.8 * (1 - 0.125**3)}
    for t, v in expected.items():
        assert s.sparsity_at(t) == pytest.approx(v, abs=1e-12), t
    assert s.sparsity_at(5) == s.sparsity_at(9) == pytest.approx(0.8)
    values = [s.sparsity_at(t / 10) for t in range(80)]
    assert values == sorted(values)  # never decreases
    one_shot = PruneSchedule(0.5, start=2, end=2)
    assert [one_shot.sparsity_at(t) for t in (1, 1.99, 2, 3)] == [0, 0, 0.5, 0.5]
    for bad in (dict(sparsity=1.0), dict(sparsity=-0.1), dict(sparsity=0.5, method="random"),
                dict(sparsity=0.5, start=3, end=2), dict(sparsity=0.5, end=0)):  # fmt: skip
        with pytest.raises(ValueError):
            PruneSchedule(**bad)


def _net(seed=0):
    torch.manual_seed(seed)
    return Sequential(nn.Linear(12, 10), LIF(), nn.Linear(10, 4), LIF())


def test_masks_monotone_exact_zeros_and_adam_does_not_resurrect():
    net = _net()
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    pruner = GradualPruner(net, PruneSchedule(0.75, start=0, end=3, every=2), opt)
    steps, history = 3, []
    g = torch.Generator().manual_seed(1)
    for epoch in range(4):
        pruner.begin_epoch(epoch, steps)
        for _ in range(steps):
            for p in net.parameters():  # gradients everywhere, pruned weights too
                p.grad = torch.randn(p.shape, generator=g)
            pruner.before_step()
            opt.step()
            pruner.after_step()
            masks = {n: m.clone() for n, m in pruner.masks.items()}
            if history:  # a pruned weight stays pruned
                assert all(bool((masks[n] <= history[-1][n]).all()) for n in masks)
            history.append(masks)
            for name, p in pruner.params.items():
                assert bool((p.detach()[~masks[name]] == 0).all()), name
                state = opt.state[p]  # the moments of pruned weights are cleared at the event
                assert bool((state["exp_avg"][~masks[name]] == 0).all())
    n = sum(m.numel() for m in pruner.masks.values())
    assert pruner.sparsity == round(0.75 * n) / n
    # events at steps 2, 3 (epoch end), 4, 6, ...: sparsity rose in more than 3 increments
    assert len({sum(int((~m).sum()) for m in h.values()) for h in history}) > 4
    # every weight that is zero is masked, and every masked one is zero
    for name, p in pruner.params.items():
        assert torch.equal(p.detach() != 0, pruner.masks[name])


def test_feedback_ranking_prunes_a_large_weight_without_feedback():
    torch.manual_seed(0)
    net = Sequential(nn.Linear(6, 3), LIF(threshold=0.3))
    with torch.no_grad():
        net[0].weight.uniform_(0.05, 0.2)
        net[0].weight[:, 0] = 5.0  # the largest weights, from an input that never spikes
    x = (torch.rand(8, 4, 6) < 0.5).float()
    x[..., 0] = 0
    y = torch.tensor([0, 1, 2, 0])
    results = {}
    for method in ("feedback", "magnitude"):
        model = Sequential(nn.Linear(6, 3), LIF(threshold=0.3))
        model.load_state_dict(net.state_dict())
        pruner = GradualPruner(model, PruneSchedule(3 / 18, method=method, end=1))
        pruner.begin_epoch(0, 1)
        lfp_step(model, x, y, rate_coded_reward)
        assert float(model[0].weight.grad[:, 1:].abs().sum()) > 0  # others got feedback
        pruner.before_step()
        pruner.after_step()
        results[method] = pruner.masks["0.weight"]
    assert not results["feedback"][:, 0].any()  # input 0's large weights: pruned
    assert results["feedback"][:, 1:].all()
    assert results["magnitude"][:, 0].all()  # magnitude keeps them
    # equal feedback (none): the smaller weight goes first; feedback protects a small weight
    net = Sequential(nn.Linear(4, 1, bias=False), LIF())
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[3.0, 1.0, 2.0, 0.5]]))
    pruner = GradualPruner(net, PruneSchedule(0.5, method="feedback", end=1))
    pruner.begin_epoch(0, 1)
    net[0].weight.grad = torch.tensor([[0.0, 0.0, 0.0, -1.0]])
    pruner.before_step()
    pruner.after_step()
    assert pruner.masks["0.weight"].tolist() == [[True, False, False, True]]


def _metrics(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def test_prune_during_training_exports_with_the_trained_sparsity(digits_root, tmp_path, capsys):
    pytest.importorskip("nir")
    run = tmp_path / "run"
    args = ["train", "--data-dir", str(digits_root), *TINY, "--epochs", "2", "--out", str(run)]
    args += ["--prune-to", "0.8", "--prune-method", "feedback", "--prune-every", "1"]
    assert main(args) == 0
    capsys.readouterr()
    rows = _metrics(run)
    assert [r["sparsity"] for r in rows][-1] == pytest.approx(0.8, abs=1e-4)
    assert rows[0]["sparsity"] < rows[1]["sparsity"]
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    masks = ckpt["pruning"]["masks"]
    for name, keep in masks.items():
        assert torch.equal(ckpt["model"][name] != 0, keep), name  # exact zeros, nothing else
    report = tmp_path / "x.json"
    nir_path = tmp_path / "net.nir"
    assert main(["export", str(run), "-o", str(nir_path), "--json", str(report)]) == 0
    rep = json.loads(report.read_text())
    assert rep["prune"] == 0 and rep["report"]["sparsity"]["sparsity"] >= 0.8 - 1e-4
    from spikelfp.hw_export import read_nir

    graph = read_nir(nir_path)
    ws = [n.weight for n in graph.nodes.values() if hasattr(n, "weight")]
    zeros = sum(int((w == 0).sum()) for w in ws)
    assert zeros / sum(w.size for w in ws) >= 0.8 - 1e-4


def test_resume_restores_masks_bit_identically(digits_root, tmp_path):
    from spikelfp.training.recipes import resolve_config

    settings = dict(data_dir=str(digits_root), time_bins=4, hidden=16, epochs=3,
                    max_train_samples=40, max_eval_samples=30, progress=False, prune_to=0.7,
                    prune_method="feedback", prune_end=2)  # fmt: skip
    full, cut = tmp_path / "full", tmp_path / "cut"
    Trainer(resolve_config({**settings, "out": str(full)}), log=lambda m: None).fit()

    class Stop(Exception):
        pass

    def stop_after_epoch_1(msg):
        if msg.startswith("epoch 1/3"):  # logged after the epoch's checkpoint is written
            raise Stop

    with pytest.raises(Stop):
        Trainer(resolve_config({**settings, "out": str(cut)}), log=stop_after_epoch_1).fit()
    assert torch.load(cut / "checkpoint.pt", weights_only=True)["epoch"] == 1
    Trainer.resume(cut, log=lambda m: None).fit()
    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(cut / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    assert 0 < sum(int((~m).sum()) for m in a["pruning"]["masks"].values())
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["pruning"]["masks"]:
        assert torch.equal(a["pruning"]["masks"][k], b["pruning"]["masks"][k]), k
    assert _metrics(full) == _metrics(cut)


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--prune-to", "1"], "prune-to must be a fraction in [0, 1)"),
        (
            ["--prune-to", "0.5", "--prune-start", "2", "--prune-end", "1", "--epochs", "3"],
            "--prune-end 1 is before --prune-start 2",
        ),  # fmt: skip
        (["--prune-to", "0.5", "--prune-end", "5", "--epochs", "3"], "never be reached"),
        (
            ["--prune-to", "0.5", "--prune-method", "feedback", "--method", "bptt"],
            "use --prune-method magnitude or --method lfp",
        ),  # fmt: skip
    ],
)
def test_config_errors_are_one_line(capsys, tmp_path, flags, needle):
    line = _cli.one_line_error(capsys, ["train", *flags, "--out", str(tmp_path / "r")])
    assert needle in line
    assert not (tmp_path / "r").exists()


def test_config_rejects_an_unknown_method_and_recipes_may_prune():
    from spikelfp.training.recipes import available_recipes, check_recipe, resolve_config

    with pytest.raises(ConfigError, match="unknown prune-method 'random'"):
        TrainConfig(prune_to=0.5, prune_method="random").validate()
    # recipes hold the same keys; the shipped ones do not prune
    check_recipe({"settings": {"prune_to": 0.8, "prune_method": "feedback"}}, "recipe r.yaml")
    with pytest.raises(ConfigError, match="recipe r.yaml settings: prune-to must be"):
        check_recipe({"settings": {"prune_to": 1.5}}, "recipe r.yaml")
    for name in available_recipes():
        assert resolve_config({"dataset": name}).prune_to == 0, name
    cfg = resolve_config({"prune-to": 0.8, "prune-end": 3, "epochs": 4})
    assert (cfg.prune_to, cfg.prune_method, cfg.prune_end) == (0.8, "magnitude", 3)


def test_bptt_with_magnitude_pruning(digits_root, tmp_path):
    run = tmp_path / "bptt"
    args = ["train", "--data-dir", str(digits_root), *TINY, "--method", "bptt"]
    assert main([*args, "--prune-to", "0.6", "--out", str(run)]) == 0
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    w = [ckpt["model"][n] for n in ckpt["pruning"]["masks"]]
    zero = sum(int((t == 0).sum()) for t in w) / sum(t.numel() for t in w)
    assert zero == pytest.approx(0.6, abs=1e-4)


def test_target_int8_with_pruning_exports_strictly_as_trained(digits_root, tmp_path, capsys):
    pytest.importorskip("nir")
    run = tmp_path / "run"
    args = ["train", "--data-dir", str(digits_root), *TINY, "--epochs", "2", "--target", "int8"]
    assert main([*args, "--prune-to", "0.5", "--prune-method", "feedback", "--out", str(run)]) == 0
    trained = _metrics(run)[-1]
    assert trained["sparsity"] == pytest.approx(0.5, abs=1e-4)
    capsys.readouterr()
    data = ["--dataset", "digits-events", "--data-dir", str(digits_root), "--max-samples", "30"]
    rc = main(
        ["export", str(run), "--target", "int8", "--strict", "-o", str(tmp_path / "n.nir")]
        + [*data, "--json", str(tmp_path / "x.json")]
    )
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((tmp_path / "x.json").read_text())["report"]
    assert rep["constraints"]["violations"] == [] and rep["constraints"]["warnings"] == []
    assert rep["simulator_identical"] is True
    assert rep["accuracy_quantized"] == trained["eval_acc"]  # the trained integer network
    assert rep["sparsity"]["sparsity"] >= 0.5 - 1e-4
