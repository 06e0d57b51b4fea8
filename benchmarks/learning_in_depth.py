r"""Why deeper spiking conv nets learn slowly with LFP: per-layer diagnostics, epoch by epoch.

Trains a spiking conv net on N-MNIST (the 1,000 real recordings under ``$SPIKELFP_DATA/nmnist``,
16 time bins) or on the offline ``digits-events`` set with :func:`spikelfp.lfp.lfp_step`
(``--reward rate``: rate-coded reward :math:`\times 1/T`; ``softmax``: spike-count cross-entropy
error :math:`/T`; Adam, cosine schedule), after
:func:`spikelfp.training.models.calibrate_firing` has scaled each synapse so its neurons fire at
``--target-rate`` (one rate, or hidden rate(s) then the output's, as the trainer's
``init_rate``) on a batch of training data. Data: 800 training / 200 validation recordings
(stratified, seed 0); by default (``--eval-split tune``) the 800 are split again into 600 to
train and 200 to evaluate ("tune", seed 7, as the trainer's ``--tune-fraction``) and the
validation recordings are not loaded; ``--eval-split val`` trains on the 800 and evaluates on the
validation 200. Every epoch is wrapped in
:class:`spikelfp.lfp.LFPDiagnostics` (accumulated over all of the epoch's training steps), which
records per layer: the reward magnitude reaching it (relative to the reward put on the output),
how it splits the reward (input / bias / membrane's past / absorbed), the fraction of units and
weights that receive any feedback, dead and saturated neurons and the update/weight ratio
:math:`\|\Delta w\| / \|w\|` of the real optimiser step.

Zoo models (``--zoo-model``, e.g. ``speck-cnn --channels 32 64 64``) are built from a
:class:`spikelfp.training.models.ModelSpec` with ``--neuron``, ``--reset``, ``--pool avg|sum``,
``--hidden``, ``--bias/--no-bias``. Without it, the script's own nets:

Models (``--model``), all ``spikelfp.Sequential`` with ``--neuron if|lif`` and ``--reset``:

* ``deep``: Conv(2→16, k5, s2, p1) → N → Conv(16→16, k3, p1) → N → AvgPool2 → Conv(16→8, k3, p1)
  → N → AvgPool2 → Flatten → Linear(128→256) → N → Linear(256→10) → N  (5 synapse layers)
* ``shallow``: Conv(2→16, k5, s2, p1) → N → AvgPool4 → Flatten → Linear(256→256) → N →
  Linear(256→10) → N  (3 synapse layers, for comparison)

Variants (``--variant``, several to compare them on the same data and initial weights):

* ``baseline``: the default composite (ε-rule synapses, LIF rule neurons).
* ``renorm``: per-layer reward normalisation: the reward reaching each hidden neuron layer is
  rescaled, per sample :math:`b`, to the L1 norm of the reward on the network's output,
  :math:`R_{t,b,u} \leftarrow R_{t,b,u}\,\|R^{net}_{b}\|_1 / \|R_{b}\|_1` (a tensor hook on
  the layer's spikes). With Adam a constant factor per layer would change nothing (Adam is
  invariant to the scale of each parameter's feedback); the per-sample factor reweights the
  samples whose reward decays or grows on its way down.
* ``zplus`` / ``gamma``: the first two convolutions use :class:`~spikelfp.lfp.ZPlusRule`
  / :class:`~spikelfp.lfp.GammaRule` (``γ = 0.25``) instead of the ε-rule (rules keyed by
  the modules' names: ``default_composite().with_names({"0": ZPlusRule(), "2": ...})``).

Usage::

    python benchmarks/learning_in_depth.py --epochs 3                          # N-MNIST
    python benchmarks/learning_in_depth.py --dataset digits-events --epochs 1  # offline
    python benchmarks/learning_in_depth.py --variant baseline renorm zplus --epochs 3
    python benchmarks/learning_in_depth.py --zoo-model speck-cnn --channels 32 64 64 \
        --neuron if --reset subtract --reward softmax --pool avg --lr 3e-3 --epochs 4 \
        --target-rate 0.15 0.1 --tag recipe --json benchmarks/results/learning_in_depth_x.json
    python benchmarks/learning_in_depth.py --compare A.json B.json --compare-png cmp.png

Writes ``benchmarks/results/learning_in_depth.json`` (``--json``) and one PNG per variant plus
an accuracy comparison under ``--out`` (default ``docs/img/learning_in_depth/``; names from
``--tag``), and prints Markdown tables. ``--compare`` trains nothing: it prints tables comparing
result files (accuracy per epoch; per layer, epoch 1 → last of the dead fraction, weights with
feedback, update ratio, reward on the spikes relative to the output and the share sent to the
membrane's past) and draws them (``--compare-png``). Results: ``docs/learning_in_depth.md``.
One thread: about 5 s per epoch and variant of ``deep`` on N-MNIST's 800 (``--epochs 3 --eval-split
val`` with all four variants: 70 s, data loading included); ``speck-cnn`` 32/64/64 on the 600 of
the tuning split: 15-23 s per epoch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

import spikelfp
from spikelfp.lfp import (
    Composite,
    GammaRule,
    LFPDiagnostics,
    ZPlusRule,
    default_composite,
    lfp_step,
    rate_coded_reward,
    spike_count_softmax_reward,
)
from spikelfp.neurons.base import NeuronModule
from spikelfp.training.models import MODELS as ZOO_MODELS
from spikelfp.training.models import ModelSpec, calibrate_firing, neuron_layers
from spikelfp.training.models import build_model as build_zoo_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("deep", "shallow")
VARIANTS = ("baseline", "renorm", "zplus", "gamma")
REWARDS = ("rate", "softmax")


# ------------------------------------------------------------------------------------ models


def build_model(
    name: str,
    neuron: str = "if",
    reset: str = "zero",
    threshold: float = 1.0,
    beta: float = 0.9,
    pool: str = "avg",
) -> spikelfp.Sequential:
    """The ``deep`` or ``shallow`` conv net for 2×34×34 frames (see the module docstring);
    ``pool="sum"`` replaces its average pooling by :class:`spikelfp.SumPool2d`."""

    def act() -> NeuronModule:
        if neuron == "if":
            return spikelfp.IF(threshold=threshold, reset=reset)
        return spikelfp.LIF(beta=beta, threshold=threshold, reset=reset)

    def pooling(k: int) -> nn.Module:
        if pool == "sum":
            return spikelfp.SumPool2d(k)
        if pool == "avg":
            return nn.AvgPool2d(k)
        raise ValueError(f"unknown pool {pool!r}; choose avg or sum")

    if name == "deep":
        return spikelfp.Sequential(
            nn.Conv2d(2, 16, 5, stride=2, padding=1),  # 34 -> 16
            act(),
            nn.Conv2d(16, 16, 3, padding=1),
            act(),
            pooling(2),  # 16 -> 8
            nn.Conv2d(16, 8, 3, padding=1),
            act(),
            pooling(2),  # 8 -> 4
            nn.Flatten(),
            nn.Linear(8 * 4 * 4, 256),
            act(),
            nn.Linear(256, 10),
            act(),
        )
    if name == "shallow":
        return spikelfp.Sequential(
            nn.Conv2d(2, 16, 5, stride=2, padding=1),
            act(),
            pooling(4),  # 16 -> 4
            nn.Flatten(),
            nn.Linear(16 * 4 * 4, 256),
            act(),
            nn.Linear(256, 10),
            act(),
        )
    raise ValueError(f"unknown model {name!r}; choose one of {MODELS}")


def make_model(args) -> spikelfp.Sequential:
    """The network of the command line: a zoo model (``--zoo-model``, built from a
    :class:`~spikelfp.training.models.ModelSpec`) or the script's own ``--model``."""
    if args.zoo_model:
        spec = ModelSpec(
            args.zoo_model,
            (2, 34, 34),
            10,
            hidden=args.hidden,
            channels=tuple(args.channels) if args.channels else None,
            beta=args.beta,
            threshold=args.threshold,
            reset=args.reset,
            neuron=args.neuron,
            bias=args.bias,
            pool=args.pool,
        )
        return build_zoo_model(spec)
    return build_model(args.model, args.neuron, args.reset, args.threshold, args.beta, args.pool)


