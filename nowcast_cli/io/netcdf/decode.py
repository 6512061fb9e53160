"""Decoding raw values to mm/h or dBZ, and to store pixels, as CF says.

Integer variables of up to 16 bits are decoded through lookup tables: every bit pattern is
decoded once (``scale_factor``/``add_offset``, ``_Unsigned``, fill values, valid range, units,
Z–R), then each pixel costs one table lookup whatever the packing.
Wider integers and floats are converted per pixel with the same rules (`float_frame`).
"""

from __future__ import annotations

import functools

import numpy as np

from nowcast_cli.io.netcdf.layout import Layout

CodeKey = tuple[str, bool, float, float, tuple[float, ...], float | None, float | None]


@functools.lru_cache(maxsize=32)
def code_tables(
    dtype: str,
    unsigned: bool,
    scale: float,
    offset: float,
    fills: tuple[float, ...],
    valid_min: float | None,
    valid_max: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """For every bit pattern of a ≤16-bit integer type: decoded value, and whether it is valid."""
    dt = np.dtype(dtype)
    bits = 8 * dt.itemsize
    patterns = np.arange(2**bits, dtype=np.uint64).astype(f"u{dt.itemsize}")
    raw = patterns if unsigned or dt.kind == "u" else patterns.view(dt)
    valid = np.ones(2**bits, dtype=bool)
    for f in fills:
        if dt.kind == "i" and unsigned:
            # the fill is written in the signed type and reinterpreted, as xarray does
            if float(f).is_integer():
                valid &= raw != np.array(f).astype(dt).view(f"u{dt.itemsize}")
        else:
            valid &= raw != f
    if valid_min is not None:
        valid &= raw >= valid_min
    if valid_max is not None:
        valid &= raw <= valid_max
    values = raw.astype(np.float64) * scale + offset
    values.flags.writeable = False
    valid.flags.writeable = False
    return values, valid


@functools.lru_cache(maxsize=32)
def pixel_lut(
    key: CodeKey, factor: float, linear: bool, quantity: str, zr: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Store pixel (0 where not valid) and valid flag of every bit pattern."""
    from nowcast_cli.encoding import encode_table

    values, valid = code_tables(*key)
    pix = encode_table(physical(values, factor, linear), quantity, *zr)
    pix = np.where(valid, pix, 0).astype(np.uint8)
    pix.flags.writeable = False
    return pix, valid


def physical(values: np.ndarray, factor: float, linear: bool) -> np.ndarray:
    """Decoded values → mm/h (amounts and rates) or dBZ (linear Z: 10 log10 of Z in mm6 m-3)."""
    x = values.astype(np.float64, copy=False) * factor
    if linear:
        with np.errstate(divide="ignore", invalid="ignore"):
            out: np.ndarray = np.where(x > 0, 10.0 * np.log10(np.where(x > 0, x, 1.0)), -np.inf)
        return out
    return x


def code_key(lay: Layout) -> CodeKey:
    """The arguments of `code_tables` for a file's packing."""
    return (
        lay.dtype.str,
        lay.unsigned,
        lay.scale,
        lay.offset,
        lay.fills,
        lay.valid_min,
        lay.valid_max,
    )


def float_frame(lay: Layout, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Physical values (0 where not valid) and valid flags of a frame of floats or wide ints."""
    x = raw.astype(np.float64)
    valid = np.isfinite(x)
    for f in lay.fills:
        valid &= x != f
    if lay.valid_min is not None:
        valid &= x >= lay.valid_min
    if lay.valid_max is not None:
        valid &= x <= lay.valid_max
    phys = physical(x * lay.scale + lay.offset, lay.factor, lay.units.linear)
    valid &= ~np.isnan(phys) & ~np.isposinf(phys)
    return np.where(valid, phys, 0.0), valid
