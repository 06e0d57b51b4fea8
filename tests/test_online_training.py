"""Online LFP in the trainer: sparse frames from the memory cache, --online-window, errors."""

import numpy as np
import pytest
import torch

from spikelfp.cli import main
from spikelfp.datasets.augment import Compose, DropSpikes, RandomShift
from spikelfp.lfp import SparseFrames
from spikelfp.lfp.online import augment_sparse
from spikelfp.training.config import ConfigError, TrainConfig
from spikelfp.training.data import MemoryCache, SparseLoader, collate, sparse_batch, stack_samples


class _Frames(torch.utils.data.Dataset):
    """Event-count frames of different lengths (and one non-integer sample)."""

    def __init__(self, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.items = [
            ((torch.rand(n, 2, 5, 5, generator=g) < 0.05) * torch.randint(1, 4, (1,))).float()
            for n in (6, 9, 7, 9)
        ]
        self.items.append(torch.rand(9, 2, 5, 5, generator=g) * 0.5)  # float: stored dense
        self.targets = [0, 1, 2, 1, 0]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i].numpy(), self.targets[i]


def test_memory_cache_stores_sparse_and_returns_the_same_frames():
    raw = _Frames()
    cache = MemoryCache(raw)
    for i in range(len(raw)):
        x, y = cache[i]
        assert x.dtype == torch.float32 and torch.equal(x, raw.items[i]) and y == raw.targets[i]
        x2, _ = cache[i]  # from the cache
        assert torch.equal(x2, raw.items[i])
    kinds = [cache._frames[i][0] for i in range(len(raw))]
    assert kinds == ["sparse"] * 4 + ["dense"]
    shape, where, counts, label = cache.sparse(1)
    assert shape == (9, 2, 5, 5) and where.dtype == np.int32 and label == 1
    assert np.array_equal(raw.items[1].numpy().reshape(-1)[where], counts)


def test_stack_samples_and_sparse_batch_equal_collate_then_clamp():
    cache = MemoryCache(_Frames())
    order = [3, 0, 4, 2]
    dense, labels = collate([cache[i] for i in order])
    clamped = dense.clamp(max=1.0)
    assert torch.equal(stack_samples(cache, order, 1.0), clamped)
    sf, y = sparse_batch(cache, order)
    assert torch.equal(sf.dense(), dense) and torch.equal(y, labels)
    assert torch.equal(sf.clamp(1.0).window(2, 8), clamped[2:8])
    loader = SparseLoader(cache, order, batch_size=3)
    batches = list(loader)
    assert len(loader) == 2 == len(batches) and [len(b[1]) for b in batches] == [3, 1]


def test_sparse_augmentation_equals_dense():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(5, 6, 2, 7, 7, generator=g) < 0.2).float()
    shift = Compose((RandomShift(2),))
    a = shift(x, torch.Generator().manual_seed(3))
    b = augment_sparse(shift, SparseFrames.from_dense(x), torch.Generator().manual_seed(3))
    assert torch.equal(a, b.dense()) and not torch.equal(a, x)
    dropped = augment_sparse(DropSpikes(0.5), SparseFrames.from_dense(x), g).dense()
    assert bool(((dropped == 0) | (dropped == x)).all())
    assert 0.3 < float(dropped.sum() / x.sum()) < 0.7
    assert augment_sparse(None, b) is b


def _cfg(digits_root, tmp_path, **kw):
    return TrainConfig(
        data_dir=str(digits_root),
        epochs=1,
        time_bins=6,
        hidden=16,
        max_train_samples=24,
        max_eval_samples=16,
        batch_size=8,
        progress=False,
        out=str(tmp_path / "run"),
        augment={"shift": 1},
        **kw,
    )


def test_trainer_online_window_of_T_is_the_full_run(digits_root, tmp_path):
    from spikelfp.training import Trainer

    full = Trainer(_cfg(digits_root, tmp_path)).fit()[0]
    online = Trainer(_cfg(digits_root, tmp_path, online_window=6), overwrite=True).fit()[0]
    for key in ("train_loss", "train_reward", "train_acc", "eval_acc", "eval_loss"):
        assert full[key] == online[key], key
    assert full["train_spike_rate"] == online["train_spike_rate"]
    assert full["eval_spike_rate"] == online["eval_spike_rate"]
    short = Trainer(_cfg(digits_root, tmp_path, online_window=2), overwrite=True)
    hist = short.fit()[0]
    assert hist["n_train"] == 24 and hist["train_loss"] != full["train_loss"]
    ev = short.evaluate("test")
    assert ev["n_samples"] == 16 and 0 <= ev["accuracy"] <= 1
    assert 0 < ev["spike_rates"]["output"] < 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--online-window", "0"], "online-window must be >= 1, got 0"),
        (["--online-window", "-2"], "online-window must be >= 1, got -2"),
        (["--online-window", "4", "--method", "bptt"], "--method bptt cannot"),
    ],
)
def test_cli_online_window_errors(digits_root, tmp_path, capsys, args, message):
    rc = main(["train", "--data-dir", str(digits_root), "--out", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and message in err and len(err.splitlines()) == 1
    with pytest.raises(ConfigError, match="must be an integer"):
        TrainConfig(online_window=2.5).validate()
