"""Pictures of explanations: relevance heatmaps per frame, relevance over time, events coloured
by relevance, and a GIF. The style of :mod:`spikelfp.datasets.plotting`: an Agg canvas (no
pyplot, no display), every function returns its ``matplotlib.figure.Figure`` (or a path).

Relevance is drawn with a diverging map centred on 0 (red: for the class, blue: against it),
scaled to the largest magnitude shown so that frames are comparable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets._optional import require_matplotlib
from ..datasets.plotting import _new_figure

__all__ = [
    "plot_explanation",
    "plot_event_relevance",
    "plot_relevance_frames",
    "plot_relevance_over_time",
    "save_relevance_gif",
]

_CMAP = "bwr"


def _frames(values: Any, what: str) -> np.ndarray:
    """``(T, P, H, W)`` float64 from a tensor/array (``(T, H, W)``: one polarity)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise ValueError(
            f"{what} must be (T, P, H, W) (one sample; for a batch pick rel[:, i]), got shape "
            f"{arr.shape}"
        )
    return arr


def _limit(arr: np.ndarray) -> float:
    m = float(np.abs(arr).max()) if arr.size else 0.0
    return m if m > 0 else 1.0


def plot_relevance_frames(
    relevance: Any,
    frames: Any | None = None,
    *,
    max_frames: int = 12,
    ncols: int = 6,
    title: str | None = None,
) -> Any:
    """Grid of per-frame relevance heatmaps (summed over polarities), evenly picked over time;
    with ``frames`` (the event counts) the pixels that had events are outlined by dots.

    >>> type(plot_relevance_frames(np.random.randn(4, 2, 5, 5), np.ones((4, 2, 5, 5)))).__name__
    'Figure'
    """
    rel = _frames(relevance, "relevance")
    counts = None if frames is None else _frames(frames, "frames")
    n_t = rel.shape[0]
    picks = np.unique(np.linspace(0, n_t - 1, min(max_frames, n_t)).round().astype(int))
    ncols = max(1, min(ncols, len(picks)))
    nrows = -(-len(picks) // ncols)
    fig = _new_figure((1.6 * ncols + 0.8, 1.6 * nrows + (0.4 if title else 0.0)))
    maps = rel.sum(axis=1)
    vmax = _limit(maps[picks])
    image = None
    axes = []
    for k, t in enumerate(picks):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        axes.append(ax)
        image = ax.imshow(maps[t], cmap=_CMAP, vmin=-vmax, vmax=vmax, interpolation="nearest")
        if counts is not None:
            ys, xs = np.nonzero(counts[t].sum(axis=0))
            ax.scatter(xs, ys, s=0.6, c="k", alpha=0.35, linewidths=0)
        ax.set_title(f"t={t}  ΣR={rel[t].sum():.3g}", fontsize="x-small")
        ax.set_xticks([])
        ax.set_yticks([])
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="relevance")
    if title:
        fig.suptitle(title)
    return fig


def plot_relevance_over_time(
    relevance: Any, *, labels: tuple[str, ...] | None = None, title: str | None = None
) -> Any:
    """Relevance summed per time bin, one line per polarity (OFF, ON), and its total.

    >>> type(plot_relevance_over_time(np.random.randn(6, 2, 3, 3))).__name__
    'Figure'
    """
    rel = _frames(relevance, "relevance")
    fig = _new_figure((5.0, 2.8))
    ax = fig.add_subplot()
    _over_time(ax, rel, labels)
    if title:
        ax.set_title(title)
    return fig


def _over_time(ax: Any, rel: np.ndarray, labels: tuple[str, ...] | None) -> None:
    n_p = rel.shape[1]
    if labels is None:
        labels = ("OFF", "ON") if n_p == 2 else tuple(f"channel {p}" for p in range(n_p))
    colours = ("tab:blue", "tab:red") if n_p == 2 else (None,) * n_p
    steps = np.arange(rel.shape[0])
    per = rel.sum(axis=(2, 3))
    for p in range(n_p):
        ax.plot(steps, per[:, p], marker=".", color=colours[p], label=labels[p])
    if n_p > 1:
        ax.plot(steps, per.sum(1), color="k", lw=1, ls="--", label="total")
    ax.axhline(0, color="0.6", lw=0.6)
    ax.set_xlabel("time bin")
    ax.set_ylabel("relevance")
    ax.legend(fontsize="small")


