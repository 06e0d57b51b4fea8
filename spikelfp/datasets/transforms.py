"""Frozen descriptions of the preprocessing from events to frames.

Each class only *describes* a step; the work is done by the matching tonic transform
(``tonic.transforms.ToFrame``, ``Denoise``, ``CenterCrop``, ``Downsample``), created lazily by
:class:`EventsToFrames`. Being frozen dataclasses, the descriptions are hashable, comparable and
serialisable, which is what the frame cache needs for its key.

Sizes follow tonic's convention ``(width, height)``; frames come out time-first as
``(T, P, H, W)``.

>>> FrameSpec(n_time_bins=30)
FrameSpec(n_time_bins=30, time_window_us=None, overlap=0.0, include_incomplete=False, \
start_time_us=None, end_time_us=None)
>>> EventsToFrames(FrameSpec(n_time_bins=30), downsample=Downsample(0.5)).frame_shape((34, 34, 2))
(2, 17, 17)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np

from ._optional import require_tonic


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class FrameSpec:
    """How events are binned into frames (``tonic.transforms.ToFrame``).

    Set exactly one of

    * ``n_time_bins``: a fixed number of frames per recording, each spanning
      ``(t_last - t_first) // n_time_bins`` microseconds (every sample has the same ``T``);
    * ``time_window_us``: a fixed frame duration; ``T`` then depends on the recording's length
      (batch with :func:`spikelfp.datasets.pad_collate`), unless ``start_time_us`` and
      ``end_time_us`` pin the span.

    Args:
        n_time_bins: number of frames per recording.
        time_window_us: frame duration in microseconds.
        overlap: with ``n_time_bins`` the fraction of a bin by which bins overlap (``[0, 1)``);
            with ``time_window_us`` the overlap in microseconds (``< time_window_us``).
        include_incomplete: with ``time_window_us``, keep the last, shorter window.
        start_time_us: with ``time_window_us``, where the first window starts (default: first
            event).
        end_time_us: with ``time_window_us``, where the last window ends (default: last event).

    >>> FrameSpec(time_window_us=10_000, start_time_us=0, end_time_us=300_000).time_window_us
    10000
    >>> FrameSpec()
    Traceback (most recent call last):
    ...
    ValueError: FrameSpec needs exactly one of n_time_bins or time_window_us, e.g. \