def layer_rates(rates: list[float], n_layers: int) -> list[float]:
    """Per-layer calibration targets, as the trainer's ``init_rate``: one rate for all layers,
    or hidden rates (the last one repeated for deeper hidden layers) and the output's rate.

    >>> layer_rates([0.1], 3), layer_rates([0.15, 0.1], 5)
    ([0.1, 0.1, 0.1], [0.15, 0.15, 0.15, 0.15, 0.1])
    """
    if len(rates) == 1:
        return list(rates) * n_layers
    hidden, output = list(rates[:-1]), rates[-1]
    hidden = (hidden + [hidden[-1]] * n_layers)[: n_layers - 1]
    return hidden + [output]


def composite_for(variant: str, model: nn.Module, early: int = 2) -> Composite:
    """The composite of a variant (``zplus``/``gamma``: another rule for the first ``early``
    convolutions, given by their names in the model)."""
    base = default_composite()
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)][:early]
    if variant == "zplus":
        return base.with_names({n: ZPlusRule() for n in convs})
    if variant == "gamma":
        return base.with_names({n: GammaRule(gamma=0.25) for n in convs})
    return base


class PerSampleRewardNorm:
    r"""Rescale the reward on every hidden neuron layer's spikes, per sample, to the output's.

    :math:`R_{t,b,u} \leftarrow R_{t,b,u} \|R^{net}_b\|_1 / \|R_b\|_1` (0 where
    :math:`\|R_b\|_1 = 0`). A context manager of hooks, like the diagnostics; enter it *before*
    :class:`LFPDiagnostics` so that the diagnostics see the rescaled reward at the neuron's
    output (and the unscaled one at the input of the synapse above it).
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.neurons = [m for m in model.modules() if isinstance(m, NeuronModule)][:-1]
        self.handles: list = []
        self.target: torch.Tensor | None = None

    def __enter__(self) -> PerSampleRewardNorm:
        self.handles.append(self.model.register_forward_hook(self._root))
        for m in self.neurons:
            self.handles.append(m.register_forward_hook(self._layer))
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    @staticmethod
    def _per_sample_l1(g: torch.Tensor) -> torch.Tensor:
        return g.abs().sum(dim=[d for d in range(g.dim()) if d != 1])

    def _root(self, module, args, output) -> None:
        out = output[0] if isinstance(output, tuple) else output
        if out.requires_grad:
            out.register_hook(self._capture)

    def _capture(self, g: torch.Tensor) -> None:
        self.target = self._per_sample_l1(g)

    def _layer(self, module, args, output) -> None:
        out = output[0]
        if out.requires_grad:
            out.register_hook(self._rescale)

    def _rescale(self, g: torch.Tensor) -> torch.Tensor | None:
        if self.target is None:
            return None
        l1 = self._per_sample_l1(g)
        scale = torch.where(l1 > 0, self.target / l1.clamp(min=1e-30), torch.zeros_like(l1))
        return g * scale.view(1, -1, *([1] * (g.dim() - 2)))


# -------------------------------------------------------------------------------------- data


def load_data(
    dataset: str,
    data_dir: str | None,
    time_bins: int,
    n_val: int,
    n_train: int,
    eval_split: str = "val",
    n_tune: int = 200,
    tune_seed: int = 7,
):
    """``(x_train, y_train, x_eval, y_eval, source)``; frames ``(N, T, 2, 34, 34)`` uint8 spikes.

    The ``n_val`` (200) validation samples and the ``n_train`` (800) training samples are
    stratified draws (:func:`spikelfp.datasets.validation_split`, seed 0); counts are clipped
    to 1 (spikes). ``eval_split="val"``: train on the 800, evaluate on the 200.
    ``eval_split="tune"``: the validation recordings are not even loaded; the 800 are split
    again, as the trainer's ``--tune-fraction`` and ``benchmarks/tune_peers.py`` do
    (``validation_split(train_labels, n_val=n_tune, seed=tune_seed)``), into 600 to train
    and 200 to evaluate ("tune").
    """
    from spikelfp.datasets import NMNIST, DigitsEvents, FrameSpec, validation_split

    frames = FrameSpec(n_time_bins=time_bins)
    if dataset == "nmnist":
        root = Path(data_dir) / "nmnist" if data_dir else None
        if root is None or not root.is_dir():
            raise FileNotFoundError(
                f"N-MNIST not found under {root} (expected <data-dir>/nmnist/NMNIST/Train); set "
                "SPIKELFP_DATA or --data-dir, or use --dataset digits-events (offline)"
            )
        ds = NMNIST(root, split="train", frames=frames, progress=False)
        source = f"{len(ds)} N-MNIST recordings from {root}"
    elif dataset == "digits-events":
        ds = DigitsEvents(data_dir, split="train", frames=frames, progress=False)
        source = f"DigitsEvents ({len(ds)} training recordings)"
    else:
        raise ValueError(f"unknown dataset {dataset!r}")
    labels = np.asarray(ds.targets)
    pool = np.arange(len(ds))
    if n_train + n_val < len(ds):  # a stratified subset of n_train + n_val recordings
        pool = np.sort(validation_split(labels, n_val=n_train + n_val, seed=0).val)
    split = validation_split(labels[pool], n_val=n_val, seed=0)
    train, evaluate = split.train, split.val
    if eval_split == "tune":
        tune = validation_split(labels[pool][split.train], n_val=n_tune, seed=tune_seed)
        train, evaluate = split.train[tune.train], split.train[tune.val]
        source += (
            f" (tuning split: {len(train)} train / {len(evaluate)} tune of the {len(split.train)}"
            f" training recordings, seed {tune_seed}; the {len(split.val)} validation ones unused)"
        )
    elif eval_split != "val":
        raise ValueError(f"unknown eval split {eval_split!r}; choose val or tune")

    def stack(idx) -> tuple[torch.Tensor, torch.Tensor]:
        items = [ds[int(pool[i])] for i in np.sort(idx)]
        x = torch.stack([f.clamp(max=1).to(torch.uint8) for f, _ in items])
        return x, torch.tensor([int(y) for _, y in items])

    x_tr, y_tr = stack(train)
    x_ev, y_ev = stack(evaluate)
    return x_tr, y_tr, x_ev, y_ev, source


def time_first(x: torch.Tensor) -> torch.Tensor:
    """``(B, T, ...)`` uint8 -> ``(T, B, ...)`` float."""
    return x.transpose(0, 1).float().contiguous()


# ---------------------------------------------------------------------------------- training


def _rate_reward(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return rate_coded_reward(out, y, scale=1.0 / out.shape[0])


def make_reward(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """As the trainer's ``reward``: ``rate`` (lfprop's rate-coded correct-class reward × 1/T)
    or ``softmax`` (spike-count cross-entropy error (onehot − softmax(counts)) / T)."""
    if name == "rate":
        return _rate_reward
    if name == "softmax":
        return spike_count_softmax_reward
    raise ValueError(f"unknown reward {name!r}; choose one of {REWARDS}")


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 100) -> float:
    correct = 0
    for i in range(0, len(y), batch):
        out, _ = model(time_first(x[i : i + batch]))
        correct += int((out.sum(0).argmax(-1) == y[i : i + batch]).sum())
    return correct / max(len(y), 1)


def train_variant(variant: str, data, args, log: Callable[[str], None]) -> dict:
    """Train one variant from the seed's initial weights; per-epoch metrics and diagnostics."""
    x_tr, y_tr, x_va, y_va = data
    torch.manual_seed(args.seed)
    model = make_model(args)
    probe = time_first(x_tr[: args.calibration_batch])
    rates = layer_rates(args.target_rate, len(neuron_layers(model)))
    gains = calibrate_firing(model, probe, rates)
    reward_fn = make_reward(args.reward)
    composite = composite_for(variant, model)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    if args.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(args.epochs, 1))
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1.0)
    diag = LFPDiagnostics(model, composite=composite)
    gen = torch.Generator().manual_seed(args.seed)
    epochs = []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        perm = torch.randperm(len(y_tr), generator=gen)
        correct = n = 0
        reward = 0.0
        diag.reset()
        with contextlib.ExitStack() as stack:
            if variant == "renorm":  # entered first: the diagnostics see the rescaled reward
                stack.enter_context(PerSampleRewardNorm(model))
            stack.enter_context(diag)
            for i in range(0, len(perm), args.batch_size):
                idx = perm[i : i + args.batch_size]
                x, y = time_first(x_tr[idx]), y_tr[idx]
                res = lfp_step(model, x, y, reward_fn, opt, composite=composite)
                correct += int((res.output.sum(0).argmax(-1) == y).sum())
                n += len(y)
                target = y.view(1, -1, 1).expand(x.shape[0], -1, 1)
                reward += float(res.reward.gather(2, target).sum())
        sched.step()
        train_s = time.perf_counter() - start
        val = accuracy(model, x_va, y_va)
        layers = diag.summary()
        epochs.append(
            {
                "epoch": epoch + 1,
                "train_acc": correct / max(n, 1),
                "eval_acc": val,
                f"{args.eval_split}_acc": val,
                "target_reward_per_sample": reward / max(n, 1),
                "lr": lr,
                "train_s": train_s,
                "layers": layers,
                "table": diag.to_table(),
            }
        )
        log(
            f"[{variant}] epoch {epoch + 1}/{args.epochs}: train {100 * correct / max(n, 1):.1f} %"
            f", {args.eval_split} {100 * val:.1f} %, {train_s:.1f} s"
        )
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "model": repr(model),
        "parameters": n_params,
        "calibration_rates": rates,
        "calibration_gains": gains,
        "epochs": epochs,
    }


