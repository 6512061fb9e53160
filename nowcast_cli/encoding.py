"""The store's pixel encoding and the conversions between pixels, dBZ and rain rate (SPEC §3).

- pixel P (uint8) ↔ reflectivity: dBZ = 70·P/255 − 10, P = floor(255·(dBZ + 10)/70 + 0.5),
  clipped to 0..255; P = 0 means no echo (or no data, see the ``valid`` mask).
- reflectivity ↔ rain rate R (mm/h): Z = a·R^b with dBZ = 10·log10(Z).

All functions are NumPy-vectorized; tables are computed in float64.
"""

from __future__ import annotations

import numpy as np

PIXEL_FORMULA = "dBZ = 70 * P / 255 - 10"
INVERSE_FORMULA = "P = floor(255 * (dBZ + 10) / 70 + 0.5), clipped to 0..255"


def dbz_to_pixel(dbz: np.ndarray | float) -> np.ndarray:
    """Encode reflectivity (dBZ) as uint8 pixels; NaN and -inf give 0."""
    d = np.asarray(dbz, dtype=np.float64)
    p = np.floor(255.0 * (d + 10.0) / 70.0 + 0.5)
    p = np.nan_to_num(p, nan=0.0, neginf=0.0, posinf=255.0)
    return np.clip(p, 0, 255).astype(np.uint8)


def pixel_to_dbz(pixel: np.ndarray | float) -> np.ndarray:
    """Decode pixels to reflectivity in dBZ (float64)."""
    return 70.0 * np.asarray(pixel, dtype=np.float64) / 255.0 - 10.0


def rate_to_dbz(rate: np.ndarray | float, a: float, b: float) -> np.ndarray:
    """Rain rate (mm/h) to reflectivity (dBZ); R ≤ 0 gives -inf (no echo)."""
    r = np.asarray(rate, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10.0 * np.log10(a) + 10.0 * b * np.log10(np.where(r > 0, r, 0.0))
    return np.where(r > 0, out, -np.inf)


def dbz_to_rate(dbz: np.ndarray | float, a: float, b: float) -> np.ndarray:
    """Reflectivity (dBZ) to rain rate (mm/h)."""
    d = np.asarray(dbz, dtype=np.float64)
    out: np.ndarray = np.power(10.0, (d - 10.0 * np.log10(a)) / (10.0 * b))
    return out


def pixel_to_rate(pixel: np.ndarray | float, a: float, b: float) -> np.ndarray:
    """Decode pixels to rain rate (mm/h); pixel 0 (no echo) is 0 mm/h."""
    p = np.asarray(pixel)
    return np.where(p > 0, dbz_to_rate(pixel_to_dbz(p), a, b), 0.0)


def rate_table(a: float, b: float) -> np.ndarray:
    """float64 rain rate (mm/h) of each of the 256 pixel values."""
    return pixel_to_rate(np.arange(256), a, b)


def threshold_to_pixel(rate: float, a: float, b: float) -> float:
    """Continuous pixel value of a rain-rate threshold: rain ≥ τ ⇔ P ≥ this value."""
    d = float(rate_to_dbz(rate, a, b))
    return 255.0 * (d + 10.0) / 70.0


def encode_table(table: np.ndarray, quantity: str, a: float, b: float) -> np.ndarray:
    """Pixel value of each code of a quantized frame (see `nowcast_cli.io.base.Frame`).

    Parameters
    ----------
    table : np.ndarray
        Physical value per code: rain rate in mm/h or reflectivity in dBZ.
    quantity : {"rain_rate", "reflectivity"}
        What `table` holds.
    a, b : float
        Z–R coefficients of the store.
    """
    t = np.asarray(table, dtype=np.float64)
    if quantity == "rain_rate":
        return dbz_to_pixel(rate_to_dbz(t, a, b))
    if quantity == "reflectivity":
        return dbz_to_pixel(t)
    raise ValueError(f"unknown quantity {quantity!r}")


def code_rates(a: float, b: float, scale: int = 1) -> np.ndarray:
    """float64 rain rate (mm/h) of every code 0 .. 255·scale, code c standing for pixel c/scale.

    ``scale`` 1: the 256 whole pixels (`rate_table`); 256: the fine forecast codes (pixel value
    in 1/256 steps, `unit_to_fine`). Code 0 is no echo (0 mm/h).
    """
    c = np.arange(255 * scale + 1, dtype=np.float64)
    return pixel_to_rate(c / scale, a, b)


def event_codes(
    thresholds: np.ndarray | list[float], a: float, b: float, scale: int = 1
) -> np.ndarray:
    """Smallest code counted as "rain ≥ τ" for each rain-rate threshold τ (mm/h).

    A code (pixel × `scale`) is an event when the rain rate it decodes to, `code_rates`, is
    ≥ τ: the comparison is made on the decoded rate itself, so a threshold equal to a code's
    own rate counts that code (no rounding of the continuous P(τ), which lands a hair above an
    integer for many pixels and would make "≥" a ">"). Never below 1, since code 0 is no echo;
    255·scale + 1 when even the largest code is below τ (the event cannot occur).

    Returns
    -------
    np.ndarray
        int64, one per threshold.
    """
    rates = code_rates(a, b, scale)[1:]  # increasing with the code
    t = np.asarray(np.ravel(thresholds), dtype=np.float64)
    return np.searchsorted(rates, t, side="left").astype(np.int64) + 1


def event_pixels(thresholds: np.ndarray | list[float], a: float, b: float) -> np.ndarray:
    """Smallest pixel value counted as "rain ≥ τ" for each rain-rate threshold τ (mm/h).

    The first pixel whose decoded rate (`rate_table`) is ≥ τ, compared exactly; ≥ 1 (pixel 0
    is no echo), 256 when even P = 255 is below τ. See `event_codes`.

    Returns
    -------
    np.ndarray
        int64, one per threshold.
    """
    return event_codes(thresholds, a, b, 1)


#: fine forecast codes: pixel value × FINE_SCALE as uint16 (0 … 65280), 1/256 pixel steps
FINE_SCALE = 256
FINE_FORMULA = "pixel = forecast_fine / 256; dBZ = 70 * pixel / 255 - 10"


def unit_to_fine(x: np.ndarray) -> np.ndarray:
    """Model outputs on the [0, 1] pixel scale to uint16 fine codes: clip, ×255·256, round.

    The code is the pixel value in 1/256 steps: within 1/512 pixel (0.0003 dBZ) of the output,
    where `unit_to_pixel` is within half a pixel (0.14 dBZ).
    """
    v = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0) * (255.0 * FINE_SCALE)
    return np.floor(v + 0.5).astype(np.uint16)


def code_scale(dtype: np.dtype | type) -> int:
    """Codes per pixel of a forecast array: 1 for uint8 pixels, 256 for uint16 fine codes."""
    dt = np.dtype(dtype)
    if dt == np.uint8:
        return 1
    if dt == np.uint16:
        return FINE_SCALE
    raise ValueError(f"forecast codes are uint8 pixels or uint16 fine codes, not {dt}")


def unit_to_pixel(x: np.ndarray) -> np.ndarray:
    """Model outputs on the [0, 1] pixel scale to uint8 pixels: clip, ×255, round half up."""
    v = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0) * 255.0
    return np.floor(v + 0.5).astype(np.uint8)
