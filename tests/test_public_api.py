"""Issue 17, for someone writing their own code: one set of defaults, a public API for loading
and scoring a run (``load_run``, ``evaluate``, ``calibrate_firing``), plots after every epoch,
and the code in the README and in docs/own_data.md runs as written."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import spikelfp
from spikelfp.training import (
    CheckpointError,
    LoadedRun,
    ModelSpec,
    TrainConfig,
    Trainer,
    calibrate_firing,
    evaluate,
    load_run,
)

ROOT = Path(__file__).resolve().parents[1]


def _tiny(digits_root: Path, out: Path, **changes) -> TrainConfig:
    settings = {
        "data_dir": str(digits_root),
        "epochs": 1,
        "time_bins": 4,
        "hidden": 16,
        "max_train_samples": 40,
        "max_eval_samples": 20,
        "progress": False,
        "out": str(out),
        **changes,
    }
    return TrainConfig(**settings)


# -- one set of defaults --------------------------------------------------------------------------
def test_library_defaults_are_the_cli_defaults(tmp_path):
    from spikelfp.datasets import DVSGesture, FrameSpec
    from spikelfp.datasets.event_dataset import DEFAULT_TIME_BINS
    from spikelfp.datasets.nmnist import NMNIST

    cfg = TrainConfig()
    assert DEFAULT_TIME_BINS == cfg.time_bins == 16
    for cls in (NMNIST, DVSGesture):  # frames=None -> the CLI's --time-bins default
        assert "DEFAULT_TIME_BINS" in _source_of(cls.__init__)
    lif = spikelfp.LIF()
    assert float(lif.beta) == pytest.approx(cfg.beta) and float(lif.threshold) == cfg.threshold
    spec = ModelSpec("mlp", (2, 34, 34), 10)
    assert spec.hidden == cfg.hidden == 256
    assert (spec.beta, spec.threshold, spec.reset) == (cfg.beta, cfg.threshold, cfg.reset)
    assert FrameSpec(n_time_bins=DEFAULT_TIME_BINS).n_time_bins == 16


def _source_of(fn) -> str:
    import inspect

    return inspect.getsource(fn)


def test_nmnist_default_frames_are_the_cli_default(tmp_path):
    pytest.importorskip("tonic")
    from spikelfp.datasets import NMNIST, images_to_events, write_nmnist_bin

    images = (np.random.default_rng(0).random((2, 8, 8)) > 0.5).astype(np.uint8) * 255
    for k, ev in enumerate(images_to_events(images, seed=1, saccade_us=20_000)):
        write_nmnist_bin(tmp_path / "NMNIST" / "Train" / str(k) / f"{k}.bin", ev)
    frames, _ = NMNIST(tmp_path)[0]
    assert frames.shape == (TrainConfig().time_bins, 2, 34, 34)


def test_readme_quick_start_runs_with_the_cli_defaults():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    code = re.search(r"## Quick start in code\n\n```python\n(.*?)```", readme, re.S).group(1)
    cfg = TrainConfig()
    assert f"T = {cfg.time_bins} " in code
    assert f"nn.Linear(2 * 34 * 34, {cfg.hidden})" in code
    assert f"LIF(beta={cfg.beta}, threshold={cfg.threshold})" in code
    assert float(re.search(r"lr=([0-9.e-]+)", code).group(1)) == cfg.lr
    assert str(list(cfg.init_rate)) in code
    torch.manual_seed(0)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    spikes = namespace["spikes"]
    assert spikes.shape == (cfg.time_bins, 32, 10) and spikes.sum() > 0  # calibrated: it fires


# -- load_run, evaluate, calibrate_firing ---------------------------------------------------------
def test_load_run_gives_model_config_checkpoint(digits_root, tmp_path):
    run = tmp_path / "run"
    Trainer(_tiny(digits_root, run)).fit()
    model, config, checkpoint = load_run(run)
    assert isinstance(model, spikelfp.Sequential) and not model.training
    assert config == TrainConfig.from_stored(checkpoint["config"]) and config.hidden == 16
    assert checkpoint["epoch"] == 1 and checkpoint["path"] == str(run / "checkpoint.pt")
    loaded = load_run(run / "checkpoint.pt")
    assert isinstance(loaded, LoadedRun) and loaded.epoch == 1 and len(loaded.history) == 1
    assert loaded.classes == [str(d) for d in range(10)]
    # evaluate(): the whole split unless told otherwise, as `spikelfp eval`
    full = loaded.evaluate("test")
    assert full["n_samples"] == 359 and full["split"] == "test"
    part = loaded.evaluate("test", max_eval_samples=20)
    assert part["n_samples"] == 20
    assert part["accuracy"] == pytest.approx(loaded.history[-1]["eval_acc"])


def test_load_run_errors_are_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_run(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="without a checkpoint.pt"):
        load_run(tmp_path / "empty")


def test_public_evaluate_and_calibrate_on_a_custom_network():
    torch.manual_seed(0)
    net = spikelfp.Sequential(nn.Linear(6, 8), spikelfp.LIF(), nn.Linear(8, 3), spikelfp.LIF())
    x = (torch.rand(10, 16, 6) < 0.4).float()
    y = torch.randint(0, 3, (16,))
    gains = calibrate_firing(net, x, [0.2, 0.1])
    assert len(gains) == 2
    pairs = evaluate(net, [(x, y)], n_classes=3)
    lengths = torch.full((16,), 10)
    triples = evaluate(net, [(x, y, lengths)], n_classes=3)  # make_loader's batches
    assert pairs == triples and pairs["n_samples"] == 16
    assert 0.05 < pairs["spike_rates"]["hidden1"] < 0.4


def test_public_names_are_exported():
    import spikelfp.training as training

    for name in ("load_run", "LoadedRun", "evaluate", "calibrate_firing", "ModelSpec"):
        assert name in training.__all__ and getattr(training, name).__doc__


# -- plots after every epoch ----------------------------------------------------------------------
def test_plots_are_written_after_every_epoch(digits_root, tmp_path, monkeypatch):
    """A run interrupted in epoch 2 already has the plots of epoch 1."""
    pytest.importorskip("matplotlib")
    from spikelfp.training import trainer as trainer_module

    run = tmp_path / "run"
    trainer = Trainer(_tiny(digits_root, run, epochs=3, lr_schedule="none"))
    drawn: list[int] = []
    real = trainer_module.Trainer._plot

    def counting_plot(self):
        drawn.append(len(self.history))
        real(self)

    def interrupted(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return real_epoch(self, epoch)

    real_epoch = trainer_module.Trainer.train_epoch
    monkeypatch.setattr(trainer_module.Trainer, "_plot", counting_plot)
    monkeypatch.setattr(trainer_module.Trainer, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert drawn == [1]
    for name in ("accuracy.png", "spike_rates.png"):
        assert (run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert not list(run.glob(".*.tmp"))
    monkeypatch.setattr(trainer_module.Trainer, "train_epoch", real_epoch)
    before = (run / "accuracy.png").read_bytes()
    Trainer.resume(run).fit()
    assert drawn == [1, 2, 3] and (run / "accuracy.png").read_bytes() != before


def test_training_goes_on_without_matplotlib(digits_root, tmp_path, monkeypatch):
    logged: list[str] = []
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    run = tmp_path / "run"
    history = Trainer(_tiny(digits_root, run, epochs=2), log=logged.append).fit()
    assert len(history) == 2 and (run / "checkpoint.pt").is_file()
    assert not (run / "accuracy.png").exists()
    assert sum(line.startswith("no plots:") for line in logged) == 1, logged


# -- docs/own_data.md -----------------------------------------------------------------------------
def test_own_data_doc_code_runs(tmp_path):
    """The raw-event-array class and training loop of docs/own_data.md, on synthetic events."""
    text = (ROOT / "docs" / "own_data.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 40)
    recordings = []
    for c in labels:  # class 0: events on the left half of a 64x48 sensor, class 1: right half
        n = 200
        x = rng.integers(0, 32, n) + 32 * int(c)
        recordings.append(
            (x, rng.integers(0, 48, n), np.sort(rng.integers(0, 50_000, n)), rng.integers(0, 2, n))
        )
    namespace = {"recordings": recordings, "labels": labels}
    code = blocks[0] + "\n" + blocks[1].replace("range(10)", "range(3)")
    torch.manual_seed(0)
    exec(compile(code, "docs/own_data.md", "exec"), namespace)  # noqa: S102
    result = namespace["result"]
    assert result["n_samples"] == 8 and 0 <= result["accuracy"] <= 1
    frames, label = namespace["data"][0]
    assert frames.shape == (16, 2, 48, 64) and frames.sum() == 200

    pytest.importorskip("tonic")  # the EventFrameDataset subclass bins with tonic
    file_class = next(b for b in blocks if "class MyRecordings" in b)
    ns: dict = {}
    exec(compile(file_class, "docs/own_data.md", "exec"), ns)  # noqa: S102
    root = tmp_path / "data"
    for i, (x, y, t, p) in enumerate(recordings[:6]):
        f = root / "train" / ns["MyRecordings"].classes[int(labels[i])] / f"{i}.npy"
        f.parent.mkdir(parents=True, exist_ok=True)
        np.save(f, np.stack([x, y, t, p], 1))
    ds = ns["MyRecordings"](root, cache_dir=tmp_path / "cache")
    assert len(ds) == 6 and ds[0][0].shape == (16, 2, 48, 64) and ds.frame_shape == (2, 48, 64)
    (root / "train" / "wave" / "bad.npy").write_bytes(b"x")
    from spikelfp.datasets import CorruptRecordingError

    with pytest.raises(CorruptRecordingError, match="bad.npy is too small"):
        ns["MyRecordings"](root)
