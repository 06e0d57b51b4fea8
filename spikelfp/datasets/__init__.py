"""Event-camera datasets (and static MNIST) as time-first spike tensors.

* :class:`NMNIST`, :class:`DVSGesture`: read an extracted copy as it is (download through tonic
  only with ``download=True``), return ``(frames (T, P, H, W) float32, label)``.
* :class:`DigitsEvents`: built-in offline dataset, scikit-learn's digits recorded like N-MNIST
  (:func:`images_to_events`, :func:`write_nmnist_bin`, :func:`make_digits_events`).
* :class:`MNIST`: static images read from the idx files (:func:`read_idx`, no torchvision,
  md5-checked ``download=True``), turned into ``(frames (T, 1, 28, 28) float32, label)`` by an
  encoder: :class:`DirectCurrent`, :class:`RateEncoder`, :class:`PoissonEncoder`,
  :class:`LatencyEncoder` (:func:`make_encoder`, :data:`ENCODERS`).
* Preprocessing described by frozen dataclasses: :class:`FrameSpec`, :class:`Denoise`,
  :class:`Crop`, :class:`Downsample` (run by tonic's transforms).
* ``cache_dir=``: HDF5 frame cache keyed by every parameter and the source files.
* :func:`pad_collate`, :func:`make_loader`: batches ``(T, B, P, H, W)`` with lengths;
  :func:`validation_split`: stratified, deterministic; :class:`EventStats`.
* :class:`Braille`: tactile Braille letters (12 taxels), signals ``(T, C)`` encoded by the
  sensor encoders :class:`SigmaDelta`, :class:`Resample`, :class:`SensorCurrent`
  (:class:`SensorPipeline` chains them); untrusted pickles are refused.
* :func:`plot_raster`, :func:`plot_frames`, :func:`save_gif`.

tonic (GPL-3.0), h5py, scikit-learn and matplotlib are optional
(``pip install 'spikelfp[datasets]'``) and imported only when used.
"""

from .braille import BRAILLE_LETTERS, NIR_LETTERS, Braille, UnsafePickleError
from .collate import make_loader, pad_collate
from .digits import DigitsEvents, make_digits_events
from .dvsgesture import DVSGesture
from .encoders import (
    ENCODERS,
    DirectCurrent,
    LatencyEncoder,
    PoissonEncoder,
    RateEncoder,
    make_encoder,
)
from .errors import CorruptRecordingError, DatasetLayoutError, DatasetNotFoundError
from .event_dataset import DEFAULT_TIME_BINS, EventFrameDataset
from .mnist import MNIST, download_mnist, read_idx, write_idx
from .nmnist import NMNIST
from .nmnist_format import EVENT_DTYPE, read_nmnist_bin, write_nmnist_bin
from .plotting import plot_frames, plot_raster, save_gif
from .saccade_events import SaccadeSimulation, images_to_events
from .sensor_encoders import Resample, SensorCurrent, SensorPipeline, SigmaDelta
from .splits import SplitIndices, validation_split
from .stats import EventStats, event_stats
from .transforms import Crop, Denoise, Downsample, EventsToFrames, FrameSpec

__all__ = [
    "BRAILLE_LETTERS",
    "NIR_LETTERS",
    "Braille",
    "Resample",
    "SensorCurrent",
    "SensorPipeline",
    "SigmaDelta",
    "UnsafePickleError",
    "DEFAULT_TIME_BINS",
    "ENCODERS",
    "EVENT_DTYPE",
    "MNIST",
    "NMNIST",
    "CorruptRecordingError",
    "Crop",
    "DVSGesture",
    "DatasetLayoutError",
    "DatasetNotFoundError",
    "Denoise",
    "DigitsEvents",
    "DirectCurrent",
    "Downsample",
    "EventFrameDataset",
    "EventStats",
    "EventsToFrames",
    "FrameSpec",
    "LatencyEncoder",
    "PoissonEncoder",
    "RateEncoder",
    "SaccadeSimulation",
    "SplitIndices",
    "download_mnist",
    "event_stats",
    "images_to_events",
    "make_digits_events",
    "make_encoder",
    "make_loader",
    "pad_collate",
    "plot_frames",
    "plot_raster",
    "read_idx",
    "read_nmnist_bin",
    "save_gif",
    "validation_split",
    "write_idx",
    "write_nmnist_bin",
]
