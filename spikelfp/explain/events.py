r"""Relevance per original event: frame relevance mapped back to the events in each bin.

A dataset turns a recording's events :math:`e_k = (x_k, y_k, t_k, p_k)` into frames of counts
:math:`F_{\tau,p,y,x} = |\{k : e_k \in \text{cell } (\tau, p, y, x)\}|` (denoise, crop,
downsample, then bin in time: :class:`spikelfp.datasets.EventsToFrames`). :func:`bin_events`
runs the very same tonic steps, carrying each event's index along, so it knows which cell(s)
every event was counted in (none if the preprocessing dropped it; several if bins overlap).
The relevance :math:`R_{\tau,p,y,x}` of a cell is then shared equally by its events:

.. math::

    R(e_k) = \sum_{(\tau,p,y,x) \ni e_k} \frac{R_{\tau,p,y,x}}{F_{\tau,p,y,x}},
    \qquad \sum_k R(e_k) = \sum_{F > 0} R_{\tau,p,y,x}.

Cells without events have :math:`x = 0` and get no relevance from LRP's first layer
(:math:`r_i = x_i \cdots`), so the events carry the whole input relevance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..datasets.transforms import EventsToFrames, FrameSpec
from .core import explain

__all__ = ["EventBins", "EventExplanation", "bin_events", "explain_events", "recording"]

_INDEX = "_spikelfp_event_index"


@dataclass(frozen=True)
class EventBins:
    """Which frame cell each event of a recording was counted in (one row per membership).

    Attributes:
        event: ``(M,)`` index of the event in the recording.
        t, p, y, x: ``(M,)`` the cell ``(time bin, polarity, row, column)`` it was counted in.
        frame_shape: ``(T, P, H, W)`` of the frames.
        n_events: number of events in the recording.
    """

    event: np.ndarray
    t: np.ndarray
    p: np.ndarray
    y: np.ndarray
    x: np.ndarray
    frame_shape: tuple[int, int, int, int]
    n_events: int

    def cells(self) -> np.ndarray:
        """``(M,)`` flat index of each membership's cell in a ``(T, P, H, W)`` array."""
        if not len(self.event):
            return np.zeros(0, dtype=np.int64)
        return np.ravel_multi_index((self.t, self.p, self.y, self.x), self.frame_shape)

    def counts(self) -> np.ndarray:
        """The frames ``(T, P, H, W)`` of event counts (the dataset's frames, as int64)."""
        flat = np.bincount(self.cells(), minlength=int(np.prod(self.frame_shape)))
        return flat.reshape(self.frame_shape).astype(np.int64)

    def to_events(self, frame_values: Any) -> np.ndarray:
        r"""Per event, the sum over its cells of the cell's value divided by the cell's event
        count: ``(n_events,)`` float64 (0 for events that are in no frame).

        >>> ev = np.zeros(3, dtype=[("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i1")])
        >>> ev["t"] = [0, 1, 2]; ev["x"] = [1, 1, 0]
        >>> bins = bin_events(ev, FrameSpec(time_window_us=10), (2, 1, 2))
        >>> bins.counts()[0, 0, 0].tolist()
        [1, 2]
        >>> bins.to_events(np.array([[[[3.0, 1.0]], [[0.0, 0.0]]]])).tolist()
        [0.5, 0.5, 3.0]
        """
        values = np.asarray(
            frame_values.detach().cpu().double().numpy()
            if isinstance(frame_values, torch.Tensor)
            else frame_values,
            dtype=np.float64,
        )
        if values.shape != self.frame_shape:
            raise ValueError(
                f"frame values must have the frames' shape {self.frame_shape}, got {values.shape}"
            )
        out = np.zeros(self.n_events, dtype=np.float64)
        if not len(self.event):
            return out
        cells = self.cells()
        count = np.bincount(cells, minlength=values.size)
        np.add.at(out, self.event, values.reshape(-1)[cells] / count[cells])
        return out


def _as_preprocessing(preprocessing: Any) -> EventsToFrames:
    if isinstance(preprocessing, EventsToFrames):
        return preprocessing
    if isinstance(preprocessing, FrameSpec):
        return EventsToFrames(preprocessing)
    raise TypeError(
        "preprocessing must be a spikelfp.datasets.EventsToFrames, a FrameSpec or an event "
        f"dataset, got {type(preprocessing).__name__}"
    )


