"""KNMI radar composites in KNMI HDF5 (RAD_NL25 5-minute accumulations, reflectivity).

Format (KNMI HDF5 as read by pysteps' ``import_knmi_hdf5``): ``image1/image_data`` holds 8- or
16-bit codes, row 0 north (``geographic.geo_pixel_size_y`` < 0); ``image1/calibration`` gives
``calibration_formulas`` ("GEO=0.01*PV+0.0"), ``calibration_missing_data`` and
``calibration_out_of_image``; ``image1.image_geo_parameter`` says what GEO is
("ACCUMULATED_PRECIPITATION_[MM]" or a reflectivity in dBZ); ``overview`` holds
``product_datetime_start``/``_end`` ("26-AUG-2010;00:00:00.000", UTC); ``geographic`` holds the
grid (``geo_number_rows/columns``, ``geo_row/column_offset``, ``geo_pixel_size_x/y`` in
``geo_dim_pixel`` units) and ``geographic/map_projection.projection_proj4_params``.

Decisions:

- Accumulations become rain rates: R = GEO·3600/interval_s mm/h, the interval being end - start
  (5 minutes for RAD_NL25_RAP_5min). The frame time is the end of the interval.
- Missing-data and out-of-image codes → ``valid`` False (pysteps: 65535 → NaN).
- Grid in metres: the file's PROJ string has its lengths in km when ``geo_dim_pixel`` is KM, so
  ``+a +b +x_0 +y_0`` are scaled by 1000 and ``+units=m`` is added; the lower-left corner is
  (column_offset, row_offset + rows)·pixel size, as in pysteps.
- h5py is an optional dependency, imported when a KNMI reader is created.
"""

from __future__ import annotations

import calendar
import contextlib
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nowcast_cli.errors import MissingDependencyError
from nowcast_cli.grid import Grid
from nowcast_cli.io import READERS
from nowcast_cli.io.base import (
    BadFileError,
    Failure,
    Frame,
    FrameInfo,
    Item,
    Quantity,
    Reader,
    Scanned,
    walk_files,
)

HDF5_EXTRA = "hdf5"
HDF5_SUFFIXES = frozenset({".h5", ".hdf5", ".hdf", ".he5"})
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAX_PIXELS = 8192 * 8192
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
    )
}
_DATETIME = re.compile(r"\s*(\d{1,2})-([A-Za-z]{3})-(\d{4});(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?\s*")
_FORMULA = re.compile(
    r"\s*GEO\s*=\s*([-+]?[0-9.]+(?:[eE][-+]?\d+)?)\s*\*\s*PV\s*"
    r"(?:([-+])\s*([0-9.]+(?:[eE][-+]?\d+)?))?\s*"
)
_PROJ_LENGTHS = ("a", "b", "x_0", "y_0")
_UNITS = {"KM": 1000.0, "M": 1.0}


def _h5py() -> Any:
    """Import h5py, or explain how to install it."""
    try:
        import h5py
    except ImportError:
        raise MissingDependencyError(
            f"reading KNMI HDF5 needs h5py: pip install 'nowcast[{HDF5_EXTRA}]' (or h5py)"
        ) from None
    return h5py


class HeaderError(ValueError):
    """An attribute that is present but does not hold what a KNMI composite needs."""


def _value(attrs: Any, key: str, default: Any = None) -> Any:
    if key not in attrs:
        if default is not None:
            return default
        raise KeyError(key)
    return attrs[key]


def _text(attrs: Any, key: str, default: str | None = None) -> str:
    """A string attribute (bytes, str or a 1-element array of either) as str."""
    v = np.asarray(_value(attrs, key, default)).ravel()
    if v.size < 1:
        raise HeaderError(f"attribute {key} is empty")
    x = v[0]
    return x.decode("latin-1") if isinstance(x, bytes) else str(x)


def _number(attrs: Any, key: str) -> float:
    """A numeric attribute (scalar or first element of an array) as a finite float."""
    v = np.asarray(_value(attrs, key)).ravel()
    if v.size < 1 or v.dtype.kind not in "iuf" or not np.isfinite(float(v[0])):
        raise HeaderError(f"attribute {key} is not a finite number")
    return float(v[0])


def parse_datetime(text: str) -> int:
    """UTC seconds of a KNMI time stamp "26-AUG-2010;00:00:00.000"."""
    m = _DATETIME.fullmatch(text)
    if not m or m.group(2).upper() not in _MONTHS:
        raise HeaderError(f"time stamp {text!r} is not DD-MON-YYYY;HH:MM:SS")
    day, year = int(m.group(1)), int(m.group(3))
    month = _MONTHS[m.group(2).upper()]
    hour, minute, second = int(m.group(4)), int(m.group(5)), int(m.group(6))
    if not (1 <= day <= calendar.monthrange(year, month)[1] and hour < 24 and minute < 60):
        raise HeaderError(f"time stamp {text!r} is not a valid date")
    return calendar.timegm((year, month, day, hour, minute, min(second, 59)))


