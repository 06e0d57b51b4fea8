"""The N-MNIST binary event format: 40-bit events, as decoded by ``tonic.io.read_mnist_file``.

Each event is 5 bytes, big-endian bit fields::

    byte 0: x (8 bit)
    byte 1: y (8 bit; the value 240 is reserved for tonic's time-overflow marker)
    byte 2: bit 7 polarity, bits 6..0 timestamp bits 22..16
    byte 3: timestamp bits 15..8
    byte 4: timestamp bits 7..0           (timestamp in microseconds, 23 bit)

Writing lives here (tonic has no writer); reading uses tonic's own reader.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._io import atomic_write
from ._optional import require_tonic
from .errors import CorruptRecordingError

#: Structured dtype of event arrays: the same as ``tonic.datasets.NMNIST.dtype`` (``int``
#: fields, ordering x, y, t, p), so arrays compare equal to what tonic's reader returns.
EVENT_DTYPE = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])

BYTES_PER_EVENT = 5
MAX_TIMESTAMP_US = 2**23 - 1
_OVERFLOW_Y = 240


def encode_nmnist(events: np.ndarray) -> bytes:
    """Encode a structured event array (fields ``x``, ``y``, ``t``, ``p``) as N-MNIST bytes.

    >>> ev = np.zeros(1, dtype=EVENT_DTYPE)
    >>> ev[0] = (3, 4, 70000, 1)
    >>> encode_nmnist(ev).hex()
    '0304811170'
    """
    names = events.dtype.names or ()
    missing = [f for f in ("x", "y", "t", "p") if f not in names]
    if missing:
        raise ValueError(
            f"events need the fields x, y, t, p; missing {missing} in dtype {events.dtype}. "
            "Build them with numpy.zeros(n, dtype=spikelfp.datasets.EVENT_DTYPE)."
        )
    x = np.asarray(events["x"], dtype=np.int64)
    y = np.asarray(events["y"], dtype=np.int64)
    t = np.asarray(events["t"], dtype=np.int64)
    p = np.asarray(events["p"], dtype=np.int64)
    problems = []
    if x.size and (x.min() < 0 or x.max() > 255):
        problems.append(f"x must be in 0..255 (got {x.min()}..{x.max()})")
    if y.size and (y.min() < 0 or y.max() > 255 or np.any(y == _OVERFLOW_Y)):
        problems.append(
            f"y must be in 0..255 and never {_OVERFLOW_Y}, the format's overflow marker "
            f"(got {y.min()}..{y.max()})"
        )
    if t.size and (t.min() < 0 or t.max() > MAX_TIMESTAMP_US):
        problems.append(
            f"t must be in 0..{MAX_TIMESTAMP_US} µs (23 bit, ~8.4 s; got {t.min()}..{t.max()})"
        )
    if p.size and not np.all((p == 0) | (p == 1)):
        problems.append("p must be 0 or 1")
    if t.size > 1 and np.any(np.diff(t) < 0):
        problems.append("t must be sorted (non-decreasing)")
    if problems:
        raise ValueError("cannot encode events in the N-MNIST format: " + "; ".join(problems))
    raw = np.empty((len(x), BYTES_PER_EVENT), dtype=np.uint8)
    raw[:, 0] = x
    raw[:, 1] = y
    raw[:, 2] = (p << 7) | ((t >> 16) & 0x7F)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    return raw.tobytes()


def write_nmnist_bin(
    path: str | os.PathLike[str], events: np.ndarray, *, fsync: bool = True
) -> Path:
    """Write events to ``path`` in the N-MNIST binary format, atomically.

    The bytes go to a temporary file in the same folder, which is (optionally) fsynced and then
    moved over ``path`` with ``os.replace``: readers never see a half-written file.

    >>> import tempfile, pathlib
    >>> ev = np.zeros(2, dtype=EVENT_DTYPE)
    >>> ev["x"], ev["y"], ev["t"], ev["p"] = [1, 2], [3, 4], [10, 20], [0, 1]
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = write_nmnist_bin(pathlib.Path(d) / "0.bin", ev)
    ...     p.stat().st_size
    10
    """
    path = Path(path)
    data = encode_nmnist(events)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return path


def _decode_one(raw: bytes) -> tuple[int, int, int, int]:
    """``(x, y, t, p)`` of one 5-byte event."""
    t = ((raw[2] & 0x7F) << 16) | (raw[3] << 8) | raw[4]
    return raw[0], raw[1], t, raw[2] >> 7


def check_nmnist_header(
    path: str | os.PathLike[str], sensor_size: tuple[int, int] = (34, 34)
) -> str | None:
    """Why ``path`` is not an N-MNIST recording, judged cheaply, or ``None`` when it looks
    like one.

    Reads the file's size and its first and last event only (10 bytes): the size must be a
    positive multiple of 5 bytes, both events must lie on the ``(width, height)`` sensor and
    the last event must not be earlier than the first. A file that passes can still hold a bad
    event in the middle (:func:`read_nmnist_bin` checks every event when it is read).

    >>> import tempfile, pathlib
    >>> bad = pathlib.Path(tempfile.mkdtemp()) / "1.bin"
    >>> _ = bad.write_bytes(bytes(7))
    >>> check_nmnist_header(bad).endswith("Restore it from the original download (or delete it).")
    True
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0 or size % BYTES_PER_EVENT:
            return _size_problem(path, size)
        with open(path, "rb") as fh:
            first = fh.read(BYTES_PER_EVENT)
            fh.seek(-BYTES_PER_EVENT, os.SEEK_END)
            last = fh.read(BYTES_PER_EVENT)
    except OSError as err:
        return f"{path} cannot be read ({err.strerror or type(err).__name__})"
    width, height = sensor_size
    events = [_decode_one(first), _decode_one(last)]
    for which, (x, y, _, _) in zip(("first", "last"), events, strict=True):
        if y != _OVERFLOW_Y and (x >= width or y >= height):
            return (
                f"{path} is not an N-MNIST recording (or is corrupted): its {which} event is "
                f"at x={x}, y={y}, outside the {width}x{height} sensor. Restore it from the "
                "original download (or delete it)."
            )
    (_, y0, t0, _), (_, y1, t1, _) = events
    if _OVERFLOW_Y not in (y0, y1) and t1 < t0:
        return (
            f"{path} is not an N-MNIST recording (or is corrupted): its last event "
            f"(t={t1} µs) is earlier than its first (t={t0} µs). Restore it from the original "
            "download (or delete it)."
        )
    return None


