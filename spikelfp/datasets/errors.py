"""Exceptions raised by :mod:`spikelfp.datasets`.

Each one subclasses the builtin a caller would naturally catch (``FileNotFoundError`` or
``ValueError``), and each message names the file or folder involved and what to do about it.
"""

from __future__ import annotations


class DatasetNotFoundError(FileNotFoundError):
    """A dataset split is not on disk (and ``download=False``)."""


class DatasetLayoutError(ValueError):
    """A dataset folder exists but its layout is not the one expected."""


class CorruptRecordingError(ValueError):
    """A recording file cannot be decoded (truncated, empty or not in the expected format)."""
