"""spikelfp against its peers: one architecture, the same data and the same budget for each.

Methods (rows):

* ``spikelfp-lfp``: spikelfp's own ``Sequential`` (whole sequences), trained with LFP.
* ``snntorch-lfp``: the *unmodified* snntorch model (``nn.Sequential`` of ``snn.Leaky`` with
  ``init_hidden=True``, run one step per call) trained with LFP through
  ``spikelfp.interop.snntorch_composite``.
* ``norse-lfp``: the unmodified norse model (``SequentialState`` of ``LIFBoxCell``, one step per
  call, explicit states) trained with LFP through ``spikelfp.interop.norse_composite``.
* ``snntorch-bptt``: the snntorch model trained with its surrogate gradient (atan, snntorch's
  default) through time.
* ``norse-bptt``: the norse model trained with its surrogate gradient (SuperSpike, norse's
  default ``method="super"``) through time.
* ``spikelfp-dfa``, ``spikelfp-drtp``, ``spikelfp-eprop``: spikelfp's ``Sequential`` trained
  with the backprop-free local rules of ``spikelfp.training`` (direct feedback alignment,
  direct random target projection, e-prop with LIF eligibility traces and random broadcast
  feedback; hard-threshold spikes, a fast-sigmoid pseudo-derivative of slope 5 where the
  rules use one; docs/methods.md). Their learning rates are chosen by ``--tune`` on a tuning
  split of the *training* data (a stratified quarter held out, seed 0), never on the
  validation split reported.

Architecture: ``Flatten → Linear(D, H) → LIF → Linear(H, 10) → LIF``, LIF with ``β``, threshold
``θ`` and an immediate reset to zero (spikelfp ``LIF(reset="zero")`` = snntorch
``Leaky(reset_mechanism="zero")`` = norse ``LIFBoxCell`` with ``v_th = (1-β)θ``: the three
spike identically). All methods start from the *same* weights (converted with
``spikelfp.interop.to_snntorch`` / ``to_norse``), see the same batches in the same order, use
Adam with a cosine schedule and the same number of epochs; the hidden size and each method's
learning rate were chosen by ``tune_peers.py`` on a tuning split of the *training* recordings
(the validation recordings reported here were not used to choose them; ``LEARNING_RATES``). LFP uses
lfprop's rate-coded reward (scaled by 1/T); BPTT uses cross-entropy on the output spike counts.
Prediction: the class with the most output spikes.

Braille (the real tactile recordings in ``$SPIKELFP_DATA/braille``, 27 letters) is the one
recurrent task: its rows come from ``compare_braille.py``'s loop (the zoo's ``braille-rsnn``, a
recurrent RLIF layer, sigma-delta events; LFP with the recipe's softmax reward and learning rate,
snntorch BPTT (``RLeaky``/``Leaky``, atan) at its rate tuned on the tuning split; both from the
same weights, 40 epochs; ``spikelfp-lfp`` and ``snntorch-bptt`` only).

Datasets: the real N-MNIST recordings in ``$SPIKELFP_DATA/nmnist`` (1,000 files, 200 held out,
stratified, deterministic; events binned into T frames of event counts, 2x2-pooled to 17x17),
scikit-learn's 8x8 digits and MNIST images (``$SPIKELFP_DATA/mnist/mnist_train_22699.npz``, a
5,000 / 1,000 subset), both rate-coded (a Bernoulli spike per step with probability = pixel
intensity; the training draws are seeded by (seed, epoch, batch), so every method sees the
same spikes).

Measured per run: validation accuracy after the last epoch; mean wall time of a training step
(forward, reward/loss, backward, optimiser step; one batch); training samples per second; peak
memory. **Peak memory** is the peak resident set size (RSS) of the process during the training
steps minus the RSS just before training: a background thread reads ``/proc/self/statm`` every
millisecond (the validation after each epoch is left out of the window).
torch's CPU allocator hands every tensor to the C allocator (no caching), so this counts the
tensors, the autograd graph and the Python objects a method keeps alive; before each run
``gc.collect()`` and glibc's ``malloc_trim(0)`` give back what earlier runs freed, so runs in
the same process do not hide each other's peaks. (``tracemalloc`` would miss tensor storage,
which is not allocated through Python's allocator.) The table reports the median over seeds
and the spread (min-max).

Usage::

    python benchmarks/compare_peers.py            # full run (3 seeds, ~15 min on 2 cores)
    python benchmarks/compare_peers.py --quick    # smoke run (~1 min)

The local rules beside LFP and snntorch BPTT on N-MNIST and MNIST, their learning rates
chosen on the tuning split first (full: 3 seeds; the reduced run below fits ~10 min)::

    python benchmarks/compare_peers.py --datasets nmnist,mnist --tune \
        --methods spikelfp-lfp,snntorch-bptt,spikelfp-dfa,spikelfp-drtp,spikelfp-eprop \
        --json benchmarks/results/compare_peers_local.json
    python benchmarks/compare_peers.py --datasets nmnist,mnist --tune --seeds 1 --scale 0.25 \
        --methods spikelfp-lfp,snntorch-bptt,spikelfp-dfa,spikelfp-drtp,spikelfp-eprop \
        --json benchmarks/results/compare_peers_local_reduced.json

One method at another size (BPTT at its best size on the tuning split), one command line::

    python benchmarks/compare_peers.py --datasets nmnist --methods snntorch-bptt --hidden 1024
        --lr 1e-3 --json benchmarks/results/compare_peers_bptt1024.json

Writes ``benchmarks/results/compare_peers.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import glob
import json
import os
import platform
import statistics
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spikelfp import LIF, Sequential
from spikelfp.lfp import lfp_step, rate_coded_reward

METHODS = (
    "spikelfp-lfp",
    "snntorch-lfp",
    "norse-lfp",
    "snntorch-bptt",
    "norse-bptt",
    "spikelfp-dfa",
    "spikelfp-drtp",
    "spikelfp-eprop",
)
#: the local rules' rows and their ``spikelfp.training.local_rules.LOCAL_RULES`` names
LOCAL = {"spikelfp-dfa": "dfa", "spikelfp-drtp": "drtp", "spikelfp-eprop": "eprop"}
#: their pseudo-derivative slope (chosen on digits-events' tuning split, docs/methods.md)
LOCAL_SLOPE = 5.0
#: learning rates ``--tune`` tries for the local rules
TUNE_LRS = (5e-4, 1e-3, 2e-3, 5e-3)
DATASETS = ("nmnist", "digits", "mnist", "braille")
#: the rows Braille has: its recurrent net (``braille-rsnn``) under LFP and snntorch BPTT
BRAILLE_METHODS = ("spikelfp-lfp", "snntorch-bptt")
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# Data


@dataclass
class Data:
    """Train/validation split. ``frames``: event frames ``(N, T, ...)`` (already spikes/counts);
    ``images``: intensities in [0, 1] ``(N, ...)`` to be rate-coded over ``T`` steps."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    T: int
    rate_coded: bool
    source: str = ""

    @property
    def input_dim(self) -> int:
        shape = self.x_train.shape[2:] if not self.rate_coded else self.x_train.shape[1:]
        return int(np.prod(shape))


