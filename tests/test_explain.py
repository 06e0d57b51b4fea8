"""spikelfp.explain: relevance for a class, per event, conservation, pictures, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from spikelfp import IF, LIF, Sequential, explain, explain_events
from spikelfp.datasets import Denoise, Downsample, EventsToFrames, FrameSpec
from spikelfp.explain import (
    bin_events,
    depth_composite,
    epsilon_composite,
    gamma_composite,
    relevance_budget,
    surrogate_saliency,
    zplus_composite,
)
from spikelfp.lfp import UnsupportedModuleError

f64 = torch.float64


def _conv_net() -> Sequential:
    torch.manual_seed(1)
    return Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        LIF(beta=0.9, threshold=0.3),
        nn.AvgPool2d(2),
        nn.Dropout(0.3),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 5),
        LIF(beta=0.9, threshold=0.3),
    )


def _positive_if_net(bias: bool) -> Sequential:
    """IF neurons (β = 1) fed non-negative currents: the neuron rule's denominator is exactly
    the membrane, so LFP conserves reward up to the bias shares."""
    torch.manual_seed(0)
    net = Sequential(
        nn.Linear(8, 16, bias=bias),
        IF(threshold=0.05, reset="subtract"),
        nn.Linear(16, 4, bias=bias),
        IF(threshold=0.3, reset="subtract"),
    ).double()
    with torch.no_grad():
        for layer in (net[0], net[2]):
            layer.weight.uniform_(0.0, 0.3)
            if layer.bias is not None:
                layer.bias.uniform_(0.0, 0.1)
    return net


# -- the model is left exactly as it was -----------------------------------------------------------
@pytest.mark.parametrize(
    "make_comp", [epsilon_composite, zplus_composite, gamma_composite, depth_composite]
)
def test_model_is_bit_identical_and_has_no_grad_after_explain(make_comp):
    net = _conv_net().train()
    net[6].bias.requires_grad_(False)
    net[2].eval()  # mixed modes are kept as they are
    before = {k: v.clone() for k, v in net.state_dict().items()}
    modes = [m.training for m in net.modules()]
    flags = [p.requires_grad for p in net.parameters()]
    x = (torch.rand(6, 3, 2, 8, 8) < 0.3).float()
    rel = explain(net, x, torch.tensor([0, 1, 4]), make_comp())
    assert rel.shape == x.shape and torch.isfinite(rel).all() and rel.abs().sum() > 0
    after = net.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k  # also BatchNorm's running statistics
    assert all(p.grad is None for p in net.parameters())
    assert [m.training for m in net.modules()] == modes
    assert [p.requires_grad for p in net.parameters()] == flags
    for m in net.modules():
        assert "forward" not in vars(m)
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
    assert not x.requires_grad and x.grad is None


def test_existing_grad_is_kept_and_explain_works_under_no_grad():
    net = _conv_net().eval()
    g = torch.ones_like(net[0].weight)
    net[0].weight.grad = g.clone()
    x = (torch.rand(6, 2, 2, 8, 8) < 0.3).float()
    with torch.no_grad():
        rel = explain(net, x, 1, reward="uniform")
    assert rel.abs().sum() > 0
    assert torch.equal(net[0].weight.grad, g)
    assert all(p.grad is None for n, p in net.named_parameters() if n != "0.weight")


# -- conservation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("reward", ["output", "uniform"])
def test_relevance_is_conserved_without_bias(reward):
    net = _positive_if_net(bias=False)
    x = torch.rand(10, 5, 8, dtype=f64)  # dense, positive: every membrane is driven
    target = torch.tensor([0, 1, 2, 3, 0])
    rel, out = explain(
        net, x, target, epsilon_composite(epsilon=1e-12), reward=reward, return_output=True
    )
    per_sample = rel.sum((0, 2))
    if reward == "output":
        expected = out[:, torch.arange(5), target].sum(0)  # the target's spike count
        assert (expected > 0).all()
    else:
        expected = torch.ones(5, dtype=f64)
    torch.testing.assert_close(per_sample, expected, rtol=1e-5, atol=0)


def test_relevance_is_conserved_up_to_the_bias_share():
    net = _positive_if_net(bias=True)
    x = torch.rand(10, 4, 8, dtype=f64)
    comp = epsilon_composite(epsilon=1e-12)
    target = torch.tensor([0, 1, 2, 3])
    rel, out = explain(net, x, target, comp, return_output=True)
    budget = relevance_budget(net, x, target, comp)
    total_out = float(out[:, torch.arange(4), target].sum())
    assert budget["output"] == pytest.approx(total_out, rel=1e-12)
    assert budget["input"] == pytest.approx(float(rel.sum()), rel=1e-9)
    assert budget["bias"] > 1e-3 * total_out  # the biases took a visible share ...
    # ... and exactly that share is missing at the input (nothing absorbed, nothing else lost)
    assert abs(budget["output"] - budget["input"] - budget["bias"]) <= 1e-5 * total_out
    assert abs(budget["neuron_absorbed"]) <= 1e-5 * total_out
    assert abs(budget["other"]) <= 1e-6 * total_out


def test_budget_accounts_for_leak_absorption_in_a_general_network():
    """A spiking conv net (leaky neurons, biases of both signs, average pooling): the output
    reward is the input relevance plus the bias and absorbed shares; nothing else is lost."""
    torch.manual_seed(1)
    net = Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        LIF(beta=0.9, threshold=0.3),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 5),
        LIF(beta=0.9, threshold=0.3),
    )
    x = (torch.rand(6, 3, 2, 8, 8) < 0.4).float()
    target = torch.tensor([0, 1, 2])
    b = relevance_budget(net, x, target, reward="uniform")
    assert b["output"] == pytest.approx(3.0)
    assert abs(b["neuron_absorbed"]) > 1e-3 and abs(b["bias"]) > 1e-3  # both shares are real
    assert abs(b["other"]) <= 1e-5 * b["output"]
    parts = b["input"] + b["bias"] + b["synapse_absorbed"] + b["neuron_absorbed"]
    assert parts == pytest.approx(b["output"], rel=1e-5)
    rel = explain(net, x, target, reward="uniform")
    assert float(rel.sum()) == pytest.approx(b["input"], rel=1e-4, abs=1e-6)


# -- batches, targets, rewards ---------------------------------------------------------------------
def test_batched_equals_per_sample():
    net = _conv_net()
    x = (torch.rand(6, 4, 2, 8, 8) < 0.3).float()
    target = torch.tensor([3, 0, 1, 2])
    batched = explain(net, x, target, depth_composite())
    for b in range(4):
        single = explain(net, x[:, b : b + 1], int(target[b]), depth_composite())
        torch.testing.assert_close(batched[:, b : b + 1], single, rtol=1e-5, atol=1e-7)


def test_targets_predicted_class_and_reward_tensor():
    net = _conv_net()
    x = (torch.rand(6, 2, 2, 8, 8) < 0.3).float()
    rel_pred, out = explain(net, x, return_output=True)
    pred = out.sum(0).argmax(-1)
    torch.testing.assert_close(rel_pred, explain(net, x, pred))
    reward = torch.zeros_like(out)
    reward[:, 0, 2] = 1.0
    reward[:, 1, 0] = -0.5
    by_tensor = explain(net, x, reward)
    assert by_tensor.shape == x.shape
    uniform = explain(net, x, torch.tensor([2, 0]), reward="uniform")
    torch.testing.assert_close(by_tensor[:, 0], uniform[:, 0] * 6)  # 1 = 6 × (1/T)
    torch.testing.assert_close(by_tensor[:, 1], uniform[:, 1] * -3)  # -0.5 = -3 × (1/T)


def test_surrogate_saliency_is_gradient_times_input():
    net = _conv_net().eval()
    x = (torch.rand(6, 2, 2, 8, 8) < 0.3).float()
    sal = surrogate_saliency(net, x, torch.tensor([1, 2]))
    assert sal.shape == x.shape and torch.isfinite(sal).all()
    assert (sal[x == 0] == 0).all()
    assert all(p.grad is None for p in net.parameters())


# -- snntorch and norse models ---------------------------------------------------------------------
def test_unmodified_snntorch_model_gives_the_converted_networks_explanation():
    pytest.importorskip("snntorch")
    from spikelfp.interop import to_snntorch

    torch.manual_seed(3)
    seq = Sequential(
        nn.Linear(12, 20),
        LIF(beta=0.85, threshold=0.4, reset="subtract", reset_delay=True),
        nn.Linear(20, 5),
        LIF(beta=0.85, threshold=0.4, reset="subtract", reset_delay=True),
    ).double()
    net = to_snntorch(seq)  # an nn.Sequential of init_hidden snn.Leaky, run once per step
    x = (torch.rand(10, 4, 12, dtype=f64) < 0.5).to(f64)
    target = torch.tensor([0, 1, 2, 3])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ours, out = explain(seq, x, target, return_output=True)
    theirs = explain(net, x, target)
    assert out[:, torch.arange(4), target].sum() > 0
    torch.testing.assert_close(theirs, ours, rtol=1e-9, atol=1e-12)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in net.parameters())
    # the depth preset names the layers of the user's model, also when it is stepped
    torch.testing.assert_close(
        explain(net, x, target, depth_composite(net, "gamma", lower_layers=1)),
        explain(seq, x, target, depth_composite(seq, "gamma", lower_layers=1)),
        rtol=1e-9,
        atol=1e-12,
    )


def test_unmodified_norse_model_is_explained():
    pytest.importorskip("norse.torch")
    from spikelfp.interop import to_norse

    torch.manual_seed(4)
    seq = Sequential(
        nn.Linear(6, 8), LIF(beta=0.8, threshold=0.3), nn.Linear(8, 3), LIF(beta=0.8, threshold=0.3)
    )
    net = to_norse(seq)
    x = (torch.rand(8, 2, 6) < 0.5).float()
    rel = explain(net, x, 1)
    assert rel.shape == x.shape and torch.isfinite(rel).all()
    assert all(p.grad is None for p in net.parameters())


# -- events ----------------------------------------------------------------------------------------
def _events(n: int = 400, width: int = 10, height: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, dtype=[("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i1")])
    ev["t"] = np.sort(rng.integers(0, 50_000, n))
    ev["x"] = rng.integers(0, width, n)
    ev["y"] = rng.integers(0, height, n)
    ev["p"] = rng.integers(0, 2, n)
    return ev


@pytest.mark.parametrize(
    "prep",
    [
        EventsToFrames(FrameSpec(n_time_bins=5)),
        EventsToFrames(FrameSpec(n_time_bins=4, overlap=0.5)),
        EventsToFrames(FrameSpec(time_window_us=7_000, include_incomplete=True)),
        EventsToFrames(
            FrameSpec(time_window_us=10_000, start_time_us=0, end_time_us=40_000),
            denoise=Denoise(3_000),
            downsample=Downsample(0.5),
        ),
    ],
)
def test_event_binning_is_the_datasets_binning(prep):
    pytest.importorskip("tonic")
    ev = _events()
    bins = bin_events(ev, prep, (10, 8, 2))
    np.testing.assert_array_equal(bins.counts(), prep.build((10, 8, 2))(ev.copy()))
    values = np.random.default_rng(1).normal(size=bins.frame_shape)
    per_event = bins.to_events(values)
    assert per_event.shape == (len(ev),)
    # each membership carries value / count: the events of a cell share its value exactly
    assert per_event.sum() == pytest.approx(values[bins.counts() > 0].sum(), rel=1e-12)


def test_event_relevance_sums_to_the_frame_relevance():
    pytest.importorskip("tonic")
    ev = _events(600)
    torch.manual_seed(2)
    net = Sequential(nn.Flatten(), nn.Linear(2 * 8 * 10, 16), LIF(threshold=0.2), nn.Linear(16, 3))
    net.append(LIF(threshold=0.2))
    res = explain_events(net, ev, FrameSpec(n_time_bins=6), (10, 8, 2), target=2)
    assert res.target == 2 and res.frames.shape == (6, 2, 8, 10)
    assert res.relevance.shape == (len(ev),)
    assert res.relevance.sum() == pytest.approx(res.frame_relevance.sum(), rel=1e-9, abs=1e-12)
    assert (res.frame_relevance[res.frames == 0] == 0).all()
    # raw counts (no clamp): the cells with several events still share their relevance exactly
    raw = explain_events(net, ev, FrameSpec(n_time_bins=6), (10, 8, 2), 2, input_clamp=None)
    assert raw.relevance.sum() == pytest.approx(raw.frame_relevance.sum(), rel=1e-9, abs=1e-12)
    assert res.ranking()[0] == int(np.argmax(res.relevance))


# -- errors ----------------------------------------------------------------------------------------
def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and text
    return text


def test_wrong_rank_is_one_clear_error():
    net = _conv_net()
    with pytest.raises(ValueError, match="time-first") as err:
        explain(net, torch.rand(6, 2))
    _one_line(err)
    with pytest.raises(ValueError, match="time-first") as err:  # (T, B, H, W): no channels
        explain(net, torch.rand(6, 2, 8, 8))
    _one_line(err)
    mlp = Sequential(nn.Linear(4, 3), LIF())
    with pytest.raises(ValueError, match="time-first") as err:
        explain(mlp, torch.rand(5, 4))
    _one_line(err)


@pytest.mark.parametrize("target", [5, -1, torch.tensor([0, 7])])
def test_target_outside_the_classes_is_one_clear_error(target):
    net = _conv_net()
    with pytest.raises(ValueError, match="outside the classes 0..4") as err:
        explain(net, torch.rand(6, 2, 2, 8, 8), target)
    _one_line(err)


def test_bad_target_types_and_shapes():
    net = _conv_net()
    x = torch.rand(6, 2, 2, 8, 8)
    with pytest.raises(ValueError, match="one class per sample"):
        explain(net, x, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="reward tensor must have the output's shape"):
        explain(net, x, torch.zeros(6, 2, 3))
    with pytest.raises(TypeError, match="target must be"):
        explain(net, x, "seven")
    with pytest.raises(ValueError, match="reward must be one of"):
        explain(net, x, 0, reward="logits")


def test_unsupported_layer_is_one_clear_error():
    net = Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 3), LIF())
    with pytest.raises(TypeError, match=r"no LFP rule for: 1 \(Tanh\)") as err:
        explain(net, torch.rand(5, 2, 4), 0)
    _one_line(err)
    assert isinstance(err.value, UnsupportedModuleError)
    assert "forward" not in vars(net[0])


def test_bad_composite_arguments():
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        epsilon_composite(epsilon=0)
    with pytest.raises(ValueError, match="lower must be"):
        depth_composite(lower="alpha")
    with pytest.raises(ValueError, match="needs the model"):
        depth_composite(lower_layers=1)


# -- pictures and the command line -----------------------------------------------------------------
def test_pictures(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("tonic")
    from spikelfp.explain.plots import (
        plot_event_relevance,
        plot_explanation,
        plot_relevance_frames,
        plot_relevance_over_time,
        save_relevance_gif,
    )

    ev = _events(300)
    torch.manual_seed(2)
    net = Sequential(nn.Flatten(), nn.Linear(160, 3), LIF(threshold=0.2))
    res = explain_events(net, ev, FrameSpec(n_time_bins=4), (10, 8, 2), target=0)
    for fig in (
        plot_explanation(res),
        plot_relevance_frames(res.frame_relevance, res.frames),
        plot_relevance_over_time(res.frame_relevance),
        plot_event_relevance(res.events, res.relevance),
    ):
        fig.savefig(tmp_path / "f.png")
        assert (tmp_path / "f.png").stat().st_size > 1000
    gif = save_relevance_gif(res.frame_relevance, tmp_path / "r.gif", res.frames)
    assert gif.read_bytes()[:4] == b"GIF8"
    with pytest.raises(ValueError, match=r"\(T, P, H, W\)"):
        plot_relevance_frames(np.zeros((2, 3)))


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """The built-in dataset, generated once for the command-line tests."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("tonic")
    pytest.importorskip("sklearn")
    from spikelfp.datasets import make_digits_events

    root = tmp_path_factory.getbasetemp() / "digits-events"
    make_digits_events(root)  # idempotent
    return root


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spikelfp", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_cli_writes_the_picture_for_a_tiny_trained_run(tmp_path, digits):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SPIKELFP_HOME": str(tmp_path / "home")}
    run = tmp_path / "run"
    data = str(digits)
    tiny = ["--max-train-samples", "40", "--max-eval-samples", "20", "--time-bins", "4"]
    train = _run(
        ["train", "--dataset", "digits-events", "--data-dir", data, *tiny, "--hidden", "16",
         "--epochs", "1", "--threads", "1", "--no-progress", "--out", str(run)],
        env,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    png, gif = tmp_path / "out" / "x.png", tmp_path / "x.gif"
    res = _run(["explain", str(run), "--index", "3", "-o", str(png), "--gif", str(gif)], env)
    assert res.returncode == 0, res.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert gif.read_bytes()[:4] == b"GIF8"
    assert "digits-events test #3" in res.stdout and "wrote" in res.stdout
    bad = _run(["explain", str(run), "--index", "100000", "-o", str(png)], env)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("spikelfp explain: error: --index 100000 is out of range")
    assert len(bad.stderr.strip().splitlines()) == 1
    bad = _run(["explain", str(run), "--index", "0", "--target", "12", "-o", str(png)], env)
    assert bad.returncode == 2 and "outside the classes 0..9" in bad.stderr


def test_cli_explains_in_process(tmp_path, digits, capsys):
    """The same command through ``main`` (no subprocess): the z⁺ rule and the predicted class."""
    from spikelfp.cli import main
    from spikelfp.training import TrainConfig, Trainer

    Trainer(
        TrainConfig(
            dataset="digits-events",
            data_dir=str(digits),
            time_bins=4,
            hidden=16,
            epochs=1,
            max_train_samples=30,
            max_eval_samples=10,
            out=str(tmp_path / "run"),
            progress=False,
            threads=1,
        )
    ).fit()
    out = tmp_path / "p.png"
    rc = main(
        ["explain", str(tmp_path / "run"), "--index", "1", "--rule", "zplus", "--target",
         "predicted", "-o", str(out)]
    )  # fmt: skip
    assert rc == 0 and out.is_file()
    assert "(zplus)" in capsys.readouterr().out


def test_module_doc_example_paths_exist():
    root = Path(__file__).resolve().parents[1]
    assert (root / "docs" / "explanations.md").is_file()
    assert (root / "benchmarks" / "bench_explain.py").is_file()
