"""Exceptions raised by :mod:`spikelfp.hw_export`.

Each subclasses the builtin a caller would naturally catch (``TypeError``, ``ValueError``,
``OSError``) and its message says which layer is involved and what to change.
"""

from __future__ import annotations

__all__ = [
    "ExportError",
    "UnsupportedLayerError",
    "NonFiniteParameterError",
    "ResetNotExpressibleError",
    "ProfileViolationError",
    "ExportWriteError",
    "NIRImportError",
]


class ExportError(Exception):
    """Base class of every error raised while pruning, quantising or exporting a network."""


class UnsupportedLayerError(ExportError, TypeError):
    """The network holds a layer that the export path (or the target) cannot represent."""


class NonFiniteParameterError(ExportError, ValueError):
    """A weight, bias or neuron parameter is NaN or infinite."""


class ResetNotExpressibleError(ExportError, ValueError):
    """A neuron's reset (subtract, none or delayed) has no NIR equivalent."""


class ProfileViolationError(ExportError, ValueError):
    """The network breaks one or more constraints of a hardware profile (all are listed)."""

    def __init__(self, message: str, violations=(), report=None):
        super().__init__(message)
        self.violations = list(violations)
        #: the :class:`~spikelfp.hw_export.ExportReport` of a refused export (else ``None``)
        self.report = report


class ExportWriteError(ExportError, OSError):
    """The exported file could not be written; nothing was left under the target name."""


class NIRImportError(ExportError, ValueError):
    """A NIR graph cannot be turned back into a :class:`spikelfp.Sequential`."""
