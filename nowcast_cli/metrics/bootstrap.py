"""Block bootstrap over issue times: honest 95% intervals for every score.

Forecasts issued close together share weather, so samples are not independent: the bootstrap
resamples whole blocks of issue times (one UTC day by default) with replacement, as many blocks
as there are, and recomputes every score from the resampled accumulators (tables pooled, then
scored; per-frame means re-averaged). The interval is the 2.5th–97.5th percentile of the
replicates (replicates where a score is undefined are left out). For two runs verified on the
same issue times, the same resampled blocks give paired differences, whose interval says
whether one run beats the other beyond sampling noise.

Resampling is reproducible: with ``rng = numpy.random.default_rng(seed)``, replicate r draws
the blocks ``rng.integers(0, n_blocks, size=(n_boot, n_blocks))[r]``.
"""

from __future__ import annotations

import numpy as np

LEVEL = 0.95


def block_ids(issue_times: np.ndarray, block_hours: float = 24.0) -> tuple[np.ndarray, int]:
    """Block of each issue time: consecutive ``block_hours`` windows from the epoch (UTC days).

    Returns
    -------
    ids : np.ndarray
        int64 (S,), 0 .. n_blocks − 1 in time order.
    n_blocks : int
        Number of blocks that hold at least one issue time.
    """
    if not block_hours > 0:
        raise ValueError(f"block_hours must be positive, got {block_hours}")
    raw = np.floor(np.asarray(issue_times, dtype=np.float64) / (block_hours * 3600.0))
    uniq, ids = np.unique(raw, return_inverse=True)
    return ids.astype(np.int64).reshape(-1), len(uniq)


def resample_weights(n_blocks: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """How often each block is drawn in each replicate: int64 (n_boot, n_blocks)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_blocks, size=(n_boot, n_blocks))
    w = np.zeros((n_boot, n_blocks), np.int64)
    np.add.at(w, (np.arange(n_boot)[:, None], draws), 1)
    return w


def resample(per_block: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Replicate totals: Σ_b weights[r, b] · per_block[b, ...] → (n_boot, ...)."""
    flat = per_block.reshape(per_block.shape[0], -1)
    out: np.ndarray = weights.astype(per_block.dtype) @ flat
    return out.reshape(weights.shape[0], *per_block.shape[1:])


def interval(replicates: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over the first axis, ignoring undefined (NaN) replicates."""
    r = np.asarray(replicates, dtype=np.float64)
    q = 100.0 * (1.0 - level) / 2.0
    lo = np.full(r.shape[1:], np.nan)
    hi = np.full(r.shape[1:], np.nan)
    ok = np.isfinite(r).any(axis=0)
    if np.any(ok):
        sel = r[:, ok]
        lo[ok] = np.nanpercentile(sel, q, axis=0)
        hi[ok] = np.nanpercentile(sel, 100.0 - q, axis=0)
    return lo, hi
