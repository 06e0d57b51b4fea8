"""Encoders: turn a static image with intensities in ``[0, 1]`` into ``T`` time steps.

Each encoder is a small frozen dataclass (like tonic's transforms) called as
``encoder(image, time_bins, generator=None)``: ``image`` is a float tensor of any shape
``(...)``, normally ``(C, H, W)``, with values in ``[0, 1]``; the result is a float32 tensor
``(T, ...)``, time first. The random encoders draw from ``generator`` when one is given and
otherwise from torch's global generator (so they are reproducible under ``torch.manual_seed``);
the deterministic ones ignore it.

>>> image = torch.tensor([[[0.0, 0.5, 1.0]]])          # (C, H, W) = (1, 1, 3)
>>> make_encoder("direct")(image, time_bins=2)[:, 0, 0].tolist()
[[0.0, 0.5, 1.0], [0.0, 0.5, 1.0]]
>>> make_encoder("latency")(image, time_bins=3)[:, 0, 0].tolist()
[[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch

__all__ = [
    "ENCODERS",
    "DirectCurrent",
    "Encoder",
    "LatencyEncoder",
    "PoissonEncoder",
    "RateEncoder",
    "make_encoder",
]


class Encoder(Protocol):
    """What :class:`~spikelfp.datasets.MNIST` expects of an encoder."""

    def __call__(
        self, image: torch.Tensor, time_bins: int, generator: torch.Generator | None = None
    ) -> torch.Tensor: ...


def _check_time_bins(time_bins: int, name: str) -> int:
    if isinstance(time_bins, bool) or not isinstance(time_bins, int) or time_bins < 1:
        raise ValueError(f"{name}: time_bins must be an integer >= 1, got {time_bins!r}.")
    return time_bins


def _check_number(value: Any, field: str, name: str, *, positive: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name}: {field} must be a finite number {bound}, got {value!r}.")
    return float(value)


def _as_float(image: torch.Tensor) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        image = torch.as_tensor(image)
    return image.to(torch.float32)


def _repeat(x: torch.Tensor, time_bins: int) -> torch.Tensor:
    return x.unsqueeze(0).expand(time_bins, *x.shape)


@dataclass(frozen=True)
class DirectCurrent:
    """The intensity itself at every step: ``out[t] = gain * x`` for ``0 <= t < T``.

    No spikes: the first layer receives the image as a constant input current (a "direct" or
    "analog" input), the usual choice for static images when accuracy matters most.
    Deterministic (``generator`` is ignored).

    >>> DirectCurrent(gain=2.0)(torch.tensor([0.25, 1.0]), time_bins=3).tolist()
    [[0.5, 2.0], [0.5, 2.0], [0.5, 2.0]]
    """

    gain: float = 1.0

    def __post_init__(self) -> None:
        _check_number(self.gain, "gain", "DirectCurrent", positive=True)

    def __call__(
        self, image: torch.Tensor, time_bins: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        _check_time_bins(time_bins, "DirectCurrent")
        return _repeat(_as_float(image) * self.gain, time_bins).contiguous()


@dataclass(frozen=True)
class RateEncoder:
    """Bernoulli rate code: at every step, independently,
    ``out[t] = 1`` with probability ``p = clamp(gain * x, 0, 1)``, else ``0``.

    ``E[out[t]] = p``, so the spike count of a pixel over ``T`` steps is binomial
    ``B(T, p)`` (snntorch's ``spikegen.rate``). Implemented as ``u < p`` with ``u`` uniform in
    ``[0, 1)`` drawn from ``generator``.

    >>> g = torch.Generator().manual_seed(0)
    >>> spikes = RateEncoder()(torch.tensor([0.0, 0.5, 1.0]), time_bins=1000, generator=g)
    >>> spikes.shape, spikes.mean(0).round(decimals=1).tolist()
    (torch.Size([1000, 3]), [0.0, 0.5, 1.0])
    """

    gain: float = 1.0

    def __post_init__(self) -> None:
        _check_number(self.gain, "gain", "RateEncoder", positive=True)

    def __call__(
        self, image: torch.Tensor, time_bins: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        _check_time_bins(time_bins, "RateEncoder")
        p = (_as_float(image) * self.gain).clamp(0.0, 1.0)
        u = torch.rand((time_bins, *p.shape), generator=generator, device=p.device)
        return (u < p).to(torch.float32)


@dataclass(frozen=True)
class PoissonEncoder:
    """Poisson counts: at every step, independently, ``out[t] ~ Poisson(max_rate_per_step * x)``.

    ``out[t]`` is a spike *count* (0, 1, 2, ...), not clamped to 1: mean and variance are both
    ``max_rate_per_step * x`` (``x`` clamped to ``>= 0``). With a small rate this approaches the
    Bernoulli code of :class:`RateEncoder`.

    >>> g = torch.Generator().manual_seed(0)
    >>> counts = PoissonEncoder(2.0)(torch.tensor([0.0, 1.0]), time_bins=2000, generator=g)
    >>> counts.mean(0).round(decimals=1).tolist(), bool(counts.max() > 1)
    ([0.0, 2.0], True)
    """

    max_rate_per_step: float = 1.0

    def __post_init__(self) -> None:
        _check_number(self.max_rate_per_step, "max_rate_per_step", "PoissonEncoder", positive=True)

    def __call__(
        self, image: torch.Tensor, time_bins: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        _check_time_bins(time_bins, "PoissonEncoder")
        rate = _as_float(image).clamp(min=0.0) * self.max_rate_per_step
        return torch.poisson(_repeat(rate, time_bins).contiguous(), generator=generator)


@dataclass(frozen=True)
class LatencyEncoder:
    """Time-to-first-spike code: one spike per pixel, earlier for brighter pixels.

    snntorch's ``spikegen.latency(..., clip=True)`` conventions. With ``x`` clamped to
    ``[0, 1]`` and ``T`` time bins, a pixel spikes once, at step ``round(t)``, where

    * ``linear=True``: ``t = tau * (1 - x)``, and ``tau=None`` means ``tau = T - 1``
      (snntorch's ``normalize=True``): ``x = 1`` spikes at step 0, ``x -> 0`` at step ``T-1``;
    * ``linear=False`` (an RC neuron charged by ``x`` reaching ``threshold``):
      ``t = tau * ln(x / (x - threshold))``, ``tau`` in steps (required); spikes that would
      come after step ``T - 1`` are dropped.

    Pixels with ``x < threshold`` never spike (and ``x == threshold`` does not either in the
    logarithmic code, whose time is infinite there). ``round`` is ``torch.round`` (halves to
    even), as in snntorch. Deterministic (``generator`` is ignored).

    >>> x = torch.tensor([1.0, 0.5, 0.2, 0.0])
    >>> LatencyEncoder()(x, time_bins=5).argmax(0).tolist()     # t = 4 * (1 - x), rounded
    [0, 2, 3, 0]
    >>> LatencyEncoder()(x, time_bins=5).sum(0).tolist()        # the dark pixel never spikes
    [1.0, 1.0, 1.0, 0.0]
    """

    tau: float | None = None
    threshold: float = 0.01
    linear: bool = True

    def __post_init__(self) -> None:
        if self.tau is not None:
            _check_number(self.tau, "tau", "LatencyEncoder", positive=True)
        elif not self.linear:
            raise ValueError(
                "LatencyEncoder: linear=False needs tau (the RC time constant, in time steps)."
            )
        thr = self.threshold
        if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not 0 < thr < 1:
            raise ValueError(f"LatencyEncoder: threshold must be in (0, 1), got {thr!r}.")
        if not isinstance(self.linear, bool):
            raise ValueError(f"LatencyEncoder: linear must be True or False, got {self.linear!r}.")

    def spike_times(self, image: torch.Tensor, time_bins: int) -> torch.Tensor:
        """The (unrounded) spike time of every pixel, ``inf`` where the pixel does not spike."""
        _check_time_bins(time_bins, "LatencyEncoder")
        x = _as_float(image).clamp(0.0, 1.0)
        thr = float(self.threshold)
        if self.linear:
            tau = float(time_bins - 1) if self.tau is None else float(self.tau)
            t = tau * (1.0 - x)
            silent = x < thr
        else:
            tau = float(self.tau)  # type: ignore[arg-type]  # checked in __post_init__
            silent = x <= thr
            safe = torch.where(silent, torch.ones_like(x), x)
            t = tau * torch.log(safe / (safe - thr))
        return torch.where(silent, torch.full_like(t, math.inf), t)

    def __call__(
        self, image: torch.Tensor, time_bins: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        t = self.spike_times(image, time_bins)
        step = torch.round(t)
        fires = step <= time_bins - 1
        index = torch.where(fires, step, torch.zeros_like(step)).to(torch.int64)
        out = torch.zeros((time_bins, *t.shape), dtype=torch.float32, device=t.device)
        out.scatter_(0, index.unsqueeze(0), fires.to(torch.float32).unsqueeze(0))
        return out


#: The encoders by name (the names the CLI and :func:`make_encoder` accept).
ENCODERS: dict[str, type] = {
    "direct": DirectCurrent,
    "rate": RateEncoder,
    "poisson": PoissonEncoder,
    "latency": LatencyEncoder,
}


def make_encoder(name: str, **kwargs: Any) -> Encoder:
    """The encoder called ``name`` (a key of :data:`ENCODERS`) built with ``kwargs``.

    >>> make_encoder("rate", gain=0.5)
    RateEncoder(gain=0.5)
    >>> make_encoder("binary")
    Traceback (most recent call last):
    ...
    ValueError: unknown encoder 'binary'; choose one of: direct, rate, poisson, latency.
    """
    cls = ENCODERS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown encoder {name!r}; choose one of: {', '.join(ENCODERS)}.")
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"encoder {name!r}: {err}") from None