def stratified_split(labels: np.ndarray, n_val: int, seed: int = 0):
    """Deterministic stratified split: each class gives ``n_val`` · its share (largest
    remainders), drawn with ``seed``. Returns sorted (train, val) indices."""
    rng = np.random.RandomState(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts / counts.sum() * n_val
    quota = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - quota), kind="stable")[: n_val - quota.sum()]:
        quota[i] += 1
    val = np.concatenate(
        [
            rng.choice(np.flatnonzero(labels == c), q, replace=False)
            for c, q in zip(classes, quota, strict=True)
        ]
    )
    val = np.sort(val)
    return np.setdiff1d(np.arange(len(labels)), val), val


_EVENT_DTYPE = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])


def load_nmnist(data_dir: Path, T: int, pool: int = 2, limit: int | None = None) -> Data:
    """The N-MNIST recordings, binned into ``T`` frames of event counts over each recording's
    span, ``pool x pool`` sum-pooled; 200 held out (stratified)."""
    import tonic

    root = data_dir / "nmnist" / "NMNIST" / "Train"
    files, labels = [], []
    for d in range(10):
        fs = sorted(
            glob.glob(str(root / str(d) / "*.bin")),
            key=lambda p: int(Path(p).stem) if Path(p).stem.isdigit() else 0,
        )
        files += fs
        labels += [d] * len(fs)
    if not files:
        raise FileNotFoundError(f"no N-MNIST recordings under {root}/<digit>/<idx>.bin")
    labels = np.asarray(labels)
    if limit is not None:  # a stratified subset (quick mode)
        _, keep = stratified_split(labels, limit, seed=1)
        files = [files[i] for i in keep]
        labels = labels[keep]
    side = 34 // pool
    x = np.zeros((len(files), T, 2, side, side), np.float32)
    for k, f in enumerate(files):
        ev = tonic.io.read_mnist_file(f, dtype=_EVENT_DTYPE)
        t = ev["t"] - ev["t"].min()
        b = t * T // (int(t.max()) + 1)
        idx = ((b * 2 + ev["p"]) * side + ev["y"] // pool) * side + ev["x"] // pool
        x[k] = np.bincount(idx, minlength=T * 2 * side * side).reshape(T, 2, side, side)
    n_val = 200 if limit is None else max(10, limit // 5)
    tr, va = stratified_split(labels, n_val)
    xt, yt = torch.from_numpy(x), torch.from_numpy(labels)
    return Data(
        "nmnist", xt[tr], yt[tr], xt[va], yt[va], T, False, f"{len(files)} recordings from {root}"
    )


def load_digits(T: int, limit: int | None = None) -> Data:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    if limit is not None:
        _, keep = stratified_split(y, limit, seed=1)
        x, y = x[keep], y[keep]
    tr, va = stratified_split(y, len(y) // 5)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    return Data(
        "digits",
        xt[tr],
        yt[tr],
        xt[va],
        yt[va],
        T,
        True,
        f"sklearn.datasets.load_digits ({len(y)} images)",
    )


def load_mnist(data_dir: Path, T: int, n_train: int = 5000, n_val: int = 1000) -> Data:
    path = data_dir / "mnist" / "mnist_train_22699.npz"
    with np.load(path) as f:
        x, y = f["x_train"], f["y_train"].astype(np.int64)
    x, y = x[: n_train + n_val], y[: n_train + n_val]
    tr, va = stratified_split(y, n_val)
    xt = torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / 255.0)
    yt = torch.from_numpy(y)
    return Data(
        "mnist", xt[tr], yt[tr], xt[va], yt[va], T, True, f"{path} (first {n_train + n_val} images)"
    )


def encode(images: torch.Tensor, T: int, seed: int) -> torch.Tensor:
    """Rate coding: ``(T, B, ...)`` Bernoulli spikes with probability = intensity."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((T, *images.shape), generator=g) < images).float()


def batches(data: Data, idx: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if data.rate_coded:
        return encode(data.x_train[idx], data.T, seed), data.y_train[idx]
    return data.x_train[idx].transpose(0, 1).contiguous(), data.y_train[idx]


def val_inputs(data: Data) -> torch.Tensor:
    if data.rate_coded:
        return encode(data.x_val, data.T, seed=12345)
    return data.x_val.transpose(0, 1).contiguous()


# ---------------------------------------------------------------------------------------------
# Memory


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


class PeakRSS:
    """Peak RSS above the RSS at entry, sampled every ``interval`` seconds by a thread while
    the window is open (``pause()`` / ``resume()`` leave out e.g. the evaluation)."""

    def __init__(self, interval: float = 1e-3):
        self.interval = interval
        self.available = os.path.exists("/proc/self/statm")
        self.peak = 0
        self._open = threading.Event()

    def __enter__(self):
        _trim()
        if self.available:
            self.base = _rss()
            self._max = self.base
            self._stop = threading.Event()
            self._open.set()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def pause(self) -> None:
        if self.available:
            self._max = max(self._max, _rss())
        self._open.clear()

    def resume(self) -> None:
        """Reopen the window; what the pause allocated and freed is given back first."""
        _trim()
        self._open.set()

    def _sample(self):
        while not self._stop.is_set():
            if self._open.is_set():
                self._max = max(self._max, _rss())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        if self.available:
            if self._open.is_set():
                self._max = max(self._max, _rss())
            self._stop.set()
            self._thread.join()
            self.peak = self._max - self.base


# ---------------------------------------------------------------------------------------------
# Models and methods


@dataclass
class Config:
    T: int
    hidden: int
    epochs: int
    batch_size: int = 32
    lr: float | None = None  # None: the method's learning rate from LEARNING_RATES
    beta: float = 0.8
    threshold: float = 0.5


#: Adam learning rate per method: the best median of 3 seeds on ``tune_peers.py``'s N-MNIST tuning
#: split (600 of the training recordings to train, 200 to score; never the validation split),
#: hidden 512, 20 epochs. The LFP runs on snntorch/norse models train the same network with the
#: same rule as spikelfp-lfp and share its rate.
LEARNING_RATES = {
    "spikelfp-lfp": 2e-3,
    "snntorch-lfp": 2e-3,
    "norse-lfp": 2e-3,
    "snntorch-bptt": 5e-4,
    "norse-bptt": 5e-3,
    # the local rules: overwritten by --tune's choice (this rate only without --tune)
    "spikelfp-dfa": 2e-3,
    "spikelfp-drtp": 2e-3,
    "spikelfp-eprop": 2e-3,
}


def spikelfp_model(input_dim: int, cfg: Config, seed: int) -> Sequential:
    torch.manual_seed(seed)
    return Sequential(
        nn.Flatten(),
        nn.Linear(input_dim, cfg.hidden),
        LIF(beta=cfg.beta, threshold=cfg.threshold),
        nn.Linear(cfg.hidden, 10),
        LIF(beta=cfg.beta, threshold=cfg.threshold),
    )


def build(method: str, input_dim: int, cfg: Config, seed: int):
    """``(model, forward(x) -> spikes (T, B, 10), composite or None)`` for a method."""
    from spikelfp.interop import (
        StepLoop,
        norse_composite,
        snntorch_composite,
        to_norse,
        to_snntorch,
    )

    seq = spikelfp_model(input_dim, cfg, seed)
    if method == "spikelfp-lfp":
        return seq, (lambda m, x: m(x)[0]), None
    if method in LOCAL:  # the "composite" slot holds the rule
        from spikelfp.training.local_rules import LOCAL_RULES

        rule = LOCAL_RULES[LOCAL[method]](seq, (input_dim,), 10, seed=seed, slope=LOCAL_SLOPE)
        return seq, (lambda m, x: m(x)[0]), rule
    if method.startswith("snntorch"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = StepLoop(to_snntorch(seq), style="snntorch")
        comp = snntorch_composite() if method.endswith("lfp") else None
        return net, (lambda m, x: m(x)[0]), comp
    net = StepLoop(to_norse(seq), style="norse")
    comp = norse_composite() if method.endswith("lfp") else None
    return net, (lambda m, x: m(x)[0]), comp


def _lfp_reward(out, y):
    return rate_coded_reward(out, y, scale=1.0 / out.shape[0])


def accuracy(model, fwd, x, y, batch: int = 500) -> float:
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[1], batch):
            out = fwd(model, x[:, i : i + batch])
            correct += int((out.sum(0).argmax(-1) == y[i : i + batch]).sum())
    return correct / x.shape[1]


def warm_up(methods, data: Data, cfg: Config) -> None:
    """Two untimed steps per method, so one-time costs (thread pools, lazy imports, first
    allocations) fall on no measured run."""
    for m in methods:
        model, fwd, comp = build(m, data.input_dim, cfg, seed=999)
        for k in range(2):
            x, y = batches(data, torch.arange(min(cfg.batch_size, len(data.y_train))), k)
            if m in LOCAL:
                comp.step(model, x.flatten(2), y)
            elif comp is not None or m == "spikelfp-lfp":
                lfp_step(model, x, y, _lfp_reward, composite=comp)
            else:
                nn.functional.cross_entropy(fwd(model, x).sum(0), y).backward()


@dataclass
class RunResult:
    method: str
    dataset: str
    seed: int
    val_accuracy: float
    step_ms: float
    step_cpu_ms: float
    samples_per_s: float
    peak_mb: float
    train_s: float
    accuracy_per_epoch: list[float] = field(default_factory=list)


def run(method: str, data: Data, cfg: Config, seed: int, xv: torch.Tensor) -> RunResult:
    model, fwd, comp = build(method, data.input_dim, cfg, seed)
    lr = cfg.lr if cfg.lr is not None else LEARNING_RATES[method]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
    n = len(data.y_train)
    g = torch.Generator().manual_seed(seed)
    step_times, cpu_times, accs = [], [], []
    samples = 0
    with PeakRSS() as mem:
        for epoch in range(cfg.epochs):
            perm = torch.randperm(n, generator=g)
            for k, i in enumerate(range(0, n, cfg.batch_size)):
                x, y = batches(data, perm[i : i + cfg.batch_size], seed * 100003 + epoch * 1009 + k)
                t0, c0 = time.perf_counter(), time.process_time()
                if method in LOCAL:  # .grad from the rule (flattened input: the rule's shape)
                    opt.zero_grad(set_to_none=True)
                    comp.step(model, x.flatten(2), y)
                    opt.step()
                elif comp is not None or method == "spikelfp-lfp":
                    lfp_step(model, x, y, _lfp_reward, opt, composite=comp)
                else:
                    out = fwd(model, x)
                    loss = nn.functional.cross_entropy(out.sum(0), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                step_times.append(time.perf_counter() - t0)
                cpu_times.append(time.process_time() - c0)
                samples += len(y)
            sched.step()
            # The validation after every epoch is neither timed nor in the memory window.
            mem.pause()
            accs.append(accuracy(model, fwd, xv, data.y_val))
            mem.resume()
    train_s = sum(step_times)
    return RunResult(
        method,
        data.name,
        seed,
        accs[-1],
        1e3 * statistics.mean(step_times),
        1e3 * statistics.mean(cpu_times),
        samples / train_s,
        mem.peak / 2**20,
        train_s,
        accs,
    )


# ---------------------------------------------------------------------------------------------
# Reporting


def run_braille(methods, seeds, quick: bool, data_dir: Path) -> tuple[list[RunResult], dict]:
    """Braille's rows (``BRAILLE_METHODS`` among ``methods``), trained by ``compare_braille.py``'s
    loop; step time = training wall (CPU) time / steps (the CPU time includes the final
    validation pass)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    os.environ.setdefault("SPIKELFP_DATA", str(data_dir))
    import compare_braille as cb

    args = argparse.Namespace(hidden=128, epochs=3 if quick else 40, letters="all")
    x, y, classes = cb.load(args.letters)
    tr, ev = cb.splits(y, tune=False)
    data = (x, y, len(classes), tr, ev)
    lrs = {"spikelfp-lfp": cb.LFP_LR, "snntorch-bptt": cb.BPTT_LR}
    steps = args.epochs * -(-len(tr) // 32)
    out = []
    for seed in seeds:
        for m in (m for m in methods if m in BRAILLE_METHODS):
            cpu0 = time.process_time()
            with PeakRSS() as mem:
                r = cb.train(m, seed, data, args, lrs[m])
            cpu = time.process_time() - cpu0  # training and the final validation pass
            out.append(
                RunResult(
                    method=m,
                    dataset="braille",
                    seed=seed,
                    val_accuracy=r["acc"],
                    step_ms=1000 * r["train_s"] / steps,
                    step_cpu_ms=1000 * cpu / steps,
                    samples_per_s=args.epochs * len(tr) / r["train_s"],
                    peak_mb=mem.peak / 2**20,
                    train_s=r["train_s"],
                )
            )
            print(f"braille {m:14s} seed {seed}: acc {100 * r['acc']:5.1f}%", flush=True)
    source = {
        "source": "compare_braille.py (braille-rsnn, sigma-delta, 27 letters)",
        "train": len(tr),
        "val": len(ev),
        "config": {"hidden": args.hidden, "epochs": args.epochs, "T": int(x.shape[1])},
        "learning_rates": lrs,
    }
    return out, source


def summarize(results: list[RunResult]) -> list[dict]:
    rows = []
    for ds in dict.fromkeys(r.dataset for r in results):
        for m in dict.fromkeys(r.method for r in results):
            rs = [r for r in results if r.dataset == ds and r.method == m]
            if not rs:
                continue
            row = {"dataset": ds, "method": m, "seeds": len(rs)}
            for key in ("val_accuracy", "step_ms", "step_cpu_ms", "samples_per_s", "peak_mb"):
                vals = [getattr(r, key) for r in rs]
                row[key] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    def fmt(v, spec, scale=1.0):
        med, lo, hi = v["median"] * scale, v["min"] * scale, v["max"] * scale
        return f"{med:{spec}} ({lo:{spec}}–{hi:{spec}})"

    lines = [
        "| dataset | method | val. accuracy % | step time ms | step CPU ms | samples/s "
        "| peak memory MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['method']} | {fmt(r['val_accuracy'], '.1f', 100)} | "
            f"{fmt(r['step_ms'], '.1f')} | {fmt(r['step_cpu_ms'], '.1f')} | "
            f"{fmt(r['samples_per_s'], '.0f')} | {fmt(r['peak_mb'], '.1f')} |"
        )
    return "\n".join(lines)


CONFIGS = {
    "nmnist": Config(T=30, hidden=512, epochs=20),
    "digits": Config(T=20, hidden=128, epochs=10),
    "mnist": Config(T=10, hidden=256, epochs=3),
}
QUICK = {
    "nmnist": Config(T=8, hidden=64, epochs=1),
    "digits": Config(T=8, hidden=64, epochs=1),
    "mnist": Config(T=6, hidden=64, epochs=1),
}


def tune_local(data: Data, cfg: Config, methods: list[str]) -> tuple[dict, dict]:
    """Each local rule's learning rate of :data:`TUNE_LRS` with the best last-epoch accuracy
    on a tuning split: a stratified quarter of the *training* data (seed 0) scored after
    training on the other three quarters (seed 0). Returns ``(chosen, scores)``."""
    labels = data.y_train.numpy()
    train, tune = stratified_split(labels, len(labels) // 4, seed=0)
    part = replace(
        data,
        x_train=data.x_train[train],
        y_train=data.y_train[train],
        x_val=data.x_train[tune],
        y_val=data.y_train[tune],
    )
    xt = val_inputs(part)
    chosen, scores = {}, {}
    for m in methods:
        scores[m] = {}
        for lr in TUNE_LRS:
            r = run(m, part, replace(cfg, lr=lr), 0, xt)
            scores[m][f"{lr:g}"] = r.val_accuracy
            print(
                f"{data.name:7s} tune {m:14s} lr {lr:g}: {100 * r.val_accuracy:5.1f}%", flush=True
            )
        chosen[m] = max(TUNE_LRS, key=lambda lr, m=m: scores[m][f"{lr:g}"])
    return chosen, scores


def default_data_dir() -> str | None:
    env = os.environ.get("SPIKELFP_DATA")
    if env:
        return env
    guess = ROOT.parent / "shared" / "data"
    return str(guess) if guess.is_dir() else None


def require_data_dir(path: str | None) -> Path | None:
    """``path`` as a folder, or ``None`` after telling the user how to point at the data."""
    if path and Path(path).is_dir():
        return Path(path)
    print("N-MNIST not available: set SPIKELFP_DATA or --data", file=sys.stderr)
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny subsets, 1 seed, 1 epoch")
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3; quick 1)")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument(
        "--data",
        default=default_data_dir(),
        help="shared data folder (default: $SPIKELFP_DATA, else ../shared/data)",
    )
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "compare_peers.json"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--hidden", type=int, default=None, help="override the hidden size of every dataset"
    )
    ap.add_argument(
        "--lr", type=float, default=None, help="override the learning rate of every method"
    )
    ap.add_argument(
        "--tune",
        action="store_true",
        help="choose each local rule's learning rate (of TUNE_LRS) on a tuning split of the "
        "training data first (seed 0)",
    )
    ap.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="fraction of the N-MNIST recordings / MNIST images to use (reduced runs)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds if args.seeds is not None else (1 if args.quick else 3)))
    methods = [m for m in args.methods.split(",") if m]
    datasets = [d for d in args.datasets.split(",") if d]
    for m in methods:
        if m not in METHODS:
            ap.error(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    data_dir = Path(args.data) if args.data else None
    configs = QUICK if args.quick else CONFIGS
    results: list[RunResult] = []
    sources = {}
    tuned: dict[str, dict] = {}
    t_start = time.time()
    for ds in datasets:
        if ds == "braille":
            if data_dir is None or not (data_dir / "braille" / "train.npz").is_file():
                print("skipping braille: set SPIKELFP_DATA (or --data)", file=sys.stderr)
                continue
            rows_b, sources[ds] = run_braille(methods, seeds, args.quick, data_dir)
            results += rows_b
            continue
        cfg = configs[ds]
        if args.hidden is not None or args.lr is not None:
            cfg = replace(
                cfg,
                hidden=args.hidden if args.hidden is not None else cfg.hidden,
                lr=args.lr if args.lr is not None else cfg.lr,
            )
        if ds in ("nmnist", "mnist") and (data_dir is None or not data_dir.is_dir()):
            print(
                f"skipping {ds}: set SPIKELFP_DATA (or --data) to the shared data folder",
                file=sys.stderr,
            )
            continue
        scaled = None if args.scale >= 1 else args.scale
        if ds == "nmnist":
            limit = 200 if args.quick else (int(1000 * scaled) if scaled else None)
            data = load_nmnist(data_dir, cfg.T, limit=limit)
        elif ds == "digits":
            data = load_digits(cfg.T, limit=300 if args.quick else None)
        else:
            if args.quick:
                data = load_mnist(data_dir, cfg.T, 400, 100)
            elif scaled:
                data = load_mnist(data_dir, cfg.T, int(5000 * scaled), int(1000 * scaled))
            else:
                data = load_mnist(data_dir, cfg.T)
        sources[ds] = {
            "source": data.source,
            "train": len(data.y_train),
            "val": len(data.y_val),
            "config": asdict(cfg),
        }
        xv = val_inputs(data)
        warm_up(methods, data, cfg)
        rates = {m: cfg.lr if cfg.lr is not None else LEARNING_RATES[m] for m in methods}
        if args.tune and args.lr is None:
            chosen, scores = tune_local(data, cfg, [m for m in methods if m in LOCAL])
            rates.update(chosen)
            tuned[ds] = {"chosen": chosen, "scores": scores}
        sources[ds]["learning_rates"] = rates
        for seed in seeds:
            for m in methods:
                r = run(m, data, replace(cfg, lr=rates[m]), seed, xv)
                results.append(r)
                print(
                    f"{ds:7s} {m:14s} seed {seed}: acc {100 * r.val_accuracy:5.1f}%  "
                    f"step {r.step_ms:7.1f} ms (CPU {r.step_cpu_ms:7.1f} ms)  "
                    f"{r.samples_per_s:7.0f} samples/s  "
                    f"peak {r.peak_mb:7.1f} MB  (epochs: "
                    f"{', '.join(f'{100 * a:.1f}' for a in r.accuracy_per_epoch)})",
                    flush=True,
                )
    rows = summarize(results)
    table = markdown(rows)
    print()
    print(table)
    wall = time.time() - t_start
    print(f"\ntotal wall time {wall:.0f} s; load average {os.getloadavg()}")
    out = {
        "quick": args.quick,
        "seeds": seeds,
        "torch_threads": args.threads,
        "wall_s": wall,
        "load_average_end": os.getloadavg(),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "versions": _versions(),
        "memory_method": (
            "peak RSS during the training steps minus RSS before training (/proc/self/statm "
            "sampled every 1 ms by a thread; validation excluded; gc.collect + malloc_trim "
            "before each run and after each validation)"
        ),
        "learning_rates": LEARNING_RATES,
        "overrides": {"hidden": args.hidden, "lr": args.lr, "scale": args.scale},
        "tuning": tuned,
        "datasets": sources,
        "summary": rows,
        "runs": [asdict(r) for r in results],
        "table": table,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.json}")
    return 0


def _versions() -> dict:
    out = {}
    for name in ("spikelfp", "snntorch", "norse", "tonic", "numpy", "sklearn"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001
            out[name] = None
    return out


if __name__ == "__main__":
    sys.exit(main())
