"""Figures of event recordings: raster plots, frame grids and GIF animations.

Figures are created on an Agg canvas (no pyplot, no display), so they work in scripts, tests
and headless servers; each function returns its ``matplotlib.figure.Figure``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ._optional import require_matplotlib


def _new_figure(figsize: tuple[float, float]) -> Any:
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _as_frames(sample: Any) -> np.ndarray:
    """``(T, P, H, W)`` counts from a tensor/array, or from a ``(frames, label)`` pair."""
    if isinstance(sample, (tuple, list)):
        sample = sample[0]
    if hasattr(sample, "detach"):
        sample = sample.detach().cpu().numpy()
    frames = np.asarray(sample, dtype=np.float64)
    if frames.ndim == 3:  # (T, H, W): one polarity
        frames = frames[:, None]
    if frames.ndim != 4:
        raise ValueError(
            f"expected frames of shape (T, P, H, W) (or a (frames, label) pair), got shape "
            f"{frames.shape}. For a batch from pad_collate pick one sample: frames[:, i]."
        )
    return frames


def _signed_image(frame: np.ndarray) -> np.ndarray:
    """ON minus OFF counts of a ``(P, H, W)`` frame (just the counts when ``P == 1``)."""
    return frame[1] - frame[0] if frame.shape[0] == 2 else frame.sum(axis=0)


def plot_raster(
    sample: Any,
    *,
    max_points: int = 50_000,
    title: str | None = None,
    figsize: tuple[float, float] = (7.0, 3.5),
) -> Any:
    """Raster plot: time on x, pixel index on y, ON events red, OFF events blue.

    ``sample`` is a structured event array (fields ``x, y, t, p``; time axis in ms) or frames
    ``(T, P, H, W)`` / a ``(frames, label)`` pair (time axis in bins; neuron index
    ``(p * H + y) * W + x``). At most ``max_points`` points are drawn (evenly thinned).

    >>> from spikelfp.datasets import EVENT_DTYPE
    >>> ev = np.zeros(3, dtype=EVENT_DTYPE); ev["t"] = [0, 500, 1000]; ev["p"] = [0, 1, 1]
    >>> type(plot_raster(ev)).__name__
    'Figure'
    """
    fig = _new_figure(figsize)
    ax = fig.add_subplot()
    names = getattr(getattr(sample, "dtype", None), "names", None)
    if names and {"x", "y", "t", "p"} <= set(names):
        width = int(sample["x"].max()) + 1 if len(sample) else 1
        time = np.asarray(sample["t"], dtype=np.float64) / 1000.0
        neuron = np.asarray(sample["y"], dtype=np.int64) * width + sample["x"]
        polarity = np.asarray(sample["p"]).astype(bool)
        ax.set_xlabel("time (ms)")
        ax.set_ylabel("pixel (y * W + x)")
    else:
        frames = _as_frames(sample)
        t_idx, p_idx, y_idx, x_idx = np.nonzero(frames)
        _, _, height, width = frames.shape
        time = t_idx.astype(np.float64)
        neuron = (p_idx * height + y_idx) * width + x_idx
        polarity = p_idx == 1 if frames.shape[1] == 2 else np.ones(len(t_idx), dtype=bool)
        ax.set_xlabel("time bin")
        ax.set_ylabel("neuron ((p * H + y) * W + x)")
    if len(time) > max_points:
        keep = np.linspace(0, len(time) - 1, max_points).astype(np.int64)
        time, neuron, polarity = time[keep], neuron[keep], polarity[keep]
    ax.scatter(time[polarity], neuron[polarity], s=1, c="tab:red", label="ON", linewidths=0)
    ax.scatter(time[~polarity], neuron[~polarity], s=1, c="tab:blue", label="OFF", linewidths=0)
    ax.legend(loc="upper right", markerscale=6, fontsize="small")
    if title:
        ax.set_title(title)
    return fig


def plot_frames(
    sample: Any,
    *,
    max_frames: int = 12,
    ncols: int = 6,
    title: str | None = None,
) -> Any:
    """Grid of frames, ON minus OFF counts (red ON, blue OFF), evenly picked over time.

    ``sample`` is frames ``(T, P, H, W)`` (tensor or array) or a ``(frames, label)`` pair.

    >>> type(plot_frames(np.ones((4, 2, 5, 5)))).__name__
    'Figure'
    """
    frames = _as_frames(sample)
    n_t = frames.shape[0]
    picks = np.unique(np.linspace(0, n_t - 1, min(max_frames, n_t)).round().astype(int))
    ncols = max(1, min(ncols, len(picks)))
    nrows = -(-len(picks) // ncols)
    fig = _new_figure((1.6 * ncols, 1.6 * nrows + (0.4 if title else 0.0)))
    images = [_signed_image(frames[t]) for t in picks]
    vmax = max(1.0, max(float(np.abs(img).max()) for img in images))
    for k, (t, img) in enumerate(zip(picks, images, strict=True)):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        ax.imshow(img, cmap="bwr", vmin=-vmax, vmax=vmax, interpolation="nearest")
        ax.set_title(f"t={t}", fontsize="small")
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return fig


def save_gif(
    sample: Any,
    path: str | os.PathLike[str],
    *,
    fps: int = 10,
    title: str | None = None,
) -> Path:
    """Write an animated GIF of a sample, one frame per time bin (matplotlib's PillowWriter).

    ``sample`` is frames ``(T, P, H, W)`` or a ``(frames, label)`` pair. Returns the path.

    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = save_gif(np.ones((3, 2, 4, 4)), pathlib.Path(d) / "s.gif")
    ...     p.read_bytes()[:4]
    b'GIF8'
    """
    require_matplotlib()
    from matplotlib.animation import FuncAnimation, PillowWriter

    frames = _as_frames(sample)
    if title is None and isinstance(sample, (tuple, list)) and len(sample) > 1:
        title = f"label {sample[1]}"
    images = [_signed_image(f) for f in frames]
    vmax = max(1.0, max(float(np.abs(img).max()) for img in images))
    fig = _new_figure((3.0, 3.2))
    ax = fig.add_subplot()
    ax.set_xticks([])
    ax.set_yticks([])
    shown = ax.imshow(images[0], cmap="bwr", vmin=-vmax, vmax=vmax, interpolation="nearest")
    caption = ax.set_title("")

    def update(t: int) -> tuple[Any, ...]:
        shown.set_data(images[t])
        caption.set_text(f"{title + ' · ' if title else ''}t={t}/{len(images)}")
        return shown, caption

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    anim = FuncAnimation(fig, update, frames=len(images), blit=False)
    anim.save(str(path), writer=PillowWriter(fps=fps))
    return path
