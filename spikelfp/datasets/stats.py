"""Per-recording statistics: event count, duration and event rate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EventStats:
    """Statistics of one recording.

    Attributes:
        n_events: number of events.
        n_on: number of ON events (polarity 1); ``n_off = n_events - n_on``.
        duration_us: last minus first timestamp, in microseconds (0 for fewer than 2 events).
        rate_hz: events per second over that duration (0 when the duration is 0).
    """

    n_events: int
    n_on: int
    duration_us: int

    @property
    def n_off(self) -> int:
        return self.n_events - self.n_on

    @property
    def rate_hz(self) -> float:
        return self.n_events / (self.duration_us * 1e-6) if self.duration_us > 0 else 0.0


def event_stats(events: np.ndarray) -> EventStats:
    """Statistics of a structured event array (fields ``t`` and ``p``).

    >>> from spikelfp.datasets import EVENT_DTYPE
    >>> ev = np.zeros(4, dtype=EVENT_DTYPE)
    >>> ev["t"] = [0, 1000, 2000, 4000]; ev["p"] = [1, 0, 1, 1]
    >>> s = event_stats(ev)
    >>> (s.n_events, s.n_on, s.n_off, s.duration_us, s.rate_hz)
    (4, 3, 1, 4000, 1000.0)
    """
    n = int(len(events))
    if n == 0:
        return EventStats(0, 0, 0)
    t = events["t"]
    n_on = int(np.count_nonzero(events["p"]))
    duration = int(t.max()) - int(t.min()) if n > 1 else 0
    return EventStats(n, n_on, duration)


def stats_table(stats: list[EventStats]) -> dict[str, np.ndarray]:
    """Column arrays ``n_events``, ``n_on``, ``n_off``, ``duration_us``, ``rate_hz``."""
    n_events = np.array([s.n_events for s in stats], dtype=np.int64)
    n_on = np.array([s.n_on for s in stats], dtype=np.int64)
    duration = np.array([s.duration_us for s in stats], dtype=np.int64)
    return columns_to_table(n_events, n_on, duration)


def columns_to_table(
    n_events: np.ndarray, n_on: np.ndarray, duration_us: np.ndarray
) -> dict[str, np.ndarray]:
    """Build the statistics table from its three stored columns."""
    seconds = duration_us.astype(np.float64) * 1e-6
    rate = np.divide(
        n_events.astype(np.float64), seconds, out=np.zeros(len(seconds)), where=seconds > 0
    )
    return {
        "n_events": n_events,
        "n_on": n_on,
        "n_off": n_events - n_on,
        "duration_us": duration_us,
        "rate_hz": rate,
    }
