"""HDF5 cache of preprocessed frames, keyed by every transform parameter and the source files.

One cache file holds one split of one dataset under one preprocessing:

* file name ``<dataset>-<split>-<sha256(key, root)[:16]>.h5``; the key (stored in full in the
  file's attributes and compared on open) is the JSON of the dataset class, split, sensor size,
  dataset options (e.g. ``first_saccade_only``), every field of every transform, and the tonic
  and cache-format versions. Change any of them and a different file is used, so stale frames
  are never served.
* attribute ``source``: SHA-256 over ``(relative path, size, mtime_ns, label)`` of every
  recording; a mismatch (a file added, removed, replaced or touched) rebuilds the cache.
* dataset ``frames`` ``(sum T_i, P, H, W)``, contiguous, ``uint8`` when all counts fit, else
  ``uint16`` (``int16`` if tonic's own counts overflowed); ``offsets`` ``(N + 1,)`` delimits
  sample ``i`` as ``frames[offsets[i]:offsets[i + 1]]``; ``labels``; ``relpaths``; per-sample
  event statistics; attribute ``crc32`` over the frame bytes.

The file is written to a temporary file in the same folder, fsynced and moved into place with
``os.replace``, so readers only ever see a complete file. On open the structure, key, source,
file size and CRC are checked; anything unexpected (truncated, foreign, bit-flipped) is reported
with a warning and the cache is rebuilt; if the folder is not writable training continues
uncached. Reads go through a read-only memory map of the contiguous ``frames`` block, created
lazily in each process (DataLoader workers included): one slice per sample, no HDF5 call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._optional import require_h5py
from .stats import EventStats

CACHE_FORMAT = "spikelfp-frame-cache"
CACHE_VERSION = 1
_BLOCK_BYTES = 64 * 2**20
_log = logging.getLogger(__name__)


class CacheInvalid(Exception):
    """Internal: a cache file exists but cannot be used (the message says why)."""


class _SourceError(Exception):
    """Internal: reading a recording failed while building; re-raised as the original error."""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def key_json(key: dict[str, Any]) -> str:
    """Canonical JSON of a cache key (sorted keys, no whitespace)."""
    return json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)


def source_fingerprint(root: Path, files: Sequence[Path], labels: Sequence[int]) -> str:
    """SHA-256 identifying the recordings: relative path, size, mtime and label of each."""
    digest = hashlib.sha256()
    for path, label in zip(files, labels, strict=True):
        st = os.stat(path)
        rel = os.path.relpath(path, root)
        digest.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\t{label}\n".encode())
    return digest.hexdigest()


def cache_file_name(dataset: str, split: str, key: str, root: Path) -> str:
    """File name for a cache: readable prefix plus a hash of the key and the source root."""
    digest = _sha256(key + "\n" + str(Path(root).resolve()))[:16]
    return f"{dataset.lower()}-{split}-{digest}.h5"


@dataclass
class FrameCache:
    """A validated cache file, read through a lazily created memory map."""

    path: Path
    offsets: np.ndarray
    frame_shape: tuple[int, int, int]
    dtype: np.dtype
    data_offset: int | None
    n_events: np.ndarray
    n_on: np.ndarray
    duration_us: np.ndarray
    _mm: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def _map(self) -> np.ndarray:
        if self._mm is None:
            total = int(self.offsets[-1])
            if total == 0 or self.data_offset is None:
                self._mm = np.zeros((0, *self.frame_shape), dtype=self.dtype)
            else:
                self._mm = np.memmap(
                    self.path,
                    dtype=self.dtype,
                    mode="r",
                    offset=self.data_offset,
                    shape=(total, *self.frame_shape),
                )
        return self._mm

    def read(self, index: int) -> np.ndarray:
        """Counts of sample ``index``, shape ``(T, P, H, W)`` (a read-only view)."""
        return self._map()[self.offsets[index] : self.offsets[index + 1]]

    def stats(self, index: int) -> EventStats:
        return EventStats(
            int(self.n_events[index]), int(self.n_on[index]), int(self.duration_us[index])
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_mm"] = None  # each process maps the file itself
        return state


def open_cache(
    path: Path,
    key: str,
    source: str,
    labels: Sequence[int],
    frame_shape: tuple[int, int, int],
) -> FrameCache:
    """Open and fully validate a cache file; raise :class:`CacheInvalid` saying what is wrong."""
    h5py = require_h5py()
    try:
        with h5py.File(path, "r") as f:
            attrs = f.attrs
            if attrs.get("format") != CACHE_FORMAT:
                raise CacheInvalid("not a spikelfp frame cache (foreign HDF5 file)")
            if int(attrs.get("version", -1)) != CACHE_VERSION:
                raise CacheInvalid(f"cache format version {attrs.get('version')} is not current")
            if attrs.get("key") != key:
                raise CacheInvalid("written for other preprocessing parameters")
            if attrs.get("source") != source:
                raise CacheInvalid("the source recordings changed since it was written")
            n = len(labels)
            offsets = np.asarray(f["offsets"][()], dtype=np.int64)
            stored_labels = np.asarray(f["labels"][()], dtype=np.int64)
            frames = f["frames"]
            stats = [np.asarray(f[f"stats/{k}"][()], dtype=np.int64) for k in _STAT_KEYS]
            if offsets.shape != (n + 1,) or offsets[0] != 0 or np.any(np.diff(offsets) < 1):
                raise CacheInvalid("sample offsets are inconsistent")
            if not np.array_equal(stored_labels, np.asarray(labels, dtype=np.int64)):
                raise CacheInvalid("labels differ from the dataset's")
            if any(s.shape != (n,) for s in stats):
                raise CacheInvalid("statistics have the wrong length")
            if tuple(frames.shape) != (int(offsets[-1]), *frame_shape):
                raise CacheInvalid(f"frames have shape {frames.shape}, expected {frame_shape}")
            dtype = np.dtype(frames.dtype)
            if dtype not in (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.int16)):
                raise CacheInvalid(f"unexpected frame dtype {dtype}")
            layout = frames.id.get_create_plist().get_layout()
            if layout != h5py.h5d.CONTIGUOUS:
                raise CacheInvalid("frames are not stored contiguously")
            data_offset = frames.id.get_offset()
            nbytes = int(np.prod(frames.shape)) * dtype.itemsize
            crc = int(attrs.get("crc32", -1))
    except CacheInvalid:
        raise
    except (OSError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise CacheInvalid(f"unreadable ({type(exc).__name__}: {exc})") from exc
    if nbytes and (data_offset is None or data_offset + nbytes > os.path.getsize(path)):
        raise CacheInvalid("file is truncated")
    cache = FrameCache(
        path=path,
        offsets=offsets,
        frame_shape=tuple(frame_shape),
        dtype=dtype,
        data_offset=data_offset,
        n_events=stats[0],
        n_on=stats[1],
        duration_us=stats[2],
    )
    if _crc32_of(cache._map()) != crc:
        raise CacheInvalid("frame data fails its CRC-32 check (corrupted on disk)")
    return cache


_STAT_KEYS = ("n_events", "n_on", "duration_us")


def _crc32_of(array: np.ndarray) -> int:
    flat = array.reshape(-1)
    step = max(1, _BLOCK_BYTES // max(1, flat.itemsize))
    crc = 0
    for start in range(0, flat.size, step):
        crc = zlib.crc32(np.ascontiguousarray(flat[start : start + step]).data, crc)
    return crc


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _smallest_dtype(lo: int, hi: int) -> np.dtype:
    if lo >= 0 and hi <= np.iinfo(np.uint8).max:
        return np.dtype(np.uint8)
    if lo >= 0:
        return np.dtype(np.uint16)
    return np.dtype(np.int16)


def build_cache(
    path: Path,
    *,
    key: str,
    source: str,
    labels: Sequence[int],
    relpaths: Sequence[str],
    frame_shape: tuple[int, int, int],
    compute: Callable[[int], tuple[np.ndarray, EventStats]],
    progress: Callable[[range], Any] | None = None,
) -> None:
    """Compute every sample with ``compute(i) -> (int16 counts (T,P,H,W), stats)`` and write
    the cache atomically to ``path``."""
    h5py = require_h5py()
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    n = len(labels)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    scratch = tmp.with_suffix(".raw")
    try:
        # Pass 1: counts to a raw scratch file (T of each sample is only known afterwards).
        lengths = np.zeros(n, dtype=np.int64)
        stats = np.zeros((3, n), dtype=np.int64)
        lo, hi = 0, 0
        indices = range(n) if progress is None else progress(range(n))
        with open(scratch, "wb") as raw:
            for i in indices:
                try:
                    counts, st = compute(i)
                except OSError as exc:  # a recording, not the cache: not a cache-write failure
                    raise _SourceError() from exc
                if tuple(counts.shape[1:]) != tuple(frame_shape) or counts.shape[0] < 1:
                    raise RuntimeError(
                        f"sample {i} produced frames of shape {counts.shape}, expected "
                        f"(T >= 1, {', '.join(map(str, frame_shape))})"
                    )
                counts = np.ascontiguousarray(counts, dtype=np.int16)
                if counts.size:
                    lo, hi = min(lo, int(counts.min())), max(hi, int(counts.max()))
                raw.write(counts.tobytes())
                lengths[i] = counts.shape[0]
                stats[:, i] = (st.n_events, st.n_on, st.duration_us)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        total = int(offsets[-1])
        dtype = _smallest_dtype(lo, hi)
        # Pass 2: the HDF5 file, with a contiguous frames block of the final size.
        source_counts = np.memmap(scratch, dtype=np.int16, mode="r", shape=(total, *frame_shape))
        with h5py.File(tmp, "w") as f:
            f.create_dataset("offsets", data=offsets)
            f.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))
            f.create_dataset("relpaths", data=list(relpaths), dtype=h5py.string_dtype())
            for k, column in zip(_STAT_KEYS, stats, strict=True):
                f.create_dataset(f"stats/{k}", data=column)
            frames = f.create_dataset("frames", shape=(total, *frame_shape), dtype=dtype)
            per_frame = max(1, int(np.prod(frame_shape)) * 2)
            step = max(1, _BLOCK_BYTES // per_frame)
            crc = 0
            for start in range(0, total, step):
                block = np.ascontiguousarray(source_counts[start : start + step], dtype=dtype)
                frames[start : start + len(block)] = block
                crc = zlib.crc32(block.data, crc)
            f.attrs["format"] = CACHE_FORMAT
            f.attrs["version"] = CACHE_VERSION
            f.attrs["key"] = key
            f.attrs["source"] = source
            f.attrs["n_samples"] = n
            f.attrs["crc32"] = crc
        del source_counts
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(folder)
    finally:
        for leftover in (tmp, scratch):
            try:
                leftover.unlink()
            except FileNotFoundError:
                pass


def open_or_build(
    path: Path,
    *,
    key: str,
    source: str,
    labels: Sequence[int],
    relpaths: Sequence[str],
    frame_shape: tuple[int, int, int],
    compute: Callable[[int], tuple[np.ndarray, EventStats]],
    progress: Callable[[range], Any] | None = None,
) -> FrameCache | None:
    """Return a valid cache at ``path``, building or rebuilding it when needed.

    Returns ``None`` (with a warning) when the cache cannot be written, so callers can carry on
    uncached.
    """
    if path.exists():
        try:
            return open_cache(path, key, source, labels, frame_shape)
        except CacheInvalid as exc:
            reason = str(exc)
            if "source recordings changed" in reason:
                _log.info("Frame cache %s: %s; rebuilding.", path, reason)
            else:
                warnings.warn(
                    f"Frame cache {path} is unusable ({reason}); rebuilding it.",
                    RuntimeWarning,
                    stacklevel=3,
                )
    else:
        _log.info("Building frame cache %s (%d samples).", path, len(labels))
    try:
        build_cache(
            path,
            key=key,
            source=source,
            labels=labels,
            relpaths=relpaths,
            frame_shape=frame_shape,
            compute=compute,
            progress=progress,
        )
        return open_cache(path, key, source, labels, frame_shape)
    except _SourceError as exc:
        raise exc.__cause__ from None
    except (OSError, CacheInvalid) as exc:
        warnings.warn(
            f"Could not write the frame cache {path} ({exc}); continuing without a cache. "
            "Pass a writable cache_dir= to speed up later epochs.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
