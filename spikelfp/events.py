r"""Event input kept sparse: :class:`SparseFrames`, a batch of event-count frames stored as the
indices of its non-zeros.

Event cameras give long, sparse streams (N-MNIST frames at 1 ms bins are ~99 % zeros). A
:class:`SparseFrames` batch ``(T, B, *frame)`` holds only the flat indices and counts of the
non-zero entries, sorted by time step, so a window of steps is one contiguous slice:

* :meth:`SparseFrames.window` makes one window dense (a conv first layer, online LFP);
* :meth:`SparseFrames.csr` gives a window as a CSR matrix ``(K·B, prod(frame))``: a
  :class:`spikelfp.Sequential` whose first synapse is a ``Linear`` (after ``Flatten``) computes
  that layer from the events, :math:`z = X W^\top + b` with :math:`X` sparse, and the LFP
  rules decompose it from the events too (:mod:`spikelfp.lfp.synapse_rules`);
* :meth:`SparseFrames.time_slice` keeps a window sparse.

>>> import torch
>>> x = torch.zeros(3, 2, 4); x[0, 1, 2] = 1; x[2, 0, 0] = 2
>>> sf = SparseFrames.from_dense(x)
>>> torch.equal(sf.csr().to_dense(), x.reshape(6, 4)), sf.time_slice(2, 3).dense()[0, 0].tolist()
(True, [2.0, 0.0, 0.0, 0.0])
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["SparseFrames"]


@dataclass(frozen=True)
class SparseFrames:
    """A batch of event-count frames ``(T, B, *frame)`` kept as the indices of its non-zeros.

    ``index`` holds flat C-order indices into ``(T, B, prod(frame))`` sorted ascending, so a
    window of steps is one contiguous slice (found by binary search); ``value`` the counts.
    :meth:`window` makes only that window dense.

    Attributes:
        shape: ``(T, B, *frame)``.
        index: ``int64`` flat indices, strictly increasing.
        value: ``float32`` counts, one per index.

    >>> x = torch.zeros(3, 2, 4); x[0, 1, 2] = 1; x[2, 0, 0] = 2
    >>> sf = SparseFrames.from_dense(x)
    >>> sf.index.tolist(), torch.equal(sf.window(0, 3), x), sf.window(2, 3).sum().item()
    ([6, 16], True, 2.0)
    """

    shape: tuple[int, ...]
    index: torch.Tensor
    value: torch.Tensor

    @property
    def steps(self) -> int:
        """The number of time steps ``T``."""
        return int(self.shape[0])

    @property
    def _step_size(self) -> int:
        return int(np.prod(self.shape[1:]))

    def window(
        self,
        start: int,
        stop: int,
        clamp: float | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Dense frames of steps ``start..stop-1``, ``(stop - start, B, *frame)``.

        Args:
            start: first step.
            stop: one past the last step (clipped to ``T``).
            clamp: clip counts above this value (``1``: binary spikes).
            dtype: the frames' floating-point type.

        Returns:
            The window's frames.
        """
        stop, lo, hi = self._bounds(start, stop)
        size = self._step_size
        out = torch.zeros((stop - start) * size, dtype=dtype, device=self.index.device)
        vals = self.value[lo:hi].to(dtype)
        out[self.index[lo:hi] - start * size] = vals if clamp is None else vals.clamp(max=clamp)
        return out.view(stop - start, *self.shape[1:])

    def _bounds(self, start: int, stop: int) -> tuple[int, int, int]:
        stop = min(int(stop), self.steps)
        size = self._step_size
        bounds = torch.tensor([start * size, stop * size], dtype=self.index.dtype)
        lo, hi = torch.searchsorted(self.index, bounds.to(self.index.device)).tolist()
        return stop, lo, hi

    def time_slice(self, start: int, stop: int) -> SparseFrames:
        """Steps ``start..stop-1`` (``stop`` clipped to ``T``), still sparse."""
        stop, lo, hi = self._bounds(start, stop)
        return SparseFrames(
            (stop - start, *self.shape[1:]),
            self.index[lo:hi] - start * self._step_size,
            self.value[lo:hi],
        )

    def csr(
        self, start: int = 0, stop: int | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        r"""Steps ``start..stop-1`` as a sparse CSR matrix ``((stop - start)·B, prod(frame))``.

        Row ``t·B + b`` (``t`` counted from ``start``) holds sample ``b``'s flattened frame at
        step ``start + t``: the input of a ``Linear`` layer after ``Flatten``, so that
        ``linear(x.csr())`` equals ``linear(x.dense().flatten(2))`` reshaped to rows. Built from
        the sorted indices without a sort (``O(nnz + rows)``).

        Args:
            start: first step.
            stop: one past the last step (default and clipped: ``T``).
            dtype: the values' floating-point type.

        Returns:
            A ``torch.sparse_csr`` tensor with ``int64`` indices.

        >>> x = torch.zeros(2, 1, 3); x[1, 0, 2] = 1
        >>> SparseFrames.from_dense(x).csr().to_dense().tolist()
        [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
        """
        stop, lo, hi = self._bounds(start, self.steps if stop is None else stop)
        size = int(np.prod(self.shape[2:]))
        rows = (stop - start) * int(self.shape[1])
        local = self.index[lo:hi] - start * self._step_size
        row, col = torch.div(local, size, rounding_mode="floor"), local % size
        crow = torch.zeros(rows + 1, dtype=torch.int64, device=self.index.device)
        torch.cumsum(torch.bincount(row, minlength=rows), 0, out=crow[1:])
        with warnings.catch_warnings():  # torch calls its CSR support "beta" on every build
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(
                crow, col, self.value[lo:hi].to(dtype), (rows, size), check_invariants=False
            )

    def clamp(self, max: float | None = None) -> SparseFrames:  # noqa: A002 (Tensor.clamp's name)
        """The frames with counts clipped at ``max`` (as ``Tensor.clamp(max=...)``)."""
        return (
            self if max is None else SparseFrames(self.shape, self.index, self.value.clamp(max=max))
        )

    def clamp_(self, max: float | None = None) -> SparseFrames:  # noqa: A002
        """Clip the counts at ``max`` in place; returns ``self``."""
        if max is not None:
            self.value.clamp_(max=max)
        return self

    def to(self, device) -> SparseFrames:
        """The frames on ``device`` (windows are made there)."""
        return SparseFrames(self.shape, self.index.to(device), self.value.to(device))

    def shifted(self, shifts: Sequence[tuple[int, int]]) -> SparseFrames:
        """Each sample ``b`` translated by ``shifts[b] = (dy, dx)`` pixels (events moved off
        the frame are dropped): ``RandomShift`` (``spikelfp.datasets.augment``) on indices."""
        steps, batch = self.shape[:2]
        h, w = int(self.shape[-2]), int(self.shape[-1])
        size = int(np.prod(self.shape[2:]))  # one sample's frame
        tb, f = torch.div(self.index, size, rounding_mode="floor"), self.index % size
        b = tb % batch
        y = torch.div(f % (h * w), w, rounding_mode="floor")
        x = f % w
        d = torch.tensor(shifts, dtype=torch.int64, device=self.index.device).view(batch, 2)
        y2, x2 = y + d[b, 0], x + d[b, 1]
        keep = (y2 >= 0) & (y2 < h) & (x2 >= 0) & (x2 < w)
        index = self.index + d[b, 0] * w + d[b, 1]
        return SparseFrames(self.shape, index[keep], self.value[keep])

    def dense(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """All frames ``(T, B, *frame)`` in ``dtype`` (for tests, short sequences and first
        layers that do not take events)."""
        return self.window(0, self.steps, dtype=dtype)

    @classmethod
    def from_dense(cls, x: torch.Tensor) -> SparseFrames:
        """The non-zeros of frames ``x`` ``(T, B, ...)``."""
        flat = x.reshape(-1)
        where = torch.nonzero(flat).view(-1)
        return cls(tuple(x.shape), where, flat[where].to(torch.float32))

    @classmethod
    def from_samples(
        cls, samples: Sequence[tuple[tuple[int, ...], np.ndarray, np.ndarray]]
    ) -> SparseFrames:
        """A batch from per-sample non-zeros ``(shape (T_i, *frame), flat indices, counts)``
        (as the trainer's memory cache gives them); shorter samples end in
        empty frames.

        Raises:
            ValueError: samples with different frame shapes, or no samples.
        """
        if not samples:
            raise ValueError("SparseFrames.from_samples needs at least one sample")
        frame = tuple(samples[0][0][1:])
        for i, (shape, _, _) in enumerate(samples):
            if tuple(shape[1:]) != frame:
                raise ValueError(
                    f"sample {i} has frames of shape {tuple(shape[1:])}, sample 0 {frame}; all "
                    "samples need the same frame shape"
                )
        size = int(np.prod(frame))
        batch = len(samples)
        steps = max(int(s[0][0]) for s in samples)
        parts, values = [], []
        for b, (_, where, counts) in enumerate(samples):
            where = np.asarray(where, dtype=np.int64)
            t, f = np.divmod(where, size)
            parts.append((t * batch + b) * size + f)
            values.append(np.asarray(counts, dtype=np.float32))
        index = np.concatenate(parts)
        order = np.argsort(index, kind="stable")
        return cls(
            (steps, batch, *frame),
            torch.from_numpy(index[order]),
            torch.from_numpy(np.concatenate(values)[order]),
        )

    @classmethod
    def from_events(
        cls,
        events: Sequence[np.ndarray],
        sensor_size: tuple[int, int, int],
        bin_us: float,
        steps: int,
        start_us: float = 0.0,
    ) -> SparseFrames:
        """Bin event lists into frames of ``bin_us`` microseconds, kept sparse.

        Event ``e`` of sample ``b`` is counted in step ``floor((t - start_us) / bin_us)`` at
        ``(p, y, x)``; events outside ``[start_us, start_us + steps·bin_us)`` are dropped.

        Args:
            events: one structured array per sample with fields ``t`` (µs), ``x``, ``y``,
                ``p`` (tonic's layout), in time order.
            sensor_size: ``(W, H, P)`` as tonic gives it.
            bin_us: the length of a time bin in microseconds.
            steps: the number of time bins ``T``.
            start_us: the time of the first bin's start.

        Returns:
            The frames ``(T, B, P, H, W)``.

        Raises:
            ValueError: a sample's timestamps decrease, ``bin_us`` or ``steps`` is not
                positive, or an event lies outside the sensor.

        >>> ev = np.zeros(3, dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "<i2")])
        >>> ev["t"] = [0, 1500, 1600]; ev["x"] = [1, 0, 0]; ev["p"] = [1, 0, 0]
        >>> sf = SparseFrames.from_events([ev], (2, 1, 2), bin_us=1000, steps=2)
        >>> sf.dense()[:, 0].tolist()
        [[[[0.0, 0.0]], [[0.0, 1.0]]], [[[2.0, 0.0]], [[0.0, 0.0]]]]
        """
        if not bin_us > 0 or int(steps) <= 0:
            raise ValueError(
                f"bin_us and steps must be positive, got bin_us={bin_us}, steps={steps}"
            )
        width, height, pols = (int(v) for v in sensor_size)
        frame = (pols, height, width)
        samples = []
        for b, ev in enumerate(events):
            t = np.asarray(ev["t"], dtype=np.float64)
            if t.size > 1 and bool(np.any(np.diff(t) < 0)):
                first = int(np.flatnonzero(np.diff(t) < 0)[0]) + 1
                raise ValueError(
                    f"sample {b}: event timestamps decrease at event {first} "
                    f"({t[first - 1]:g} then {t[first]:g} µs); sort the events by time first"
                )
            x, y = np.asarray(ev["x"], np.int64), np.asarray(ev["y"], np.int64)
            p = np.asarray(ev["p"], np.int64)
            if x.size and (
                x.min() < 0
                or x.max() >= width
                or y.min() < 0
                or y.max() >= height
                or p.min() < 0
                or p.max() >= pols
            ):
                raise ValueError(
                    f"sample {b}: events outside the sensor {tuple(sensor_size)} (W, H, P)"
                )
            step = np.floor((t - start_us) / bin_us).astype(np.int64)
            keep = (step >= 0) & (step < steps)
            flat = ((step * pols + p) * height + y) * width + x
            where, counts = np.unique(flat[keep], return_counts=True)
            samples.append(((int(steps), *frame), where, counts.astype(np.float32)))
        return cls.from_samples(samples)
