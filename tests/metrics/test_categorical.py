"""Contingency counts and categorical scores against independent references."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nowcast_cli import encoding
from nowcast_cli.metrics import Contingency, categorical


def pysteps_detcat():  # type: ignore[no-untyped-def]
    """pysteps' detcatscores (the reference): only the tests that use it skip without it."""
    with contextlib.redirect_stdout(io.StringIO()):  # pysteps prints a banner on import
        return pytest.importorskip("pysteps.verification.detcatscores")


def numpy_counts(fcst, obs, valid, index, block, pixels, n_blocks):
    """Plain NumPy reference: (blocks, leads, K, 4) TP, FN, FP, TN over valid pixels."""
    s_n, l_n = index.shape
    out = np.zeros((n_blocks, l_n, len(pixels), 4), np.int64)
    for s in range(s_n):
        for ll in range(l_n):
            u = index[s, ll]
            if u < 0:
                continue
            v = valid[u]
            for k, p in enumerate(pixels):
                fe = fcst[s, ll][v] >= p
                oe = obs[u][v] >= p
                out[block[s], ll, k] += [
                    np.sum(fe & oe),
                    np.sum(~fe & oe),
                    np.sum(fe & ~oe),
                    np.sum(~fe & ~oe),
                ]
    return out


@st.composite
def chunks(draw):
    s_n = draw(st.integers(1, 4))
    l_n = draw(st.integers(1, 4))
    u_n = draw(st.integers(1, 5))
    h = draw(st.integers(1, 23))
    w = draw(st.integers(1, 40))  # frames from 1 to 920 pixels: SIMD blocks and tails
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # mostly dry with rain patches, so that dry-block skipping and wet blocks both occur
    fc = rng.integers(0, 256, (s_n, l_n, h, w)).astype(np.uint8)
    fc[rng.random(fc.shape) < draw(st.floats(0, 1))] = 0
    obs = rng.integers(0, 256, (u_n, h, w)).astype(np.uint8)
    obs[rng.random(obs.shape) < draw(st.floats(0, 1))] = 0
    valid = rng.random(obs.shape) > draw(st.floats(0, 1))
    index = rng.integers(-1, u_n, (s_n, l_n))
    n_blocks = draw(st.integers(1, 3))
    block = rng.integers(0, n_blocks, s_n)
    pixels = np.sort(rng.choice(np.arange(1, 257), draw(st.integers(1, 6)), replace=False))
    return fc, obs, valid, index, block, pixels, n_blocks


@settings(max_examples=80)
@given(chunks())
def test_counts_equal_numpy_reference(case) -> None:
    fc, obs, valid, index, block, pixels, n_blocks = case
    acc = Contingency.init(n_blocks, fc.shape[1], pixels)
    acc.accumulate(fc, obs, valid, index, block)
    assert np.array_equal(acc.counts, numpy_counts(fc, obs, valid, index, block, pixels, n_blocks))


@settings(max_examples=30)
@given(chunks(), st.integers(0, 4))
def test_merge_equals_one_accumulation(case, cut: int) -> None:
    fc, obs, valid, index, block, pixels, n_blocks = case
    cut = min(cut, len(fc))
    whole = Contingency.init(n_blocks, fc.shape[1], pixels)
    whole.accumulate(fc, obs, valid, index, block)
    a = Contingency.init(n_blocks, fc.shape[1], pixels)
    b = Contingency.init(n_blocks, fc.shape[1], pixels)
    a.accumulate(fc[:cut], obs, valid, index[:cut], block[:cut])
    b.accumulate(fc[cut:], obs, valid, index[cut:], block[cut:])
    assert np.array_equal(a.merge(b).counts, whole.counts)


def test_counts_on_real_frames_equal_numpy_and_pysteps(real_store) -> None:
    """Real DWD RY frames (900×900, no-data border): frame 0 as a forecast of frames 1..4."""
    frames, valid = real_store.read(0, len(real_store))
    thresholds = [0.5, 2, 5, 10, 30]
    px = encoding.event_pixels(thresholds, *real_store.zr)
    fc = np.repeat(frames[None, :1], 4, axis=1)  # (1, 4, H, W)
    index = np.array([[1, 2, 3, 4]])
    acc = Contingency.init(1, 4, px)
    acc.accumulate(fc, frames, valid, index, np.array([0]))
    ref = numpy_counts(fc, frames, valid, index, np.array([0]), px, 1)
    assert np.array_equal(acc.counts, ref)
    assert acc.counts[0, :, 0, 0].min() > 100  # the sample has rain at 0.5 mm/h
    # pysteps counts rain > thr; on integer pixels P ≥ p ⇔ P > p − 0.5, and it cannot mask,
    # so it gets the valid pixels only
    detcat = pysteps_detcat()
    for ll in range(4):
        v = valid[ll + 1]
        for k, p in enumerate(px):
            tab = detcat.det_cat_fct_init(float(p) - 0.5)
            detcat.det_cat_fct_accum(tab, frames[0][v], frames[ll + 1][v])
            got = acc.counts[0, ll, k]
            want = [tab["hits"], tab["misses"], tab["false_alarms"], tab["correct_negatives"]]
            assert got.tolist() == want


