"""The statistics of the FFL study, in one place: seeds are the unit, blocks of issue times the
weather.

A difference "FF − plain" of a score is measured on training runs that differ only in the
loss: for fold f (a set of test days) and seed s, d_fs = score(ff, f, s) − score(plain, f, s),
where a run's score is the mean over lead times of its per-lead score (contingency tables and
per-frame sums pooled over the fold's test issue times, as ``nowcast verify`` computes it).
The estimate is the mean of d_fs over folds and seeds. Three intervals go with it:

- **seed-level** (`t_interval`, `signs`): the seeds are the experimental unit of "does the
  loss help"; each seed's difference averaged over the folds, d_s = mean_f d_fs, is one
  observation; a Student-t interval over the seeds (n − 1 degrees of freedom) and the count
  of seeds on each side of zero. A difference is called significant only when this interval
  excludes 0.
- **block bootstrap** (`block_bootstrap`): the runs fixed, the blocks of issue times of each
  fold resampled with replacement (the same draw for every run of that fold, so the pairs stay
  paired), every run's score recomputed from its resampled tables: the uncertainty that comes
  from the weather sampled by the test days alone.
- **hierarchical bootstrap** (`hierarchical_bootstrap`): seeds resampled, then, for each drawn
  seed, the blocks of each fold: one interval for both sources.

`power` and `seeds_needed` say what this design can detect: the power of the two-sided paired
t-test for a true difference δ when the per-seed differences scatter with standard deviation σ.
The Student and noncentral-t distributions are computed here by quadrature (no SciPy at run
time); the tests check them against ``scipy.stats``.

`run_blocks` extracts a run's per-block sufficient statistics from its forecast store (the
bootstraps' input); run.py checks them against ``nowcast verify``'s own scores.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nowcast_cli import encoding
from nowcast_cli.metrics import bootstrap as boot
from nowcast_cli.metrics import categorical, continuous
from nowcast_cli.metrics.categorical import Contingency
from nowcast_cli.metrics.continuous import Continuous
from nowcast_cli.store import ForecastStore, Store

LEVEL = 0.95
#: scores with one value per threshold, and scores with one value per lead
CATEGORICAL = ("csi", "hss", "pod", "far", "bias")
CONTINUOUS = ("mse", "mae", "b_mse", "b_mae", "ssim")
_QUAD = 40001  # quadrature points of the chi-distribution integral


# -- Student and noncentral t --------------------------------------------------------------------
def _normal_cdf(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = torch.special.ndtr(torch.from_numpy(np.asarray(x, np.float64))).numpy()
    return out


@functools.lru_cache(maxsize=64)
def _chi_nodes(df: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes s and weights of ∫ g(s) ds, g the density of sqrt(χ²_df / df) (Simpson's rule)."""
    top = 2.0 + 12.0 / math.sqrt(df)  # far beyond the mass: s^(df−1)·e^(−df·s²/2) ≈ 0
    s = np.linspace(0.0, top, _QUAD)
    power_term = np.zeros_like(s)  # (df − 1)·log s, with s^0 = 1 at s = 0
    if df != 1.0:
        power_term[1:] = (df - 1.0) * np.log(s[1:])
        power_term[0] = -np.inf if df > 1.0 else np.inf
    log_g = (
        math.log(2.0)
        + (df / 2.0) * math.log(df / 2.0)
        - math.lgamma(df / 2.0)
        + power_term
        - df * s**2 / 2.0
    )
    g = np.exp(log_g)
    g[~np.isfinite(g)] = 0.0  # df < 1: an integrable peak at 0 that the rule cannot hold
    h = s[1] - s[0]
    simpson = np.ones(_QUAD)
    simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
    return s, g * simpson * h / 3.0


def nct_cdf(x: float, df: float, nc: float = 0.0) -> float:
    """P(T ≤ x) for T = (Z + nc) / sqrt(χ²_df / df): noncentral t (Student's t when nc = 0).

    P(T ≤ x) = E_S[Φ(x·S − nc)] with S = sqrt(χ²_df / df), integrated over S's density.
    """
    if not df > 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    s, w = _chi_nodes(float(df))
    return float(np.clip(np.sum(w * _normal_cdf(x * s - nc)), 0.0, 1.0))