def plot_event_relevance(
    events: np.ndarray,
    relevance: np.ndarray,
    *,
    max_points: int = 50_000,
    title: str | None = None,
    figsize: tuple[float, float] = (9.0, 3.6),
) -> Any:
    """Every event coloured by its relevance: on the sensor (x, y) and over time
    (time in ms vs pixel ``y * W + x``). The most relevant events are drawn on top.

    >>> ev = np.zeros(3, dtype=[("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i1")])
    >>> ev["t"] = [0, 500, 1000]; ev["x"] = [0, 1, 2]
    >>> type(plot_event_relevance(ev, np.array([0.1, -0.2, 0.0]))).__name__
    'Figure'
    """
    relevance = np.asarray(relevance, dtype=np.float64)
    if len(events) != len(relevance):
        raise ValueError(f"{len(events)} events but {len(relevance)} relevance values")
    fig = _new_figure(figsize)
    order = np.argsort(np.abs(relevance), kind="stable")  # most relevant last (on top)
    if len(order) > max_points:
        order = order[np.linspace(0, len(order) - 1, max_points).astype(np.int64)]
    ev, rel = events[order], relevance[order]
    vmax = _limit(rel)
    x = np.asarray(ev["x"], dtype=np.int64)
    y = np.asarray(ev["y"], dtype=np.int64)
    ax1 = fig.add_subplot(1, 2, 1)
    ax1.scatter(x, y, c=rel, cmap=_CMAP, vmin=-vmax, vmax=vmax, s=4, linewidths=0)
    ax1.invert_yaxis()
    ax1.set_aspect("equal")
    ax1.set_xlabel("x")
    ax1.set_ylabel("y")
    ax2 = fig.add_subplot(1, 2, 2)
    sc = _events_over_time(ax2, ev, rel, vmax)
    fig.colorbar(sc, ax=[ax1, ax2], shrink=0.85, label="relevance per event")
    if title:
        fig.suptitle(title)
    return fig


def _events_over_time(ax: Any, ev: np.ndarray, rel: np.ndarray, vmax: float) -> Any:
    """Scatter events at (time in ms, pixel ``y * W + x``) coloured by relevance."""
    x = np.asarray(ev["x"], dtype=np.int64)
    y = np.asarray(ev["y"], dtype=np.int64)
    width = int(x.max()) + 1 if len(x) else 1
    sc = ax.scatter(
        np.asarray(ev["t"], dtype=np.float64) / 1000.0,
        y * width + x,
        c=rel,
        cmap=_CMAP,
        vmin=-vmax,
        vmax=vmax,
        s=2,
        linewidths=0,
    )
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("pixel (y * W + x)")
    return sc