# ------------------------------------------------------------------------------------ output

#: (key, title, layer kind, log scale) of the plot panels
PANELS = (
    ("reward_out_rel", "‖R‖₁ at the layer's output / at the net's output", "synapse", True),
    ("rewarded_frac", "units with non-zero reward", "neuron", False),
    ("weight_nonzero_frac", "weights with non-zero feedback", "synapse", False),
    ("update_ratio", "update / weight  ‖Δw‖/‖w‖", "synapse", True),
    ("dead_frac", "dead neurons (silent on a batch)", "neuron", False),
    ("saturated_frac", "saturated neurons (≥ 95 % of steps)", "neuron", False),
    ("spike_rate", "mean spike rate", "neuron", False),
)


def _eval_acc(epoch: dict) -> float:
    """The evaluation accuracy of an epoch record (``val_acc`` in older results)."""
    return epoch["eval_acc"] if "eval_acc" in epoch else epoch["val_acc"]


def plot_variant(result: dict, title: str, path: Path, split: str = "val") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [e["epoch"] for e in result["epochs"]]
    names = [(r["name"], r["type"], r["kind"]) for r in result["epochs"][0]["layers"]]

    fig, axes = plt.subplots(2, 4, figsize=(17, 7.5))
    for ax, (key, label, kind, log) in zip(axes.flat, PANELS, strict=False):
        for j, (name, typ, k) in enumerate(names):
            if k != kind:
                continue
            ys = [e["layers"][j][key] for e in result["epochs"]]
            ys = [math.nan if v is None else v for v in ys]
            ax.plot(epochs, ys, marker="o", label=f"{name} {typ}")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes.flat[-1]
    ax.plot(epochs, [e["train_acc"] for e in result["epochs"]], marker="o", label="train")
    ax.plot(epochs, [_eval_acc(e) for e in result["epochs"]], marker="o", label=split)
    ax.set_title("accuracy", fontsize=10)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_accuracy(results: dict[str, dict], title: str, path: Path, split: str = "val") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for variant, res in results.items():
        ep = [e["epoch"] for e in res["epochs"]]
        ax.plot(ep, [_eval_acc(e) for e in res["epochs"]], marker="o", label=variant)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{split} accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _relative(path: str) -> str:
    """``path`` relative to the repository when it lies inside it (portable results)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return path


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}" if v == 0 or abs(v) >= 1e-3 else f"{v:.2e}"
    return str(v)


def epoch_table(result: dict, keys: tuple[str, ...]) -> str:
    """Per layer and epoch, a few diagnostics (Markdown)."""
    header = ["epoch", "layer", *keys]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * len(keys)]
    for e in result["epochs"]:
        for r in e["layers"]:
            cells = [str(e["epoch"]), f"{r['name']} {r['type']}"] + [_fmt(r.get(k)) for k in keys]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: (key, header, layer kind) of the per-layer comparison (:func:`compare_runs`)
COMPARE_KEYS = (
    ("dead_frac", "dead", "neuron"),
    ("weight_nonzero_frac", "weights w/ F≠0", "synapse"),
    ("update_ratio", "‖Δw‖/‖w‖", "synapse"),
    ("reward_out_rel", "‖R‖₁ on spikes / net", "neuron"),
    ("past_frac_abs", "→ past", "neuron"),
)


def layer_pairs(layers: list[dict]) -> list[tuple[dict, dict]]:
    """``(synapse, neuron)`` records of each layer: every synapse with the neuron after it."""
    pairs, syn = [], None
    for r in layers:
        if r["kind"] == "synapse":
            syn = r
        elif syn is not None:
            pairs.append((syn, r))
            syn = None
    return pairs


def load_runs(paths: list[str]) -> list[tuple[str, dict, dict]]:
    """``(label, result of one variant, config)`` for every variant in the JSON files; the
    label is the file's ``config.tag`` (else its name), with the variant when not baseline."""
    runs = []
    for path in paths:
        payload = json.loads(Path(path).read_text())
        tag = payload["config"].get("tag") or Path(path).stem
        for v, res in payload["variants"].items():
            runs.append((tag if v == "baseline" else f"{tag} {v}", res, payload["config"]))
    return runs


