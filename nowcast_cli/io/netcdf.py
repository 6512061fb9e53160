"""CF-netCDF precipitation and reflectivity grids, read with xarray (h5netcdf; scipy for netCDF3).

Layouts: one file holding ``(time, y, x)`` frames, or one file per frame whose time is a scalar
or a length-1 dimension. Length-1 dimensions besides time, y and x are dropped; the last two
dimensions of the variable are y and x.

Decisions:

- Variable: the one whose CF ``standard_name`` is a precipitation amount, rate or flux, or
  ``equivalent_reflectivity_factor`` (`STANDARD_NAMES`); without one, a variable with rain or dBZ
  units. Several candidates need ``--var``; none is a bad file whose reason lists the variables.
- Decoding: ``_FillValue`` and ``missing_value`` (as xarray masks them), NaN and infinities →
  ``valid`` False; ``scale_factor``/``add_offset`` and ``_Unsigned`` applied as CF says. Integer
  variables of up to 16 bits stay quantized (one table lookup per pixel); wider integers and
  floats are converted per pixel.
- Units (`parse_units`): amounts (mm, kg m-2, m) become mm/h through the accumulation interval,
  rates (mm/h, kg m-2 s-1, m s-1, …) are converted to mm/h, dBZ is taken as it is and linear Z
  (mm6 m-3) becomes dBZ. Units that are missing, unknown, or contradict the ``standard_name``
  stop the run with an error naming ``--units``: never a guess.
- Time: ``valid_time``, else the time coordinate of the variable, decoded from its CF units here
  (standard calendars) and rounded to whole seconds. The frame time is the end of the
  accumulation period: the upper time bound when the time variable has ``bounds``, else the time
  itself (read as the end, the RADOLAN and common radar convention). The interval comes from the
  bounds or a ``start_time`` variable, else ``--interval``, else the time step of a multi-frame
  file (the smallest step; every step must be a multiple of it). A time axis that is not
  strictly increasing makes the file a bad file.
- Grid: projected x/y coordinates (m or km) with the ``grid_mapping`` variable translated to a
  PROJ string (`cf_projection`); else 1-D or 2-D latitude/longitude (stored as static arrays,
  projection unknown); else pixel indices (orientation unknown). Frames are flipped to north-up
  (row 0 north, columns west to east) when the coordinates say they are stored otherwise.
- Reading streams: frames are read in blocks of consecutive time steps aligned with the file's
  HDF5 chunks (at most `BLOCK_BYTES` of raw values unless one chunk is larger), each block read
  once and shared by the worker threads, at most `CACHED_BLOCKS` kept per reader; memory does
  not grow with the number of frames in a file, and no chunk is inflated twice.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nowcast_cli.errors import ConfigError, MissingDependencyError
from nowcast_cli.grid import NORTH_UP, Grid
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

Kind = Literal["amount", "rate", "reflectivity"]

STANDARD_NAMES: dict[str, Kind] = {
    "rainfall_amount": "amount",
    "precipitation_amount": "amount",
    "lwe_thickness_of_precipitation_amount": "amount",
    "thickness_of_rainfall_amount": "amount",
    "rainfall_rate": "rate",
    "rainfall_flux": "rate",
    "precipitation_flux": "rate",
    "lwe_precipitation_rate": "rate",
    "equivalent_reflectivity_factor": "reflectivity",
}
UNITS_HELP = (
    "amounts per time step: mm, kg m-2, m; rates: mm/h, mm/min, mm/s, mm/day, kg m-2 s-1, m/s; "
    "reflectivity: dBZ, mm6 m-3 (linear Z). 'mm/h', 'mm h-1', 'mm hr-1', 'mm h**-1', "
    "'mm h^-1' and 'mm per hour' are the same"
)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
NETCDF3_SIGNATURES = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
SUFFIXES = frozenset({".nc", ".nc4", ".netcdf", ".cdf"})
BLOCK_BYTES = 64 * 2**20  # raw bytes of one read block when the file's chunks allow it
MAX_CHUNK_BLOCK_BYTES = 256 * 2**20  # a time chunk up to this size is read whole
CACHED_BLOCKS = 2  # ingest reads in time order: the block being used and the next one
MAX_PIXELS = 16384 * 16384
_TIME_NAMES = ("valid_time", "time")
_TIME_UNITS = {
    "days": 86400.0,
    "day": 86400.0,
    "d": 86400.0,
    "hours": 3600.0,
    "hour": 3600.0,
    "hrs": 3600.0,
    "hr": 3600.0,
    "h": 3600.0,
    "minutes": 60.0,
    "minute": 60.0,
    "mins": 60.0,
    "min": 60.0,
    "seconds": 1.0,
    "second": 1.0,
    "secs": 1.0,
    "sec": 1.0,
    "s": 1.0,
    "milliseconds": 1e-3,
    "microseconds": 1e-6,
}
_CALENDARS = frozenset({"standard", "gregorian", "proleptic_gregorian", "utc", ""})
_LENGTH_UNITS = {"m": 1.0, "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0, "km": 1000.0}
_LAT_UNITS = frozenset({"degrees_north", "degree_north", "degree_n", "degrees_n", "degreen"})
_LON_UNITS = frozenset({"degrees_east", "degree_east", "degree_e", "degrees_e", "degreee"})


# -- units -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Units:
    """How to turn a variable's values into mm/h or dBZ.

    Attributes
    ----------
    text : str
        The units as written (file or ``--units``).
    kind : {"amount", "rate", "reflectivity"}
        What the values are.
    factor : float
        Amounts: to mm; rates: to mm/h; reflectivity: 1.
    linear : bool
        Reflectivity given as Z in mm6 m-3 rather than dBZ.
    """

    text: str
    kind: Kind
    factor: float = 1.0
    linear: bool = False


_CANONICAL_UNITS: dict[str, tuple[Kind, float, bool]] = {
    "mm": ("amount", 1.0, False),
    "kg m-2": ("amount", 1.0, False),  # 1 kg of water per m² is 1 mm
    "m": ("amount", 1000.0, False),  # water-equivalent thickness (e.g. ERA5 "tp")
    "mm h-1": ("rate", 1.0, False),
    "kg m-2 h-1": ("rate", 1.0, False),
    "mm min-1": ("rate", 60.0, False),
    "mm s-1": ("rate", 3600.0, False),
    "kg m-2 s-1": ("rate", 3600.0, False),
    "m s-1": ("rate", 3.6e6, False),
    "mm d-1": ("rate", 1.0 / 24.0, False),
    "kg m-2 d-1": ("rate", 1.0 / 24.0, False),
    "dbz": ("reflectivity", 1.0, False),
    "mm6 m-3": ("reflectivity", 1.0, True),
}
_UNIT_WORDS = {
    "millimeter": "mm",
    "millimeters": "mm",
    "millimetre": "mm",
    "millimetres": "mm",
    "meter": "m",
    "meters": "m",
    "metre": "m",
    "metres": "m",
    "hour": "h",
    "hours": "h",
    "hr": "h",
    "hrs": "h",
    "minute": "min",
    "minutes": "min",
    "second": "s",
    "seconds": "s",
    "sec": "s",
    "day": "d",
    "days": "d",
    "kilogram": "kg",
    "kilograms": "kg",
}


def parse_units(text: str | None) -> Units | None:
    """Units of a precipitation or reflectivity variable, or None if not recognised.

    Accepted (case-insensitive; see `UNITS_HELP`): amounts ``mm``, ``kg m-2``, ``m``; rates
    ``mm/h``, ``mm/min``, ``mm/s``, ``mm/day``, ``kg m-2 s-1``, ``m s-1``; ``dBZ``; linear Z
    ``mm6 m-3``. ``a/b`` equals ``a b-1``; ``**`` and ``^`` before exponents are ignored.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    s = text.strip().lower().replace("**", "").replace("^", "").replace("·", " ")
    s = re.sub(r"\s+per\s+", "/", s)
    s = re.sub(r"(?<=[a-z0-9])\.(?=[a-z])", " ", s)  # "kg.m-2"
    s = s.replace("*", " ")
    pieces = [p.strip() for p in s.split("/")]
    tokens: list[str] = []
    for k, piece in enumerate(pieces):
        if not piece:
            return None
        for tok in piece.split():
            m = re.fullmatch(r"([a-z]+)(-?\d+)?", tok)
            if not m:
                return None
            unit = _UNIT_WORDS.get(m.group(1), m.group(1))
            power = int(m.group(2) or 1)
            if k > 0:
                power = -power
            tokens.append(unit if power == 1 else f"{unit}{power}")
    hit = _CANONICAL_UNITS.get(" ".join(tokens))
    if hit is None:
        return None
    return Units(text.strip(), *hit)