def _size_problem(path: Path, size: int) -> str:
    if size == 0:
        return (
            f"{path} is empty (0 bytes): not an N-MNIST recording. Delete it or restore it "
            "from the original download."
        )
    return (
        f"{path} is {size} bytes, not a multiple of {BYTES_PER_EVENT} (N-MNIST events are "
        "40 bit): the file is truncated or not in the N-MNIST format. Restore it from the "
        "original download (or delete it)."
    )


def read_nmnist_bin(
    path: str | os.PathLike[str], sensor_size: tuple[int, int] = (34, 34)
) -> np.ndarray:
    """Read an N-MNIST ``.bin`` file with ``tonic.io.read_mnist_file`` and check it.

    Raises :class:`~spikelfp.datasets.CorruptRecordingError`, naming the file, when it is
    empty, truncated (not a whole number of 5-byte events), has coordinates outside the
    ``(width, height)`` sensor or polarities other than 0/1. Events come back sorted by time
    (stable), with dtype :data:`EVENT_DTYPE`.
    """
    tonic = require_tonic()
    path = Path(path)
    size = path.stat().st_size
    if size == 0 or size % BYTES_PER_EVENT:
        raise CorruptRecordingError(_size_problem(path, size))
    events = tonic.io.read_mnist_file(str(path), dtype=EVENT_DTYPE)
    width, height = sensor_size
    if len(events) and (
        events["x"].max() >= width
        or events["y"].max() >= height
        or events["x"].min() < 0
        or events["y"].min() < 0
    ):
        raise CorruptRecordingError(
            f"{path} has events outside the {width}x{height} sensor (x up to "
            f"{events['x'].max()}, y up to {events['y'].max()}): not an N-MNIST recording, "
            "or corrupted. Restore it from the original download (or delete it)."
        )
    if len(events) > 1 and np.any(np.diff(events["t"]) < 0):
        events = events[np.argsort(events["t"], kind="stable")]
    return events
