"""Image scores against scikit-image, hand-computed values and a NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nowcast_cli import encoding
from nowcast_cli.metrics import Continuous, continuous
from tests.forecasts import rain_frames

ZR = (256.0, 1.42)


def one_frame(f, o, v=None, zr=ZR):
    """Per-frame scores of one (H, W) forecast against one observation."""
    v = np.ones(o.shape, bool) if v is None else v
    sums = continuous.frame_sums(
        f[None, None], o[None], v[None], np.array([[0]]), continuous.balance_lut(zr)
    )
    return dict(zip(continuous.NAMES, continuous.frame_scores(sums)[0, 0], strict=True))


def skimage_ssim(f, o, full=False):
    """scikit-image's SSIM (the reference; only the tests that use it skip without it)."""
    skimage_metrics = pytest.importorskip("skimage.metrics")
    return skimage_metrics.structural_similarity(
        f / 255.0,
        o / 255.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        full=full,
    )


@pytest.mark.parametrize("seed", range(4))
def test_ssim_equals_scikit_image_on_rain_fields(seed: int) -> None:
    f, o = rain_frames(2, (48, 61), seed)
    assert one_frame(f, o)["ssim"] == pytest.approx(skimage_ssim(f, o), rel=0, abs=1e-12)


def test_ssim_equals_scikit_image_on_noise_and_identity() -> None:
    rng = np.random.default_rng(3)
    f = rng.integers(0, 256, (30, 30)).astype(np.uint8)
    o = rng.integers(0, 256, (30, 30)).astype(np.uint8)
    assert one_frame(f, o)["ssim"] == pytest.approx(skimage_ssim(f, o), rel=0, abs=1e-12)
    assert one_frame(o, o)["ssim"] == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_fine_forecasts_equals_scikit_image_on_the_float_output() -> None:
    skimage_metrics = pytest.importorskip("skimage.metrics")
    f, o = rain_frames(2, (48, 61), 5)
    codes = np.clip(f.astype(np.int64) * 256 + np.arange(f.size).reshape(f.shape) % 700, 0, 65280)
    x = codes / (255.0 * 256)
    want = skimage_metrics.structural_similarity(
        x,
        o / 255.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
    )
    got = one_frame(codes.astype(np.uint16), o)["ssim"]
    assert got == pytest.approx(want, rel=0, abs=1e-12)
    assert got != pytest.approx(one_frame(f, o)["ssim"], rel=0, abs=1e-6)


def test_ssim_with_invalid_pixels_averages_fully_valid_windows() -> None:
    f, o = rain_frames(2, (40, 40), 7)
    v = np.ones(o.shape, bool)
    v[3, 30] = False
    v[25:27, 5] = False
    _, smap = skimage_ssim(f, o, full=True)
    inner = smap[5:-5, 5:-5]  # the 'valid' window centres
    ok = np.ones(inner.shape, bool)
    for i, j in zip(*np.nonzero(~v), strict=True):
        # window centred at (ci + 5, cj + 5) covers rows ci .. ci + 10
        ok[max(0, i - 10) : i + 1, max(0, j - 10) : j + 1] = False
    assert one_frame(f, o, v)["ssim"] == pytest.approx(inner[ok].mean(), rel=0, abs=1e-12)


def test_ssim_undefined_without_a_valid_window() -> None:
    f, o = rain_frames(2, (9, 30), 1)  # fewer rows than the 11×11 window
    assert np.isnan(one_frame(f, o)["ssim"])


def test_psnr_and_gdl_by_hand() -> None:
    f = np.array([[0, 51], [102, 255]], np.uint8)
    o = np.array([[0, 0], [102, 204]], np.uint8)
    s = one_frame(f, o)
    # errors on [0, 1]: 0, 0.2, 0, 0.2 → mean square 0.02
    assert s["psnr"] == pytest.approx(10 * np.log10(1 / (0.02 + 1e-5)))
    assert s["mse"] == pytest.approx(0.08)
    assert s["mae"] == pytest.approx(0.4)
    # GDL: vertical pairs (col 0: |0.4|-|0.4| = 0; col 1: |1-0.2|=0.8 vs |0.8-0|=0.8 → 0),
    # horizontal pairs (row 0: |0.2| vs 0 → 0.2; row 1: |0.6| vs |0.4| → 0.2)
    assert s["gdl"] == pytest.approx(0.4)


