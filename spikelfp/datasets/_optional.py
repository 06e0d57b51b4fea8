"""Lazy imports of the optional dependencies of :mod:`spikelfp.datasets`.

tonic is GPL-3.0 and, like h5py, matplotlib and scikit-learn, only needed for some features, so
it is imported inside the functions that use it and never at package import time.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_INSTALL_HINT = "pip install 'spikelfp[datasets]'"


def _require(module: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise ImportError(
            f"{purpose} needs the optional package '{top}', which is not installed "
            f"({exc}). Install the dataset extras with: {_INSTALL_HINT}"
        ) from exc


def require_tonic() -> ModuleType:
    """Return the ``tonic`` module or raise an ImportError that says how to install it."""
    return _require("tonic", "Reading event-camera recordings and binning them into frames")


def require_h5py() -> ModuleType:
    """Return the ``h5py`` module or raise an ImportError that says how to install it."""
    return _require("h5py", "The HDF5 frame cache (cache_dir=...)")


def require_matplotlib() -> ModuleType:
    """Return ``matplotlib`` (figures are drawn on an Agg canvas, no display needed)."""
    return _require("matplotlib", "Plotting event recordings")


def require_sklearn_datasets() -> ModuleType:
    """Return ``sklearn.datasets`` (the bundled digits of the built-in offline dataset)."""
    return _require("sklearn.datasets", "The built-in DigitsEvents dataset")
