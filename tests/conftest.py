"""Shared test configuration: real data and golden files come from environment variables."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def golden_path() -> Path:
    path = os.environ.get("SPIKELFP_GOLDEN")
    if not path or not Path(path).is_file():
        pytest.skip(
            "lfprop golden file not available: set SPIKELFP_GOLDEN to "
            "lfprop-1.0.0-lif-golden.npz (.ci/run sets it from ../shared/lfp_golden)"
        )
    return Path(path)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = os.environ.get("SPIKELFP_DATA")
    if not path or not Path(path).is_dir():
        pytest.skip(
            "real data not available: set SPIKELFP_DATA to the shared data folder "
            "(.ci/run sets it from ../shared/data)"
        )
    return Path(path)


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory) -> Path:
    """The built-in dataset, generated once per session (shared by the CLI/trainer tests)."""
    from spikelfp.datasets import make_digits_events

    root = tmp_path_factory.getbasetemp() / "digits-events"
    make_digits_events(root)  # idempotent: later calls return at once
    return root
