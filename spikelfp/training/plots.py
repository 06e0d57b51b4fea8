"""End-of-run figures (matplotlib, Agg canvas: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_history"]


def _figure():
    from matplotlib.figure import Figure  # Figure + Agg canvas: never touches pyplot's backend

    return Figure(figsize=(6, 4), dpi=100)


def plot_history(history: list[dict[str, Any]], run_dir: str | Path) -> list[Path]:
    """Write ``accuracy.png`` (train/eval accuracy per epoch) and ``spike_rates.png`` (mean
    spikes per neuron and step of each layer, per epoch) into ``run_dir``."""
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
    path = run_dir / "accuracy.png"
    fig.savefig(path)
    written.append(path)

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
    path = run_dir / "spike_rates.png"
    fig.savefig(path)
    written.append(path)
    return written
