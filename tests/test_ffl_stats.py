"""experiments/ffl/stats.py against independent computations: SciPy's t and noncentral t,
direct resampling loops for the bootstraps, and `nowcast verify` for the per-block tables."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from nowcast_cli import verify
from tests.forecasts import make_observations, write_persistence

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("ffl_stats", REPO / "experiments/ffl/stats.py")
assert _spec is not None
assert _spec.loader is not None
st = importlib.util.module_from_spec(_spec)
sys.modules["ffl_stats"] = st
_spec.loader.exec_module(st)


@pytest.mark.parametrize("df", [1, 2, 3, 7, 23, 120])
def test_t_quantile_equals_scipy(df: int) -> None:
    for q in (0.6, 0.9, 0.975, 0.995, 0.025):
        assert st.t_quantile(q, df) == pytest.approx(sps.t.ppf(q, df), rel=1e-7, abs=1e-9)


@pytest.mark.parametrize(("df", "nc"), [(1, 0.0), (4, 0.0), (7, 1.5), (7, 3.0), (23, -2.0)])
def test_noncentral_t_cdf_equals_scipy(df: int, nc: float) -> None:
    for x in (-3.0, -0.5, 0.0, 0.7, 2.4, 5.0):
        assert st.nct_cdf(x, df, nc) == pytest.approx(sps.nct.cdf(x, df, nc), abs=1e-9)


def test_t_interval_and_signs() -> None:
    d = np.array([-0.031, -0.012, 0.004, -0.05, -0.027, -0.018, 0.0, -0.04, math.nan])
    r = st.t_interval(d)
    x = d[np.isfinite(d)]
    lo, hi = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    assert r.n == 8
    assert r.mean == pytest.approx(x.mean())
    assert r.low == pytest.approx(lo, rel=1e-9)
    assert r.high == pytest.approx(hi, rel=1e-9)
    assert (r.below, r.above, r.zero) == (6, 1, 1)
    assert r.excludes_zero
    one = st.t_interval([0.3])
    assert one.n == 1
    assert math.isnan(one.low)
    assert not one.excludes_zero


def test_power_and_seeds_needed_equal_scipy() -> None:
    def scipy_power(n: int, effect: float, sd: float) -> float:
        c = sps.t.ppf(0.975, n - 1)
        nc = effect * math.sqrt(n) / sd
        return float(1 - sps.nct.cdf(c, n - 1, nc) + sps.nct.cdf(-c, n - 1, nc))

    for n, effect, sd in [(8, 0.03, 0.04), (5, 0.01, 0.05), (30, -0.02, 0.03)]:
        assert st.power(n, effect, sd) == pytest.approx(scipy_power(n, abs(effect), sd), abs=1e-7)
    n = st.seeds_needed(0.02, 0.035)
    assert scipy_power(n, 0.02, 0.035) >= 0.8 > scipy_power(n - 1, 0.02, 0.035)
    mde = st.detectable(8, 0.035)
    assert scipy_power(8, mde, 0.035) == pytest.approx(0.8, abs=1e-6)


# -- bootstraps against direct loops ------------------------------------------------------------
def _fake_run(rng: np.random.Generator, blocks: int, leads: int = 3, shift: int = 0):
    """Random per-block tables (2 thresholds) and image sums."""
    counts = rng.integers(0, 40, size=(blocks, leads, 2, 4)) + shift
    counts[..., 3] += 1000
    frames = rng.integers(1, 5, size=(blocks, leads, 7))
    sums = rng.random((blocks, leads, 7)) * frames
    return st.RunBlocks(counts.astype(np.int64), sums, frames.astype(np.int64))


def _design(seed: int = 0, folds=(5, 4), seeds: int = 3):
    rng = np.random.default_rng(seed)
    return [[(_fake_run(rng, nb, shift=3), _fake_run(rng, nb)) for _ in range(seeds)]
            for nb in folds]  # fmt: skip


def _by_hand(run, blocks: list[int]) -> tuple[np.ndarray, float]:
    """Mean-over-leads CSI (per threshold) and MSE of the given blocks, counted by hand."""
    c = sum(run.counts[b] for b in blocks)  # (L, K, 4)
    csi = c[..., 0] / (c[..., 0] + c[..., 1] + c[..., 2])
    i = st.continuous.NAMES.index("mse")
    mse = sum(run.sums[b][:, i] for b in blocks) / sum(run.frames[b][:, i] for b in blocks)
    return csi.mean(axis=0), float(mse.mean())


def test_estimate_and_seed_differences_by_hand() -> None:
    design = _design()
    est = st.estimate(design)
    per_seed = st.seed_differences(design)
    all_blocks = [list(range(fold[0][0].blocks)) for fold in design]
    d = np.array([[_by_hand(a, all_blocks[f])[0] - _by_hand(b, all_blocks[f])[0]
                   for a, b in fold] for f, fold in enumerate(design)])  # fmt: skip
    assert np.allclose(est["csi"], d.mean(axis=(0, 1)))
    assert np.allclose(per_seed["csi"], d.mean(axis=0))


def test_block_bootstrap_equals_a_direct_loop() -> None:
    design = _design()
    reps = st.block_replicates(design, n_boot=25, seed=7)
    rng = np.random.default_rng(7)
    draws = [rng.integers(0, fold[0][0].blocks, size=(25, fold[0][0].blocks)) for fold in design]
    for r in range(25):
        csi, mse = [], []
        for f, fold in enumerate(design):
            chosen = draws[f][r].tolist()  # the same blocks for every run of the fold
            for a, b in fold:
                (ca, ma), (cb, mb) = _by_hand(a, chosen), _by_hand(b, chosen)
                csi.append(ca - cb)
                mse.append(ma - mb)
        assert np.allclose(reps["csi"][r], np.mean(csi, axis=0))
        assert reps["mse"][r] == pytest.approx(np.mean(mse))


def test_hierarchical_bootstrap_equals_a_direct_loop() -> None:
    design = _design(folds=(5, 3, 4), seeds=4)
    reps = st.hierarchical_replicates(design, n_boot=20, seed=3)
    rng = np.random.default_rng(3)
    pick = rng.integers(0, 4, size=(20, 4))
    draws = {(i, f): rng.integers(0, fold[0][0].blocks, size=(20, fold[0][0].blocks))
             for i in range(4) for f, fold in enumerate(design)}  # fmt: skip
    for r in range(20):
        csi = []
        for i in range(4):  # the i-th drawn seed, its own blocks in every fold
            for f, fold in enumerate(design):
                a, b = fold[pick[r, i]]
                chosen = draws[(i, f)][r].tolist()
                csi.append(_by_hand(a, chosen)[0] - _by_hand(b, chosen)[0])
        assert np.allclose(reps["csi"][r], np.mean(csi, axis=0))


def test_designs_must_be_complete() -> None:
    design = _design()
    with pytest.raises(ValueError, match="same seeds"):
        st.estimate([design[0], design[1][:2]])
    with pytest.raises(ValueError, match="share their blocks"):
        st.estimate([[design[0][0], design[1][0]]])


def test_run_blocks_equal_nowcast_verify(in_tmp: Path) -> None:
    obs = make_observations(in_tmp / "obs.zarr", days=3, per_day=14)
    path = in_tmp / "runs" / "p" / "forecasts.zarr"
    write_persistence(path, obs, size=16, chunk_samples=4)
    rb = st.run_blocks(path, (0.5, 2.0, 10.0), block_hours=12, chunk=5)
    v = verify.evaluate(path, thresholds=(0.5, 2.0, 10.0), block_hours=12, bootstrap=50, seed=2)
    assert rb.blocks == v.blocks == 3
    # the blocks themselves: verify's bootstrap intervals from our per-block sums
    reps = st.lead_means(rb, st.boot.resample_weights(rb.blocks, 50, 2))
    for name in ("csi", "hss", "mse", "ssim"):
        lo, hi = st.interval(reps[name])
        assert np.allclose(lo, v.mean_interval[name][0], equal_nan=True), name
        assert np.allclose(hi, v.mean_interval[name][1], equal_nan=True), name
    ours = st.lead_scores(rb)
    for name in (*st.CATEGORICAL, *st.CONTINUOUS):
        assert np.allclose(ours[name], v.per_lead[name], rtol=1e-12, atol=0, equal_nan=True), name
    means = st.lead_means(rb)
    assert np.allclose(means["csi"], v.mean["csi"], equal_nan=True)
