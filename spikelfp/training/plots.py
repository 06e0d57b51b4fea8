"""A run's figures, redrawn after every epoch (matplotlib, Agg canvas: no display needed).

matplotlib is optional: without it :func:`plot_history` raises ``ImportError`` and the trainer
goes on without figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._io import atomic_write

__all__ = ["plot_history"]


def _figure():
    from matplotlib.figure import Figure  # Figure + Agg canvas: never touches pyplot's backend

    return Figure(figsize=(6, 4), dpi=100)


def _save(fig, path: Path) -> Path:
    """Write ``fig`` as PNG atomically: a run interrupted while plotting keeps the last plot."""
    with atomic_write(path, fsync=False) as tmp:
        fig.savefig(tmp, format="png")
    return path


def plot_history(history: list[dict[str, Any]], run_dir: str | Path) -> list[Path]:
    """Write ``accuracy.png`` (train/eval accuracy per epoch) and ``spike_rates.png`` (mean
    spikes per neuron and step of each layer, per epoch) into ``run_dir``, each atomically.

    The trainer calls it after every epoch's checkpoint, so an interrupted run has the plots
    of its completed epochs."""
    run_dir = Path(run_dir)
    if not history:
        return []
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    epochs = [m["epoch"] for m in history]
    written = []

    fig = _figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(epochs, [m["train_acc"] for m in history], "o-", label="train")
    if any("eval_acc" in m for m in history):
        split = next(m["eval_split"] for m in history if "eval_split" in m)
        ax.plot(
            [m["epoch"] for m in history if "eval_acc" in m],
            [m["eval_acc"] for m in history if "eval_acc" in m],
            "s-",
            label=split,
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("accuracy")
    fig.tight_layout()
    written.append(_save(fig, run_dir / "accuracy.png"))

    fig = _figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    layers = list(history[0].get("train_spike_rate", {}))
    for layer in layers:
        ax.plot(
            epochs,
            [m["train_spike_rate"].get(layer, float("nan")) for m in history],
            "o-",
            label=layer,
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("spikes per neuron and step")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("spike rates (training)")
    fig.tight_layout()
    written.append(_save(fig, run_dir / "spike_rates.png"))
    return written