def compare_runs(paths: list[str], png: str | None = None) -> str:
    """Markdown tables comparing runs (JSON files of this script): evaluation accuracy per
    epoch, and per layer the first → last epoch of :data:`COMPARE_KEYS`; and a plot."""
    runs = load_runs(paths)
    n_ep = max(len(res["epochs"]) for _, res, _ in runs)
    split = runs[0][2].get("eval_split", "val")
    lines = [
        f"| run | {' | '.join(f'{split} acc ep {e + 1}' for e in range(n_ep))} | s / epoch |",
        "|---|" + "---:|" * (n_ep + 1),
    ]
    for label, res, _ in runs:
        accs = [f"{100 * _eval_acc(e):.1f} %" for e in res["epochs"]]
        accs += ["–"] * (n_ep - len(accs))
        sec = sum(e["train_s"] for e in res["epochs"]) / len(res["epochs"])
        lines.append(f"| {label} | {' | '.join(accs)} | {sec:.0f} |")
    lines += [
        "",
        f"Per layer, epoch 1 → epoch {n_ep} (diagnostics accumulated over each epoch's steps):",
        "",
        "| run | layer | " + " | ".join(h for _, h, _ in COMPARE_KEYS) + " |",
        "|---|---|" + "---:|" * len(COMPARE_KEYS),
    ]
    for label, res, _ in runs:
        first, last = res["epochs"][0]["layers"], res["epochs"][-1]["layers"]
        for j, ((s0, n0), (s1, n1)) in enumerate(
            zip(layer_pairs(first), layer_pairs(last), strict=True)
        ):
            cells = []
            for key, _, kind in COMPARE_KEYS:
                a, b = (s0, s1) if kind == "synapse" else (n0, n1)
                cells.append(f"{_fmt(a.get(key))} → {_fmt(b.get(key))}")
            name = f"{j + 1} {s0['type']}"
            lines.append(f"| {label} | {name} | {' | '.join(cells)} |")
    if png:
        _plot_compare(runs, split, Path(png))
    return "\n".join(lines)


