"""`nowcast verify` and `nowcast_cli.verify`: scores of real forecast stores, files, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nowcast_cli import encoding, verify
from nowcast_cli.cli import app
from nowcast_cli.errors import ConfigError, DataError
from nowcast_cli.metrics import categorical, continuous
from nowcast_cli.store import ForecastStore
from tests.forecasts import DAY, T0, make_observations, write_persistence

runner = CliRunner()


@pytest.fixture
def project(in_tmp: Path) -> Path:
    """./nowcast-data/obs.zarr and a persistence run in ./runs/persistence."""
    obs = make_observations(in_tmp / "nowcast-data" / "obs.zarr", days=3, per_day=14)
    write_persistence(
        in_tmp / "runs" / "persistence" / "forecasts.zarr", obs, size=16, chunk_samples=4
    )
    return in_tmp


def direct_csi(obs, fs, threshold: float, size) -> np.ndarray:
    """CSI per lead pooled over samples, counted straight from the frames."""
    frames, valid = obs.read(0, len(obs), size)
    p = int(encoding.event_pixels([threshold], *obs.zr)[0])
    fc = fs.read(0, len(fs))
    out = []
    for ll, minutes in enumerate(fs.lead_minutes):
        tp = fn = fp = 0
        for s, t in enumerate(fs.issue_times):
            u = np.nonzero(obs.times == t + 60 * minutes)[0]
            if len(u) == 0:
                continue
            v = valid[u[0]]
            fe, oe = fc[s, ll][v] >= p, frames[u[0]][v] >= p
            tp, fn, fp = tp + np.sum(fe & oe), fn + np.sum(~fe & oe), fp + np.sum(fe & ~oe)
        out.append(tp / (tp + fn + fp))
    return np.array(out)


def test_evaluate_equals_direct_counting(project: Path) -> None:
    r = verify.evaluate(thresholds=(0.5, 5.0))
    fs = ForecastStore.open(project / "runs" / "persistence" / "forecasts.zarr")
    obs = verify.Store.open(project / "nowcast-data" / "obs.zarr")
    assert r.forecasts.endswith("runs/persistence/forecasts.zarr")
    assert r.size == 16
    assert r.leads.tolist() == [1, 2, 3, 4, 5]
    assert r.samples == len(fs)
    assert r.frames_missing == 0
    for k, t in enumerate((0.5, 5.0)):
        want = direct_csi(obs, fs, t, 16)
        assert r.per_lead["csi"][:, k] == pytest.approx(want)
        assert r.mean["csi"][k] == pytest.approx(want.mean())
    assert np.all(np.diff(r.per_lead["mse"]) > 0)  # persistence degrades with lead time
    assert r.per_lead["ssim"].shape == (5,)


def test_small_batches_and_cache_evictions_give_the_same_scores(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = verify.evaluate()
    monkeypatch.setattr(verify, "BATCH_BYTES", 1)  # one 4-sample chunk per batch
    small = verify.evaluate()
    for k in whole.per_lead:
        assert np.allclose(small.per_lead[k], whole.per_lead[k], equal_nan=True), k


def test_scores_files(project: Path) -> None:
    result = runner.invoke(app, ["verify", "--thresholds", "0.5,2,30", "--quiet"])
    assert result.exit_code == 0, result.output
    run = project / "runs" / "persistence"
    with open(run / "scores.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["lead", "lead_minutes", "threshold", "metric", "value"]
    metrics = {r["metric"] for r in rows}
    assert metrics == set(categorical.NAMES) | {
        "mse",
        "mae",
        "b_mse",
        "b_mae",
        "gdl",
        "psnr",
        "ssim",
    }
    assert {r["lead"] for r in rows} == {"1", "2", "3", "4", "5"}
    assert {r["threshold"] for r in rows if r["metric"] == "csi"} == {"0.5", "2", "30"}
    assert {r["threshold"] for r in rows if r["metric"] == "mse"} == {""}
    # nothing reaches 30 mm/h in the test data: undefined, never 0 or 1
    assert {r["value"] for r in rows if r["metric"] == "pod" and r["threshold"] == "30"} == {"NaN"}
    data = json.loads((run / "scores.json").read_text())
    assert data["thresholds_mm_h"] == [0.5, 2, 30]
    assert data["mean_over_leads"]["pod"][2] is None
    assert data["lead_minutes"] == [5, 10, 15, 20, 25]


def test_table_and_json_output(project: Path) -> None:
    result = runner.invoke(app, ["verify", "runs/persistence", "--bootstrap", "50"])
    assert result.exit_code == 0, result.output
    for text in ("CSI", "HSS", "≥ 0.5 mm/h", "SSIM", "—", "3 blocks of 24 h", "scores →"):
        assert text in result.stdout
    out = runner.invoke(app, ["verify", "--json", "--bootstrap", "20", "--per-lead"])
    data = json.loads(out.stdout)
    assert data["bootstrap"]["blocks"] == 3
    lo = data["bootstrap"]["mean_over_leads"]["csi"]["low"][0]
    hi = data["bootstrap"]["mean_over_leads"]["csi"]["high"][0]
    assert lo <= data["mean_over_leads"]["csi"][0] <= hi
    assert data["written"][0].endswith("scores.csv")


def test_frames_all_scores_reconstructions(in_tmp: Path) -> None:
    obs = make_observations(in_tmp / "obs.zarr", days=1, per_day=14)
    write_persistence(
        in_tmp / "runs" / "model" / "forecasts.zarr", obs, m=4, n=3, reconstructions=True
    )
    r = verify.evaluate("runs/model", frames="all", groups=("categorical",))
    assert r.leads.tolist() == [-2, -1, 0, 1, 2, 3]
    assert r.lead_minutes.tolist() == [-10, -5, 0, 5, 10, 15]
    fwd = verify.evaluate("runs/model", groups=("categorical",))
    assert fwd.leads.tolist() == [1, 2, 3]
    assert r.per_lead["csi"][3:] == pytest.approx(fwd.per_lead["csi"], nan_ok=True)
    # every lead, reconstructions included, against counting straight from the frames
    fs = ForecastStore.open(in_tmp / "runs" / "model" / "forecasts.zarr")
    for k, t in enumerate(r.thresholds[:2]):
        assert r.per_lead["csi"][:, k] == pytest.approx(direct_csi(obs, fs, t, None), rel=1e-12)
    with open(verify.write_scores(r)[0]) as fh:
        leads = {row["lead"] for row in csv.DictReader(fh)}
    assert leads == {"-2", "-1", "0", "1", "2", "3"}


def test_frames_all_without_reconstructions_is_an_error(project: Path) -> None:
    with pytest.raises(DataError, match="no reconstruction frames"):
        verify.evaluate(frames="all")


def test_compare_paired_differences(project: Path) -> None:
    obs = verify.Store.open(project / "nowcast-data" / "obs.zarr")
    # B: persistence of the frame before the last one, on every other issue time
    fa = ForecastStore.open(project / "runs" / "persistence" / "forecasts.zarr")
    frames, _ = obs.read(0, len(obs), 16)
    with ForecastStore.create(
        project / "runs" / "older" / "forecasts.zarr",
        observations=obs,
        size=16,
        lead_minutes=fa.lead_minutes,
    ) as fb:
        for t in fa.issue_times[::2]:
            i = int(np.nonzero(obs.times == t)[0][0])
            fb.append([t], np.repeat(frames[i - 1][None, None], 5, axis=1))
    c = verify.compare("runs/persistence", "runs/older", bootstrap=200, thresholds="0.5,2")
    assert c.shared == len(fa.issue_times[::2])
    a_only = verify.evaluate("runs/older", thresholds="0.5,2")
    assert c.mean_b["csi"] == pytest.approx(a_only.mean["csi"])
    # the newer frame is the better forecast, and the paired interval says so
    assert np.all(c.diff["csi"] > 0)
    assert np.all(c.diff_interval["csi"][0] > 0)
    same = verify.compare("runs/persistence", "runs/persistence", bootstrap=20)
    assert np.all(same.diff["csi"][np.isfinite(same.diff["csi"])] == 0)
    # the table stars exactly the cells whose interval excludes 0 (the CLI's default
    # replicates and seed: the same intervals as `compare` computes here)
    c = verify.compare("runs/persistence", "runs/older")
    rows = _table_rows(["verify", "--compare", "runs/persistence", "runs/older"])
    want = []
    for m in categorical.NAMES:
        lo, hi = c.diff_interval[m]
        for k in range(len(c.thresholds)):
            starred = rows[m.upper()][k].endswith(" *")
            assert starred == bool(lo[k] > 0 or hi[k] < 0), (m, k, rows[m.upper()][k])
            want.append(starred)
    for m in continuous.NAMES:
        lo, hi = c.diff_interval[m]
        starred = rows[m.upper().replace("_", "-")][-1].endswith(" *")
        assert starred == bool(lo > 0 or hi < 0), (m, rows[m.upper()])
        want.append(starred)
    assert any(want)  # both kinds of cell occur, so the check can fail
    assert not all(want)
    same = _table_rows(["verify", "--compare", "runs/persistence", "runs/persistence"])
    assert not any(cell.endswith("*") for cells in same.values() for cell in cells)


def _table_rows(args: list[str]) -> dict[str, list[str]]:
    """Cells of the rows of the tables a command prints, by row name (a wide terminal)."""
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    rows = {}
    for line in result.stdout.splitlines():
        if line.startswith("│"):
            cells = [c.strip() for c in line.strip().strip("│").split("│")]
            rows[cells[0]] = cells[1:]
    return rows


def _error(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("0.5,abc", "threshold 'abc' is not a number"),
        ("0.5,-2", "must be positive"),
        ("5,2", "strictly increasing, got 5,2"),
        ("2,2", "strictly increasing"),
        ("", "not a number"),
        ("nan", "must be positive"),
    ],
)
def test_bad_thresholds(project: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        verify.parse_thresholds(text)
    assert match in _error(runner.invoke(app, ["verify", "--thresholds", text]))


def test_threshold_beyond_the_encoding(project: Path) -> None:
    line = _error(runner.invoke(app, ["verify", "--thresholds", "0.5,5000"]))
    assert "above the largest rain rate" in line


def test_no_forecasts_says_how_to_make_some(in_tmp: Path) -> None:
    line = _error(runner.invoke(app, ["verify"]))
    assert "nowcast predict" in line


def test_different_grid_or_encoding(project: Path, tmp_path_factory) -> None:
    other = make_observations(project / "other.zarr", days=1, per_day=6, zr={"a": 200.0, "b": 1.6})
    line = _error(runner.invoke(app, ["verify", "--store", "other.zarr"]))
    assert "different encodings" in line
    assert "Z = 200 R^1.6" in line
    from nowcast_cli.io.base import Grid
    from nowcast_cli.store import Store

    small = Store.create(
        project / "small.zarr", attrs=dict(other.attrs), grid=Grid("g", 16, 16), sizes=(8,)
    )
    small.close()
    line = _error(runner.invoke(app, ["verify", "--store", "small.zarr"]))
    assert "16x16 copy, which the observation store does not have" in line


def test_no_matching_observations(project: Path) -> None:
    obs = verify.Store.open(project / "nowcast-data" / "obs.zarr")
    with ForecastStore.create(
        project / "runs" / "future" / "forecasts.zarr", observations=obs, size=16, lead_minutes=[5]
    ) as fs:
        fs.append([T0 + 10 * DAY], np.zeros((1, 1, 16, 16), np.uint8))
    line = _error(runner.invoke(app, ["verify", "runs/future"]))
    assert "no forecast frame has a matching observation" in line
    assert "2020-01-11" in line


def _overrunning_persistence(path: Path, obs, leads: int = 5) -> ForecastStore:
    """Persistence from every frame with 3 before it, also where later leads are unobserved
    (late in a day's run: the next day's gap, and the store's end); one sample per chunk."""
    frames, _ = obs.read(0, len(obs), 16)
    t = obs.times
    with ForecastStore.create(
        path,
        observations=obs,
        size=16,
        lead_minutes=5 * np.arange(1, leads + 1),
        chunk_samples=1,
    ) as fs:
        for i in range(3, len(t)):
            if t[i] - t[i - 3] == 900:
                fs.append([t[i]], np.repeat(frames[i][None, None], leads, axis=1))
    return ForecastStore.open(path)


def test_unobserved_leads_are_skipped_counted_and_reported(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive ends (and pauses overnight) before the last issue times' leads: no crash,
    the (issue time, lead) pairs without observation are counted, scores use the others."""
    obs = make_observations(in_tmp / "nowcast-data" / "obs.zarr", days=2, per_day=14)
    fs = _overrunning_persistence(in_tmp / "runs" / "p" / "forecasts.zarr", obs)
    # one sample per batch: the batches of the last issue times have no observed frame at all
    monkeypatch.setattr(verify, "BATCH_BYTES", 1)
    r = verify.evaluate("runs/p", thresholds=(0.5, 5.0))
    seen = np.isin(fs.issue_times[:, None] + 60 * fs.lead_minutes[None, :], obs.times)
    assert r.frames_missing == int((~seen).sum()) == 2 * (1 + 2 + 3 + 4 + 5)
    assert r.frames_scored == int(seen.sum())
    u = r.unobserved
    assert u is not None
    assert (u.total, u.missing, u.after_end, u.in_gaps, u.before_start) == (
        seen.size,
        30,
        15,
        15,
        0,
    )
    assert u.per_lead == (~seen).sum(axis=0).tolist() == [2, 4, 6, 8, 10]
    for k, t in enumerate((0.5, 5.0)):
        want = direct_csi(obs, fs, t, 16)
        assert r.per_lead["csi"][:, k] == pytest.approx(want)
    assert np.all(np.isfinite(r.per_lead["mse"]))
    # what the user sees: a sentence with the counts, and the same in scores.json
    result = runner.invoke(app, ["verify", "runs/p"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert f"30 of {seen.size} forecast frames have no observation in the store" in text
    assert "15 valid after its last frame, 2020-01-02 01:05 UTC; 15 valid in its gaps" in text
    data = json.loads((in_tmp / "runs" / "p" / "scores.json").read_text())
    assert data["forecast_frames"] == seen.size
    assert data["frames_missing_observations"] == 30
    assert data["unobserved"]["after_store_end"] == 15
    assert data["unobserved"]["in_store_gaps"] == 15
    assert data["unobserved"]["per_lead"] == [2, 4, 6, 8, 10]


def test_no_observed_forecast_frame_is_one_error_line(in_tmp: Path) -> None:
    """Forecasts issued at the store's last frame only: nothing to score."""
    obs = make_observations(in_tmp / "nowcast-data" / "obs.zarr", days=1, per_day=14)
    frames, _ = obs.read(0, len(obs), 16)
    with ForecastStore.create(
        in_tmp / "runs" / "late" / "forecasts.zarr",
        observations=obs,
        size=16,
        lead_minutes=[5, 10],
    ) as fs:
        fs.append([obs.times[-1]], np.repeat(frames[-1][None, None], 2, axis=1))
    line = _error(runner.invoke(app, ["verify", "runs/late"]))
    assert "no forecast frame has a matching observation" in line
    assert "observations 2020-01-01 00:00 → 2020-01-01 01:05" in line


def test_compare_without_shared_issue_times(project: Path) -> None:
    obs = verify.Store.open(project / "nowcast-data" / "obs.zarr")
    with ForecastStore.create(
        project / "runs" / "x" / "forecasts.zarr",
        observations=obs,
        size=16,
        lead_minutes=[5, 10, 15, 20, 25],
    ) as fs:
        fs.append([T0 + 7], np.zeros((1, 5, 16, 16), np.uint8))
    line = _error(runner.invoke(app, ["verify", "--compare", "runs/persistence", "runs/x"]))
    assert "share no issue times" in line


def test_list_metrics() -> None:
    result = runner.invoke(app, ["list", "metrics", "--json"])
    rows = json.loads(result.stdout)
    assert {r["name"] for r in rows} == {
        "csi",
        "pod",
        "far",
        "hss",
        "ets",
        "bias",
        "mse",
        "mae",
        "b_mse",
        "b_mae",
        "gdl",
        "psnr",
        "ssim",
    }


def test_bootstrap_over_a_single_block_is_refused(in_tmp: Path) -> None:
    """One block: every replicate equals the sample, an interval of zero width would lie."""
    obs = make_observations(in_tmp / "nowcast-data" / "obs.zarr", days=1, per_day=14)
    write_persistence(in_tmp / "runs" / "p" / "forecasts.zarr", obs, size=16)
    result = runner.invoke(app, ["verify", "runs/p", "--bootstrap", "50"])
    assert result.exit_code == 1
    assert "at least 2 blocks" in result.output
    assert "--block-hours" in result.output
    ok = runner.invoke(
        app, ["verify", "runs/p", "--bootstrap", "50", "--block-hours", "0.25", "-q"]
    )
    assert ok.exit_code == 0, ok.output
    with pytest.raises(DataError, match="at least 2 blocks"):
        verify.compare("runs/p", "runs/p", bootstrap=10)
    for hours in ("0", "-1", "nan"):  # one line, no ValueError traceback
        for args in (["runs/p", "--bootstrap", "5"], ["--compare", "runs/p", "runs/p"]):
            bad = runner.invoke(app, ["verify", *args, "--block-hours", hours])
            assert bad.exit_code == 1
            assert bad.output.strip().splitlines() == [
                f"Error: --block-hours must be a positive number of hours, got {hours}"
            ]


def _noisy_run(path: Path, obs, seed: int, lag: int) -> None:  # type: ignore[no-untyped-def]
    """A 'seed' of a run: the frame `lag` intervals before the issue time, with pixel noise."""
    frames, _ = obs.read(0, len(obs), 16)
    rng = np.random.default_rng(seed)
    with ForecastStore.create(
        path, observations=obs, size=16, lead_minutes=[5, 10], attrs={"checkpoint": f"{seed}.pt"}
    ) as fs:
        for i, t in enumerate(obs.times):
            if i < lag or i + 2 >= len(obs) or obs.times[i + 2] - t != 600:
                continue
            base = frames[i - lag].astype(np.int64)
            out = np.clip(base + rng.integers(-25, 26, base.shape), 0, 255).astype(np.uint8)
            fs.append([t], np.repeat(out[None, None], 2, axis=1))


def test_compare_scores_the_shared_leads_of_stores_with_and_without_reconstructions(
    in_tmp: Path,
) -> None:
    """Persistence keeps reconstructions (leads ≤ 0), extrapolation and the one-shot models
    do not: compared on the forecast leads, identical forecasts differ by exactly 0, and
    two baselines (no checkpoint) get no caution about training randomness."""
    obs = make_observations(in_tmp / "obs.zarr", days=4, per_day=10)
    frames, _ = obs.read(0, len(obs), 16)
    layouts = {"with": [-5, 0, 5, 10], "without": [5, 10]}
    for name, leads in layouts.items():
        with ForecastStore.create(
            in_tmp / name / "forecasts.zarr", observations=obs, size=16, lead_minutes=leads
        ) as fs:
            for i, t in enumerate(obs.times):
                if i >= 1 and i + 2 < len(obs) and obs.times[i + 2] - t == 600:
                    fs.append([t], np.repeat(frames[i][None, None], len(leads), axis=1))
    c = verify.compare("with", "without", thresholds=(0.5, 2.0), bootstrap=20)
    assert c.lead_minutes.tolist() == [5, 10]
    for k, v in c.diff.items():
        assert np.all(v[np.isfinite(v)] == 0), k
    one = verify.evaluate("without", thresholds=(0.5, 2.0))
    np.testing.assert_array_equal(c.mean_a["csi"], one.mean["csi"])
    assert not c.trained
    assert [x.split(":")[0] for x in c.cautions] == ["only 4 blocks of issue times"]
    with pytest.raises(DataError, match="no reconstruction frames"):
        verify.compare("with", "without", frames="all", bootstrap=20)


def test_compare_pools_pairs_of_runs_and_resamples_seeds_and_days(in_tmp: Path) -> None:
    obs = make_observations(in_tmp / "obs.zarr", days=4, per_day=10)
    for k in range(3):
        _noisy_run(in_tmp / f"a{k}" / "forecasts.zarr", obs, seed=k, lag=0)
        _noisy_run(in_tmp / f"b{k}" / "forecasts.zarr", obs, seed=10 + k, lag=2)
    a = [f"a{k}" for k in range(3)]
    b = [f"b{k}" for k in range(3)]
    c = verify.compare(",".join(a), b, thresholds=(0.5,), bootstrap=300, seed=4)
    assert c.pairs == 3
    assert len(c.per_pair) == 3
    # the pooled score: one contingency table over the three runs' forecasts, counted here
    frames, valid = obs.read(0, len(obs), 16)
    p = int(encoding.event_pixels([0.5], *obs.zr)[0])

    def counts(run: str, issue: np.ndarray) -> np.ndarray:
        """(blocks of one day, leads, [tp, fn, fp]) counted straight from the frames."""
        out = np.zeros((4, 2, 3))
        with ForecastStore.open(in_tmp / run / "forecasts.zarr") as fs:
            fc = fs.read(0, len(fs))
            for s, t in enumerate(fs.issue_times):
                if t not in issue:
                    continue
                day = int(t // 86400 - issue[0] // 86400)  # UTC days, as the blocks
                for ll in range(2):
                    u = int(np.nonzero(obs.times == t + 300 * (ll + 1))[0][0])
                    v = valid[u]
                    fe, oe = fc[s, ll][v] >= p, frames[u][v] >= p
                    out[day, ll] += [np.sum(fe & oe), np.sum(~fe & oe), np.sum(fe & ~oe)]
        return out

    with ForecastStore.open(in_tmp / "a0" / "forecasts.zarr") as fs:
        issue = fs.issue_times
    with ForecastStore.open(in_tmp / "b0" / "forecasts.zarr") as fs:
        issue = np.intersect1d(issue, fs.issue_times)
    assert c.shared == len(issue)
    ca = np.stack([counts(r, issue) for r in a])  # (pairs, days, leads, 3)
    cb = np.stack([counts(r, issue) for r in b])

    def csi(x: np.ndarray) -> np.ndarray:  # mean over leads of CSI from summed tables
        return (x[..., 0] / x.sum(-1)).mean(-1)

    want = csi(ca.sum((0, 1))) - csi(cb.sum((0, 1)))
    assert c.diff["csi"][0] == pytest.approx(want)
    # the interval, from a direct two-stage resampling loop with the documented draws
    blocks = np.random.default_rng(4).integers(0, 4, size=(300, 4))
    pairs = np.random.default_rng(5).integers(0, 3, size=(300, 3))
    reps, reps_a = [], []
    for r in range(300):
        pick_a = sum(ca[s][d] for s in pairs[r] for d in blocks[r])
        pick_b = sum(cb[s][d] for s in pairs[r] for d in blocks[r])
        reps.append(csi(pick_a) - csi(pick_b))
        reps_a.append(csi(pick_a))
    assert c.a_interval["csi"][0][0] == pytest.approx(np.percentile(reps_a, 2.5))
    assert c.mean_a["csi"][0] == pytest.approx(csi(ca.sum((0, 1))))
    lo, hi = np.percentile(reps, [2.5, 97.5])
    assert c.diff_interval["csi"][0][0] == pytest.approx(lo)
    assert c.diff_interval["csi"][1][0] == pytest.approx(hi)
    # each pair's own difference is its two runs' difference
    one = verify.compare("a1", "b1", thresholds=(0.5,), bootstrap=10)
    assert c.per_pair[1]["diff"]["csi"][0] == pytest.approx(one.diff["csi"][0])
    # what the intervals do not cover is said: one run per side (training randomness), and
    # 4 days, which allow only C(7, 4) = 35 distinct resamples
    assert len(c.cautions) == 1
    assert c.cautions[0].startswith("only 4 blocks of issue times: they allow just 35 distinct")
    assert len(one.cautions) == 2
    assert one.cautions[0].startswith("one run on each side")
    with pytest.raises(ConfigError, match="pairs runs by position"):
        verify.compare(a, b[:2], bootstrap=10)
    out = runner.invoke(app, ["verify", "--compare", ",".join(a), ",".join(b), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["pairs"] == 3
    assert json.loads(out.stdout)["cautions"] == c.cautions
    shown = runner.invoke(app, ["verify", "--compare", "a1", "b1"], env={"COLUMNS": "300"})
    assert f"Note: {one.cautions[0]}." in shown.stdout
    assert f"Note: {one.cautions[1]}." in shown.stdout


def test_fine_forecasts_are_scored_as_the_model_output_them(in_tmp: Path) -> None:
    """A model's continuous output, kept at 1/256 pixel, is scored as the authors' code scores
    its float output (rain ≥ τ on the output itself, errors from the output); rounding it to
    whole pixels first would change the scores."""
    obs = make_observations(in_tmp / "nowcast-data" / "obs.zarr", days=2, per_day=14)
    frames, valid = obs.read(0, len(obs), 16)
    rng = np.random.default_rng(3)
    leads = np.array([5, 10])
    issue = obs.times[2:-2]
    pos = np.searchsorted(obs.times, issue)
    # outputs: the observed frame plus sub-pixel noise, exactly representable as fine codes
    noise = rng.integers(-700, 700, (len(pos), 2, 16, 16))
    codes = np.clip(frames[pos].astype(np.int64)[:, None] * 256 + noise, 0, 255 * 256)
    x = codes / (255.0 * 256)  # the "float output" on [0, 1]
    path = in_tmp / "runs" / "model" / "forecasts.zarr"
    with ForecastStore.create(path, observations=obs, size=16, lead_minutes=leads, fine=True) as fs:
        fs.append(issue, encoding.unit_to_pixel(x), encoding.unit_to_fine(x))
    thresholds = (0.5, 2.0, 5.0)
    r = verify.evaluate("runs/model", thresholds=thresholds)
    assert r.fine
    # the reference, on the float output: an event where the rate of x·255 is ≥ τ
    rate = encoding.pixel_to_rate(x * 255, *obs.zr)
    obs_rate = encoding.pixel_to_rate(frames, *obs.zr)
    counts = np.zeros((len(leads), len(thresholds), 3))
    se, n = np.zeros(len(leads)), np.zeros(len(leads))
    for s, t in enumerate(issue):
        for ll, m in enumerate(leads):
            hit = np.nonzero(obs.times == t + 60 * m)[0]
            if len(hit) == 0:
                continue
            u = hit[0]
            v = valid[u]
            for k, tau in enumerate(thresholds):
                fe, oe = rate[s, ll][v] >= tau, obs_rate[u][v] >= tau
                counts[ll, k] += [np.sum(fe & oe), np.sum(~fe & oe), np.sum(fe & ~oe)]
            se[ll] += np.sum((x[s, ll][v] - frames[u][v] / 255.0) ** 2)
            n[ll] += 1
    want_csi = counts[..., 0] / counts.sum(axis=-1)
    assert np.all(np.isfinite(want_csi))
    assert r.per_lead["csi"] == pytest.approx(want_csi, rel=1e-12)
    assert r.per_lead["mse"] == pytest.approx(se / n, rel=1e-12)
    # scored on the rounded pixels instead, the scores differ
    with ForecastStore.create(
        in_tmp / "runs" / "rounded" / "forecasts.zarr",
        observations=obs,
        size=16,
        lead_minutes=leads,
    ) as fs:
        fs.append(issue, encoding.unit_to_pixel(x))
    rounded = verify.evaluate("runs/rounded", thresholds=thresholds)
    assert not rounded.fine
    assert not np.allclose(rounded.per_lead["csi"], r.per_lead["csi"])
    assert not np.allclose(rounded.per_lead["mse"], r.per_lead["mse"])
    text = " ".join(runner.invoke(app, ["verify", "runs/model"]).stdout.split())
    assert "scored: the model's output at 1/256 pixel" in text
    data = json.loads((in_tmp / "runs" / "model" / "scores.json").read_text())
    assert data["forecast_precision"]["max_rounding_pixels"] == 1 / 512
