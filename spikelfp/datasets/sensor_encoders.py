r"""Encoders for analogue sensors: turn a sampled signal ``(T, C)`` into network input.

Touch, audio envelopes, IMUs: a low-dimensional signal sampled at a fixed rate, ``T`` steps of
``C`` channels. Each encoder is a small frozen dataclass (hashable, comparable, like tonic's
transforms and :mod:`spikelfp.datasets.encoders`) called as ``encoder(signal)`` on a numpy
array or tensor ``(T, C)`` (a 1-D signal is one channel); the result is a float32 tensor,
time first. Chain them with :class:`SensorPipeline`. tonic is not needed.

* :class:`SigmaDelta`: threshold-crossing (send-on-delta) events, ON and OFF per channel or
  OR-ed into one channel per sensor (as the NIR paper's Braille task);
* :class:`Resample`: sum (events) or average (analogue values) over bins of a given width;
* :class:`SensorCurrent`: the scaled signal itself as an input current (direct input).

>>> x = torch.tensor([[0.0], [0.4], [1.2], [2.5], [2.5], [1.0]])
>>> SigmaDelta(threshold=1.0)(x)[:, 0].tolist()          # ON events of channel 0
[0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
>>> SigmaDelta(threshold=1.0)(x)[:, 1].tolist()          # OFF events of channel 0
[0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
>>> SensorPipeline((SigmaDelta(1.0, merge=True, binary=True), Resample(2)))(x)[:, 0].tolist()
[0.0, 2.0, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["SENSOR_ENCODERS", "Resample", "SensorCurrent", "SensorPipeline", "SigmaDelta"]


def _number(value: Any, field: str, name: str, *, positive: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (positive and value <= 0):
        bound = "> 0" if positive else "finite"
        raise ValueError(f"{name}: {field} must be a number {bound}, got {value!r}.")
    return float(value)


def _signal(x: Any, name: str) -> np.ndarray:
    """``x`` as a float64 array ``(T, C)``; one clear error for anything else."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise ValueError(
            f"{name} expects a signal (T, C) with T >= 1 time steps, got shape {tuple(arr.shape)}."
        )
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} expects real numbers, got dtype {arr.dtype}.")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        t, c = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(
            f"{name}: the signal has a non-finite value at step {t}, channel {c}; crop it to its "
            "valid length (or fill the gaps) before encoding."
        )
    return arr


@dataclass(frozen=True)
class SigmaDelta:
    r"""Sigma-delta (send-on-delta) events: one event each time a channel has moved by
    ``threshold`` from the level of its last event.

    Per channel, with reference :math:`r_0 = x_0` and threshold :math:`\theta`:

    .. math::

        n_t = \operatorname{trunc}\big((x_t - r_{t-1}) / \theta\big), \qquad
        r_t = r_{t-1} + \theta\, n_t,

    ``ON_t = max(n_t, 0)``, ``OFF_t = max(-n_t, 0)`` (event counts; a jump of several
    thresholds in one step gives several events). The reconstruction :math:`r_t` stays within
    :math:`\theta` of the signal: :math:`|x_t - r_t| < \theta`.

    Args:
        threshold: :math:`\theta` (> 0), in the signal's units.
        merge: ``False``: ``2C`` channels, the ON events of all channels then the OFF events;
            ``True``: ``C`` channels, the ON plus the OFF events of each channel (polarity
            dropped: the unipolar OR of the NIR paper's Braille task, there with ``binary``).
        binary: clip the counts to ``1`` (at most one event per channel and step), as the NIR
            paper did; the trainer's ``input_clamp=1`` does the same.

    Returns (when called on ``(T, C)``): float32 ``(T, 2C)`` or ``(T, C)``; step 0 has no
    events.

    >>> x = torch.tensor([0.0, 3.0, 0.5])
    >>> SigmaDelta(threshold=1.0)(x).tolist()               # 3 ON at once, then 2 OFF
    [[0.0, 0.0], [3.0, 0.0], [0.0, 2.0]]
    >>> SigmaDelta(threshold=1.0, merge=True)(x).tolist()
    [[0.0], [3.0], [2.0]]
    >>> SigmaDelta(threshold=1.0, merge=True, binary=True)(x).tolist()
    [[0.0], [1.0], [1.0]]
    """

    threshold: float = 1.0
    merge: bool = False
    binary: bool = False

    def __post_init__(self) -> None:
        _number(self.threshold, "threshold", "SigmaDelta")
        for name in ("merge", "binary"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"SigmaDelta: {name} must be True or False, got {getattr(self, name)!r}."
                )

    def events(self, signal: Any) -> tuple[np.ndarray, np.ndarray]:
        """ON and OFF event counts ``(T, C)`` each (int64)."""
        x = _signal(signal, "SigmaDelta")
        theta = float(self.threshold)
        ref = x[0].copy()
        n = np.zeros(x.shape, dtype=np.int64)
        for t in range(1, x.shape[0]):
            # tiny tolerance: a move of exactly k thresholds counts k events despite rounding
            k = np.trunc((x[t] - ref) / theta + np.sign(x[t] - ref) * 1e-9)
            n[t] = k.astype(np.int64)
            ref = ref + theta * k
        return np.maximum(n, 0), np.maximum(-n, 0)

    def __call__(self, signal: Any) -> torch.Tensor:
        on, off = self.events(signal)
        out = on + off if self.merge else np.concatenate([on, off], axis=1)
        if self.binary:
            out = np.minimum(out, 1)
        return torch.from_numpy(out.astype(np.float32))