def metre_proj(proj4: str, unit_m: float) -> str:
    """The PROJ string with lengths in metres (`unit_m` metres per file length unit)."""
    out = []
    for token in proj4.split():
        key, sep, value = token.lstrip("+").partition("=")
        if sep and key in _PROJ_LENGTHS and unit_m != 1.0:
            with contextlib.suppress(ValueError):  # keep a non-numeric value as it is
                value = f"{float(value) * unit_m:.10g}"
        if key == "units":
            continue
        out.append(f"+{key}={value}" if sep else f"+{key}")
    return " ".join([*out, "+units=m"])


@dataclass(frozen=True)
class KnmiHeader:
    """What decoding a KNMI HDF5 composite needs, read from its attributes."""

    info: FrameInfo
    gain: float
    offset: float
    factor: float  # GEO → table value (3600 / interval for accumulations, else 1)
    missing: tuple[int, ...]
    flip: bool  # rows stored south first


def read_header(f: Any, name: str) -> KnmiHeader:
    """Read the attributes of an open ``h5py.File`` (errors propagate to the caller)."""
    image = f["image1"]
    dset = image["image_data"]
    geo = f["geographic"]
    overview = f["overview"]
    calib = image["calibration"]
    if len(dset.shape) != 2 or dset.dtype not in (np.uint8, np.uint16):
        raise BadFileError(name, f"image_data is {dset.shape} {dset.dtype}, not 2-D uint8/16")
    rows, cols = (int(n) for n in dset.shape)
    if rows * cols > MAX_PIXELS or rows < 1 or cols < 1:
        raise BadFileError(name, f"implausible image size {rows}x{cols}")
    n_rows, n_cols = _number(geo.attrs, "geo_number_rows"), _number(geo.attrs, "geo_number_columns")
    if (n_rows, n_cols) != (rows, cols):
        raise BadFileError(name, f"image_data is {rows}x{cols}, geographic says {n_rows}x{n_cols}")
    start = parse_datetime(_text(overview.attrs, "product_datetime_start"))
    end = parse_datetime(_text(overview.attrs, "product_datetime_end"))
    interval = end - start
    if not 0 < interval <= 86400:
        raise BadFileError(name, f"product interval {interval} s (start to end) is not valid")
    formula = _text(calib.attrs, "calibration_formulas")
    fm = _FORMULA.fullmatch(formula)
    if not fm:
        raise BadFileError(name, f"unsupported calibration formula {formula!r}")
    gain = float(fm.group(1))
    offset = float(fm.group(3) or 0.0) * (-1.0 if fm.group(2) == "-" else 1.0)
    if not (np.isfinite(gain) and np.isfinite(offset)):
        raise BadFileError(name, f"unsupported calibration formula {formula!r}")
    missing = tuple(
        int(_number(calib.attrs, k))
        for k in ("calibration_missing_data", "calibration_out_of_image")
        if k in calib.attrs
    )
    param = _text(image.attrs, "image_geo_parameter").upper()
    quantity: Quantity
    if "PRECIPITATION" in param and "[MM]" in param:
        quantity, factor = "rain_rate", 3600.0 / interval
    elif "REFLECTIVITY" in param or "DBZ" in param:
        quantity, factor = "reflectivity", 1.0
    else:
        raise BadFileError(name, f"unsupported parameter {param!r}: need a precipitation depth")
    if "product_group_name" in overview.attrs:
        product = _text(overview.attrs, "product_group_name")
    else:
        product = _text(image.attrs, "image_product_name")
    info = FrameInfo(name, end, product, _grid(f, geo, rows, cols, name), interval, quantity)
    flip = _number(geo.attrs, "geo_pixel_size_y") > 0
    return KnmiHeader(info, gain, offset, factor, missing, flip)


