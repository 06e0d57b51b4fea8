"""Turn still images into event-camera recordings the way N-MNIST was recorded.

The image is shown on a (noise-free) screen in front of a simulated DVS, which moves along
three straight saccades forming a triangle. Each pixel fires an ON (OFF) event whenever its
log intensity rises (falls) by a contrast threshold since its last event; background activity
adds uniformly random events. See ``docs/datasets.md`` for the model and its equations.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .nmnist_format import EVENT_DTYPE


@dataclass(frozen=True)
class SaccadeSimulation:
    """Parameters of :func:`images_to_events` (all times in microseconds).

    Attributes:
        sensor_size: sensor ``(width, height)`` in pixels.
        image_size: side of the square the image is scaled to on the sensor; default
            ``min(sensor) - ceil(amplitude_px) - 3`` (24 px on a 34x34 sensor).
        saccade_us: duration of each of the three saccades.
        amplitude_px: size of the triangular path; its vertices are ``(0, 0)``,
            ``(A/2, A)`` and ``(A, 0)`` as in N-MNIST (``A = 7``).
        contrast_threshold: mean log-intensity change ``C`` that triggers an event.
        threshold_mismatch: relative spread (std) of each pixel's thresholds around ``C``.
        black_level: screen luminance of a black pixel, relative to white (keeps ``log``
            finite and sets the contrast of an edge: ``log((1 + b) / b)``).
        noise_rate_hz: background-activity rate per pixel (both polarities together).
        dt_us: simulation step; event times are interpolated within each step.
        subpixel: positions are resolved to ``1 / subpixel`` of a pixel.
    """

    sensor_size: tuple[int, int] = (34, 34)
    image_size: int | None = None
    saccade_us: int = 100_000
    amplitude_px: float = 7.0
    contrast_threshold: float = 0.45
    threshold_mismatch: float = 0.05
    black_level: float = 0.1
    noise_rate_hz: float = 0.5
    dt_us: int = 1_000
    subpixel: int = 8

    def __post_init__(self) -> None:
        width, height = self.sensor_size
        if min(width, height) < 2:
            raise ValueError(f"sensor_size must be at least 2x2, got {self.sensor_size}.")
        if self.saccade_us % self.dt_us or self.saccade_us <= 0 or self.dt_us <= 0:
            raise ValueError(
                f"saccade_us ({self.saccade_us}) must be a positive multiple of dt_us "
                f"({self.dt_us})."
            )
        if self.contrast_threshold <= 0 or self.black_level <= 0 or self.noise_rate_hz < 0:
            raise ValueError(
                "contrast_threshold and black_level must be > 0 and noise_rate_hz >= 0."
            )
        if not 0 <= self.threshold_mismatch < 0.5:
            raise ValueError("threshold_mismatch must be in [0, 0.5).")
        if self.amplitude_px < 0 or self.subpixel < 1:
            raise ValueError("amplitude_px must be >= 0 and subpixel >= 1.")
        if self.display_size < 2:
            raise ValueError(
                f"image_size {self.display_size} does not fit: the sensor {self.sensor_size} "
                f"must hold the image plus the {self.amplitude_px} px saccade path."
            )

    @property
    def display_size(self) -> int:
        if self.image_size is not None:
            return int(self.image_size)
        return min(self.sensor_size) - math.ceil(self.amplitude_px) - 3

    @property
    def duration_us(self) -> int:
        return 3 * self.saccade_us

    def path(self) -> np.ndarray:
        """Displacement ``(dx, dy)`` in pixels at every step, shape ``(n_steps + 1, 2)``."""
        a = float(self.amplitude_px)
        vertices = np.array([[0.0, 0.0], [a / 2, a], [a, 0.0], [0.0, 0.0]])
        steps = self.saccade_us // self.dt_us
        k = np.arange(3 * steps + 1)
        seg = np.minimum(k // steps, 2)
        frac = (k - seg * steps) / steps
        return vertices[seg] + frac[:, None] * (vertices[seg + 1] - vertices[seg])


def _bilinear_weights(coords: np.ndarray, n: int) -> np.ndarray:
    """Matrix ``(len(coords), n)`` interpolating ``n`` samples (centres at 0..n-1, zero outside)
    at the given continuous coordinates."""
    lo = np.floor(coords).astype(np.int64)
    frac = coords - lo
    weights = np.zeros((len(coords), n), dtype=np.float64)
    rows = np.arange(len(coords))
    for offset, w in ((0, 1.0 - frac), (1, frac)):
        idx = lo + offset
        ok = (idx >= 0) & (idx < n)
        weights[rows[ok], idx[ok]] = w[ok]
    return weights


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(
            f"images must be a uint8 array (N, H, W); got shape {images.shape} "
            "(for one image use images[None])."
        )
    if images.dtype != np.uint8:
        raise ValueError(
            f"images must be uint8 (0 = black, 255 = white); got {images.dtype}. Scale and "
            "convert them, e.g. (x / x.max() * 255).round().astype(np.uint8)."
        )
    return images


def images_to_events(
    images: np.ndarray,
    sensor_size: tuple[int, int] = (34, 34),
    seed: int = 0,
    **params: float | int | None,
) -> list[np.ndarray]:
    """Simulate an N-MNIST-style recording of each image.

    Args:
        images: uint8 array ``(N, H, W)``, 0 black and 255 white.
        sensor_size: sensor ``(width, height)``.
        seed: seeds the sensor (threshold mismatch, shared by all recordings) and each
            recording's noise; the output is a deterministic function of the images, their
            order and the parameters.
        **params: any field of :class:`SaccadeSimulation` (e.g. ``noise_rate_hz=0``).

    Returns:
        One structured array per image, dtype :data:`EVENT_DTYPE` (fields ``x, y, t, p`` like
        tonic; ``t`` in µs from 0 to ``3 * saccade_us``; ``p`` 1 = ON), sorted by time.

    >>> img = np.zeros((1, 8, 8), dtype=np.uint8); img[0, 2:6, 3:5] = 255
    >>> ev = images_to_events(img, seed=0)[0]
    >>> ev.dtype.names, bool(np.all(np.diff(ev["t"]) >= 0)), int(ev["x"].max()) < 34
    (('x', 'y', 't', 'p'), True, True)
    >>> bool(np.array_equal(ev, images_to_events(img, seed=0)[0]))
    True
    """
    images = _check_images(images)
    sim = SaccadeSimulation(sensor_size=tuple(int(v) for v in sensor_size), **params)
    return _simulate(images, sim, int(seed))


def simulation_params(**params: float | int | None) -> dict[str, object]:
    """All simulation parameters (defaults filled in), as JSON-able data."""
    data = asdict(SaccadeSimulation(**params))
    data["sensor_size"] = list(data["sensor_size"])
    return data


def _simulate(images: np.ndarray, sim: SaccadeSimulation, seed: int) -> list[np.ndarray]:
    n_img, img_h, img_w = images.shape
    width, height = sim.sensor_size
    res = sim.subpixel
    pad = math.ceil(sim.amplitude_px)
    size = sim.display_size
    path = np.rint(sim.path() * res).astype(np.int64)  # displacements in 1/res pixel
    dt = sim.dt_us

    # Fine grid: sample j along x sits at sensor coordinate j / res - pad + 0.5 (pixel centres),
    # so pixel px displaced by q / res pixels reads sample (px + pad) * res - q.
    origin_x = (width - size - sim.amplitude_px) / 2
    origin_y = (height - size - sim.amplitude_px) / 2
    fine_w = (width - 1 + pad) * res + 1
    fine_h = (height - 1 + pad) * res + 1
    coords_x = np.arange(fine_w) / res - pad + 0.5 - origin_x  # within the displayed image
    coords_y = np.arange(fine_h) / res - pad + 0.5 - origin_y
    wx = _bilinear_weights(coords_x * img_w / size - 0.5, img_w).astype(np.float32)
    wy = _bilinear_weights(coords_y * img_h / size - 0.5, img_h).astype(np.float32)

    sensor_rng = np.random.default_rng([seed, 0])
    c = sim.contrast_threshold
    spread = sim.threshold_mismatch
    c_on, c_off = (
        np.clip(c * (1 + spread * sensor_rng.standard_normal((height, width))), 0.5 * c, 1.5 * c)
        .astype(np.float32)
        .reshape(-1)
        for _ in range(2)
    )
    n_pix = height * width
    duration = sim.duration_us
    out: list[np.ndarray] = []
    batch = max(1, min(256, (2**26) // (fine_w * fine_h * 4)))
    for start in range(0, n_img, batch):
        imgs = images[start : start + batch].astype(np.float32) / np.float32(255.0)
        b = len(imgs)
        # Bilinear upsampling, one image at a time so that a recording does not depend on which
        # other images share its batch; log intensity; stored split by sub-pixel phase,
        # (res, res, b, coarse_h, coarse_w), so that the view at any displacement is a block of
        # contiguous rows.
        coarse_h, coarse_w = -(-fine_h // res), -(-fine_w // res)
        phased = np.empty((res, res, b, coarse_h, coarse_w), dtype=np.float32)
        padded = np.full((coarse_h * res, coarse_w * res), sim.black_level, dtype=np.float32)
        for i in range(b):
            padded[:fine_h, :fine_w] = wy @ (imgs[i] @ wx.T)
            padded[:fine_h, :fine_w] += np.float32(sim.black_level)
            phases = np.log(padded).reshape(coarse_h, res, coarse_w, res).transpose(1, 3, 0, 2)
            phased[:, :, i] = phases

        def view(q: np.ndarray, phased: np.ndarray = phased) -> np.ndarray:
            """Log intensity seen by every pixel at displacement q, shape (b, H, W)."""
            my, ry = divmod(pad * res - int(q[1]), res)
            mx, rx = divmod(pad * res - int(q[0]), res)
            return phased[ry, rx, :, my : my + height, mx : mx + width]

        # State arrays are flat over (b, H, W): index = i * n_pix + y * W + x.
        rngs = [np.random.default_rng([seed, 1, start + i]) for i in range(b)]
        thr_on, thr_off = np.tile(c_on, b), np.tile(c_off, b)
        c_min = min(float(c_on.min()), float(c_off.min()))
        phase = np.concatenate([r.uniform(-0.5, 0.5, n_pix) for r in rngs]).astype(np.float32)
        prev = view(path[0])
        # Each pixel starts at a random phase, less than half a threshold from either crossing.
        ref = prev.reshape(-1) + phase * np.minimum(thr_on, thr_off)
        parts: list[tuple[np.ndarray, ...]] = []
        diff = np.empty(b * n_pix, dtype=np.float32)  # work buffers, reused at every step
        magnitude = np.empty_like(diff)
        active = np.empty(diff.shape, dtype=bool)
        for k in range(1, len(path)):
            if np.array_equal(path[k], path[k - 1]):
                continue
            cur = view(path[k])
            np.subtract(cur, ref.reshape(b, height, width), out=diff.reshape(b, height, width))
            np.abs(diff, out=magnitude)
            np.greater_equal(magnitude, c_min, out=active)
            cand = np.flatnonzero(active)
            if cand.size == 0:
                prev = cur
                continue
            d_cand = diff[cand]
            for polarity, thr, sign in ((1, thr_on, 1.0), (0, thr_off, -1.0)):
                keep = sign * d_cand >= thr[cand]
                hit = cand[keep]
                if hit.size == 0:
                    continue
                d_hit = d_cand[keep]
                ref_hit = ref[hit]
                step_thr = thr[hit]
                i, pix = np.divmod(hit, n_pix)
                now = d_hit + ref_hit
                before = prev[i, pix // width, pix % width]
                n_ev = np.floor(sign * d_hit / step_thr).astype(np.int64)
                rep = np.repeat(np.arange(hit.size), n_ev)
                j = np.arange(rep.size) - np.repeat(np.cumsum(n_ev) - n_ev, n_ev) + 1
                level = ref_hit[rep] + sign * j * step_thr[rep]
                # Crossing time: linear interpolation of the log intensity over the step.
                rise = now[rep] - before[rep]
                frac = np.divide(level - before[rep], rise, out=np.ones_like(rise), where=rise != 0)
                t = (k - 1) * dt + np.floor(np.clip(frac, 0, 1) * dt).astype(np.int64)
                ref[hit] = ref_hit + sign * n_ev * step_thr
                parts.append((i[rep], pix[rep], t, np.full(rep.size, polarity)))
            prev = cur
        # Background activity: Poisson count, uniform in space, time and polarity.
        for i, r in enumerate(rngs):
            n_noise = r.poisson(sim.noise_rate_hz * n_pix * duration * 1e-6)
            parts.append(
                (
                    np.full(n_noise, i),
                    r.integers(0, n_pix, n_noise),
                    r.integers(0, duration + 1, n_noise),
                    r.integers(0, 2, n_noise),
                )
            )
        img_idx, pix, t, p = (np.concatenate([part[f] for part in parts]) for f in range(4))
        x, y = pix % width, pix // width
        if b * (duration + 1) * n_pix * 2 < 2**62:  # one int64 key sorts much faster
            key = ((img_idx * (duration + 1) + t) * height + y) * (width * 2) + x * 2 + p
            order = np.argsort(key, kind="stable")
        else:
            order = np.lexsort((p, x, y, t, img_idx))
        events = np.empty(order.size, dtype=EVENT_DTYPE)
        events["x"], events["y"], events["t"], events["p"] = x[order], y[order], t[order], p[order]
        bounds = np.searchsorted(img_idx[order], np.arange(b + 1))
        out.extend(events[bounds[i] : bounds[i + 1]] for i in range(b))
    return out
