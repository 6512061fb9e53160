"""Small observation stores with a moving-blob rain field, built through Store.create/append."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nowcast_cli import encoding
from nowcast_cli.grid import Grid
from nowcast_cli.store import Store

ZR = (200.0, 1.6)


def blob_frames(
    times: np.ndarray, size: int, seed: int = 0, n_blobs: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (k, size, size) and valid masks of Gaussian rain cells drifting across a grid.

    Rain rates up to ~60 mm/h (so every B- weight class occurs), encoded with Z = 200 R^1.6;
    the corners outside the inscribed circle are not valid (a radar's range).
    """
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, size, (n_blobs, 2))
    vel = rng.uniform(-0.6, 0.6, (n_blobs, 2)) * size / 60  # cells per 5 minutes
    width = rng.uniform(0.06, 0.15, n_blobs) * size
    peak = rng.uniform(5.0, 60.0, n_blobs)
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    steps = (np.asarray(times) - times[0]) / 300.0
    rate = np.zeros((len(times), size, size))
    for b in range(n_blobs):
        cy = (pos[b, 0] + vel[b, 0] * steps) % size
        cx = (pos[b, 1] + vel[b, 1] * steps) % size
        d2 = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2
        rate += peak[b] * np.exp(-d2 / (2 * width[b] ** 2))
    rate[rate < 0.1] = 0.0
    pixels = encoding.dbz_to_pixel(encoding.rate_to_dbz(rate, *ZR))
    r = (size - 1) / 2
    inside = (yy - r) ** 2 + (xx - r) ** 2 <= (r + 0.5) ** 2
    valid = np.broadcast_to(inside, pixels.shape).copy()
    pixels[~valid] = 0
    return pixels, valid


def make_store(
    path: Path,
    times: Sequence[int] | np.ndarray,
    size: int = 16,
    coarse: int | None = None,
    seed: int = 0,
    interval: int = 300,
    attrs: dict | None = None,
) -> Path:
    """Create a store at `path` holding frames at `times` (s UTC) and a `coarse` copy.

    The coarse copy (default: same size) is the full frame block-averaged in pixels — fine
    for tests of training, which only read it.
    """
    coarse = coarse or size
    t = np.asarray(times, dtype=np.int64)
    frames, valid = blob_frames(t, size, seed)
    k = size // coarse
    cf = frames.reshape(len(t), coarse, k, coarse, k).mean((2, 4)).round().astype(np.uint8)
    cv = valid.reshape(len(t), coarse, k, coarse, k).mean((2, 4)) >= 0.5
    grid = Grid(f"synthetic {size}x{size}", size, size, 1000.0, "", 0.0, 0.0)
    base = {
        "source": "synthetic",
        "product": "blobs",
        "interval_seconds": interval,
        "zr": {"a": ZR[0], "b": ZR[1]},
    }
    with Store.create(path, attrs={**base, **(attrs or {})}, grid=grid, sizes=(coarse,)) as s:
        for i in range(0, len(t), 512):
            sl = slice(i, i + 512)
            s.append(t[sl], frames[sl], valid[sl], {coarse: (cf[sl], cv[sl])})
    return path


def regular_times(start: str, n: int, interval: int = 300) -> np.ndarray:
    """`n` times every `interval` seconds from ISO `start` (UTC)."""
    t0 = int(np.datetime64(start, "s").astype(np.int64))
    return t0 + interval * np.arange(n, dtype=np.int64)