@functools.lru_cache(maxsize=256)
def t_quantile(q: float, df: float) -> float:
    """The q-quantile of Student's t with `df` degrees of freedom (bisection on `nct_cdf`)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must lie in (0, 1), got {q}")
    if q < 0.5:
        return -t_quantile(1.0 - q, df)
    lo, hi = 0.0, 1.0
    while nct_cdf(hi, df) < q:
        lo, hi = hi, 2.0 * hi
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if nct_cdf(mid, df) < q else (lo, mid)
    return 0.5 * (lo + hi)


# -- seed level ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeedLevel:
    """Mean of per-seed differences, its Student-t interval and which side each seed is on."""

    n: int
    mean: float
    sd: float
    low: float
    high: float
    below: int  # seeds with a difference < 0
    above: int  # > 0
    zero: int  # = 0

    @property
    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)


def t_interval(diffs: np.ndarray | list[float], level: float = LEVEL) -> SeedLevel:
    """Student-t interval of the mean of per-seed differences (undefined ones left out).

    With n seeds: mean ± t_{(1+level)/2, n−1} · sd / √n, sd with n − 1 in the denominator.
    Fewer than two defined differences give NaN bounds.
    """
    d = np.asarray(diffs, dtype=np.float64)
    d = d[np.isfinite(d)]
    n = len(d)
    below, above = int(np.sum(d < 0)), int(np.sum(d > 0))
    if n == 0:
        return SeedLevel(0, math.nan, math.nan, math.nan, math.nan, 0, 0, 0)
    mean = float(d.mean())
    if n < 2:
        return SeedLevel(n, mean, math.nan, math.nan, math.nan, below, above, n - below - above)
    sd = float(d.std(ddof=1))
    half = t_quantile((1.0 + level) / 2.0, n - 1) * sd / math.sqrt(n)
    return SeedLevel(n, mean, sd, mean - half, mean + half, below, above, n - below - above)


def power(n: int, effect: float, sd: float, level: float = LEVEL) -> float:
    """Power of the two-sided one-sample (paired) t-test with n seeds to detect `effect`.

    The per-seed differences are taken as normal with standard deviation `sd`; the test
    statistic is then noncentral t with n − 1 degrees of freedom and noncentrality
    effect·√n / sd.
    """
    if n < 2:
        return math.nan
    if sd == 0:
        return 1.0 if effect != 0 else 1.0 - level
    crit = t_quantile((1.0 + level) / 2.0, n - 1)
    nc = abs(effect) * math.sqrt(n) / sd
    return 1.0 - nct_cdf(crit, n - 1, nc) + nct_cdf(-crit, n - 1, nc)


def seeds_needed(effect: float, sd: float, target: float = 0.8, level: float = LEVEL) -> int:
    """The fewest seeds (≥ 2) whose paired t-test reaches `target` power for `effect`."""
    if effect == 0:
        raise ValueError("no number of seeds detects a zero effect")
    lo = 2
    if power(lo, effect, sd, level) >= target:
        return lo
    hi = 4
    while power(hi, effect, sd, level) < target:
        lo, hi = hi, 2 * hi
        if hi > 1_000_000:
            raise ValueError("more than a million seeds")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if power(mid, effect, sd, level) < target else (lo, mid)
    return hi


def detectable(n: int, sd: float, target: float = 0.8, level: float = LEVEL) -> float:
    """The smallest |difference| that n seeds detect with `target` power (given `sd`)."""
    if n < 2 or not sd > 0:
        return math.nan
    lo, hi = 0.0, sd
    while power(n, hi, sd, level) < target:
        lo, hi = hi, 2.0 * hi
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if power(n, mid, sd, level) < target else (lo, mid)
    return 0.5 * (lo + hi)


# -- per-block sufficient statistics -------------------------------------------------------------
@dataclass(frozen=True)
class RunBlocks:
    """One run's test forecasts, summed per block of issue times (what the bootstraps resample).

    Attributes
    ----------
    counts : np.ndarray
        int64 (blocks, leads, thresholds, 4): contingency tables TP, FN, FP, TN.
    sums, frames : np.ndarray
        float64 and int64 (blocks, leads, len(continuous.NAMES)): Σ of per-frame image scores
        and the number of frames with a defined score.
    """

    counts: np.ndarray
    sums: np.ndarray
    frames: np.ndarray

    @property
    def blocks(self) -> int:
        return int(self.counts.shape[0])

    def save(self, path: Path) -> None:
        np.savez_compressed(path, counts=self.counts, sums=self.sums, frames=self.frames)

    @classmethod
    def load(cls, path: Path) -> RunBlocks:
        with np.load(path) as z:
            return cls(z["counts"], z["sums"], z["frames"])


def run_blocks(
    forecasts: Path, thresholds: tuple[float, ...], block_hours: float, chunk: int = 64
) -> RunBlocks:
    """Per-block tables and sums of a forecast store's forecast leads (lead > 0).

    The same conventions as ``nowcast verify`` (events rain ≥ τ through the store's Z–R, only
    observed pixels, frames without an observation unscored, blocks of `block_hours` from the
    epoch; a network's output at 1/256 pixel where the store keeps it, else whole pixels), from
    the same accumulators (`nowcast_cli.metrics`).
    """
    with ForecastStore.open(forecasts) as fs, Store.open(fs.observation_path()) as obs:
        issue = fs.issue_times
        lm = fs.lead_minutes
        sel = np.nonzero(lm > 0)[0]
        raw_size = fs.observations.get("size")
        size = None if raw_size is None else int(raw_size)
        block, n_blocks = boot.block_ids(issue, block_hours)
        pixels = encoding.event_pixels(list(thresholds), *obs.zr)
        fine = fs.has_fine
        codes = encoding.event_codes(list(thresholds), *obs.zr, scale=encoding.FINE_SCALE)
        table = Contingency.init(n_blocks, len(sel), pixels, codes if fine else None)
        image = Continuous.init(n_blocks, len(sel), obs.zr)
        times = obs.times
        for lo in range(0, len(issue), chunk):
            hi = min(len(issue), lo + chunk)
            valid_time = issue[lo:hi, None] + 60 * lm[sel][None, :]
            pos = np.clip(np.searchsorted(times, valid_time), 0, len(times) - 1)
            index = np.where(times[pos] == valid_time, pos, -1)
            seen = index[index >= 0]
            if len(seen) == 0:
                continue
            first, last = int(seen.min()), int(seen.max())
            frames, valid = obs.read(first, last + 1, size)
            local = np.where(index >= 0, index - first, -1).astype(np.int64)
            fc = fs.read(lo, hi, fine=fine)[:, sel]
            table.accumulate(fc, frames, valid, local, block[lo:hi])
            image.accumulate(fc, frames, valid, local, block[lo:hi])
    return RunBlocks(table.counts, image.sums, image.frames)


def lead_scores(rb: RunBlocks, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-lead scores pooled over the blocks (with `weights` (R, blocks): per replicate).

    Categorical scores are (L, K) (or (R, L, K)); image scores (L,) (or (R, L)).
    """
    if weights is None:
        cat = categorical.scores(rb.counts.sum(axis=0))
        img = continuous.means(rb.sums.sum(axis=0), rb.frames.sum(axis=0))
    else:
        cat = categorical.scores(boot.resample(rb.counts, weights))
        img = continuous.means(boot.resample(rb.sums, weights), boot.resample(rb.frames, weights))
    out = {k: cat[k] for k in CATEGORICAL}
    out.update({k: img[k] for k in CONTINUOUS})
    return out


def lead_means(rb: RunBlocks, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Mean over leads of every score (NaN where a lead is undefined, as ``nowcast verify``)."""
    axis = 0 if weights is None else 1
    return {k: np.asarray(np.mean(v, axis=axis)) for k, v in lead_scores(rb, weights).items()}


# -- bootstraps ----------------------------------------------------------------------------------
#: folds × seeds × (A, B): the runs of one comparison, seed i of every fold in position i
Design = list[list[tuple[RunBlocks, RunBlocks]]]


def _check(design: Design) -> tuple[int, list[int]]:
    if not design or not design[0]:
        raise ValueError("no fold or no seed to compare")
    seeds = len(design[0])
    if any(len(fold) != seeds for fold in design):
        raise ValueError("every fold needs the same seeds")
    blocks = []
    for fold in design:
        nb = {rb.blocks for pair in fold for rb in pair}
        if len(nb) != 1:
            raise ValueError("the runs of one fold must share their blocks of issue times")
        blocks.append(nb.pop())
    return seeds, blocks


def estimate(design: Design) -> dict[str, np.ndarray]:
    """Mean over folds and seeds of each run pair's difference A − B (mean over leads)."""
    _check(design)
    diffs = [_diff(a, b, None) for fold in design for a, b in fold]
    return {k: np.mean([d[k] for d in diffs], axis=0) for k in diffs[0]}


def seed_differences(design: Design) -> dict[str, np.ndarray]:
    """Each seed's difference A − B averaged over the folds: {score: (seeds, ...)}."""
    seeds, _ = _check(design)
    per = [[_diff(a, b, None) for a, b in fold] for fold in design]
    return {
        k: np.stack([np.mean([per[f][s][k] for f in range(len(design))], axis=0)
                     for s in range(seeds)])
        for k in per[0][0]
    }  # fmt: skip


def _diff(a: RunBlocks, b: RunBlocks, w: np.ndarray | None) -> dict[str, np.ndarray]:
    ma, mb = lead_means(a, w), lead_means(b, w)
    return {k: ma[k] - mb[k] for k in ma}


def block_replicates(design: Design, n_boot: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Replicates of `estimate` with each fold's blocks resampled, the runs fixed.

    Draws: ``rng = np.random.default_rng(seed)``; for each fold in order, replicate r takes
    the blocks ``rng.integers(0, n_blocks_f, size=(n_boot, n_blocks_f))[r]``, the same for
    every run of that fold.
    """
    seeds, blocks = _check(design)
    rng = np.random.default_rng(seed)
    total: dict[str, np.ndarray] = {}
    for fold, nb in zip(design, blocks, strict=True):
        w = _weights(rng.integers(0, nb, size=(n_boot, nb)), nb)
        for a, b in fold:
            for k, v in _diff(a, b, w).items():
                total[k] = total.get(k, 0.0) + v
    return {k: v / (len(design) * seeds) for k, v in total.items()}


def hierarchical_replicates(design: Design, n_boot: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Replicates of `estimate` with the seeds resampled, then each drawn seed's blocks.

    Draws: ``rng = np.random.default_rng(seed)``; ``pick = rng.integers(0, n_seeds,
    size=(n_boot, n_seeds))`` (replicate r uses seeds ``pick[r]``); then for each draw position
    i in order and each fold f in order, ``rng.integers(0, n_blocks_f, size=(n_boot,
    n_blocks_f))[r]`` are the blocks of fold f for the i-th drawn seed of replicate r (both
    runs of the pair share them).
    """
    seeds, blocks = _check(design)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, seeds, size=(n_boot, seeds))
    rows = np.arange(n_boot)
    total: dict[str, np.ndarray] = {}
    for i in range(seeds):
        for fold, nb in zip(design, blocks, strict=True):
            w = _weights(rng.integers(0, nb, size=(n_boot, nb)), nb)
            # every seed's pair under this draw position's weights, then replicate r's seed
            per = [_diff(a, b, w) for a, b in fold]
            for k in per[0]:
                stacked = np.stack([p[k] for p in per])  # (seeds, R, ...)
                total[k] = total.get(k, 0.0) + stacked[pick[:, i], rows]
    return {k: v / (len(design) * seeds) for k, v in total.items()}


def _weights(draws: np.ndarray, n_blocks: int) -> np.ndarray:
    w = np.zeros((draws.shape[0], n_blocks), np.int64)
    np.add.at(w, (np.arange(draws.shape[0])[:, None], draws), 1)
    return w


def interval(replicates: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over the replicates (undefined ones left out; `nowcast verify`'s)."""
    return boot.interval(replicates, level)
