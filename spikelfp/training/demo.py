"""The demo's settings: ``spikelfp demo`` trains with exactly these (see ``docs/cli.md``).

An MLP (2x34x34 inputs -> 256 LIF -> 10 LIF) trained with LFP and lfprop's rate-coded reward
on the built-in digits-events dataset (16 frames per recording, binary input spikes), Adam
(weight decay 1e-4) with a cosine schedule, 8 epochs: ~94 % test accuracy (92-95 % over seeds
0-3; the weight decay was chosen over 0 and 3e-4 on those runs) in about two minutes on
2 CPU cores.
"""

from __future__ import annotations

DEMO_CONFIG: dict = {
    "dataset": "digits-events",
    "model": "mlp",
    "method": "lfp",
    "reward": "rate",
    "hidden": 256,
    "beta": 0.9,
    "threshold": 1.0,
    "reset": "zero",
    "time_bins": 16,
    "input_clamp": 1.0,
    "init_rate": [0.15, 0.1],
    "optimizer": "adam",
    "lr": 2e-3,
    "weight_decay": 1e-4,
    "lr_schedule": "cosine",
    "epochs": 8,
    "batch_size": 32,
    "seed": 0,
}