def bin_events(
    events: np.ndarray, preprocessing: EventsToFrames | FrameSpec, sensor_size: tuple[int, ...]
) -> EventBins:
    """Bin ``events`` exactly as a dataset with ``preprocessing`` does, remembering which cell
    every event lands in.

    ``events`` is a structured array with fields ``x, y, t, p`` sorted by time (as the
    datasets' ``events(i)`` returns); ``sensor_size`` is ``(W, H, P)`` (tonic's convention).
    The steps are tonic's own (``Denoise``, ``CenterCrop``, ``Downsample``, then the time
    slicing of ``ToFrame``), so ``bin_events(...).counts()`` equals the dataset's frames.
    """
    from ..datasets._optional import require_tonic

    prep = _as_preprocessing(preprocessing)
    names = getattr(getattr(events, "dtype", None), "names", None) or ()
    if not {"x", "y", "t", "p"} <= set(names):
        raise ValueError(
            "events must be a structured array with fields x, y, t, p (a dataset's events(i))"
        )
    width, height, polarities = (int(v) for v in sensor_size)
    frame_shape_1 = prep.frame_shape((width, height, polarities))
    n = len(events)
    tonic = require_tonic()
    tt = tonic.transforms
    from numpy.lib import recfunctions

    ev = recfunctions.append_fields(
        events, _INDEX, np.arange(n, dtype=np.int64), usemask=False, asrecarray=False
    )
    steps = []
    if prep.denoise is not None:
        steps.append(tt.Denoise(filter_time=prep.denoise.filter_time_us))
    if prep.crop is not None:
        prep.sensor_size_after((width, height, polarities))  # validates the crop
        steps.append(
            tt.CenterCrop(
                sensor_size=(width, height, polarities), size=(prep.crop.width, prep.crop.height)
            )
        )
    if prep.downsample is not None:
        steps.append(tt.Downsample(spatial_factor=float(prep.downsample.spatial_factor)))
    for step in steps:
        if len(ev) == 0:
            break
        ev = step(ev)
    spec = prep.frames
    empty = np.zeros(0, dtype=np.int64)
    if len(ev) == 0:
        shape = (spec.fixed_length or 1, *frame_shape_1)
        return EventBins(empty, empty, empty, empty, empty, shape, n)
    from tonic.slicers import SliceByTime, SliceByTimeBins

    if spec.time_window_us:
        slicer = SliceByTime(
            time_window=spec.time_window_us,
            overlap=spec.overlap,
            include_incomplete=spec.include_incomplete,
            start_time=spec.start_time_us,
            end_time=spec.end_time_us,
        )
    else:
        slicer = SliceByTimeBins(bin_count=spec.n_time_bins, overlap=spec.overlap)
    bounds = slicer.get_slice_metadata(ev, None)
    rows = [np.arange(int(a), int(b)) for a, b in bounds]
    lengths = [len(r) for r in rows]
    take = np.concatenate(rows) if rows else empty
    t = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
    picked = ev[take]
    p = np.zeros(len(take), dtype=np.int64) if polarities == 1 else picked["p"].astype(np.int64)
    shape = (len(rows), *frame_shape_1)
    return EventBins(
        picked[_INDEX].astype(np.int64),
        t,
        p,
        picked["y"].astype(np.int64),
        picked["x"].astype(np.int64),
        shape,
        n,
    )


@dataclass(frozen=True)
class EventExplanation:
    """What :func:`explain_events` found for one recording.

    Attributes:
        events: the recording (structured ``x, y, t, p``).
        relevance: ``(N,)`` float64 relevance of each event.
        frames: ``(T, P, H, W)`` event counts (the dataset's frames).
        frame_relevance: ``(T, P, H, W)`` float64 relevance of each cell of the model's input.
        output: ``(T, C)`` the model's output on the recording.
        target: the explained class.
        bins: the event-to-cell mapping (:class:`EventBins`).
    """

    events: np.ndarray
    relevance: np.ndarray
    frames: np.ndarray
    frame_relevance: np.ndarray
    output: np.ndarray
    target: int
    bins: EventBins

    @property
    def prediction(self) -> int:
        """The class with the most output activity (ties: the lowest index)."""
        return int(np.argmax(self.output.sum(0)))

    def ranking(self) -> np.ndarray:
        """Event indices from the most to the least relevant (stable for ties)."""
        return np.argsort(-self.relevance, kind="stable")


