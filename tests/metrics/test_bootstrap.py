"""Block bootstrap: intervals against a direct resampling loop, blocks by UTC day."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nowcast_cli import encoding, verify
from nowcast_cli.metrics import bootstrap
from tests.forecasts import DAY, T0, make_observations, write_persistence


def test_block_ids_are_utc_days() -> None:
    t = np.array([T0, T0 + 3600, T0 + DAY - 1, T0 + DAY, T0 + 5 * DAY])
    ids, n = bootstrap.block_ids(t)
    assert ids.tolist() == [0, 0, 0, 1, 2]
    assert n == 3
    ids, n = bootstrap.block_ids(t, block_hours=1)
    assert ids.tolist() == [0, 1, 2, 3, 4]


def test_interval_ignores_undefined_replicates() -> None:
    r = np.array([[1.0, np.nan], [2.0, np.nan], [np.nan, np.nan], [3.0, np.nan]])
    lo, hi = bootstrap.interval(r)
    assert lo[0] == pytest.approx(np.percentile([1, 2, 3], 2.5))
    assert hi[0] == pytest.approx(np.percentile([1, 2, 3], 97.5))
    assert np.isnan(lo[1])
    assert np.isnan(hi[1])


def direct_csi_loop(obs_store, fstore, threshold, n_boot, seed, block_hours):
    """Resample issue-time blocks with replacement and recount every table from the frames."""
    frames, valid = obs_store.read(0, len(obs_store))
    times = obs_store.times
    p = int(encoding.event_pixels([threshold], *obs_store.zr)[0])
    issue = fstore.issue_times
    leads = fstore.lead_minutes
    fc = fstore.read(0, len(fstore))
    blocks = np.floor(issue / (block_hours * 3600.0))
    uniq = np.unique(blocks)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(uniq), size=(n_boot, len(uniq)))
    out = []
    for r in range(n_boot):
        per_lead = []
        for ll, minutes in enumerate(leads):
            tp = fn = fp = 0
            for b in draws[r]:
                for s in np.nonzero(blocks == uniq[b])[0]:
                    hit = np.nonzero(times == issue[s] + 60 * minutes)[0]
                    if len(hit) == 0:
                        continue
                    u = hit[0]
                    v = valid[u]
                    fe, oe = fc[s, ll][v] >= p, frames[u][v] >= p
                    tp += np.sum(fe & oe)
                    fn += np.sum(~fe & oe)
                    fp += np.sum(fe & ~oe)
            per_lead.append(tp / (tp + fn + fp) if tp + fn + fp else np.nan)
        out.append(np.mean(per_lead))
    return np.percentile(out, [2.5, 97.5])


def test_intervals_equal_a_direct_resampling_loop(tmp_path: Path) -> None:
    obs = make_observations(tmp_path / "obs.zarr", days=4, per_day=10)
    write_persistence(tmp_path / "run" / "forecasts.zarr", obs, m=3, n=3, every=2)
    result = verify.evaluate(
        tmp_path / "run", thresholds="0.5,5", bootstrap=60, seed=11, groups=("categorical",)
    )
    assert result.blocks == 4
    fs = verify.ForecastStore.open(tmp_path / "run" / "forecasts.zarr")
    want = direct_csi_loop(obs, fs, 0.5, 60, 11, 24.0)
    lo, hi = result.mean_interval["csi"]
    assert [lo[0], hi[0]] == pytest.approx(want.tolist(), rel=1e-12)
    assert lo[0] < result.mean["csi"][0] < hi[0]
    # block length matters: half-hour blocks split each day's 50-minute run
    short = verify.evaluate(
        tmp_path / "run",
        thresholds="0.5",
        bootstrap=60,
        seed=11,
        block_hours=0.5,
        groups=("categorical",),
    )
    want = direct_csi_loop(obs, fs, 0.5, 60, 11, 0.5)
    lo, hi = short.mean_interval["csi"]
    assert short.blocks > 4
    assert [lo[0], hi[0]] == pytest.approx(want.tolist(), rel=1e-12)


def frame_values(obs_store, fstore) -> dict[str, np.ndarray]:
    """Per-frame MSE, MAE (NumPy, [0, 1] scale) and SSIM (the kernel, checked against
    scikit-image in test_continuous), NaN where the frame has no observation: (S, L) each."""
    from nowcast_cli.metrics import continuous

    frames, valid = obs_store.read(0, len(obs_store))
    fc = fstore.read(0, len(fstore))
    s_n, l_n = fc.shape[:2]
    out = {k: np.full((s_n, l_n), np.nan) for k in ("mse", "mae", "ssim")}
    lut = continuous.balance_lut(obs_store.zr)
    for s, t in enumerate(fstore.issue_times):
        for ll, minutes in enumerate(fstore.lead_minutes):
            hit = np.nonzero(obs_store.times == t + 60 * minutes)[0]
            if len(hit) == 0:
                continue
            u = hit[0]
            e = (fc[s, ll].astype(float) - frames[u]) / 255.0
            out["mse"][s, ll] = np.sum(e[valid[u]] ** 2)
            out["mae"][s, ll] = np.sum(np.abs(e[valid[u]]))
            sums = continuous.frame_sums(
                fc[s, ll][None, None], frames[u][None], valid[u][None], np.array([[0]]), lut
            )
            out["ssim"][s, ll] = continuous.ssim(sums)[0, 0]
    return out


def direct_continuous_loop(values, issue, n_boot, seed, block_hours):
    """Resample blocks, average each lead's frame values over the drawn samples (with their
    multiplicity), then over leads: the 2.5th and 97.5th percentiles, per lead and of the mean."""
    blocks = np.floor(issue / (block_hours * 3600.0))
    uniq = np.unique(blocks)
    draws = np.random.default_rng(seed).integers(0, len(uniq), size=(n_boot, len(uniq)))
    reps = []
    for r in range(n_boot):
        rows = np.concatenate([np.nonzero(blocks == uniq[b])[0] for b in draws[r]])
        reps.append(np.nanmean(values[rows], axis=0))  # per lead, over the drawn frames
    reps = np.array(reps)
    return np.percentile(reps.mean(axis=1), [2.5, 97.5]), np.percentile(reps, [2.5, 97.5], axis=0)


def test_continuous_intervals_equal_a_direct_resampling_loop(tmp_path: Path) -> None:
    obs = make_observations(tmp_path / "obs.zarr", days=4, per_day=10, invalid=0.0)
    write_persistence(tmp_path / "run" / "forecasts.zarr", obs, m=3, n=3, every=2)
    result = verify.evaluate(
        tmp_path / "run", bootstrap=60, seed=5, groups=("continuous",), thresholds="1"
    )
    fs = verify.ForecastStore.open(tmp_path / "run" / "forecasts.zarr")
    values = frame_values(obs, fs)
    for name in ("mse", "mae", "ssim"):
        assert np.isfinite(values[name]).all()
        (lo, hi), per_lead = direct_continuous_loop(values[name], fs.issue_times, 60, 5, 24.0)
        got = result.mean_interval[name]
        assert [float(got[0]), float(got[1])] == pytest.approx([lo, hi], rel=1e-12), name
        assert lo < hi
        assert lo <= result.mean[name] <= hi
        got_lo, got_hi = result.lead_interval[name]
        assert got_lo == pytest.approx(per_lead[0], rel=1e-12), name
        assert got_hi == pytest.approx(per_lead[1], rel=1e-12), name