# -- CF grid mappings ------------------------------------------------------------------------------
_CF_PROJ: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    # grid_mapping_name: (PROJ name, ((CF attribute, PROJ parameter), …))
    "polar_stereographic": (
        "stere",
        (
            ("latitude_of_projection_origin", "lat_0"),
            ("straight_vertical_longitude_from_pole", "lon_0"),
            ("scale_factor_at_projection_origin", "k_0"),
        ),
    ),
    "stereographic": (
        "stere",
        (
            ("latitude_of_projection_origin", "lat_0"),
            ("longitude_of_projection_origin", "lon_0"),
            ("scale_factor_at_projection_origin", "k_0"),
        ),
    ),
    "lambert_conformal_conic": (
        "lcc",
        (
            ("latitude_of_projection_origin", "lat_0"),
            ("longitude_of_central_meridian", "lon_0"),
        ),
    ),
    "albers_conical_equal_area": (
        "aea",
        (
            ("latitude_of_projection_origin", "lat_0"),
            ("longitude_of_central_meridian", "lon_0"),
        ),
    ),
    "transverse_mercator": (
        "tmerc",
        (
            ("latitude_of_projection_origin", "lat_0"),
            ("longitude_of_central_meridian", "lon_0"),
            ("scale_factor_at_central_meridian", "k_0"),
        ),
    ),
    "lambert_azimuthal_equal_area": (
        "laea",
        (
            ("latitude_of_projection_origin", "lat_0"),
            ("longitude_of_projection_origin", "lon_0"),
        ),
    ),
    "mercator": (
        "merc",
        (
            ("longitude_of_projection_origin", "lon_0"),
            ("scale_factor_at_projection_origin", "k_0"),
        ),
    ),
    "latitude_longitude": ("longlat", ()),
}
_PROJ_ATTRS = ("proj4", "proj4_params", "proj4text", "proj4string", "proj_params")


def _number(value: object) -> float | None:
    a = np.asarray(value).ravel()
    if a.size < 1 or a.dtype.kind not in "iuf" or not np.isfinite(float(a[0])):
        return None
    return float(a[0])


def cf_projection(attrs: Mapping[str, Any]) -> tuple[str, list[str]]:
    """PROJ string of a CF grid-mapping variable's attributes, and notes on what was assumed.

    A PROJ string stored in the attributes (``proj4``, ``proj4_params`` …) is used as it is (with
    lengths in metres); otherwise ``grid_mapping_name`` and its parameters are translated for the
    common projections. Returns ``("", [reason])`` when neither works.
    """
    for key in _PROJ_ATTRS:
        text = attrs.get(key)
        if isinstance(text, str) and "+proj=" in text:
            return _metre_proj(text), []
    name = attrs.get("grid_mapping_name")
    if not isinstance(name, str) or name not in _CF_PROJ:
        return "", [f"grid_mapping_name {name!r} is not translated to a PROJ string"]
    proj, params = _CF_PROJ[name]
    parts = [f"+proj={proj}"]
    for cf_key, proj_key in params:
        v = _number(attrs.get(cf_key))
        if v is not None:
            parts.append(f"+{proj_key}={v:.12g}")
    sp = np.asarray(attrs.get("standard_parallel", []), dtype=object).ravel()
    parallels = [float(x) for x in sp if _number(x) is not None]
    if parallels:
        if proj in ("lcc", "aea"):
            parts += [f"+lat_{i + 1}={v:.12g}" for i, v in enumerate(parallels[:2])]
        else:
            parts.append(f"+lat_ts={parallels[0]:.12g}")
    for cf_key, proj_key in (("false_easting", "x_0"), ("false_northing", "y_0")):
        v = _number(attrs.get(cf_key))
        if v is not None:
            parts.append(f"+{proj_key}={v:.12g}")
    notes: list[str] = []
    radius = _number(attrs.get("earth_radius"))
    major = _number(attrs.get("semi_major_axis"))
    minor = _number(attrs.get("semi_minor_axis"))
    inv_f = _number(attrs.get("inverse_flattening"))
    if radius is not None:
        parts.append(f"+R={radius:.12g}")
    elif major is not None and minor is not None:
        parts += [f"+a={major:.12g}", f"+b={minor:.12g}"]
    elif major is not None and inv_f is not None:
        parts += [f"+a={major:.12g}", f"+rf={inv_f:.12g}"]
    else:
        parts.append("+ellps=WGS84")
        notes.append("the grid mapping does not give the earth's shape: WGS84 assumed (as pyproj)")
    if proj != "longlat":
        parts.append("+units=m")
    parts.append("+no_defs")
    return " ".join(parts), notes


def _metre_proj(text: str) -> str:
    """A PROJ string with its lengths in metres (``+units=km`` scales +a +b +R +x_0 +y_0)."""
    tokens = text.split()
    unit = 1.0
    for t in tokens:
        if t.startswith("+units="):
            unit = _LENGTH_UNITS.get(t.split("=", 1)[1], 1.0)
    if unit == 1.0:
        return text.strip()
    out = []
    for t in tokens:
        key, sep, value = t.lstrip("+").partition("=")
        if key == "units":
            continue
        if sep and key in ("a", "b", "R", "x_0", "y_0"):
            v = _number(float(value)) if re.fullmatch(r"[-+0-9.eE]+", value) else None
            if v is not None:
                value = f"{v * unit:.12g}"
        out.append(f"+{key}={value}" if sep else t)
    return " ".join([*out, "+units=m"])