_REDUCE = ("sum", "mean")


@dataclass(frozen=True)
class Resample:
    """Bins of ``bin_width`` (in the units of ``sample_period``): step ``t`` (at time
    ``t * sample_period``) goes to bin ``floor(t * sample_period / bin_width)``.

    ``reduce="sum"`` adds the steps of a bin (event counts: nothing is lost),
    ``"mean"`` averages them (analogue values). ``T`` steps become
    ``ceil(T * sample_period / bin_width)`` bins (the last one may hold fewer steps).
    With ``bin_width < sample_period`` some bins receive no step: they are 0 (both reductions).

    Args:
        bin_width: bin duration (> 0), e.g. ``5`` (ms).
        sample_period: duration of one input step (> 0); ``1`` measures ``bin_width`` in steps.
        reduce: ``"sum"`` or ``"mean"``.

    >>> Resample(bin_width=2)(torch.tensor([[1.0], [2.0], [3.0]]))[:, 0].tolist()
    [3.0, 3.0]
    >>> Resample(10.0, sample_period=5.0, reduce="mean")(torch.arange(4.0))[:, 0].tolist()
    [0.5, 2.5]
    """

    bin_width: float = 1.0
    sample_period: float = 1.0
    reduce: str = "sum"

    def __post_init__(self) -> None:
        _number(self.bin_width, "bin_width", "Resample")
        _number(self.sample_period, "sample_period", "Resample")
        if self.reduce not in _REDUCE:
            raise ValueError(
                f"Resample: reduce must be one of {', '.join(_REDUCE)}, got {self.reduce!r}."
            )

    def n_bins(self, steps: int) -> int:
        """How many bins ``steps`` input steps give."""
        ratio = float(self.sample_period) / float(self.bin_width)
        return max(1, math.ceil(round(steps * ratio, 9)))

    def __call__(self, signal: Any) -> torch.Tensor:
        x = _signal(signal, "Resample")
        steps = x.shape[0]
        ratio = float(self.sample_period) / float(self.bin_width)
        index = np.floor(np.round(np.arange(steps) * ratio, 9)).astype(np.int64)
        out = np.zeros((self.n_bins(steps), x.shape[1]), dtype=np.float64)
        np.add.at(out, index, x)
        if self.reduce == "mean":
            counts = np.bincount(index, minlength=out.shape[0]).astype(np.float64)
            out = out / np.maximum(counts, 1.0)[:, None]
        return torch.from_numpy(out.astype(np.float32))


@dataclass(frozen=True)
class SensorCurrent:
    """Direct input: the signal itself as an input current, ``out[t] = scale * (x[t] - offset)``.

    No spikes: the first layer integrates the analogue values. For the Braille taxels
    (``255`` at rest, lower under pressure) ``SensorCurrent(scale=-1/255, offset=255)`` gives
    pressure in ``[0, 1]``.

    >>> SensorCurrent(scale=-0.5, offset=4.0)(torch.tensor([[4.0, 2.0]])).tolist()
    [[-0.0, 1.0]]
    """

    scale: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        _number(self.scale, "scale", "SensorCurrent", positive=False)
        _number(self.offset, "offset", "SensorCurrent", positive=False)

    def __call__(self, signal: Any) -> torch.Tensor:
        x = _signal(signal, "SensorCurrent")
        return torch.from_numpy(((x - self.offset) * self.scale).astype(np.float32))


@dataclass(frozen=True)
class SensorPipeline:
    """Encoders applied in order (``tonic.transforms.Compose`` for signals).

    >>> SensorPipeline((SensorCurrent(2.0), Resample(2, reduce="mean")))([[1.0], [3.0]]).tolist()
    [[4.0]]
    """

    steps: tuple[Callable[[Any], torch.Tensor], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.steps, tuple):
            object.__setattr__(self, "steps", tuple(self.steps))
        for step in self.steps:
            if not callable(step):
                raise ValueError(f"SensorPipeline: {step!r} is not callable.")

    def __call__(self, signal: Any) -> torch.Tensor:
        out = signal
        for step in self.steps:
            out = step(out)
        if not isinstance(out, torch.Tensor):
            out = torch.as_tensor(np.asarray(out, dtype=np.float32))
        return out.to(torch.float32)


#: The sensor encoders by name (``Braille(encoding=...)``, ``--encoding`` for sensor datasets).
SENSOR_ENCODERS: dict[str, type] = {
    "sigma-delta": SigmaDelta,
    "current": SensorCurrent,
}


def as_pipeline(steps: Callable[[Any], torch.Tensor] | Sequence[Any] | None) -> SensorPipeline:
    """One encoder, a sequence of them, or ``None`` (no encoding) as a :class:`SensorPipeline`."""
    if steps is None:
        return SensorPipeline(())
    if isinstance(steps, SensorPipeline):
        return steps
    if callable(steps):
        return SensorPipeline((steps,))
    return SensorPipeline(tuple(steps))