FrameSpec(n_time_bins=30) or FrameSpec(time_window_us=10_000); got neither.
    """

    n_time_bins: int | None = None
    time_window_us: float | None = None
    overlap: float = 0.0
    include_incomplete: bool = False
    start_time_us: float | None = None
    end_time_us: float | None = None

    def __post_init__(self) -> None:
        has_bins = self.n_time_bins is not None
        has_window = self.time_window_us is not None
        if has_bins == has_window:
            got = "both" if has_bins else "neither"
            raise ValueError(
                "FrameSpec needs exactly one of n_time_bins or time_window_us, e.g. "
                f"FrameSpec(n_time_bins=30) or FrameSpec(time_window_us=10_000); got {got}."
            )
        if has_bins and (not _is_int(self.n_time_bins) or self.n_time_bins < 1):
            raise ValueError(
                f"FrameSpec.n_time_bins must be a positive int, got {self.n_time_bins!r}."
            )
        if has_window and (not _is_real(self.time_window_us) or self.time_window_us <= 0):
            raise ValueError(
                "FrameSpec.time_window_us must be a positive number of microseconds, "
                f"got {self.time_window_us!r}."
            )
        if not _is_real(self.overlap) or self.overlap < 0:
            raise ValueError(f"FrameSpec.overlap must be >= 0, got {self.overlap!r}.")
        if has_bins and self.overlap >= 1:
            raise ValueError(
                "With n_time_bins, FrameSpec.overlap is a fraction of a bin and must be < 1, "
                f"got {self.overlap!r}."
            )
        if has_window and self.overlap >= self.time_window_us:
            raise ValueError(
                "With time_window_us, FrameSpec.overlap is in microseconds and must be smaller "
                f"than the window ({self.time_window_us!r}), got {self.overlap!r}."
            )
        for name in ("start_time_us", "end_time_us"):
            value = getattr(self, name)
            if value is None:
                continue
            if has_bins:
                raise ValueError(
                    f"FrameSpec.{name} only applies to time_window_us (tonic spreads "
                    "n_time_bins between the first and last event); remove it."
                )
            if not _is_real(value) or value < 0:
                raise ValueError(f"FrameSpec.{name} must be a time >= 0 in µs, got {value!r}.")
        if (
            self.start_time_us is not None
            and self.end_time_us is not None
            and self.end_time_us <= self.start_time_us
        ):
            raise ValueError(
                f"FrameSpec.end_time_us ({self.end_time_us}) must be after start_time_us "
                f"({self.start_time_us})."
            )
        if not isinstance(self.include_incomplete, bool):
            raise ValueError("FrameSpec.include_incomplete must be True or False.")

    @property
    def fixed_length(self) -> int | None:
        """Number of frames when it is the same for every recording, else ``None``."""
        if self.n_time_bins is not None:
            return int(self.n_time_bins)
        return None


@dataclass(frozen=True)
class Denoise:
    """Drop isolated events (``tonic.transforms.Denoise``).

    An event is kept only if a neighbouring pixel (4-neighbourhood) fired within the previous
    ``filter_time_us`` microseconds. tonic implements it as a Python loop over events: fine for
    N-MNIST, slow for DVS Gesture; use ``cache_dir=`` so it runs once.

    >>> Denoise(filter_time_us=10_000)
    Denoise(filter_time_us=10000)
    """

    filter_time_us: float = 10_000

    def __post_init__(self) -> None:
        if not _is_real(self.filter_time_us) or self.filter_time_us <= 0:
            raise ValueError(
                "Denoise.filter_time_us must be a positive time in µs, "
                f"got {self.filter_time_us!r}."
            )


@dataclass(frozen=True)
class Crop:
    """Keep a centred ``width`` x ``height`` window of the sensor (``tonic.transforms.CenterCrop``).

    >>> Crop(width=32, height=32)
    Crop(width=32, height=32)
    """

    width: int
    height: int

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"Crop.{name} must be a positive int, got {value!r}.")


@dataclass(frozen=True)
class Downsample:
    """Scale pixel coordinates by ``spatial_factor`` (``tonic.transforms.Downsample``).

    Coordinates are multiplied and truncated, so a ``W``-pixel wide sensor becomes
    ``floor((W - 1) * spatial_factor) + 1`` pixels wide; several input pixels add up into one.

    >>> Downsample(spatial_factor=0.25)
    Downsample(spatial_factor=0.25)
    """

    spatial_factor: float

    def __post_init__(self) -> None:
        if not _is_real(self.spatial_factor) or not 0 < self.spatial_factor <= 1:
            raise ValueError(
                "Downsample.spatial_factor must be in (0, 1] (e.g. 0.25 turns 128x128 into "
                f"32x32), got {self.spatial_factor!r}."
            )

    def output_size(self, size: int) -> int:
        """Number of pixels along an axis of ``size`` pixels after downsampling."""
        return int((size - 1) * self.spatial_factor) + 1


def describe(step: Any) -> dict[str, Any] | None:
    """JSON-able description of a step (type name and every field) for the cache key.

    >>> describe(Crop(8, 6))
    {'type': 'Crop', 'width': 8, 'height': 6}
    """
    if step is None:
        return None
    fields = {f.name: getattr(step, f.name) for f in dataclasses.fields(step)}
    return {"type": type(step).__name__, **fields}


@dataclass(frozen=True)
class EventsToFrames:
    """The full preprocessing: denoise, then crop, then downsample, then bin into frames.

    Calling it on a structured event array (fields ``x``, ``y``, ``t``, ``p``) returns an
    ``int16`` array of counts, shape ``(T, P, H, W)``.
    """

    frames: FrameSpec
    denoise: Denoise | None = None
    crop: Crop | None = None
    downsample: Downsample | None = None

    def __post_init__(self) -> None:
        checks = (
            ("frames", FrameSpec, False),
            ("denoise", Denoise, True),
            ("crop", Crop, True),
            ("downsample", Downsample, True),
        )
        for name, cls, optional in checks:
            value = getattr(self, name)
            if value is None and optional:
                continue
            if not isinstance(value, cls):
                raise TypeError(
                    f"{name}= expects a spikelfp.datasets.{cls.__name__}"
                    f"{' or None' if optional else ''}, got {type(value).__name__}: {value!r}."
                )

    def sensor_size_after(self, sensor_size: tuple[int, int, int]) -> tuple[int, int, int]:
        """Sensor size ``(W, H, P)`` after cropping and downsampling."""
        width, height, polarities = (int(v) for v in sensor_size)
        if self.crop is not None:
            if self.crop.width > width or self.crop.height > height:
                raise ValueError(
                    f"Crop(width={self.crop.width}, height={self.crop.height}) is larger than "
                    f"the {width}x{height} sensor; use a size of at most {width}x{height}."
                )
            width, height = self.crop.width, self.crop.height
        if self.downsample is not None:
            width = self.downsample.output_size(width)
            height = self.downsample.output_size(height)
        return (width, height, polarities)

    def frame_shape(self, sensor_size: tuple[int, int, int]) -> tuple[int, int, int]:
        """Shape ``(P, H, W)`` of one frame for a sensor of size ``(W, H, P)``."""
        width, height, polarities = self.sensor_size_after(sensor_size)
        return (polarities, height, width)

    def describe(self) -> dict[str, Any]:
        """Every parameter, as JSON-able data (part of the cache key)."""
        return {
            "frames": describe(self.frames),
            "denoise": describe(self.denoise),
            "crop": describe(self.crop),
            "downsample": describe(self.downsample),
        }

    def build(self, sensor_size: tuple[int, int, int]) -> Callable[[np.ndarray], np.ndarray]:
        """Create the tonic transforms for a sensor of size ``(W, H, P)``; returns a callable."""
        tonic = require_tonic()
        tt = tonic.transforms
        width, height, polarities = (int(v) for v in sensor_size)
        steps: list[Callable[[np.ndarray], np.ndarray]] = []
        if self.denoise is not None:
            steps.append(tt.Denoise(filter_time=self.denoise.filter_time_us))
        if self.crop is not None:
            self.sensor_size_after(sensor_size)  # validates the crop size
            steps.append(
                tt.CenterCrop(
                    sensor_size=(width, height, polarities),
                    size=(self.crop.width, self.crop.height),
                )
            )
        if self.downsample is not None:
            steps.append(tt.Downsample(spatial_factor=float(self.downsample.spatial_factor)))
        out_size = self.sensor_size_after(sensor_size)
        spec = self.frames
        to_frame = tt.ToFrame(
            sensor_size=out_size,
            n_time_bins=spec.n_time_bins,
            time_window=spec.time_window_us,
            overlap=spec.overlap,
            include_incomplete=spec.include_incomplete,
            start_time=spec.start_time_us,
            end_time=spec.end_time_us,
        )
        frame_shape = self.frame_shape(sensor_size)

        def run(events: np.ndarray) -> np.ndarray:
            for step in steps:
                if len(events) == 0:
                    break
                events = step(events)
            if len(events) == 0:
                # tonic's empty-input branch returns (T, P, W, H); build (T, P, H, W) ourselves.
                n_frames = spec.fixed_length or 1
                return np.zeros((n_frames, *frame_shape), dtype=np.int16)
            return to_frame(events)

        return run