# -- CF time ---------------------------------------------------------------------------------------
class _FileProblem(Exception):
    """A file-level reason, turned into a `BadFileError` naming the file."""


def decode_cf_times(values: np.ndarray, units: object, calendar: object) -> np.ndarray:
    """Seconds since 1970-01-01 UTC (float64) of CF times ``<unit> since <date>``.

    Only the standard (mixed Gregorian, which equals proleptic Gregorian after 1582) and
    proleptic Gregorian calendars are supported.
    """
    import pandas as pd

    if not isinstance(units, str):
        raise _FileProblem("has no CF time units ('<unit> since <date>')")
    cal = calendar.lower() if isinstance(calendar, str) else ""
    if cal not in _CALENDARS:
        raise _FileProblem(f"uses calendar {calendar!r} (supported: standard, proleptic_gregorian)")
    m = re.fullmatch(r"\s*([A-Za-z]+)\s+since\s+(.+?)\s*", units)
    if not m or m.group(1).lower() not in _TIME_UNITS:
        raise _FileProblem(f"has time units {units!r}, not '<unit> since <date>'")
    try:
        ref = pd.Timestamp(m.group(2).replace("UTC", "").strip() or "invalid")
    except (ValueError, TypeError, OverflowError):
        raise _FileProblem(f"has an unreadable reference date in {units!r}") from None
    if ref is pd.NaT:
        raise _FileProblem(f"has an unreadable reference date in {units!r}")
    if ref.tzinfo is not None:
        ref = ref.tz_convert("UTC").tz_localize(None)
    ref_s = (ref - pd.Timestamp("1970-01-01")) / pd.Timedelta(seconds=1)
    v = np.asarray(values)
    if v.dtype.kind not in "iuf":
        raise _FileProblem(f"holds {v.dtype} values, not numbers")
    out: np.ndarray = ref_s + v.astype(np.float64) * _TIME_UNITS[m.group(1).lower()]
    return out


# -- the layout of one file ------------------------------------------------------------------------
@dataclass(eq=False)
class Layout:
    """Everything needed to read the frames of one file, learned from its metadata."""

    engine: str
    var: str
    dims: tuple[str, ...]
    time_dim: str | None
    squeeze: dict[str, int]
    times: np.ndarray  # int64 end of each frame's period, seconds UTC
    interval_s: int
    product: str
    quantity: Quantity
    units: Units
    dtype: np.dtype[Any]
    unsigned: bool
    scale: float
    offset: float
    fills: tuple[float, ...]
    flip_rows: bool
    flip_cols: bool
    grid: Grid
    block: int
    static: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Frames in the file."""
        return len(self.times)

    @property
    def packed(self) -> bool:
        """Integer codes of at most 16 bits: decoded through a lookup table."""
        return self.dtype.kind in "iu" and self.dtype.itemsize <= 2

    @property
    def factor(self) -> float:
        """Decoded value → table value (mm/h for amounts and rates, 1 for reflectivity)."""
        if self.units.kind == "amount":
            return self.units.factor * 3600.0 / self.interval_s
        return self.units.factor

    def info(self, name: str, i: int) -> FrameInfo:
        """The `FrameInfo` of frame `i`."""
        return FrameInfo(
            name, int(self.times[i]), self.product, self.grid, self.interval_s, self.quantity
        )


def _item_name(path: Path, i: int, n: int) -> str:
    return str(path) if n == 1 else f"{path}[{i}]"


def _kind_of(path: Path) -> str:
    """The xarray engine for a file's signature: "h5netcdf", "scipy" or "" (not netCDF)."""
    try:
        with path.open("rb") as f:
            head = f.read(2048 + 8)
    except OSError as exc:
        raise _FileProblem(f"cannot read ({exc.strerror or exc})") from None
    if not head:
        raise _FileProblem("empty file")
    if any(head[o : o + 8] == HDF5_SIGNATURE for o in (0, 512, 1024, 2048)):
        return "h5netcdf"
    if head[:4] in NETCDF3_SIGNATURES:
        return "scipy"
    return ""


def _open(path: Path, engine: str) -> Any:
    """Open a file with xarray, undecoded (we decode what we use, and nothing warns)."""
    import xarray as xr

    if engine == "scipy":
        try:
            import scipy  # noqa: F401
        except ImportError:
            raise MissingDependencyError(
                f"{path} is a netCDF3 (classic) file; reading it needs scipy: pip install scipy"
            ) from None
    else:
        try:
            import h5netcdf  # noqa: F401
            import h5py
        except ImportError:  # pragma: no cover - a runtime dependency
            raise MissingDependencyError(
                f"reading {path} needs h5netcdf: pip install h5netcdf"
            ) from None
        # h5netcdf reads the root attributes in the middle of its constructor; when that fails
        # the half-built object's destructor raises again ("Exception ignored in File.close"
        # on stderr). Reading them with h5py first turns a damaged file into one clean error.
        with h5py.File(path, "r") as f:
            f.attrs.get("_nc3_strict")
    return xr.open_dataset(path, engine=engine, decode_cf=False, cache=False)


def _attr_text(attrs: Mapping[str, Any], key: str) -> str | None:
    v = attrs.get(key)
    if isinstance(v, bytes | np.bytes_):
        v = bytes(v).decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.dtype.kind in "SU" and v.size == 1:
        v = str(v.item() if v.dtype.kind == "U" else v.item().decode("utf-8", "replace"))
    return v.strip() if isinstance(v, str) else None


def _values(attrs: Mapping[str, Any], key: str) -> list[float]:
    if key not in attrs:
        return []
    a = np.asarray(attrs[key]).ravel()
    if a.dtype.kind not in "iuf":
        return []
    return [float(x) for x in a]


@dataclass(frozen=True)
class Options:
    """The user's choices for netCDF files (validated by `NetcdfReader`)."""

    var: str | None = None
    units: Units | None = None
    interval_s: int | None = None


def describe_file(path: Path, options: Options) -> Layout:
    """Read the metadata of one file and decide how to read its frames.

    Raises
    ------
    BadFileError
        For a file that cannot be used (corrupt, no precipitation variable, bad time axis).
    ConfigError
        For a file whose reading needs a decision only the user can make (``--var``,
        ``--units``, ``--interval``), so that the run stops before anything is written.
    MissingDependencyError
        For a netCDF3 file without scipy.
    """
    name = str(path)
    try:
        engine = _kind_of(path)
        if not engine:
            raise _FileProblem("not a netCDF file (no netCDF3 or HDF5 signature)")
        try:
            ds = _open(path, engine)
        except (MissingDependencyError, _FileProblem):
            raise
        except Exception as exc:  # h5py/h5netcdf/scipy report damage with many types
            raise _FileProblem(f"unreadable netCDF ({type(exc).__name__}: {exc})") from None
        try:
            return _describe(ds, path, engine, options)
        finally:
            ds.close()
    except _FileProblem as exc:
        raise BadFileError(name, str(exc)) from None
    except (BadFileError, ConfigError, MissingDependencyError, MemoryError):
        raise
    except Exception as exc:  # anything else a damaged file provokes in xarray
        raise BadFileError(name, f"unreadable netCDF ({type(exc).__name__}: {exc})") from None


