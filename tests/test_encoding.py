"""Pixel/dBZ/rain-rate conversions against values computed independently (HKO-7 and DWD code)."""

from __future__ import annotations

import numpy as np
import pytest

from nowcast_cli import encoding
from nowcast_cli.io import READERS, create_reader

# Pixel thresholds (×255) from the authors' util/utils.py and the HKO-7 benchmark code, as listed
# in shared/research/authors_code.md §2.2 (independent of this implementation).
HKO = (58.53, 1.56)
DWD = (256.0, 1.42)


@pytest.mark.parametrize(
    ("zr", "rate", "pixel"),
    [
        (HKO, 0.5, 83.7),
        (HKO, 2, 117.9),
        (HKO, 5, 140.5),
        (HKO, 10, 157.6),
        (HKO, 30, 184.8),
        (DWD, 0.5, 108.6),
        (DWD, 2, 139.7),
        (DWD, 5, 160.3),
        (DWD, 10, 175.9),
    ],
)
def test_threshold_pixels_match_reference(zr, rate, pixel) -> None:
    assert encoding.threshold_to_pixel(rate, *zr) == pytest.approx(pixel, abs=0.06)


def test_pixel_formula_ends_and_rounding() -> None:
    assert encoding.dbz_to_pixel(np.array([-10.0, 60.0, -40.0, 99.0])).tolist() == [0, 255, 0, 255]
    # floor(x + 0.5): rounds to nearest, not down
    assert int(encoding.dbz_to_pixel(70 * 0.6 / 255 - 10)) == 1
    assert int(encoding.dbz_to_pixel(70 * 0.4 / 255 - 10)) == 0
    assert int(encoding.dbz_to_pixel(70 * 7.7 / 255 - 10)) == 8
    assert int(encoding.dbz_to_pixel(np.nan)) == 0


def test_pixel_round_trip_is_exact() -> None:
    p = np.arange(256)
    assert np.array_equal(encoding.dbz_to_pixel(encoding.pixel_to_dbz(p)), p)
    r = encoding.pixel_to_rate(p, *DWD)
    assert r[0] == 0
    assert np.array_equal(encoding.encode_table(r, "rain_rate", *DWD), p)


def test_rate_dbz_inverse() -> None:
    r = np.array([0.1, 1.0, 12.0, 100.0])
    assert np.allclose(encoding.dbz_to_rate(encoding.rate_to_dbz(r, *HKO), *HKO), r)
    # Z = a R^b: 1 mm/h is 10 log10(a) dBZ
    assert float(encoding.rate_to_dbz(1.0, *DWD)) == pytest.approx(10 * np.log10(256))
    assert float(encoding.rate_to_dbz(0.0, *DWD)) == -np.inf


def test_event_pixels_are_the_first_pixels_at_or_above_each_threshold() -> None:
    a, b = 58.53, 1.56
    px = encoding.event_pixels([0.5, 2, 5, 10, 30], a, b)
    # HKO-7's pixel thresholds at b = 1.56 (peers.md §0, the benchmark's own table)
    assert px.tolist() == [84, 118, 141, 158, 185]
    rates = encoding.rate_table(a, b)
    for p, t in zip(px, [0.5, 2, 5, 10, 30], strict=True):
        assert rates[p] >= t > rates[p - 1]
    assert encoding.event_pixels([1e-9], a, b).tolist() == [1]  # pixel 0 is no echo
    assert encoding.event_pixels([1e6], a, b).tolist() == [256]  # beyond P = 255


def test_unit_to_pixel_rounds_half_up_and_clips() -> None:
    x = np.array([-0.2, 0.0, 0.5 / 255, 1.49 / 255, 0.5, 1.0, 1.7])
    assert encoding.unit_to_pixel(x).tolist() == [0, 0, 1, 1, 128, 255, 255]


def _reader_zr() -> dict[str, tuple[float, float]]:
    out = {}
    for name in READERS.names():
        zr = create_reader(name).store_attrs()["zr"]
        out[name] = (float(zr["a"]), float(zr["b"]))
    return out


#: every Z–R relation the code uses (each reader's), and one a user might give with --zr
ENCODINGS = {**_reader_zr(), "--zr 300,1.5": (300.0, 1.5)}


@pytest.mark.parametrize("zr", list(ENCODINGS.values()), ids=list(ENCODINGS))
@pytest.mark.parametrize("scale", [1, 256])
def test_threshold_at_a_codes_own_rate_counts_that_code(zr, scale) -> None:
    """Rain ≥ τ with τ equal to the decoded rate of code c (every c, whole and fine codes):
    c is an event, c − 1 is not; a hair above τ starts at c + 1, a hair below at c."""
    rates = encoding.code_rates(*zr, scale=scale)
    codes = np.arange(1, 255 * scale + 1)
    tau = rates[1:]
    assert np.array_equal(encoding.event_codes(tau, *zr, scale=scale), codes)
    up = np.nextafter(tau, np.inf)
    assert np.array_equal(encoding.event_codes(up, *zr, scale=scale), codes + 1)
    down = np.nextafter(tau, 0)
    assert np.array_equal(encoding.event_codes(down, *zr, scale=scale), codes)
    if scale == 1:  # the whole pixels are the store's own rate table
        assert np.array_equal(rates, encoding.rate_table(*zr))
        assert np.array_equal(encoding.event_pixels(tau, *zr), codes)


@pytest.mark.parametrize("zr", list(ENCODINGS.values()), ids=list(ENCODINGS))
def test_contingency_counts_rain_at_or_above_every_pixel_rate(zr) -> None:
    """The verification kernel against the definition: a frame holding every pixel value,
    thresholds at every pixel's decoded rate; events are the pixels whose rate is ≥ τ."""
    from nowcast_cli.metrics import Contingency

    rates = encoding.rate_table(*zr)
    frame = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    valid = np.ones_like(frame, bool)
    for lo in range(1, 256, 50):  # thresholds in groups (a contingency table per threshold)
        tau = rates[lo : lo + 50]
        acc = Contingency.init(1, 1, encoding.event_pixels(tau, *zr))
        acc.accumulate(frame[None], frame, valid, np.array([[0]]), np.array([0]))
        events = (rates[:, None] >= tau[None, :]).sum(axis=0)
        assert acc.counts[0, 0, :, 0].tolist() == events.tolist()  # TP: forecast = obs
        assert acc.counts[0, 0, :, 3].tolist() == (256 - events).tolist()