def recording(dataset: Any, index: int) -> tuple[np.ndarray, EventsToFrames, tuple, int]:
    """``(events, preprocessing, sensor_size, label)`` of sample ``index`` of an event dataset,
    seen through ``torch.utils.data.Subset``-like wrappers (``.dataset`` and ``.indices``) and
    caches (``.dataset``), as :func:`spikelfp.training.open_split` returns them."""
    index = int(index)
    if not 0 <= index < len(dataset):
        raise IndexError(f"index {index} is out of range: the split has {len(dataset)} samples")
    label = int(dataset.targets[index]) if hasattr(dataset, "targets") else int(dataset[index][1])
    current: Any = dataset
    for _ in range(16):
        if hasattr(current, "events") and hasattr(current, "preprocessing"):
            return (
                current.events(index),
                current.preprocessing,
                tuple(current.sensor_size),
                label,
            )
        indices = getattr(current, "indices", None)
        if indices is not None:
            index = int(indices[index])
        inner = getattr(current, "dataset", None)
        if inner is None:
            break
        current = inner
    raise TypeError(
        f"{type(dataset).__name__} holds no event recordings (no events(i) and preprocessing); "
        "explain its frames with spikelfp.explain instead"
    )


def explain_events(
    model: nn.Module,
    events: np.ndarray,
    preprocessing: Any,
    sensor_size: tuple[int, ...] | None = None,
    target=None,
    composite=None,
    *,
    input_clamp: float | None = 1.0,
    reward: str = "output",
    dtype: torch.dtype = torch.float32,
) -> EventExplanation:
    r"""Relevance of every event of one recording for the model's ``target`` class.

    The events are binned as the dataset bins them (:func:`bin_events`), the frames are fed to
    the model as a batch of one, clipped at ``input_clamp`` like the trainer does (``None``:
    raw counts), :func:`explain` gives each cell's relevance, and each cell's relevance is
    shared equally by the events counted in it (module docstring).

    Args:
        model: the network (as for :func:`explain`).
        events: structured array ``x, y, t, p`` sorted by time.
        preprocessing: a :class:`~spikelfp.datasets.EventsToFrames`, a
            :class:`~spikelfp.datasets.FrameSpec`, or an event dataset (its ``preprocessing``
            and ``sensor_size`` are used).
        sensor_size: ``(W, H, P)``; taken from a dataset when one is given.
        target, composite, reward: as for :func:`explain`.

    >>> from spikelfp import IF, Sequential
    >>> ev = np.zeros(4, dtype=[("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i1")])
    >>> ev["t"] = [0, 5, 10, 15]; ev["x"] = [0, 1, 1, 0]; ev["p"] = [1, 1, 1, 0]
    >>> net = Sequential(nn.Flatten(), nn.Linear(4, 2), IF(threshold=0.1))
    >>> res = explain_events(net, ev, FrameSpec(n_time_bins=2), (2, 1, 2), target=0)
    >>> res.relevance.shape, res.frames.shape
    ((4,), (2, 2, 1, 2))
    >>> bool(np.isclose(res.relevance.sum(), res.frame_relevance[res.frames > 0].sum()))
    True
    """
    if sensor_size is None:
        if hasattr(preprocessing, "preprocessing") and hasattr(preprocessing, "sensor_size"):
            sensor_size = tuple(preprocessing.sensor_size)
            preprocessing = preprocessing.preprocessing
        else:
            raise ValueError("sensor_size (W, H, P) is needed unless a dataset is given")
    elif hasattr(preprocessing, "preprocessing") and not isinstance(
        preprocessing, (EventsToFrames, FrameSpec)
    ):
        preprocessing = preprocessing.preprocessing
    bins = bin_events(events, preprocessing, sensor_size)
    frames = bins.counts()
    x = torch.from_numpy(frames).to(dtype).unsqueeze(1)
    if input_clamp is not None:
        x = x.clamp(max=float(input_clamp))
    if isinstance(target, torch.Tensor) and target.dim() == 2 and target.is_floating_point():
        target = target.unsqueeze(1)  # a reward (T, C) for the batch of one
    rel, out = explain(model, x, target, composite, reward=reward, return_output=True)
    frame_rel = rel[:, 0].detach().cpu().double().numpy()
    output = out[:, 0].detach().cpu().double().numpy()
    if isinstance(target, torch.Tensor) and target.is_floating_point():
        explained = int(np.argmax(np.abs(target[:, 0].detach().cpu().numpy()).sum(0)))
    elif target is None:
        explained = int(np.argmax(output.sum(0)))
    else:
        explained = int(target.reshape(-1)[0]) if isinstance(target, torch.Tensor) else int(target)
    return EventExplanation(
        events=events,
        relevance=bins.to_events(frame_rel),
        frames=frames,
        frame_relevance=frame_rel,
        output=output,
        target=explained,
        bins=bins,
    )
