"""Export on real N-MNIST recordings (skipped unless SPIKELFP_DATA points at the data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from spikelfp import LIF, Sequential
from spikelfp.hw_export import export, from_nir, neuron_outputs
from spikelfp.lfp import lfp_step, rate_coded_reward

pytestmark = pytest.mark.data

_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])


def _frames(root, per_class=6, steps=10, duration_us=300_000):
    read = pytest.importorskip("tonic.io", reason="reading N-MNIST needs tonic").read_mnist_file
    split = root / "nmnist" / "NMNIST" / "Train"
    if not split.is_dir():
        pytest.skip(f"N-MNIST recordings not found under {split}")
    xs, ys = [], []
    for digit in range(10):
        for f in sorted((split / str(digit)).glob("*.bin"))[:per_class]:
            ev = read(str(f), dtype=_DTYPE)
            fr = np.zeros((steps, 2, 34, 34), np.float32)
            fr[np.clip(ev["t"] * steps // duration_us, 0, steps - 1), ev["p"], ev["y"], ev["x"]] = 1
            xs.append(fr)
            ys.append(digit)
    return torch.from_numpy(np.stack(xs)).transpose(0, 1), torch.tensor(ys)


def test_export_real_recordings_simulator_identical(shared_data, tmp_path):
    pytest.importorskip("nir")
    x, y = _frames(shared_data)
    torch.manual_seed(0)
    net = Sequential(
        nn.Flatten(),
        nn.Linear(2312, 32),
        LIF(beta=0.9, threshold=0.5),
        nn.Linear(32, 10),
        LIF(beta=0.9, threshold=0.5),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for i in range(0, y.numel(), 20):
        lfp_step(
            net,
            x[:, i : i + 20],
            y[i : i + 20],
            lambda o, t: rate_coded_reward(o, t, scale=1 / x.shape[0]),
            opt,
        )
    path = tmp_path / "nmnist.nir"
    rep = export(
        net,
        target="loihi2",
        bits=8,
        prune=0.8,
        dt=1e-3,
        path=path,
        data=(x, y),
        input_shape=(2, 34, 34),
        verbose=False,
    )
    assert rep.simulator_identical is True
    assert rep.spike_agreement_pruned > 0.95  # quantisation alone changes few spikes
    assert rep.sparsity.sparsity == pytest.approx(0.8, abs=1e-3)
    back = from_nir(path)
    a = neuron_outputs(back, x.double())
    b = neuron_outputs(rep.quantized.model, x.double())
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