def _candidates(ds: Any) -> list[tuple[str, str]]:
    """(name, why) of the variables that look like precipitation or reflectivity."""
    out = []
    for vname, v in ds.variables.items():
        if v.ndim < 2 or vname in ds.dims:
            continue
        sn = _attr_text(v.attrs, "standard_name")
        if sn in STANDARD_NAMES:
            out.append((str(vname), f"standard_name {sn}"))
            continue
        if sn:
            continue  # a CF name that is not precipitation (e.g. latitude)
        u = parse_units(_attr_text(v.attrs, "units"))
        if u is not None and not (u.kind == "amount" and u.factor != 1.0):  # "m": too generic
            out.append((str(vname), f"units {_attr_text(v.attrs, 'units')}"))
    return out


def _choose_variable(ds: Any, path: Path, options: Options) -> str:
    names = [str(n) for n in ds.variables]
    if options.var is not None:
        if options.var not in ds.variables:
            raise _FileProblem(f"has no variable {options.var!r} (variables: {', '.join(names)})")
        return options.var
    found = _candidates(ds)
    if not found:
        wanted = ", ".join(sorted(STANDARD_NAMES))
        raise _FileProblem(
            "has no precipitation-like variable (a CF standard_name among "
            f"{wanted}, or rain/dBZ units); its variables: {', '.join(names) or 'none'}; "
            "choose one with --var NAME"
        )
    if len(found) > 1:
        listed = ", ".join(f"{n} ({why})" for n, why in found)
        raise ConfigError(
            f"{path}: several variables could be the precipitation: {listed}; "
            "choose one with --var NAME"
        )
    return found[0][0]


def _describe(ds: Any, path: Path, engine: str, options: Options) -> Layout:
    var = _choose_variable(ds, path, options)
    v = ds.variables[var]
    dims = tuple(str(d) for d in v.dims)
    if len(dims) < 2:
        raise _FileProblem(f"variable {var!r} has dimensions {dims}, need (time,) y, x")
    if any(d in _TIME_NAMES or _is_time_coord(ds, d) for d in dims[-2:]):
        raise _FileProblem(
            f"variable {var!r} has dimensions {dims}: the last two must be y and x (CF order "
            "time, y, x)"
        )
    rows, cols = (int(v.shape[-2]), int(v.shape[-1]))
    if rows < 1 or cols < 1 or rows * cols > MAX_PIXELS:
        raise _FileProblem(f"variable {var!r} has an implausible frame size {rows}x{cols}")
    time_dim, squeeze = _time_dim(ds, var, dims, v.shape)
    times, interval_s, interval_from, time_var = _times(ds, path, time_dim, options)
    units, units_from = _units(v.attrs, var, path, options)
    quantity: Quantity = "reflectivity" if units.kind == "reflectivity" else "rain_rate"
    dtype = np.dtype(v.dtype).newbyteorder("=")  # blocks are converted to native byte order
    if dtype.kind not in "iuf":
        raise _FileProblem(f"variable {var!r} holds {dtype}, not numbers")
    unsigned = dtype.kind == "i" and (_attr_text(v.attrs, "_Unsigned") or "").lower() == "true"
    scale = _values(v.attrs, "scale_factor")
    offset = _values(v.attrs, "add_offset")
    fills = tuple(_values(v.attrs, "_FillValue") + _values(v.attrs, "missing_value"))
    grid, flip_rows, flip_cols, static, grid_notes = _grid(ds, var, dims, rows, cols)
    n = len(times)
    itemsize = dtype.itemsize
    block = _block_frames(v, time_dim, dims, n, rows * cols * itemsize)
    notes = list(grid_notes)
    if units_from == "--units" and _attr_text(v.attrs, "units") != units.text:
        notes.append(
            f"units from --units {units.text!r}; the file says {_attr_text(v.attrs, 'units')!r}"
        )
    attrs = {
        "variable": var,
        "standard_name": _attr_text(v.attrs, "standard_name"),
        "long_name": _attr_text(v.attrs, "long_name"),
        "units_in_file": _attr_text(v.attrs, "units"),
        "units_used": units.text,
        "units_from": units_from,
        "conversion": _conversion_text(units, interval_s),
        "time_variable": time_var,
        "frame_time": (
            f"end of the period given by the {interval_from}"
            if interval_from.startswith(("time bounds", "start_time"))
            else f"the time coordinate {time_var!r}, read as the end of the period"
        ),
        "interval_from": interval_from,
        "orientation_in_file": _orientation_text(flip_rows, flip_cols, grid),
        "notes": notes,
        "global_attributes": _global_attrs(ds.attrs),
        "engine": engine,
    }
    return Layout(
        engine=engine,
        var=var,
        dims=dims,
        time_dim=time_dim,
        squeeze=squeeze,
        times=times,
        interval_s=interval_s,
        product=var,
        quantity=quantity,
        units=units,
        dtype=dtype,
        unsigned=unsigned,
        scale=scale[0] if scale else 1.0,
        offset=offset[0] if offset else 0.0,
        fills=fills,
        flip_rows=flip_rows,
        flip_cols=flip_cols,
        grid=grid,
        block=block,
        static=static,
        attrs=attrs,
    )


def _conversion_text(units: Units, interval_s: int) -> str:
    if units.kind == "amount":
        return (
            f"R (mm/h) = value [{units.text}] x {units.factor:g} mm x 3600 / {interval_s} s "
            "(amount per interval → rate)"
        )
    if units.kind == "rate":
        return f"R (mm/h) = value [{units.text}] x {units.factor:g}"
    if units.linear:
        return f"dBZ = 10 log10(value [{units.text}])"
    return "dBZ as stored"


def _orientation_text(flip_rows: bool, flip_cols: bool, grid: Grid) -> str:
    if grid.orientation != NORTH_UP:
        return "unknown (no coordinates): rows and columns kept in file order"
    parts = ["rows stored south to north (flipped)" if flip_rows else "rows stored north first"]
    if flip_cols:
        parts.append("columns stored east to west (flipped)")
    return "; ".join(parts)


def _global_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in list(attrs.items())[:40]:
        text = _attr_text(attrs, k)
        if text is not None:
            out[str(k)] = text[:1000]
        elif isinstance(v, int | float | np.integer | np.floating) and np.isfinite(v):
            out[str(k)] = float(v)
    return out


def _is_time_coord(ds: Any, name: str) -> bool:
    if name not in ds.variables:
        return False
    a = ds.variables[name].attrs
    units = _attr_text(a, "units") or ""
    return (
        _attr_text(a, "standard_name") == "time"
        or _attr_text(a, "axis") == "T"
        or " since " in units.lower()
    )


def _time_dim(
    ds: Any, var: str, dims: tuple[str, ...], shape: tuple[int, ...]
) -> tuple[str | None, dict[str, int]]:
    """The variable's time dimension (None: a single frame) and its length-1 extra dims."""
    time_dim = None
    squeeze: dict[str, int] = {}
    for d, size in zip(dims[:-2], shape[:-2], strict=True):
        along = [
            n for n, v in ds.variables.items() if v.dims == (d,) and _is_time_coord(ds, str(n))
        ]
        if d in _TIME_NAMES or _is_time_coord(ds, d) or along:
            if time_dim is not None:
                raise _FileProblem(f"variable {var!r} has two time dimensions ({time_dim}, {d})")
            time_dim = d
        elif size == 1:
            squeeze[d] = 0
        else:
            raise _FileProblem(
                f"variable {var!r} has dimension {d!r} of size {size} besides time, y and x "
                "(only one frame per time step is supported)"
            )
    return time_dim, squeeze