def test_gdl_skips_pairs_with_an_invalid_pixel() -> None:
    f = np.array([[0, 51], [102, 255]], np.uint8)
    o = np.array([[0, 0], [102, 204]], np.uint8)
    v = np.array([[True, False], [True, True]])
    # only (0,0)-(1,0) (contributes 0) and (1,0)-(1,1) (0.2) remain
    assert one_frame(f, o, v)["gdl"] == pytest.approx(0.2)


def test_perfect_forecast_caps_psnr_at_50_db() -> None:
    o = rain_frames(1, (20, 20), 2)[0]
    s = one_frame(o, o)
    assert s["psnr"] == pytest.approx(50.0)
    assert s["mse"] == s["mae"] == s["gdl"] == 0.0


@settings(max_examples=40)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 17),
    st.integers(1, 17),
    st.floats(0, 1),
    st.booleans(),
)
def test_pixel_sums_equal_numpy_reference(
    seed: int, h: int, w: int, dry: float, fine: bool
) -> None:
    """Whole-pixel forecasts (uint8) and fine ones (uint16, pixel × 256) alike."""
    rng = np.random.default_rng(seed)
    if fine:
        f = rng.integers(0, 255 * 256 + 1, (h, w)).astype(np.uint16)
        fn = f / (255.0 * 256)
    else:
        f = rng.integers(0, 256, (h, w)).astype(np.uint8)
        fn = f / 255.0
    o = rng.integers(0, 256, (h, w)).astype(np.uint8)
    o[rng.random(o.shape) < dry] = 0
    v = rng.random((h, w)) > 0.2
    s = one_frame(f, o, v)
    e = fn - o / 255.0
    rate = encoding.pixel_to_rate(o, *ZR)
    wt = np.select([rate >= 30, rate >= 10, rate >= 5, rate >= 2], [30, 10, 5, 2], 1.0)
    if not v.any():
        assert np.isnan(s["mse"])
        return
    assert s["mse"] == pytest.approx(np.sum(e[v] ** 2))
    assert s["mae"] == pytest.approx(np.sum(np.abs(e[v])))
    assert s["b_mse"] == pytest.approx(np.sum(wt[v] * e[v] ** 2))
    assert s["b_mae"] == pytest.approx(np.sum(wt[v] * np.abs(e[v])))
    on = o / 255.0
    g = 0.0
    pv = v[1:] & v[:-1]
    g += np.sum(np.abs(np.abs(np.diff(fn, axis=0)) - np.abs(np.diff(on, axis=0)))[pv])
    ph = v[:, 1:] & v[:, :-1]
    g += np.sum(np.abs(np.abs(np.diff(fn, axis=1)) - np.abs(np.diff(on, axis=1)))[ph])
    assert s["gdl"] == pytest.approx(g)


def test_balance_weights_equal_the_training_losses() -> None:
    torch = pytest.importorskip("torch")
    from nowcast_cli import losses

    assert continuous.BALANCE_THRESHOLDS == losses.BALANCE_THRESHOLDS
    assert continuous.BALANCE_WEIGHTS == losses.BALANCE_WEIGHTS
    for zr in (ZR, (58.53, 1.56)):
        px = torch.arange(256, dtype=torch.float32) / 255.0
        want = losses.balance_weights(px, zr).numpy()
        assert continuous.balance_lut(zr).tolist() == want.astype(int).tolist()


def test_accumulator_means_and_merge() -> None:
    frames = rain_frames(6, (24, 24), 4)
    obs, valid = frames, np.ones(frames.shape, bool)
    fc = np.stack([frames[0:3], frames[1:4]])  # (2, 3, H, W)
    index = np.array([[1, 2, 3], [2, 3, -1]])
    acc = Continuous.init(2, 3, ZR)
    acc.accumulate(fc, obs, valid, index, np.array([0, 1]))
    per = acc.compute()
    # lead 0: mean of two frames; lead 2: only sample 0 has an observation
    a = one_frame(frames[0], frames[1])["mse"]
    b = one_frame(frames[1], frames[2])["mse"]
    assert per["mse"][0] == pytest.approx((a + b) / 2)
    assert per["mse"][2] == pytest.approx(one_frame(frames[2], frames[3])["mse"])
    part = Continuous.init(2, 3, ZR)
    part.accumulate(fc[:1], obs, valid, index[:1], np.array([0]))
    rest = Continuous.init(2, 3, ZR)
    rest.accumulate(fc[1:], obs, valid, index[1:], np.array([1]))
    merged = part.merge(rest)
    assert np.allclose(merged.sums, acc.sums)
    assert np.array_equal(merged.frames, acc.frames)
