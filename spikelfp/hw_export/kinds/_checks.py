"""The profile checks shared by the neuron kinds (a kind's ``check`` hook)."""

from __future__ import annotations

import numpy as np
import torch

from .._decay import quantize_decay
from .._violations import Violation

__all__ = ["check_neuron"]


def check_neuron(layer, conv, where: str, prof, report) -> None:
    """The profile's neuron constraints (reset, decays, thresholds) for a float neuron whose
    converter is ``conv``; adds violations, warnings and notes to ``report``."""
    kind = conv.name
    if conv.spiking and hasattr(layer, "reset"):
        if layer.reset not in prof.resets:
            report.violations.append(
                Violation(
                    where,
                    "reset",
                    f'reset="{layer.reset}"',
                    " / ".join(prof.resets),
                    f"retrain with {kind}(reset={prof.resets[0]!r})",
                )
            )
        if layer.reset_delay and not prof.reset_delay:
            report.violations.append(
                Violation(
                    where,
                    "reset timing",
                    "reset_delay=True",
                    "immediate reset",
                    f"retrain with {kind}(reset_delay=False)",
                )
            )
    for name, beta in conv.decays(layer).items():
        b = beta.to(torch.float64).numpy().reshape(-1)
        if prof.shared_decay and b.size > 1 and not np.all(b == b[0]):
            report.violations.append(
                Violation(
                    where,
                    "shared decay",
                    f"per-neuron {name} ({b.min():.4g}..{b.max():.4g})",
                    "one decay per layer",
                    f"retrain with one shared {name} (shape=None, learn_{name}=False)",
                )
            )
        if prof.decay == "none" and not np.all(b == 1):
            report.violations.append(
                Violation(
                    where,
                    "decay",
                    f"{name}={b.min():.4g}..{b.max():.4g}",
                    f"{name}=1 (no leak)",
                    "use spikelfp.IF (integrate-and-fire)",
                )
            )
        elif prof.decay == "shift":
            slow = 1.0 - 2.0**-prof.max_shift
            if np.any(b > slow):
                report.violations.append(
                    Violation(
                        where,
                        "decay",
                        f"{name}={b.max():.6g}",
                        f"{name} <= 1 - 2**-{prof.max_shift} = {slow:.6g} (bit-shift <= "
                        f"{prof.max_shift})",
                        f"retrain with {name} <= {slow:.6g}",
                    )
                )
        if prof.decay in ("shift", "mult"):
            _, bq = quantize_decay(b, prof.decay, prof.decay_bits, prof.max_shift)
            err = float(np.abs(bq - b).max())
            if err > 0.02:
                worst = int(np.abs(bq - b).argmax())
                report.warnings.append(
                    Violation(
                        where,
                        "decay precision",
                        f"{name}={b[worst]:.4g} becomes {bq[worst]:.4g}",
                        f"|error| <= 0.02 ({prof.decay} decay)",
                        f"retrain with a representable {name} (e.g. {bq[worst]:.4g})",
                    )
                )
    th = getattr(layer, "threshold", None)
    if th is not None and conv.spiking:
        t = th.detach().reshape(-1)
        if prof.shared_threshold and t.numel() > 1 and not bool((t == t[0]).all()):
            report.notes.append(
                f"{where}: per-neuron thresholds; {prof.name} has one threshold per layer, so "
                "they are folded into the weight rows when quantising"
            )
        if bool((t <= 0).any()):
            report.violations.append(
                Violation(
                    where,
                    "threshold",
                    f"threshold {float(t.min()):.4g}",
                    "> 0",
                    "use positive thresholds (the scale is folded into them)",
                )
            )