def _time_variable(ds: Any, time_dim: str | None) -> str:
    """The variable holding the frames' valid times."""
    want = (time_dim,) if time_dim is not None else ()
    shape_ok = [
        str(n)
        for n, v in ds.variables.items()
        if _is_time_coord(ds, str(n)) and (v.dims == want or (not want and v.size == 1))
    ]
    for name in (*_TIME_NAMES, time_dim):
        if name in shape_ok:
            return name
    if len(shape_ok) == 1:
        return shape_ok[0]
    raise _FileProblem(
        "has no time coordinate for its frames (a CF time variable such as time or valid_time)"
    )


def _times(
    ds: Any, path: Path, time_dim: str | None, options: Options
) -> tuple[np.ndarray, int, str, str]:
    """End times (int64 s), interval (s), where the interval came from, the time variable."""
    tname = _time_variable(ds, time_dim)
    tv = ds.variables[tname]
    try:
        t = decode_cf_times(
            np.asarray(tv.values).ravel(),
            _attr_text(tv.attrs, "units"),
            _attr_text(tv.attrs, "calendar"),
        )
    except _FileProblem as exc:
        raise _FileProblem(f"time variable {tname!r} {exc}") from None
    n = len(t)
    if n == 0:
        raise _FileProblem(f"time variable {tname!r} is empty")
    start: np.ndarray | None = None
    source = ""
    bname = _attr_text(tv.attrs, "bounds")
    if bname and bname in ds.variables:
        bv = ds.variables[bname]
        b = np.asarray(bv.values, dtype=np.float64).reshape(-1)
        if b.size != 2 * n:
            raise _FileProblem(f"time bounds {bname!r} have {b.size} values for {n} times")
        try:
            bs = decode_cf_times(
                b.reshape(n, 2),
                _attr_text(bv.attrs, "units") or _attr_text(tv.attrs, "units"),
                _attr_text(bv.attrs, "calendar") or _attr_text(tv.attrs, "calendar"),
            )
        except _FileProblem as exc:
            raise _FileProblem(f"time bounds {bname!r} {exc}") from None
        start, t = bs.min(axis=1), bs.max(axis=1)
        source = f"time bounds ({bname})"
    elif "start_time" in ds.variables and ds.variables["start_time"].size == n:
        sv = ds.variables["start_time"]
        try:
            start = decode_cf_times(
                np.asarray(sv.values).ravel(),
                _attr_text(sv.attrs, "units"),
                _attr_text(sv.attrs, "calendar"),
            )
        except _FileProblem as exc:
            raise _FileProblem(f"start_time {exc}") from None
        source = "start_time"
    if not np.all(np.isfinite(t)) or (start is not None and not np.all(np.isfinite(start))):
        raise _FileProblem(f"time variable {tname!r} has missing values")
    if np.abs(t).max() > 1e13:
        raise _FileProblem(f"time variable {tname!r} is out of range")
    ends = np.round(t).astype(np.int64)
    _check_increasing(ends, tname)
    given = options.interval_s
    if start is not None:
        periods = np.unique(np.round(t - start).astype(np.int64))
        if len(periods) != 1 or periods[0] <= 0:
            shown = ", ".join(f"{p} s" for p in periods[:5])
            raise _FileProblem(
                f"accumulation periods from {source} are not one positive length ({shown})"
            )
        interval = int(periods[0])
        if given is not None and given != interval:
            raise _FileProblem(
                f"its {source} give a {interval / 60:g}-minute period; "
                f"--interval {given / 60:g} disagrees"
            )
        return ends, interval, source, tname
    if given is not None:
        return ends, given, "--interval", tname
    if n >= 2:
        steps = np.diff(ends)
        step = int(steps.min())
        if np.any(steps % step):
            raise _FileProblem(
                f"time steps of {tname!r} are irregular "
                f"({', '.join(map(str, np.unique(steps)[:5]))} s): give the interval with "
                "--interval MINUTES"
            )
        return ends, step, "time step", tname
    raise ConfigError(
        f"{path}: one frame and no time bounds or start_time, so "
        "its interval (accumulation period) is unknown: give it with --interval MINUTES"
    )


def _iso(t: int) -> str:
    return str(np.datetime64(int(t), "s")).replace("T", " ")[:16]


def _check_increasing(ends: np.ndarray, tname: str) -> None:
    iso = _iso
    d = np.diff(ends)
    back = np.nonzero(d < 0)[0]
    if len(back):
        i = int(back[0])
        raise _FileProblem(
            f"time {tname!r} is not monotonic: frame {i + 1} ({iso(ends[i + 1])}) comes after "
            f"frame {i} ({iso(ends[i])})"
        )
    same = np.nonzero(d == 0)[0]
    if len(same):
        i = int(same[0])
        raise _FileProblem(
            f"time {tname!r} has duplicates: frames {i} and {i + 1} are both {iso(ends[i])} "
            f"({len(same)} duplicate{'s' if len(same) > 1 else ''})"
        )


def _units(attrs: Mapping[str, Any], var: str, path: Path, options: Options) -> tuple[Units, str]:
    if options.units is not None:
        return options.units, "--units"
    text = _attr_text(attrs, "units")
    u = parse_units(text)
    if u is None:
        what = "no units" if not text else f"units {text!r}"
        raise ConfigError(
            f"{path}: variable {var!r} has {what}, which do not say what its values are: give "
            f"them with --units (e.g. --units mm for amounts per time step; accepted: "
            f"{UNITS_HELP})"
        )
    sn = _attr_text(attrs, "standard_name")
    expected = STANDARD_NAMES.get(sn or "")
    if expected is not None and expected != u.kind:
        raise ConfigError(
            f"{path}: variable {var!r} has units {text!r} (a {u.kind}) but standard_name "
            f"{sn!r} (a {expected}): give the right units with --units"
        )
    return u, "file"


