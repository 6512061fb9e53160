"""Area-averaging of pixel frames to the training resolution, in rain rate (SPEC §2).

A coarse cell's rain rate is the area-weighted mean of the rain rates of the fine pixels it
covers (fractional overlaps included, so 900 → 120 works), over valid pixels only; the cell is
valid when at least half of its area is valid. Averaging rain rate rather than pixel values keeps
the mean precipitation of the area (pixel values are logarithmic in rain rate).
"""

from __future__ import annotations

import numpy as np

from nowcast_cli import encoding


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
    """

    def __init__(self, shape: tuple[int, int], size: int, zr: tuple[float, float]) -> None:
        self.size = size
        self.wy = area_weights(shape[0], size).astype(np.float32)
        self.wx_t = np.ascontiguousarray(area_weights(shape[1], size).T.astype(np.float32))
        self.rates = encoding.rate_table(*zr).astype(np.float32)
        self.zr = zr
        # pixel of each coarse rate is found by bisection on the rate of each pixel edge
        edges = encoding.dbz_to_rate(encoding.pixel_to_dbz(np.arange(256) - 0.5), *zr)
        edges[0] = 0.0
        self.edges = edges[1:].astype(np.float64)  # rate where pixel p starts, p = 1..255

    def __call__(self, pixels: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coarsen one frame: uint8 pixels and bool valid → (size, size) uint8 and bool."""
        v = valid.astype(np.float32)
        r = self.rates[pixels] * v
        num = self.wy @ r @ self.wx_t
        den = self.wy @ v @ self.wx_t
        ok = den >= 0.5 - 1e-6
        rate = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        # encode: P = floor(255 (dBZ + 10)/70 + 0.5) is monotone in R, so search the pixel edges
        pix = np.searchsorted(self.edges, rate.astype(np.float64), side="right").astype(np.uint8)
        pix[~ok | (rate <= 0)] = 0
        return pix, ok