def _grid(f: Any, geo: Any, rows: int, cols: int, name: str) -> Grid:
    dim = _text(geo.attrs, "geo_dim_pixel", "KM").split(",")[0].strip().upper()
    unit = _UNITS.get(dim)
    gname = f"KNMI {rows}x{cols}"
    if unit is None:  # degrees or unknown: not a projected grid
        return Grid(gname, rows, cols)
    psx = _number(geo.attrs, "geo_pixel_size_x") * unit
    psy = _number(geo.attrs, "geo_pixel_size_y") * unit
    col0 = _number(geo.attrs, "geo_column_offset")
    row0 = _number(geo.attrs, "geo_row_offset")
    proj = ""
    if "map_projection" in geo and "projection_proj4_params" in geo["map_projection"].attrs:
        proj = metre_proj(_text(geo["map_projection"].attrs, "projection_proj4_params"), unit)
    if psx <= 0 or psy == 0 or abs(abs(psy) - psx) > 1e-6 * psx:
        return Grid(gname, rows, cols, 0.0, proj)
    x_ll = col0 * psx
    y_ll = (row0 + rows) * psy if psy < 0 else row0 * psy
    return Grid(f"KNMI {rows}x{cols} {psx / 1000:g} km", rows, cols, psx, proj, x_ll, y_ll)


def _looks_hdf5(path: Path) -> bool:
    if path.suffix.lower() in HDF5_SUFFIXES:
        return True
    try:
        with path.open("rb") as f:
            return f.read(8) == HDF5_SIGNATURE
    except OSError:
        return True  # let the scan report why it cannot be read


@functools.lru_cache(maxsize=16)
def value_table(bits: int, gain: float, offset: float, factor: float) -> np.ndarray:
    """Physical value of each code: (gain·PV + offset)·factor."""
    table = (gain * np.arange(2**bits, dtype=np.float64) + offset) * factor
    table.flags.writeable = False
    return table


@READERS.register("knmi")
class KnmiReader(Reader):
    """KNMI radar composites in KNMI HDF5 (RAD_NL25 5-min accumulations); needs h5py."""

    name = "knmi"
    attribution = "Source: Royal Netherlands Meteorological Institute (KNMI)"
    licence = (
        "KNMI open data, CC BY 4.0 (files from pySTEPS/pysteps-data, which states no licence; "
        "check before redistributing)"
    )
    zr = (200.0, 1.6)
    zr_reference = (
        "Marshall-Palmer Z = 200 R^1.6, the relation of KNMI's radar precipitation composites, "
        "as reported by pysteps 1.21.5 import_knmi_hdf5 (metadata zr_a = 200.0, zr_b = 1.6)"
    )

    def __init__(self) -> None:
        _h5py()  # fail at once, with the install hint, rather than once per file

    def candidates(self, paths: list[Path]) -> list[Path]:
        """HDF5 files under `paths`: by suffix or signature (files named explicitly: all)."""
        return [p for p in walk_files(paths) if p in paths or _looks_hdf5(p)]

    def scan(self, path: Path, workdir: Path) -> list[Scanned | Failure]:
        """Read the attributes of one composite."""
        try:
            header, _ = load(path, path.name, with_data=False)
        except BadFileError as exc:
            return [Failure(str(path), exc.reason)]
        return [Scanned(Item(path, path.name), header.info)]

    def read(self, item: Item) -> Frame:
        """Decode one composite to a quantized, north-up frame."""
        h, raw = load(item.path, item.name, with_data=True)
        if raw is None or raw.shape != h.info.grid.shape:
            shape = None if raw is None else raw.shape
            raise BadFileError(item.name, f"image_data read as {shape}, not {h.info.grid.shape}")
        if h.flip:
            raw = raw[::-1]
        valid = np.ones(raw.shape, dtype=bool)
        for code in h.missing:
            valid &= raw != code
        codes = np.where(valid, raw, raw.dtype.type(0))
        table = value_table(8 * raw.dtype.itemsize, h.gain, h.offset, h.factor)
        return Frame(h.info, codes, table, valid)


def load(path: Path, name: str, with_data: bool) -> tuple[KnmiHeader, np.ndarray | None]:
    """Open a KNMI HDF5 file and read its header and, if asked, its image codes.

    Raises
    ------
    BadFileError
        For anything wrong with the file; h5py's own exceptions never escape.
    """
    h5py = _h5py()
    try:
        if path.stat().st_size == 0:
            raise BadFileError(name, "empty file")
        with h5py.File(path, "r") as f:
            header = read_header(f, name)
            raw = np.asarray(f["image1"]["image_data"][...]) if with_data else None
    except (BadFileError, MemoryError):
        raise
    except HeaderError as exc:
        raise BadFileError(name, str(exc)) from None
    except KeyError as exc:
        what = exc.args[0] if exc.args else exc
        raise BadFileError(name, f"not a KNMI composite (missing or unreadable: {what})") from None
    except Exception as exc:  # h5py reports corrupt files as OSError, ValueError, TypeError, …
        raise BadFileError(name, f"unreadable HDF5 ({type(exc).__name__}: {exc})") from None
    return header, raw