def _block_frames(v: Any, time_dim: str | None, dims: tuple[str, ...], n: int, nbytes: int) -> int:
    """Frames per read block: the file's time chunk if not huge, else what fits BLOCK_BYTES."""
    if time_dim is None:
        return 1
    fit = max(1, BLOCK_BYTES // max(nbytes, 1))
    chunks = v.encoding.get("chunksizes")
    if chunks:
        ct = int(chunks[dims.index(time_dim)])
        if ct * nbytes <= MAX_CHUNK_BLOCK_BYTES:  # read whole chunks: none is inflated twice
            return max(1, min(ct, n))
    return min(n, fit)


def _coord_1d(ds: Any, dim: str) -> Any | None:
    v = ds.variables.get(dim)
    return v if v is not None and v.dims == (dim,) else None


def _length_factor(attrs: Mapping[str, Any]) -> float | None:
    return _LENGTH_UNITS.get((_attr_text(attrs, "units") or "").lower())


def _axis_kind(attrs: Mapping[str, Any]) -> str:
    """Kind of a coordinate variable: "x", "y" (projected), "lat", "lon" or ""."""
    sn = _attr_text(attrs, "standard_name") or ""
    units = (_attr_text(attrs, "units") or "").lower().replace(" ", "")
    axis = (_attr_text(attrs, "axis") or "").upper()
    if sn == "latitude" or units in _LAT_UNITS:
        return "lat"
    if sn == "longitude" or units in _LON_UNITS:
        return "lon"
    if sn == "projection_x_coordinate" or (axis == "X" and _length_factor(attrs)):
        return "x"
    if sn == "projection_y_coordinate" or (axis == "Y" and _length_factor(attrs)):
        return "y"
    return ""


def _decoded(v: Any) -> np.ndarray:
    """A coordinate's values with scale/offset applied and fill values as NaN (float64)."""
    x = np.asarray(v.values).astype(np.float64)
    bad = ~np.isfinite(x)
    for f in _values(v.attrs, "_FillValue") + _values(v.attrs, "missing_value"):
        bad |= x == f
    scale = _values(v.attrs, "scale_factor")
    offset = _values(v.attrs, "add_offset")
    x = x * (scale[0] if scale else 1.0) + (offset[0] if offset else 0.0)
    x[bad] = np.nan
    return x


def _grid(
    ds: Any, var: str, dims: tuple[str, ...], rows: int, cols: int
) -> tuple[Grid, bool, bool, dict[str, np.ndarray], list[str]]:
    """Grid, row/column flips to north-up, static arrays and notes for the variable."""
    v = ds.variables[var]
    ydim, xdim = dims[-2], dims[-1]
    notes: list[str] = []
    proj = ""
    gm_ref = _attr_text(v.attrs, "grid_mapping")
    gm_name = gm_ref.split(":")[0].split()[0] if gm_ref else ""
    if gm_name:
        if gm_name in ds.variables:
            proj, gm_notes = cf_projection(ds.variables[gm_name].attrs)
            notes += gm_notes
        else:
            notes.append(
                f"the grid_mapping variable {gm_name!r} named by {var!r} is not in the file"
            )
    yc, xc = _coord_1d(ds, ydim), _coord_1d(ds, xdim)
    ykind = _axis_kind(yc.attrs) if yc is not None else ""
    xkind = _axis_kind(xc.attrs) if xc is not None else ""
    label = f"netCDF {rows}x{cols}"
    if yc is not None and xc is not None and (ykind, xkind) == ("y", "x"):
        y = np.asarray(yc.values, dtype=np.float64) * (_length_factor(yc.attrs) or 1.0)
        x = np.asarray(xc.values, dtype=np.float64) * (_length_factor(xc.attrs) or 1.0)
        flip_rows = rows > 1 and y[-1] > y[0]
        flip_cols = cols > 1 and x[-1] < x[0]
        if not proj:
            notes.append(
                "projection unknown: the file gives projected x/y but no usable grid_mapping"
            )
        dx = np.abs(np.diff(x)) if cols > 1 else np.array([])
        dy = np.abs(np.diff(y)) if rows > 1 else np.array([])
        cell = float(dx[0]) if len(dx) else (float(dy[0]) if len(dy) else 0.0)
        regular = (
            cell > 0
            and np.all(np.isfinite(x))
            and np.all(np.isfinite(y))
            and np.allclose(dx, cell, rtol=1e-6, atol=1e-3)
            and np.allclose(dy, cell, rtol=1e-6, atol=1e-3)
        )
        if not regular:
            notes.append("x/y spacing is irregular or not square: corners not recorded")
            return (
                Grid(f"{label} projected ({gm_name or 'x/y'})", rows, cols, 0.0, proj),
                flip_rows,
                flip_cols,
                {},
                notes,
            )
        grid = Grid(
            f"{label} {cell / 1000:g} km ({gm_name or 'projected x/y'})",
            rows,
            cols,
            cell,
            proj,
            float(x.min() - cell / 2),
            float(y.min() - cell / 2),
        )
        return grid, flip_rows, flip_cols, {}, notes
    lat, lon = _latlon(ds, var, ydim, xdim, yc, xc, ykind, xkind, rows, cols)
    if lat is not None and lon is not None:
        flip_rows = rows > 1 and _mean(lat[0]) < _mean(lat[-1])
        flip_cols = cols > 1 and _mean(lon[:, 0]) > _mean(lon[:, -1])
        if flip_rows:
            lat, lon = lat[::-1], lon[::-1]
        if flip_cols:
            lat, lon = lat[:, ::-1], lon[:, ::-1]
        if not proj:
            notes.append(
                "projection unknown: the grid is given by latitude/longitude only (stored as the "
                "static arrays latitude and longitude)"
            )
        grid = Grid(f"{label}, latitude/longitude grid", rows, cols, 0.0, proj)
        static = {
            "latitude": np.ascontiguousarray(lat, dtype=np.float64),
            "longitude": np.ascontiguousarray(lon, dtype=np.float64),
        }
        return grid, flip_rows, flip_cols, static, notes
    notes.append("no coordinates: pixel indices only, projection and orientation unknown")
    grid = Grid(
        f"{label} (pixel indices; projection unknown)",
        rows,
        cols,
        0.0,
        proj,
        orientation="as stored in the file (no coordinates: orientation unknown)",
    )
    return grid, False, False, {}, notes


def _mean(x: np.ndarray) -> float:
    """Mean of the finite values (NaN if none; compares False, so no flip on no evidence)."""
    ok = np.isfinite(x)
    return float(x[ok].mean()) if ok.any() else math.nan


def _latlon(
    ds: Any,
    var: str,
    ydim: str,
    xdim: str,
    yc: Any,
    xc: Any,
    ykind: str,
    xkind: str,
    rows: int,
    cols: int,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """2-D latitude and longitude of the grid (from 1-D or 2-D coordinates), if any."""
    if yc is not None and xc is not None and (ykind, xkind) == ("lat", "lon"):
        lat1, lon1 = _decoded(yc), _decoded(xc)
        return np.repeat(lat1[:, None], cols, axis=1), np.repeat(lon1[None, :], rows, axis=0)
    listed = (_attr_text(ds.variables[var].attrs, "coordinates") or "").split()
    pool = [n for n in listed if n in ds.variables] + [
        str(n) for n in ds.variables if str(n) not in listed
    ]
    lat = lon = None
    for n in pool:
        c = ds.variables[n]
        if c.dims != (ydim, xdim):
            continue
        kind = _axis_kind(c.attrs)
        if not kind and n in listed:  # named by `coordinates` but without CF attributes
            low = n.lower()
            kind = "lat" if "lat" in low else "lon" if "lon" in low else ""
        if kind == "lat" and lat is None:
            lat = _decoded(c)
        elif kind == "lon" and lon is None:
            lon = _decoded(c)
    return lat, lon


# -- block cache -----------------------------------------------------------------------------------
class _Entry:
    def __init__(self) -> None:
        self.ready = threading.Event()
        self.value: np.ndarray | None = None
        self.error: BaseException | None = None


class BlockCache:
    """Blocks of consecutive frames shared by threads: each is read once, the last few kept.

    Parameters
    ----------
    capacity : int
        Blocks kept after use (least recently used dropped first).
    """

    def __init__(self, capacity: int = CACHED_BLOCKS) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, int], _Entry] = OrderedDict()
        self.loads = 0  # blocks read (tests check that none is read twice)

    def get(self, key: tuple[str, int], load: Callable[[], np.ndarray]) -> np.ndarray:
        """The block `key`, read by `load` in the first thread that asks for it."""
        with self._lock:
            entry = self._entries.get(key)
            owner = entry is None
            if entry is None:
                entry = _Entry()
                self._entries[key] = entry
                self.loads += 1
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                old_key, old = next(iter(self._entries.items()))
                if old is entry:
                    break
                del self._entries[old_key]
        if owner:
            try:
                entry.value = load()
            except BaseException as exc:
                entry.error = exc
                with self._lock:
                    if self._entries.get(key) is entry:
                        del self._entries[key]
            finally:
                entry.ready.set()
        else:
            entry.ready.wait()
        if entry.error is not None:
            raise entry.error
        assert entry.value is not None
        return entry.value

    def __len__(self) -> int:
        return len(self._entries)