def test_threshold_operator_is_greater_or_equal() -> None:
    """A pixel exactly at the event pixel is an event (pysteps' `>` would not count it)."""
    a, b = 256.0, 1.42
    p = int(encoding.event_pixels([2.0], a, b)[0])
    assert encoding.pixel_to_rate(p, a, b) >= 2.0 > encoding.pixel_to_rate(p - 1, a, b)
    obs = np.array([[[p - 1, p, p + 1]]], np.uint8)
    acc = Contingency.init(1, 1, np.array([p]))
    acc.accumulate(obs[None], obs, np.ones_like(obs, bool), np.array([[0]]), np.array([0]))
    assert acc.counts[0, 0, 0].tolist() == [2, 0, 0, 1]


def test_threshold_above_encoding_counts_no_events() -> None:
    f = np.full((1, 1, 4, 4), 255, np.uint8)
    acc = Contingency.init(1, 1, np.array([200, 256]))
    acc.accumulate(f, f[0], np.ones((1, 4, 4), bool), np.array([[0]]), np.array([0]))
    assert acc.counts[0, 0].tolist() == [[16, 0, 0, 0], [0, 0, 0, 16]]


count = st.integers(0, 10**6)


@settings(max_examples=200)
@given(count, count, count, count)
def test_scores_equal_pysteps_on_the_same_counts(tp, fn, fp, tn) -> None:
    detcat = pysteps_detcat()
    tab = {"hits": tp, "misses": fn, "false_alarms": fp, "correct_negatives": tn}
    ours = categorical.scores(np.array([tp, fn, fp, tn]))
    with np.errstate(all="ignore"):
        theirs = detcat.det_cat_fct_compute(
            {k: np.float64(v) for k, v in tab.items()}, ["POD", "FAR", "CSI", "HSS", "ETS", "BIAS"]
        )
    for name in ("pod", "far", "csi", "hss", "ets", "bias"):
        want = float(theirs[name.upper()])
        got = float(ours[name])
        n = tp + fn + fp + tn
        if np.isfinite(want):
            assert got == pytest.approx(want, rel=1e-12, abs=1e-12), name
        elif name == "ets" and n and (tp + fn) in (0, n):
            # pysteps computes ETS as (POD − F)/((1 − s·POD)/(1 − s) + F(1 − s)/s) with the
            # base rate s = (TP + FN)/N, undefined at s = 0 or 1 even where the standard form
            # (TP − R)/(TP + FN + FP − R), R = (TP + FN)(TP + FP)/N, is not
            r = (tp + fn) * (tp + fp) / n
            den = tp + fn + fp - r
            assert got == (
                pytest.approx((tp - r) / den) if den else pytest.approx(np.nan, nan_ok=True)
            )
        else:  # pysteps returns nan or ±inf for an empty denominator; ours is NaN
            assert np.isnan(got), name


def test_hss_worked_example() -> None:
    # TP 50, FN 20, FP 30, TN 900:
    # 2(50·900 − 20·30) / ((50+20)(20+900) + (50+30)(30+900)) = 88800 / 138800
    s = categorical.scores(np.array([50, 20, 30, 900]))
    assert float(s["hss"]) == pytest.approx(88800 / 138800)  # 0.6398
    # the paper's eq. (11) without the factor 2 would give half of it (0.3199)
    assert float(s["hss"]) / 2 == pytest.approx(0.31988, abs=1e-5)
    assert float(s["csi"]) == pytest.approx(50 / 100)
    assert float(s["pod"]) == pytest.approx(50 / 70)
    assert float(s["far"]) == pytest.approx(30 / 80)
    assert float(s["bias"]) == pytest.approx(80 / 70)
    chance = 70 * 80 / 1000
    assert float(s["ets"]) == pytest.approx((50 - chance) / (100 - chance))


def test_undefined_scores_are_nan() -> None:
    no_events = categorical.scores(np.array([0, 0, 0, 100]))
    for name in ("csi", "pod", "far", "bias", "hss", "ets"):
        assert np.isnan(no_events[name]), name
    false_alarms_only = categorical.scores(np.array([0, 0, 5, 95]))
    assert np.isnan(false_alarms_only["pod"])
    assert float(false_alarms_only["far"]) == 1.0
    assert float(false_alarms_only["csi"]) == 0.0


@pytest.fixture(scope="module")
def real_store(tmp_path_factory, sample_dir: Path):
    from nowcast_cli.ingest import ingest
    from nowcast_cli.store import Store

    out = tmp_path_factory.mktemp("real") / "ry.zarr"
    ingest("dwd", [sample_dir / "dwd" / "ry_20251116_seq5_bz2"], out, workers=1)
    return Store.open(out)


@pytest.mark.parametrize("p0", [1, 2, 64, 127, 128, 129, 200, 255])
def test_dry_block_test_finds_a_lone_event_anywhere(p0: int) -> None:
    """A block holding one value at (or just below) the lowest event pixel, at every position
    of every 8-byte word, among zeros or values just below p0 (the 8-byte prefilter's edge
    cases), also in frames whose rows start off an 8-byte boundary."""
    n = 3 * 64 + 5
    for fill in sorted({0, max(p0 - 1, 0)}):
        for pos in range(0, n, 7):
            for v in (p0 - 1, p0):
                f = np.full((2, 1, n), fill, np.uint8)
                f[1, 0, pos] = v
                obs = np.full((1, n), 255, np.uint8)
                valid = np.ones((1, n), bool)
                acc = Contingency.init(1, 1, np.array([p0]))
                # sample 1's frame starts n bytes in: unaligned for the 64-bit reads
                acc.accumulate(f, obs, valid, np.array([[0], [0]]), np.array([0, 0]))
                want = int(np.sum(f >= p0))
                assert acc.counts[0, 0, 0, 0] == want, (p0, fill, pos, v)
