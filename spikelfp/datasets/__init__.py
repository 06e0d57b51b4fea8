"""Event-camera datasets as time-first spike tensors.

* :class:`NMNIST`, :class:`DVSGesture`: read an extracted copy as it is (download through tonic
  only with ``download=True``), return ``(frames (T, P, H, W) float32, label)``.
* :class:`DigitsEvents`: built-in offline dataset, scikit-learn's digits recorded like N-MNIST
  (:func:`images_to_events`, :func:`write_nmnist_bin`, :func:`make_digits_events`).
* Preprocessing described by frozen dataclasses: :class:`FrameSpec`, :class:`Denoise`,
  :class:`Crop`, :class:`Downsample` (run by tonic's transforms).
* ``cache_dir=``: HDF5 frame cache keyed by every parameter and the source files.
* :func:`pad_collate`, :func:`make_loader`: batches ``(T, B, P, H, W)`` with lengths;
  :func:`validation_split`: stratified, deterministic; :class:`EventStats`.
* :func:`plot_raster`, :func:`plot_frames`, :func:`save_gif`.

tonic (GPL-3.0), h5py, scikit-learn and matplotlib are optional
(``pip install 'spikelfp[datasets]'``) and imported only when used.
"""

from .collate import make_loader, pad_collate
from .digits import DigitsEvents, make_digits_events
from .dvsgesture import DVSGesture
from .errors import CorruptRecordingError, DatasetLayoutError, DatasetNotFoundError
from .event_dataset import EventFrameDataset
from .nmnist import NMNIST
from .nmnist_format import EVENT_DTYPE, read_nmnist_bin, write_nmnist_bin
from .plotting import plot_frames, plot_raster, save_gif
from .saccade_events import SaccadeSimulation, images_to_events
from .splits import SplitIndices, validation_split
from .stats import EventStats, event_stats
from .transforms import Crop, Denoise, Downsample, EventsToFrames, FrameSpec

__all__ = [
    "EVENT_DTYPE",
    "NMNIST",
    "CorruptRecordingError",
    "Crop",
    "DVSGesture",
    "DatasetLayoutError",
    "DatasetNotFoundError",
    "Denoise",
    "DigitsEvents",
    "Downsample",
    "EventFrameDataset",
    "EventStats",
    "EventsToFrames",
    "FrameSpec",
    "SaccadeSimulation",
    "SplitIndices",
    "event_stats",
    "images_to_events",
    "make_digits_events",
    "make_loader",
    "pad_collate",
    "plot_frames",
    "plot_raster",
    "read_nmnist_bin",
    "save_gif",
    "validation_split",
    "write_nmnist_bin",
]
