"""Area-averaging of pixel frames to the training resolution, in rain rate (SPEC §2).

A coarse cell's rain rate is the area-weighted mean of the rain rates of the fine pixels it
covers (fractional overlaps included, so 900 → 120 works), over valid pixels only; the cell is
valid when at least half of its area is valid. Averaging rain rate rather than pixel values keeps
the mean precipitation of the area (pixel values are logarithmic in rain rate).

The copy covers a region of the frame (`nowcast_cli.grid.Box`, by default the whole frame). Ingest
passes a square region (the largest centred square unless the user chose one) so that the coarse
cells stay square; a non-square region is stretched, which only stores made before crop regions
were recorded still do.
"""

from __future__ import annotations

import numpy as np

from nowcast_cli import encoding
from nowcast_cli._numba import njit
from nowcast_cli.errors import ConfigError
from nowcast_cli.grid import Box


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """Matrix (n_out, n_in) of the fraction of each coarse cell covered by each fine cell.

    Rows sum to 1. Coarse cell i spans [i·s, (i+1)·s) in fine-cell units, s = n_in / n_out.
    """
    s = n_in / n_out
    lo = np.arange(n_out)[:, None] * s
    hi = lo + s
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    weights: np.ndarray = overlap / s
    return weights


class Coarsener:
    """Resample (rows, cols) pixel frames to (size, size).

    Parameters
    ----------
    shape : tuple of int
        Fine frame shape (rows, cols).
    size : int
        Coarse frame edge (square output).
    zr : tuple of float
        Z–R coefficients (a, b) of the store.
    box : Box, optional
        Region of the frame the copy covers (default: the whole frame).
    """

    def __init__(
        self,
        shape: tuple[int, int],
        size: int,
        zr: tuple[float, float],
        box: Box | None = None,
    ) -> None:
        box = box or Box(0, 0, shape[1], shape[0])
        if not (0 <= box.x0 < box.x1 <= shape[1] and 0 <= box.y0 < box.y1 <= shape[0]):
            raise ConfigError(f"region {box.as_list()} is not inside the {shape} frame")
        if not 1 <= size <= min(box.height, box.width):
            raise ConfigError(
                f"training size {size} must be between 1 and "
                f"{min(box.height, box.width)} for a {box.height}x{box.width} region"
            )
        self.size = size
        self.box = box
        self.y = _split(area_weights(box.height, size))
        self.x = _split(area_weights(box.width, size))
        self.rates = encoding.rate_table(*zr)
        self.zr = zr
        # pixel of each coarse rate is found by bisection on the rate of each pixel edge
        edges = encoding.dbz_to_rate(encoding.pixel_to_dbz(np.arange(256) - 0.5), *zr)
        edges[0] = 0.0
        self.edges = edges[1:].astype(np.float64)  # rate where pixel p starts, p = 1..255

    def __call__(self, pixels: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coarsen one frame: uint8 pixels and bool valid → (size, size) uint8 and bool."""
        num = np.zeros((self.size, self.size))
        den = np.zeros((self.size, self.size))
        _accumulate(
            np.ascontiguousarray(pixels, dtype=np.uint8),
            np.ascontiguousarray(valid, dtype=np.bool_),
            self.box.y0,
            self.box.x0,
            self.rates,
            *self.y,
            *self.x,
            num,
            den,
        )
        ok = den >= 0.5 - 1e-9
        rate = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        # encode: P = floor(255 (dBZ + 10)/70 + 0.5) is monotone in R, so search the pixel edges
        pix = np.empty((self.size, self.size), np.uint8)
        _encode(rate, ok, self.edges, pix)
        return pix, ok


def _split(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per fine cell: first coarse cell and weight, second coarse cell (-1: none) and weight.

    When downsampling (n_out ≤ n_in) a fine cell overlaps at most two coarse cells.
    """
    n_in = weights.shape[1]
    i0 = np.full(n_in, -1, np.int64)
    i1 = np.full(n_in, -1, np.int64)
    w0 = np.zeros(n_in)
    w1 = np.zeros(n_in)
    for j in range(n_in):
        idx = np.nonzero(weights[:, j] > 0)[0]
        i0[j], w0[j] = idx[0], weights[idx[0], j]
        if len(idx) > 1:
            i1[j], w1[j] = idx[1], weights[idx[1], j]
    return i0, w0, i1, w1


@njit(cache=True, nogil=True)
def _accumulate(
    pix: np.ndarray,
    valid: np.ndarray,
    r0: int,
    c0: int,
    rates: np.ndarray,
    iy0: np.ndarray,
    wy0: np.ndarray,
    iy1: np.ndarray,
    wy1: np.ndarray,
    ix0: np.ndarray,
    wx0: np.ndarray,
    ix1: np.ndarray,
    wx1: np.ndarray,
    num: np.ndarray,
    den: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Area-weighted sums of rain rate (num) and of valid area (den) per coarse cell.

    Separable: each fine row is first summed into the coarse columns, then that row sum is
    spread over the (at most two) coarse rows the fine row overlaps. Only the region starting at
    row r0, column c0 with as many rows and columns as the weight tables is read.
    """
    rows = iy0.shape[0]
    cols = ix0.shape[0]
    size_x = num.shape[1]
    row_num = np.empty(size_x)
    row_den = np.empty(size_x)
    for r in range(rows):
        row_num[:] = 0.0
        row_den[:] = 0.0
        for c in range(cols):
            if valid[r0 + r, c0 + c]:
                x = rates[pix[r0 + r, c0 + c]]
                j, w = ix0[c], wx0[c]
                row_num[j] += w * x
                row_den[j] += w
                j = ix1[c]
                if j >= 0:
                    w = wx1[c]
                    row_num[j] += w * x
                    row_den[j] += w
        a, b = iy0[r], wy0[r]
        for j in range(size_x):
            num[a, j] += b * row_num[j]
            den[a, j] += b * row_den[j]
        a = iy1[r]
        if a >= 0:
            b = wy1[r]
            for j in range(size_x):
                num[a, j] += b * row_num[j]
                den[a, j] += b * row_den[j]


@njit(cache=True, nogil=True)
def _encode(
    rate: np.ndarray, ok: np.ndarray, edges: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Pixel of each coarse rain rate: ``searchsorted(edges, rate, side="right")``.

    0 where not valid or dry. A binary search per cell: numpy's searchsorted on a 120x120 frame
    took most of the coarsening time.
    """
    n = edges.shape[0]
    for i in range(rate.shape[0]):
        for j in range(rate.shape[1]):
            r = rate[i, j]
            if not ok[i, j] or not r > 0.0:
                out[i, j] = 0
                continue
            lo, hi = 0, n
            while lo < hi:
                mid = (lo + hi) // 2
                if edges[mid] <= r:
                    lo = mid + 1
                else:
                    hi = mid
            out[i, j] = lo
