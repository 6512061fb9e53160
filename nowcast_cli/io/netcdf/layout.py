"""What one CF-netCDF file holds and how to read its frames, learned from its metadata.

`describe_file` opens a file undecoded and decides: the variable (its CF ``standard_name``, else
rain or dBZ units; ``--var`` to choose), its units (`units`), the frames' times (`times`), the
grid and the orientation (`grid`), the packing (``scale_factor``/``add_offset``, ``_Unsigned``,
``_FillValue``/``missing_value`` as xarray masks them, ``valid_range``/``valid_min``/
``valid_max`` as netCDF4 masks them: compared with the packed values) and the read blocks
(whole time chunks of the file, as many as fit `BLOCK_BYTES`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nowcast_cli.errors import ConfigError, MissingDependencyError
from nowcast_cli.grid import NORTH_UP, Grid
from nowcast_cli.io.base import BadFileError, FrameInfo, Quantity
from nowcast_cli.io.netcdf.files import (
    FileProblem,
    attr_numbers,
    attr_text,
    kind_of,
    open_dataset,
)
from nowcast_cli.io.netcdf.grid import describe_grid, spatial_dims
from nowcast_cli.io.netcdf.times import TIME_NAMES, frame_times, is_time_coord
from nowcast_cli.io.netcdf.units import STANDARD_NAMES, UNITS_HELP, Units, parse_units

BLOCK_BYTES = 64 * 2**20  # raw bytes of one read block when the file's chunks allow it
MAX_CHUNK_BLOCK_BYTES = 256 * 2**20  # a time chunk up to this size is read whole
MAX_PIXELS = 16384 * 16384


@dataclass(frozen=True)
class Options:
    """The user's choices for netCDF files (validated by `NetcdfReader`)."""

    var: str | None = None
    units: Units | None = None
    interval_s: int | None = None


@dataclass(eq=False)
class Layout:
    """Everything needed to read the frames of one file (small: kept for every file)."""

    engine: str
    var: str
    dims: tuple[str, ...]
    time_dim: str | None
    squeeze: dict[str, int]
    times: np.ndarray  # int64 end of each frame's period, seconds UTC (0 where not present)
    present: np.ndarray  # bool: the frame has a time
    interval_s: int
    product: str
    quantity: Quantity
    units: Units
    dtype: np.dtype[Any]
    unsigned: bool
    scale: float
    offset: float
    fills: tuple[float, ...]
    valid_min: float | None
    valid_max: float | None
    transposed: bool  # stored (x, y): each frame is transposed to (y, x)
    flip_rows: bool
    flip_cols: bool
    grid: Grid
    block: int
    static_digest: str = ""  # of the latitude/longitude arrays, when they are the georeference

    @property
    def n(self) -> int:
        """Frames in the file (with a time or not)."""
        return len(self.times)

    @property
    def packed(self) -> bool:
        """Integer codes of at most 16 bits: decoded through a lookup table."""
        return self.dtype.kind in "iu" and self.dtype.itemsize <= 2

    @property
    def factor(self) -> float:
        """Decoded value → table value (mm/h for amounts and rates; dBZ or Z in mm6 m-3)."""
        if self.units.kind == "amount":
            return self.units.factor * 3600.0 / self.interval_s
        return self.units.factor

    def info(self, name: str, i: int) -> FrameInfo:
        """The `FrameInfo` of frame `i`."""
        return FrameInfo(
            name, int(self.times[i]), self.product, self.grid, self.interval_s, self.quantity
        )


@dataclass
class Described:
    """A file's `Layout`, plus what only the store needs (kept for one file, not for each)."""

    layout: Layout
    static: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)


def item_name(path: Path, i: int, n: int) -> str:
    """Display name of frame `i` of a file holding `n` frames."""
    return str(path) if n == 1 else f"{path}[{i}]"


def describe_file(path: Path, options: Options) -> Described:
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
        engine = kind_of(path)
        if not engine:
            raise FileProblem("not a netCDF file (no netCDF3 or HDF5 signature)")
        try:
            ds = open_dataset(path, engine)
        except (MissingDependencyError, FileProblem):
            raise
        except Exception as exc:  # h5py/h5netcdf/scipy report damage with many types
            raise FileProblem(f"unreadable netCDF ({type(exc).__name__}: {exc})") from None
        try:
            return _describe(ds, path, engine, options)
        finally:
            ds.close()
    except FileProblem as exc:
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
        sn = attr_text(v.attrs, "standard_name")
        if sn in STANDARD_NAMES:
            out.append((str(vname), f"standard_name {sn}"))
            continue
        if sn:
            continue  # a CF name that is not precipitation (e.g. latitude)
        u = parse_units(attr_text(v.attrs, "units"))
        if u is not None and u.names_precipitation:
            out.append((str(vname), f"units {attr_text(v.attrs, 'units')}"))
    return out