def plot_explanation(explanation: Any, *, title: str | None = None, max_frames: int = 8) -> Any:
    """One figure of an :class:`~spikelfp.explain.EventExplanation` (or a ``(relevance,
    frames)`` pair): relevance heatmaps of evenly picked frames, relevance over time per
    polarity, and (for events) the events coloured by relevance.

    >>> rel = np.random.randn(4, 2, 6, 6)
    >>> type(plot_explanation((rel, np.ones_like(rel)))).__name__
    'Figure'
    """
    if isinstance(explanation, tuple):
        rel, counts = (_frames(v, "relevance") for v in explanation)
        events = ev_rel = None
    else:
        rel, counts = explanation.frame_relevance, explanation.frames
        events, ev_rel = explanation.events, explanation.relevance
        if title is None:
            title = (
                f"relevance for class {explanation.target} "
                f"(predicted {explanation.prediction}, "
                f"{int(explanation.output.sum(0)[explanation.target])} target spikes)"
            )
    n_t = rel.shape[0]
    picks = np.unique(np.linspace(0, n_t - 1, min(max_frames, n_t)).round().astype(int))
    fig = _new_figure((max(9.0, 1.5 * len(picks)), 6.4))
    top, bottom = fig.subfigures(2, 1, height_ratios=(1.0, 1.5))
    maps = rel.sum(axis=1)
    vmax = _limit(maps[picks])
    axes = top.subplots(1, len(picks), squeeze=False)[0]
    image = None
    for ax, t in zip(axes, picks, strict=True):
        image = ax.imshow(maps[t], cmap=_CMAP, vmin=-vmax, vmax=vmax, interpolation="nearest")
        ys, xs = np.nonzero(counts[t].sum(axis=0))
        ax.scatter(xs, ys, s=0.5, c="k", alpha=0.3, linewidths=0)
        ax.set_title(f"t={t}", fontsize="small")
        ax.set_xticks([])
        ax.set_yticks([])
    top.colorbar(image, ax=list(axes), shrink=0.9, label="relevance")
    if events is None:
        ax = bottom.subplots()
        _over_time(ax, rel, None)
    else:
        a1, a2 = bottom.subplots(1, 2, width_ratios=(1.0, 1.3))
        _over_time(a1, rel, None)
        order = np.argsort(np.abs(ev_rel), kind="stable")
        ev, r = events[order], ev_rel[order]
        sc = _events_over_time(a2, ev, r, _limit(r))
        a2.set_title("events coloured by relevance", fontsize="small")
        bottom.colorbar(sc, ax=a2, label="relevance per event")
    if title:
        fig.suptitle(title)
    return fig


def save_relevance_gif(
    relevance: Any,
    path: str | os.PathLike[str],
    frames: Any | None = None,
    *,
    fps: int = 5,
    title: str | None = None,
) -> Path:
    """An animated GIF, one picture per time bin: the events (ON minus OFF, when ``frames``
    is given) beside the relevance (summed over polarities). Returns the path.

    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = save_relevance_gif(np.random.randn(3, 2, 4, 4), pathlib.Path(d) / "r.gif")
    ...     p.read_bytes()[:4]
    b'GIF8'
    """
    require_matplotlib()
    from matplotlib.animation import FuncAnimation, PillowWriter

    rel = _frames(relevance, "relevance")
    maps = rel.sum(axis=1)
    vmax = _limit(maps)
    counts = None if frames is None else _frames(frames, "frames")
    n_panels = 1 if counts is None else 2
    fig = _new_figure((3.0 * n_panels, 3.3))
    shown = []
    if counts is not None:
        ev_maps = counts[:, 1] - counts[:, 0] if counts.shape[1] == 2 else counts.sum(axis=1)
        ev_max = _limit(ev_maps)
        ax = fig.add_subplot(1, n_panels, 1)
        ax.set_title("events (ON − OFF)", fontsize="small")
        shown.append(
            (
                ax.imshow(
                    ev_maps[0], cmap="bwr", vmin=-ev_max, vmax=ev_max, interpolation="nearest"
                ),
                ev_maps,
            )
        )
    ax = fig.add_subplot(1, n_panels, n_panels)
    ax.set_title("relevance", fontsize="small")
    shown.append(
        (ax.imshow(maps[0], cmap=_CMAP, vmin=-vmax, vmax=vmax, interpolation="nearest"), maps)
    )
    for a in fig.axes:
        a.set_xticks([])
        a.set_yticks([])
    caption = fig.suptitle("")

    def update(t: int) -> tuple[Any, ...]:
        for im, data in shown:
            im.set_data(data[t])
        caption.set_text(f"{title + ' · ' if title else ''}t={t}/{len(maps)}")
        return (*(im for im, _ in shown), caption)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    anim = FuncAnimation(fig, update, frames=len(maps), blit=False)
    anim.save(str(path), writer=PillowWriter(fps=fps))
    return path
