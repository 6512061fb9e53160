"""numba kernels for RADOLAN payloads: words → store pixels and valid mask in one pass.

Each kernel has a NumPy reference (`nowcast_cli.io.dwd.decode` + `encoding.encode_table`)
that the tests compare it with on every sample file and on fuzzed input.
"""

from __future__ import annotations

import numpy as np

from nowcast_cli._numba import njit


@njit(cache=True, nogil=True)
def words_to_pixels(
    words: np.ndarray, rows: int, cols: int, lut: np.ndarray, pix: np.ndarray, valid: np.ndarray
) -> None:
    """2-byte RADOLAN words (file order, south row first) → north-up pixels and valid mask.

    ``lut`` maps the 13-bit code (12-bit value, bit 12 = negative flag) to a pixel.
    """
    for r in range(rows):
        src = (rows - 1 - r) * cols
        for c in range(cols):
            w = words[src + c]
            if w & 0x2000:  # no-data flag
                valid[r, c] = False
                pix[r, c] = 0
            else:
                valid[r, c] = True
                pix[r, c] = lut[(w & 0x0FFF) | ((w >> 2) & 0x1000)]


@njit(cache=True, nogil=True)
def bytes_to_pixels(
    data: np.ndarray, rows: int, cols: int, lut: np.ndarray, pix: np.ndarray, valid: np.ndarray
) -> None:
    """1-byte RVP6 codes (south row first) → north-up pixels; codes ≥ 249 are not data."""
    for r in range(rows):
        src = (rows - 1 - r) * cols
        for c in range(cols):
            v = data[src + c]
            if v >= 249:
                valid[r, c] = False
                pix[r, c] = 0
            else:
                valid[r, c] = True
                pix[r, c] = lut[v]


def payload_to_pixels(
    payload: memoryview, rows: int, cols: int, single_byte: bool, lut: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Run the kernel matching the payload's value size."""
    pix = np.empty((rows, cols), np.uint8)
    valid = np.empty((rows, cols), np.bool_)
    if single_byte:
        bytes_to_pixels(np.frombuffer(payload, np.uint8), rows, cols, lut, pix, valid)
    else:
        words = np.frombuffer(payload, "<u2").astype(np.uint16, copy=False)
        words_to_pixels(words, rows, cols, lut, pix, valid)
    return pix, valid