def _plot_compare(runs, split: str, path: Path) -> None:
    """Accuracy per epoch, and :data:`COMPARE_KEYS` per layer: epoch 1 dashed, last solid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    ax = axes.flat[0]
    for k, (label, res, _) in enumerate(runs):
        ep = [e["epoch"] for e in res["epochs"]]
        accs = [_eval_acc(e) for e in res["epochs"]]
        ax.plot(ep, accs, marker="o", label=label, color=colors[k % len(colors)])
    ax.set_title(f"{split} accuracy per epoch", fontsize=10)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    for ax, (key, header, kind) in zip(axes.flat[1:], COMPARE_KEYS, strict=True):
        for k, (label, res, _) in enumerate(runs):
            for e, style in ((res["epochs"][0], "--"), (res["epochs"][-1], "-")):
                pairs = layer_pairs(e["layers"])
                ys = [(s if kind == "synapse" else n).get(key) for s, n in pairs]
                ys = [math.nan if v is None else v for v in ys]
                if key in ("update_ratio", "reward_out_rel"):  # log scale: 0 is not drawn
                    ys = [math.nan if v <= 0 else v for v in ys]
                ax.plot(
                    range(1, len(ys) + 1),
                    ys,
                    style,
                    marker="o" if style == "-" else ".",
                    color=colors[k % len(colors)],
                    alpha=1.0 if style == "-" else 0.5,
                    label=label if style == "-" else None,
                )
        ax.set_title(f"{header} ({kind}); epoch 1 dashed, last solid", fontsize=10)
        ax.set_xlabel("layer (input → output)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if key in ("update_ratio", "reward_out_rel"):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=("nmnist", "digits-events"), default="nmnist")
    ap.add_argument(
        "--data-dir",
        default=None,
        help="nmnist: folder holding nmnist/NMNIST/Train (default $SPIKELFP_DATA, else "
        "../shared/data); digits-events: where the generated recordings go (default "
        "~/.cache/spikelfp/datasets)",
    )
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--model", choices=MODELS, default="deep")
    ap.add_argument(
        "--zoo-model",
        choices=ZOO_MODELS,
        default=None,
        help="build a zoo model (spikelfp.training.models) instead of --model",
    )
    ap.add_argument("--channels", type=int, nargs="+", default=None, help="zoo: channels")
    ap.add_argument("--hidden", type=int, default=None, help="zoo: hidden FC neurons")
    ap.add_argument(
        "--bias", action=argparse.BooleanOptionalAction, default=True, help="zoo: biases"
    )
    ap.add_argument("--pool", choices=("avg", "sum"), default="avg")
    ap.add_argument("--reward", choices=REWARDS, default="rate")
    ap.add_argument("--neuron", choices=("if", "lif"), default="if")
    ap.add_argument("--reset", choices=("zero", "subtract"), default="zero")
    ap.add_argument("--threshold", type=float, default=1.0)
    ap.add_argument("--beta", type=float, default=0.9, help="LIF decay")
    ap.add_argument("--variant", nargs="+", choices=VARIANTS, default=["baseline"])
    ap.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate")
    ap.add_argument(
        "--schedule",
        choices=("cosine", "constant"),
        default="cosine",
        help="learning-rate schedule over the epochs (cosine: as the trainer; it also shrinks "
        "the update ratio towards the last epoch)",
    )
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--time-bins", type=int, default=16)
    ap.add_argument("--n-train", type=int, default=800)
    ap.add_argument("--n-val", type=int, default=200)
    ap.add_argument(
        "--eval-split",
        choices=("tune", "val"),
        default="tune",
        help="tune: train on 600 of the 800 training recordings, evaluate on the other 200 "
        "(validation recordings unused); val: train on the 800, evaluate on the validation 200",
    )
    ap.add_argument("--n-tune", type=int, default=200)
    ap.add_argument("--tune-seed", type=int, default=7)
    ap.add_argument(
        "--target-rate",
        type=float,
        nargs="+",
        default=[0.1],
        help="calibrate_firing's rate: one for all layers, or hidden rate(s) then the output's",
    )
    ap.add_argument("--calibration-batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "docs" / "img" / "learning_in_depth"))
    ap.add_argument("--json", default=str(RESULTS / "learning_in_depth.json"))
    ap.add_argument("--tag", default=None, help="names the plots (<dataset>_<tag>_<variant>.png)")
    ap.add_argument(
        "--compare",
        nargs="+",
        default=None,
        metavar="JSON",
        help="train nothing: print tables comparing these result files (and --compare-png)",
    )
    ap.add_argument("--compare-png", default=None)
    args = ap.parse_args(argv)
    if args.compare:
        print(compare_runs(args.compare, args.compare_png))
        return 0
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f} s] {msg}", file=sys.stderr, flush=True)

    data_dir = args.data_dir
    if data_dir is None and args.dataset == "nmnist":
        data_dir = os.environ.get("SPIKELFP_DATA") or str(ROOT.parent / "shared" / "data")
    try:
        *data, source = load_data(
            args.dataset,
            data_dir,
            args.time_bins,
            args.n_val,
            args.n_train,
            args.eval_split,
            args.n_tune,
            args.tune_seed,
        )
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 2
    split = args.eval_split
    log(f"data: {source}; train {len(data[1])}, {split} {len(data[3])}")
    results = {v: train_variant(v, data, args, log) for v in args.variant}

    out = Path(args.out)
    model_name = args.zoo_model or args.model
    stem = f"{args.dataset}_{args.tag or f'{model_name}_{args.neuron}_{args.reset}'}"
    desc = (
        f"{model_name} ({args.neuron}, reset {args.reset}, {args.reward} reward, {args.pool} pool)"
    )
    pngs = []
    for v, res in results.items():
        path = out / f"{stem}_{v}.png"
        plot_variant(res, f"{args.dataset}, {desc}, lr {args.lr:g}, {v}", path, split)
        pngs.append(str(path))
    if len(results) > 1:
        path = out / f"{stem}_accuracy.png"
        plot_accuracy(results, f"{args.dataset}, {model_name}: {split} accuracy", path, split)
        pngs.append(str(path))

    payload = {
        "config": {
            k: v
            for k, v in vars(args).items()
            if k not in ("out", "json", "compare", "compare_png")
        },
        "source": source,
        "n_train": len(data[1]),
        "n_eval": len(data[3]),
        "eval_split": split,
        "torch": torch.__version__,
        "wall_s": time.perf_counter() - t0,
        "plots": [_relative(p) for p in pngs],
        "variants": results,
    }
    json_path = Path(args.json)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(payload, indent=1))

    print(f"## learning in depth: {args.dataset}, {desc}")
    print()
    print("| variant | " + " | ".join(f"{split} acc ep {e + 1}" for e in range(args.epochs)) + " |")
    print("|---|" + "---:|" * args.epochs)
    for v, res in results.items():
        accs = " | ".join(f"{100 * e['eval_acc']:.1f} %" for e in res["epochs"])
        print(f"| {v} | {accs} |")
    keys = (
        "reward_out_rel",
        "rewarded_frac",
        "weight_nonzero_frac",
        "dead_frac",
        "saturated_frac",
        "update_ratio",
    )
    for v, res in results.items():
        print(f"\n### {v}: last epoch ({res['epochs'][-1]['epoch']})\n")
        print(res["epochs"][-1]["table"])
        print(f"\n### {v}: per epoch\n")
        print(epoch_table(res, keys))
    print(f"\nwrote {json_path} and {', '.join(pngs)} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
