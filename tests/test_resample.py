from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from nowcast_cli import encoding
from nowcast_cli.grid import Box
from nowcast_cli.resample import Coarsener, _encode, area_weights

ZR = (256.0, 1.42)


@given(st.integers(1, 60), st.integers(1, 20))
def test_area_weights_rows_sum_to_one(n_in: int, n_out: int) -> None:
    w = area_weights(n_in, n_out)
    assert w.shape == (n_out, n_in)
    assert np.allclose(w.sum(axis=1), 1.0)
    assert np.allclose(w.sum(axis=0), n_out / n_in)


def _reference(pix: np.ndarray, valid: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Loop over coarse cells, integrating rain rate over the exact fractional overlaps."""
    rows, cols = pix.shape
    rate = encoding.pixel_to_rate(pix, *ZR)
    out = np.zeros((size, size), np.uint8)
    ok = np.zeros((size, size), bool)
    sy, sx = rows / size, cols / size
    for i in range(size):
        for j in range(size):
            num = den = 0.0
            for r in range(rows):
                oy = max(0.0, min((i + 1) * sy, r + 1) - max(i * sy, r))
                for c in range(cols):
                    ox = max(0.0, min((j + 1) * sx, c + 1) - max(j * sx, c))
                    if oy * ox and valid[r, c]:
                        num += oy * ox * rate[r, c]
                        den += oy * ox
            ok[i, j] = den >= 0.5 * sy * sx
            if ok[i, j] and num > 0:
                out[i, j] = encoding.dbz_to_pixel(encoding.rate_to_dbz(num / den, *ZR))
    return out, ok


def test_coarsener_matches_loop_reference() -> None:
    rng = np.random.default_rng(0)
    pix = rng.integers(0, 256, size=(15, 12)).astype(np.uint8)
    pix[rng.random(pix.shape) < 0.4] = 0
    valid = rng.random(pix.shape) > 0.2
    valid[:5, :5] = False  # a mostly invalid corner
    got, got_ok = Coarsener(pix.shape, 4, ZR)(pix, valid)
    ref, ref_ok = _reference(pix, valid, 4)
    assert np.array_equal(got_ok, ref_ok)
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1  # float32 vs float64 at edges


def test_averaging_is_in_rain_rate_not_pixels() -> None:
    pix = np.array([[0, 200], [0, 0]], np.uint8)
    out, ok = Coarsener((2, 2), 1, ZR)(pix, np.ones((2, 2), bool))
    quarter = encoding.pixel_to_rate(200, *ZR) / 4
    assert ok.all()
    assert int(out[0, 0]) == int(encoding.dbz_to_pixel(encoding.rate_to_dbz(quarter, *ZR)))
    assert int(out[0, 0]) != 50  # the pixel mean would be 50


def test_coarsener_box_matches_loop_reference_on_the_region() -> None:
    rng = np.random.default_rng(1)
    pix = rng.integers(0, 256, size=(14, 19)).astype(np.uint8)
    pix[rng.random(pix.shape) < 0.4] = 0
    valid = rng.random(pix.shape) > 0.2
    box = Box(3, 2, 15, 14)  # a 12x12 square off the corner
    got, got_ok = Coarsener(pix.shape, 4, ZR, box)(pix, valid)
    ref, ref_ok = _reference(pix[2:14, 3:15], valid[2:14, 3:15], 4)
    assert np.array_equal(got_ok, ref_ok)
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1


@given(st.integers(0, 2**32 - 1))
def test_encode_equals_numpy_searchsorted(seed: int) -> None:
    rng = np.random.default_rng(seed)
    edges = Coarsener((4, 4), 2, ZR).edges
    rate = np.where(rng.random((9, 7)) < 0.3, 0.0, 10 ** rng.uniform(-3, 3, (9, 7)))
    rate[0, :3] = edges[[0, 100, 254]]  # exactly on pixel edges
    ok = rng.random((9, 7)) > 0.2
    out = np.empty((9, 7), np.uint8)
    _encode(rate, ok, edges, out)
    ref = np.searchsorted(edges, rate, side="right").astype(np.uint8)
    ref[~ok | (rate <= 0)] = 0
    assert np.array_equal(out, ref)


def test_a_cell_exactly_half_valid_is_valid_and_one_just_under_half_is_not() -> None:
    """SPEC §2: a coarse cell is valid when at least half of its area is valid (≥, not >).

    Fine rows of equal area 1/n: the first n/2 valid make exactly half the cell (whatever
    rounding the float weights add), one row fewer is under half; the 7-row cell's 3 valid
    rows are 3/7 of it.
    """
    for n, rows, expect in (
        (2, 1, True),
        (6, 3, True),
        (10, 5, True),
        (10, 4, False),
        (7, 3, False),
    ):
        valid = np.zeros((n, n), bool)
        valid[:rows] = True
        pix = np.full((n, n), 100, np.uint8)
        out, ok = Coarsener((n, n), 1, ZR)(pix, valid)
        assert bool(ok[0, 0]) is expect, (n, rows)
        assert bool(out[0, 0] == 100) is expect  # a valid cell of equal rates keeps the rate