@functools.lru_cache(maxsize=32)
def _code_tables(
    dtype: str, unsigned: bool, scale: float, offset: float, fills: tuple[float, ...]
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
    values = raw.astype(np.float64) * scale + offset
    values.flags.writeable = False
    valid.flags.writeable = False
    return values, valid


@functools.lru_cache(maxsize=32)
def _pixel_lut(
    dtype: str,
    unsigned: bool,
    scale: float,
    offset: float,
    fills: tuple[float, ...],
    factor: float,
    linear: bool,
    quantity: str,
    zr: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Store pixel (0 where not valid) and valid flag of every bit pattern."""
    from nowcast_cli.encoding import encode_table

    values, valid = _code_tables(dtype, unsigned, scale, offset, fills)
    pix = encode_table(_physical(values, factor, linear), quantity, *zr)
    pix = np.where(valid, pix, 0).astype(np.uint8)
    pix.flags.writeable = False
    return pix, valid


def _physical(values: np.ndarray, factor: float, linear: bool) -> np.ndarray:
    x = values.astype(np.float64, copy=False)
    if linear:
        with np.errstate(divide="ignore", invalid="ignore"):
            out: np.ndarray = np.where(x > 0, 10.0 * np.log10(np.where(x > 0, x, 1.0)), -np.inf)
        return out
    return x * factor


# -- the reader ------------------------------------------------------------------------------------
@READERS.register("netcdf")
class NetcdfReader(Reader):
    """CF-netCDF rain amount, rain rate or reflectivity grids (xarray + h5netcdf; scipy: netCDF3).

    Parameters
    ----------
    var : str, optional
        Variable to read (default: the one CF standard_name or units mark as precipitation).
    units : str, optional
        Units of that variable, overriding the file's (see `UNITS_HELP`).
    interval : int or float, optional
        Accumulation period / product interval in minutes, for files that do not state it.
    zr : str or tuple of float, optional
        Z–R coefficients ``"a,b"`` (default Marshall–Palmer 200, 1.6).
    """

    name = "netcdf"
    attribution = "as stated by each file (institution / attribution attributes)"
    licence = "as stated by each file (license attribute)"
    zr = (200.0, 1.6)
    zr_reference = "Marshall-Palmer Z = 200 R^1.6, nowcast's default for CF-netCDF (SPEC §3)"

    def __init__(
        self,
        var: str | None = None,
        units: str | None = None,
        interval: float | None = None,
        zr: str | tuple[float, float] | None = None,
        attribution: str | None = None,
    ) -> None:
        if var is not None and not var.strip():
            raise ConfigError("--var: give a variable name")
        parsed_units = None
        if units is not None:
            parsed_units = parse_units(units)
            if parsed_units is None:
                raise ConfigError(f"--units {units!r} is not understood; accepted: {UNITS_HELP}")
        interval_s = None
        if interval is not None:
            seconds = float(interval) * 60.0
            if not (math.isfinite(seconds) and seconds > 0 and seconds == round(seconds)):
                raise ConfigError(
                    f"--interval {interval!r}: give a positive number of minutes "
                    "(whole seconds), e.g. --interval 5"
                )
            interval_s = round(seconds)
        self.options = Options(var.strip() if var else None, parsed_units, interval_s)
        self._zr = self.zr if zr is None else parse_zr(zr)
        self._zr_given = zr is not None
        if attribution is not None and not attribution.strip():
            raise ConfigError("--attribution: give the credit line the data's provider asks for")
        self._attribution = attribution.strip() if attribution else None
        self._init_state()

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._layouts: dict[Path, Layout] = {}
        self.blocks = BlockCache()

    def __getstate__(self) -> dict[str, Any]:
        return {
            "options": self.options,
            "_zr": self._zr,
            "_zr_given": self._zr_given,
            "_attribution": self._attribution,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_state()

    def candidates(self, paths: list[Path]) -> list[Path]:
        """Files under `paths` with a netCDF suffix or signature (files named explicitly: all)."""
        out = []
        for p in walk_files(paths):
            if p in paths or p.suffix.lower() in SUFFIXES:
                out.append(p)
                continue
            try:
                if _kind_of(p):
                    out.append(p)
            except _FileProblem:
                continue
        return out

    def scan(self, path: Path, workdir: Path) -> list[Scanned | Failure]:
        """Read one file's metadata: one `Scanned` per frame (time step) it holds."""
        try:
            lay = describe_file(path, self.options)
        except BadFileError as exc:
            return [Failure(str(path), exc.reason)]
        with self._lock:
            self._layouts[path] = lay
        out: list[Scanned | Failure] = []
        for i in range(lay.n):
            name = _item_name(path, i, lay.n)
            out.append(Scanned(Item(path, name, (("frame", str(i)),)), lay.info(name, i)))
        return out

    def _layout(self, path: Path) -> Layout:
        with self._lock:
            lay = self._layouts.get(path)
        if lay is None:
            lay = describe_file(path, self.options)
            with self._lock:
                self._layouts[path] = lay
        return lay

    def _frame_raw(self, item: Item) -> tuple[Layout, int, np.ndarray]:
        """The layout, frame index and raw values (north-up view) of one frame."""
        lay = self._layout(item.path)
        try:
            i = int(item.extra("frame", "0") or 0)
        except ValueError:
            raise BadFileError(item.name, "item has no frame index") from None
        if not 0 <= i < lay.n:
            raise BadFileError(item.name, f"frame {i} is not in the file ({lay.n} frames)")
        b = i // lay.block
        block = self.blocks.get((str(item.path), b), lambda: self._read_block(item, lay, b))
        raw = block[i - b * lay.block]
        if lay.flip_rows:
            raw = raw[::-1]
        if lay.flip_cols:
            raw = raw[:, ::-1]
        return lay, i, raw

    def _read_block(self, item: Item, lay: Layout, b: int) -> np.ndarray:
        """Raw values of frames ``b·block … (b+1)·block`` as (k, rows, cols)."""
        lo, hi = b * lay.block, min(lay.n, (b + 1) * lay.block)
        try:
            ds = _open(item.path, lay.engine)
        except MissingDependencyError:
            raise
        except Exception as exc:
            raise BadFileError(
                item.name, f"unreadable netCDF ({type(exc).__name__}: {exc})"
            ) from None
        try:
            v = ds.variables.get(lay.var)
            if v is None or tuple(str(d) for d in v.dims) != lay.dims:
                raise BadFileError(item.name, f"variable {lay.var!r} changed since the scan")
            index: dict[str, Any] = dict(lay.squeeze)
            if lay.time_dim is not None:
                index[lay.time_dim] = slice(lo, hi)
            sub = v.isel(index)
            data = np.asarray(sub.values)
        except BadFileError:
            raise
        except MemoryError:
            raise
        except Exception as exc:  # damaged chunks surface here as OSError, ValueError, …
            raise BadFileError(
                item.name, f"cannot read frames {lo}–{hi - 1} ({type(exc).__name__}: {exc})"
            ) from None
        finally:
            ds.close()
        data = data.reshape(hi - lo, lay.grid.rows, lay.grid.cols)
        if not data.dtype.isnative:  # netCDF3 is big-endian
            data = data.astype(data.dtype.newbyteorder("="))
        if lay.unsigned:
            data = data.view(f"u{lay.dtype.itemsize}")
        data.flags.writeable = False
        return data

    def read(self, item: Item) -> Frame:
        """Decode one frame to a quantized, north-up frame (mm/h or dBZ)."""
        lay, i, raw = self._frame_raw(item)
        info = lay.info(item.name, i)
        if lay.packed:
            values, ok = _code_tables(*self._code_key(lay))
            codes = np.ascontiguousarray(raw).view(f"u{lay.dtype.itemsize}")
            valid = ok[codes]
            table = _physical(values, lay.factor, lay.units.linear)
            codes = np.where(valid, codes, 0).astype(codes.dtype)
            return Frame(info, codes, table, valid)
        phys, valid = self._float_frame(lay, raw)
        uniq, inverse = np.unique(np.where(valid, phys, 0.0), return_inverse=True)
        codes = inverse.reshape(raw.shape).astype(np.uint32 if len(uniq) > 65535 else np.uint16)
        return Frame(info, codes, uniq, valid)

    def read_pixels(
        self, item: Item, zr: tuple[float, float]
    ) -> tuple[FrameInfo, np.ndarray, np.ndarray, list[str]]:
        """Decode straight to store pixels: one table lookup per pixel for packed integers."""
        from nowcast_cli.encoding import dbz_to_pixel, rate_to_dbz

        lay, i, raw = self._frame_raw(item)
        info = lay.info(item.name, i)
        if lay.packed:
            pix_lut, ok = _pixel_lut(
                *self._code_key(lay), lay.factor, lay.units.linear, lay.quantity, zr
            )
            # one index array for both lookups (numpy would convert the 16-bit codes twice)
            codes = raw.view(f"u{lay.dtype.itemsize}").astype(np.intp)
            return info, np.take(pix_lut, codes), np.take(ok, codes), []
        phys, valid = self._float_frame(lay, raw)
        dbz = phys if lay.quantity == "reflectivity" else rate_to_dbz(phys, *zr)
        pix = dbz_to_pixel(np.where(valid, dbz, -np.inf))
        return info, pix, valid, []

    @staticmethod
    def _code_key(lay: Layout) -> tuple[str, bool, float, float, tuple[float, ...]]:
        return (lay.dtype.str, lay.unsigned, lay.scale, lay.offset, lay.fills)

    @staticmethod
    def _float_frame(lay: Layout, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = raw.astype(np.float64)
        valid = np.isfinite(x)
        for f in lay.fills:
            valid &= x != f
        phys = _physical(x * lay.scale + lay.offset, lay.factor, lay.units.linear)
        valid &= ~np.isnan(phys) & ~np.isposinf(phys)
        return np.where(valid, phys, 0.0), valid

    # -- what the store records -----------------------------------------------------------------
    def _first(self) -> Layout | None:
        with self._lock:
            if not self._layouts:
                return None
            return self._layouts[min(self._layouts, key=str)]

    def static_arrays(self) -> dict[str, np.ndarray]:
        """Latitude/longitude (north-up) when they are the grid's only georeference.

        Raises
        ------
        DataError
            If the files scanned have different latitude/longitude on the same grid shape.
        """
        from nowcast_cli.errors import DataError

        first = self._first()
        if first is None or not first.static:
            return {}
        with self._lock:
            items = sorted(self._layouts.items(), key=lambda kv: str(kv[0]))
        ref_path = next(p for p, lay in items if lay is first)
        for p, lay in items:
            if lay.grid.shape != first.grid.shape or lay is first:
                continue
            same = lay.static.keys() == first.static.keys() and all(
                np.array_equal(lay.static[k], first.static[k], equal_nan=True) for k in first.static
            )
            if not same:
                raise DataError(
                    f"{ref_path} and {p} have different latitude/longitude grids: a store holds "
                    "one grid, ingest them into separate stores"
                )
        return {k: a.copy() for k, a in first.static.items()}

    def store_attrs(self) -> dict[str, Any]:
        """Source attributes: the file's attribution and licence, Z–R, how values were read."""
        lay = self._first()
        g = lay.attrs.get("global_attributes", {}) if lay else {}
        attribution = self._attribution or next(
            (g[k] for k in ("attribution", "acknowledgement", "acknowledgment") if g.get(k)), None
        )
        if attribution is None:
            attribution = (
                f"Source: {g['institution']} (from the file's institution attribute)"
                if g.get("institution")
                else "not stated in the file: credit the data provider"
            )
        licence = next((g[k] for k in ("license", "licence") if g.get(k)), "not stated in the file")
        reference = (
            f"given with --zr (Z = {self._zr[0]:g} R^{self._zr[1]:g})"
            if self._zr_given
            else self.zr_reference
        )
        attrs: dict[str, Any] = {
            "source": self.name,
            "attribution": attribution,
            "licence": licence,
            "zr": {"a": self._zr[0], "b": self._zr[1], "reference": reference},
        }
        if lay is not None:
            attrs["netcdf"] = lay.attrs
        return attrs


def parse_zr(value: str | tuple[float, float] | list[float]) -> tuple[float, float]:
    """Z–R coefficients from ``"a,b"`` or a pair: two positive finite numbers."""
    try:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",")]
            if len(parts) != 2:
                raise ValueError
            a, b = float(parts[0]), float(parts[1])
        else:
            a, b = (float(x) for x in value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"--zr {value!r}: expected two positive numbers a,b of Z = a R^b, e.g. --zr 200,1.6"
        ) from None
    if not (math.isfinite(a) and math.isfinite(b) and a > 0 and b > 0):
        raise ConfigError(f"--zr {value!r}: a and b must be positive, e.g. --zr 200,1.6")
    return a, b