def _choose_variable(ds: Any, path: Path, options: Options) -> str:
    names = [str(n) for n in ds.variables]
    if options.var is not None:
        if options.var not in ds.variables:
            raise FileProblem(f"has no variable {options.var!r} (variables: {', '.join(names)})")
        return options.var
    found = _candidates(ds)
    if not found:
        wanted = ", ".join(sorted(STANDARD_NAMES))
        raise FileProblem(
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


def _describe(ds: Any, path: Path, engine: str, options: Options) -> Described:
    var = _choose_variable(ds, path, options)
    v = ds.variables[var]
    dims = tuple(str(d) for d in v.dims)
    if len(dims) < 2:
        raise FileProblem(f"variable {var!r} has dimensions {dims}, need (time,) y, x")
    ydim, xdim, transposed = spatial_dims(ds, var, dims)
    rows, cols = int(ds.sizes[ydim]), int(ds.sizes[xdim])
    if rows < 1 or cols < 1 or rows * cols > MAX_PIXELS:
        raise FileProblem(f"variable {var!r} has an implausible frame size {rows}x{cols}")
    time_dim, squeeze = _time_dim(ds, var, dims, v.shape)
    ft = frame_times(ds, path, time_dim, options.interval_s)
    units, units_from = _units(v.attrs, var, path, options)
    quantity: Quantity = "reflectivity" if units.kind == "reflectivity" else "rain_rate"
    dtype = np.dtype(v.dtype).newbyteorder("=")  # blocks are converted to native byte order
    if dtype.kind not in "iuf":
        raise FileProblem(f"variable {var!r} holds {dtype}, not numbers")
    unsigned = dtype.kind == "i" and (attr_text(v.attrs, "_Unsigned") or "").lower() == "true"
    scale = attr_numbers(v.attrs, "scale_factor")
    offset = attr_numbers(v.attrs, "add_offset")
    fills = tuple(attr_numbers(v.attrs, "_FillValue") + attr_numbers(v.attrs, "missing_value"))
    g = describe_grid(ds, var, ydim, xdim)
    n = len(ft.ends)
    block = _block_frames(v, time_dim, dims, n, rows * cols * dtype.itemsize)
    notes = list(g.notes)
    vmin, vmax, range_notes = _valid_range(v.attrs, dtype, unsigned)
    if units_from == "--units" and attr_text(v.attrs, "units") != units.text:
        notes.append(
            f"units from --units {units.text!r}; the file says {attr_text(v.attrs, 'units')!r}"
        )
    notes += range_notes + ft.notes
    layout = Layout(
        engine=engine,
        var=var,
        dims=dims,
        time_dim=time_dim,
        squeeze=squeeze,
        times=ft.ends,
        present=ft.present,
        interval_s=ft.interval_s,
        product=var,
        quantity=quantity,
        units=units,
        dtype=dtype,
        unsigned=unsigned,
        scale=scale[0] if scale else 1.0,
        offset=offset[0] if offset else 0.0,
        fills=fills,
        valid_min=vmin,
        valid_max=vmax,
        transposed=transposed,
        flip_rows=g.flip_rows,
        flip_cols=g.flip_cols,
        grid=g.grid,
        block=block,
        static_digest=_digest(g.static),
    )
    attrs = {
        "variable": var,
        "standard_name": attr_text(v.attrs, "standard_name"),
        "long_name": attr_text(v.attrs, "long_name"),
        "units_in_file": attr_text(v.attrs, "units"),
        "units_used": units.text,
        "units_from": units_from,
        "conversion": _conversion_text(units, ft.interval_s),
        "time_variable": ft.variable,
        "frame_time": (
            f"end of the period given by the {ft.interval_from}"
            if ft.interval_from.startswith(("time bounds", "start_time"))
            else f"the time coordinate {ft.variable!r}, read as the end of the period"
        ),
        "interval_from": ft.interval_from,
        "orientation_in_file": _orientation_text(layout),
        "notes": notes,
        "global_attributes": _global_attrs(ds.attrs),
        "engine": engine,
    }
    return Described(layout, g.static, attrs)


def _digest(static: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(static):
        a = np.ascontiguousarray(static[k])
        h.update(f"{k}{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest() if static else ""


def _valid_range(
    attrs: Mapping[str, Any], dtype: np.dtype[Any], unsigned: bool
) -> tuple[float | None, float | None, list[str]]:
    """Valid minimum and maximum of the packed values, as netCDF4 applies them.

    ``valid_range``, else ``valid_min``/``valid_max``, each used only when the variable's type
    holds its values exactly (netCDF4's "safe cast"), compared with the packed values (viewed
    unsigned for ``_Unsigned``). The `_FillValue`-implied range of the NUG is not applied
    (netCDF4 and xarray do not apply it either).
    """
    notes: list[str] = []

    def safe(key: str) -> np.ndarray | None:
        if key not in attrs:
            return None
        att = np.asarray(attrs[key]).ravel()
        if att.dtype.kind in "iuf":
            with np.errstate(all="ignore"):
                cast = att.astype(dtype)
            if np.array_equal(cast.astype(np.float64), att.astype(np.float64), equal_nan=True):
                return cast.view(f"u{dtype.itemsize}") if unsigned else cast
        notes.append(f"{key} {attrs[key]!r} ignored: not values of the variable's type {dtype}")
        return None

    rng = safe("valid_range")
    lo: np.ndarray | None
    hi: np.ndarray | None
    if rng is not None and rng.size == 2:
        lo, hi = rng[:1], rng[1:]
    else:
        lo, hi = safe("valid_min"), safe("valid_max")
    return (
        None if lo is None else float(lo[0]),
        None if hi is None else float(hi[0]),
        notes,
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
        scaled = "" if units.factor == 1.0 else f" x {units.factor:g}"
        return f"dBZ = 10 log10(value [{units.text}]{scaled})"
    return "dBZ as stored"


def _orientation_text(lay: Layout) -> str:
    if lay.grid.orientation != NORTH_UP:
        return "unknown (no coordinates): rows and columns kept in file order"
    parts = ["stored (x, y): transposed"] if lay.transposed else []
    parts.append(
        "rows stored south to north (flipped)" if lay.flip_rows else "rows stored north first"
    )
    if lay.flip_cols:
        parts.append("columns stored east to west (flipped)")
    return "; ".join(parts)


def _global_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in list(attrs.items())[:40]:
        text = attr_text(attrs, k)
        if text is not None:
            out[str(k)] = text[:1000]
        elif isinstance(v, int | float | np.integer | np.floating) and np.isfinite(v):
            out[str(k)] = float(v)
    return out


def _time_dim(
    ds: Any, var: str, dims: tuple[str, ...], shape: tuple[int, ...]
) -> tuple[str | None, dict[str, int]]:
    """The variable's time dimension (None: a single frame) and its length-1 extra dims."""
    time_dim = None
    squeeze: dict[str, int] = {}
    for d, size in zip(dims[:-2], shape[:-2], strict=True):
        along = [n for n, v in ds.variables.items() if v.dims == (d,) and is_time_coord(ds, str(n))]
        if d in TIME_NAMES or is_time_coord(ds, d) or along:
            if time_dim is not None:
                raise FileProblem(f"variable {var!r} has two time dimensions ({time_dim}, {d})")
            time_dim = d
        elif size == 1:
            squeeze[d] = 0
        else:
            raise FileProblem(
                f"variable {var!r} has dimension {d!r} of size {size} besides time, y and x "
                "(only one frame per time step is supported)"
            )
    return time_dim, squeeze


def _units(attrs: Mapping[str, Any], var: str, path: Path, options: Options) -> tuple[Units, str]:
    if options.units is not None:
        return options.units, "--units"
    text = attr_text(attrs, "units")
    u = parse_units(text)
    if u is None:
        what = "no units" if not text else f"units {text!r}"
        raise ConfigError(
            f"{path}: variable {var!r} has {what}, which do not say what its values are: give "
            f"them with --units (e.g. --units mm for amounts per time step; accepted: "
            f"{UNITS_HELP})"
        )
    sn = attr_text(attrs, "standard_name")
    expected = STANDARD_NAMES.get(sn or "")
    if expected is not None and expected != u.kind:
        raise ConfigError(
            f"{path}: variable {var!r} has units {text!r} (a {u.kind}) but standard_name "
            f"{sn!r} (a {expected}): give the right units with --units"
        )
    return u, "file"


def _block_frames(v: Any, time_dim: str | None, dims: tuple[str, ...], n: int, nbytes: int) -> int:
    """Frames per read block: whole time chunks of the file, as many as fit `BLOCK_BYTES`.

    One chunk when larger (up to `MAX_CHUNK_BLOCK_BYTES`): no chunk is inflated twice, and a
    file stored one frame per chunk is not opened once per frame.
    """
    if time_dim is None:
        return 1
    fit = max(1, BLOCK_BYTES // max(nbytes, 1))
    chunks = v.encoding.get("chunksizes")
    if chunks:
        ct = int(chunks[dims.index(time_dim)])
        if ct * nbytes <= MAX_CHUNK_BLOCK_BYTES:
            return max(1, min(n, ct * max(1, fit // ct)))
    return min(n, fit)
