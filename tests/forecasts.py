"""Small observation and forecast stores for the verification tests (built with our API)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nowcast_cli.io.base import Grid
from nowcast_cli.store import ForecastStore, Store

GRID = Grid("test 32x32", 32, 32, 1000.0, "+proj=stere", 0.0, 0.0)
ZR = {"a": 256.0, "b": 1.42}
ATTRS = {"source": "test", "product": "T", "interval_seconds": 300, "zr": ZR}
DAY = 86400
T0 = 1_577_836_800  # 2020-01-01 00:00 UTC


def rain_frames(n: int, shape: tuple[int, int], seed: int) -> np.ndarray:
    """Moving Gaussian rain cells as uint8 pixels (0 outside the cells), (n, rows, cols)."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    yy, xx = np.mgrid[:rows, :cols]
    cells = [
        (rng.uniform(0, rows), rng.uniform(0, cols), rng.uniform(2, 8), rng.uniform(120, 230))
        for _ in range(4)
    ]
    vel = rng.uniform(-1.5, 1.5, (4, 2))
    out = np.zeros((n, rows, cols), np.uint8)
    for t in range(n):
        field = np.zeros(shape)
        for (cy, cx, r, peak), (vy, vx) in zip(cells, vel, strict=True):
            d2 = (yy - cy - vy * t) ** 2 + (xx - cx - vx * t) ** 2
            field = np.maximum(field, peak * np.exp(-d2 / (2 * r * r)))
        noisy = field + rng.normal(0, 4, shape)
        out[t] = np.clip(np.where(field > 60, noisy, 0), 0, 255).astype(np.uint8)
    return out


def make_observations(
    path: Path,
    *,
    days: int = 3,
    per_day: int = 16,
    seed: int = 0,
    invalid: float = 0.05,
    zr: dict[str, float] | None = None,
) -> Store:
    """A store of `days` runs of `per_day` contiguous 5-min frames, one run per day.

    The 16×16 training copy is the top-left quarter (not an average: the tests only need two
    grids with their own frames).
    """
    rng = np.random.default_rng(seed + 1)
    attrs = dict(ATTRS, zr=zr or ZR)
    store = Store.create(path, attrs=attrs, grid=GRID, sizes=(16,))
    for d in range(days):
        f = rain_frames(per_day, GRID.shape, seed + d)
        v = rng.random(f.shape) > invalid
        f = np.where(v, f, 0).astype(np.uint8)
        t = T0 + d * DAY + 300 * np.arange(per_day)
        store.append(t, f, v, {16: (f[:, :16, :16].copy(), v[:, :16, :16].copy())})
    store.close()
    return Store.open(path)


def windows(obs: Store, m: int, n: int, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Issue positions i (last observed frame) with m frames before and n after, contiguous."""
    t = obs.times
    iv = obs.interval_s
    pos = [
        i
        for i in range(m - 1, len(t))
        if i + n < len(t) and t[i + n] - t[i - m + 1] == (m + n - 1) * iv
    ]
    return np.asarray(pos, np.int64), t[pos]


def write_persistence(
    path: Path,
    obs: Store,
    *,
    m: int = 4,
    n: int = 5,
    size: int | None = None,
    reconstructions: bool = False,
    attrs: dict | None = None,
    chunk_samples: int | None = None,
    every: int = 1,
) -> ForecastStore:
    """Persistence forecasts of every window; with `reconstructions`, leads ≤ 0 repeat the
    previous observed frame (what a model's reconstruction X̂_s of X_s would be compared with)."""
    frames, _ = obs.read(0, len(obs), size)
    pos, issue = windows(obs, m, n, size)
    pos, issue = pos[::every], issue[::every]
    step = obs.interval_s // 60
    leads = np.arange(-(m - 2) if reconstructions else 1, n + 1) * step
    fs = ForecastStore.create(
        path,
        observations=obs,
        size=size,
        lead_minutes=leads,
        attrs=attrs or {"model": "persistence"},
        chunk_samples=chunk_samples,
    )
    with fs:
        for i, t in zip(pos, issue, strict=True):
            last = frames[i]
            out = np.repeat(last[None], len(leads), 0)
            if reconstructions:
                # X̂_s for s = 1 .. m-1 predicted from X_{s-1}: the previous observed frame
                out[: m - 1] = frames[i - m + 1 : i]
            fs.append([t], out[None])
    return ForecastStore.open(path)
