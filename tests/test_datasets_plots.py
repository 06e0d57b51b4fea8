"""Figures and GIF animations of event recordings (headless, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spikelfp.datasets import images_to_events, plot_frames, plot_raster, save_gif

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def events() -> np.ndarray:
    image = np.zeros((1, 8, 8), dtype=np.uint8)
    image[0, 1:7, 3:5] = 255
    return images_to_events(image, seed=0)[0]


@pytest.fixture(scope="module")
def frames(events: np.ndarray) -> torch.Tensor:
    out = torch.zeros(6, 2, 34, 34)
    bins = np.minimum(events["t"] * 6 // 300_001, 5)
    np.add.at(out.numpy(), (bins, events["p"], events["y"], events["x"]), 1)
    return out


def test_raster_of_events(events: np.ndarray) -> None:
    fig = plot_raster(events, title="one recording")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time (ms)"
    n_points = sum(len(c.get_offsets()) for c in ax.collections)
    assert n_points == len(events)


def test_raster_of_frames_and_thinning(frames: torch.Tensor) -> None:
    fig = plot_raster((frames, 3), max_points=100)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time bin"
    assert sum(len(c.get_offsets()) for c in ax.collections) == 100


def test_frame_grid(frames: torch.Tensor, tmp_path: Path) -> None:
    fig = plot_frames(frames, max_frames=4, ncols=2, title="digit")
    assert len(fig.axes) == 4
    fig.savefig(tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 0


def test_bad_frame_shape_is_explained() -> None:
    with pytest.raises(ValueError, match=r"frames\[:, i\]"):
        plot_frames(torch.zeros(3, 4, 2, 5, 5))


def test_gif_has_one_image_per_time_bin(frames: torch.Tensor, tmp_path: Path) -> None:
    path = save_gif((frames, 1), tmp_path / "out" / "sample.gif", fps=5)
    assert path.read_bytes()[:4] == b"GIF8"
    with Image.open(path) as gif:
        assert gif.n_frames == frames.shape[0]
