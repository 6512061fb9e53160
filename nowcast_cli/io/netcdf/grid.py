"""The grid of a CF-netCDF variable: which dimensions are y and x, the projection, the corners.

- Axes: each spatial dimension's coordinate variable is classified with cf-xarray's CF criteria
  (``axis``, ``standard_name``, ``units`` such as ``degrees_north``, ``_CoordinateAxisType`` …)
  as latitude, longitude, X or Y, so a variable stored (time, lon, lat) is read transposed.
  Without coordinates the last two dimensions are taken as (y, x) in file order.
- Projection: the ``grid_mapping`` variable through ``pyproj.CRS.from_cf`` (``crs_wkt``, every CF
  grid mapping), else a PROJ string in its attributes (``proj4``, ``proj4_params`` …). CF gives
  ``false_easting``/``false_northing`` in the units of the x/y coordinates and pyproj reads them
  as metres, so for km grids they are converted first. The store's PROJ string is in metres.
- Grid: projected x/y (any length unit, converted with cf-units) give the cell size and corners;
  else 1-D or 2-D latitude/longitude are returned as static arrays (projection unknown unless
  the grid mapping gives one); else pixel indices (orientation unknown). Frames are flipped to
  north-up (row 0 north, columns west to east) when the coordinates say they are stored
  otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nowcast_cli.grid import Grid
from nowcast_cli.io.netcdf.files import FileProblem, attr_numbers, attr_text, collected_warnings
from nowcast_cli.io.netcdf.times import TIME_NAMES, is_time_coord
from nowcast_cli.io.netcdf.units import convert_units

PROJ_ATTRS = ("proj4", "proj4_params", "proj4text", "proj4string", "proj_params")
_EARTH_SHAPE = ("earth_radius", "semi_major_axis", "crs_wkt", "spatial_ref")
_PROJECTED = ("projection_x_coordinate", "projection_y_coordinate")
_Y_ROLES = ("latitude", "Y")
_X_ROLES = ("longitude", "X")


def role(attrs: Mapping[str, Any]) -> str:
    """CF role of a coordinate variable: "T", "latitude", "longitude", "X", "Y" or ""."""
    from cf_xarray.criteria import coordinate_criteria

    for name in ("T", "latitude", "longitude", "X", "Y"):
        for key, accepted in coordinate_criteria[name].items():
            if attr_text(attrs, key) in accepted:
                return name
    return ""


def length_factor(attrs: Mapping[str, Any], notes: list[str]) -> float | None:
    """Metres per unit of a projected coordinate's ``units``, None if not a length.

    A ``projection_x/y_coordinate`` without units is taken in metres (with a note).
    """
    text = attr_text(attrs, "units")
    if not text and attr_text(attrs, "standard_name") in _PROJECTED:
        notes.append(f"{attr_text(attrs, 'standard_name')} has no units: metres assumed")
        return 1.0
    hit = convert_units(text, ("m",))
    return hit[1] if hit else None


def _dim_coord(ds: Any, dim: str) -> Any | None:
    """The 1-D coordinate variable of a dimension (same name), if any."""
    v = ds.variables.get(dim)
    return v if v is not None and v.dims == (dim,) else None


def spatial_dims(ds: Any, var: str, dims: tuple[str, ...]) -> tuple[str, str, bool]:
    """(y dimension, x dimension, stored transposed): the last two dimensions, by their roles.

    Raises
    ------
    FileProblem
        If time is among the last two dimensions (frames must be (time, y, x) or (time, x, y)).
    """
    a, b = dims[-2], dims[-1]
    if any(d in TIME_NAMES or is_time_coord(ds, d) for d in (a, b)):
        raise FileProblem(
            f"variable {var!r} has dimensions {dims}: the last two must be y and x (CF order "
            "time, y, x)"
        )
    ca, cb = _dim_coord(ds, a), _dim_coord(ds, b)
    ra = role(ca.attrs) if ca is not None else ""
    rb = role(cb.attrs) if cb is not None else ""
    if ra in _X_ROLES and rb in _Y_ROLES:
        return b, a, True
    return a, b, False


@dataclass
class GridInfo:
    """A variable's grid, how to turn its frames north-up, and its static arrays."""

    grid: Grid
    flip_rows: bool
    flip_cols: bool
    static: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def describe_grid(ds: Any, var: str, ydim: str, xdim: str) -> GridInfo:
    """Grid, flips to north-up, static arrays and notes of `var` on dimensions (ydim, xdim)."""
    v = ds.variables[var]
    rows, cols = int(ds.sizes[ydim]), int(ds.sizes[xdim])
    notes: list[str] = []
    yc, xc = _dim_coord(ds, ydim), _dim_coord(ds, xdim)
    yf = length_factor(yc.attrs, notes) if yc is not None and role(yc.attrs) == "Y" else None
    xf = length_factor(xc.attrs, notes) if xc is not None and role(xc.attrs) == "X" else None
    proj, gm_name = "", ""
    gm_ref = attr_text(v.attrs, "grid_mapping")
    if gm_ref:
        gm_name = gm_ref.split(":")[0].split()[0]
        if gm_name in ds.variables:
            proj, gm_notes = cf_projection(ds.variables[gm_name].attrs, xf or 1.0, yf or 1.0)
            notes += gm_notes
        else:
            notes.append(
                f"the grid_mapping variable {gm_name!r} named by {var!r} is not in the file"
            )
    label = f"netCDF {rows}x{cols}"
    if yc is not None and xc is not None and yf is not None and xf is not None:
        return _projected(yc, xc, yf, xf, proj, gm_name, label, notes)
    lat, lon = _latlon(ds, var, ydim, xdim, yc, xc, rows, cols)
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
        static = {
            "latitude": np.ascontiguousarray(lat, dtype=np.float64),
            "longitude": np.ascontiguousarray(lon, dtype=np.float64),
        }
        grid = Grid(f"{label}, latitude/longitude grid", rows, cols, 0.0, proj)
        return GridInfo(grid, flip_rows, flip_cols, static, notes)
    notes.append("no coordinates: pixel indices only, projection and orientation unknown")
    grid = Grid(
        f"{label} (pixel indices; projection unknown)",
        rows,
        cols,
        0.0,
        proj,
        orientation="as stored in the file (no coordinates: orientation unknown)",
    )
    return GridInfo(grid, False, False, {}, notes)


def _projected(
    yc: Any, xc: Any, yf: float, xf: float, proj: str, gm_name: str, label: str, notes: list[str]
) -> GridInfo:
    """A grid from projected x/y coordinates (cell size and corners when regular)."""
    y = _decoded(yc) * yf
    x = _decoded(xc) * xf
    rows, cols = len(y), len(x)
    flip_rows = rows > 1 and y[-1] > y[0]
    flip_cols = cols > 1 and x[-1] < x[0]
    if not proj:
        notes.append("projection unknown: the file gives projected x/y but no usable grid_mapping")
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
        grid = Grid(f"{label} projected ({gm_name or 'x/y'})", rows, cols, 0.0, proj)
        return GridInfo(grid, flip_rows, flip_cols, {}, notes)
    grid = Grid(
        f"{label} {cell / 1000:g} km ({gm_name or 'projected x/y'})",
        rows,
        cols,
        cell,
        proj,
        float(x.min() - cell / 2),
        float(y.min() - cell / 2),
    )
    return GridInfo(grid, flip_rows, flip_cols, {}, notes)


def cf_projection(
    attrs: Mapping[str, Any], x_unit_m: float = 1.0, y_unit_m: float = 1.0
) -> tuple[str, list[str]]:
    """PROJ string (lengths in metres) of a CF grid-mapping variable, and notes on it.

    `x_unit_m`/`y_unit_m` are the metres per unit of the x/y coordinates, in which CF gives the
    false easting/northing. Returns ``("", [reason])`` when pyproj cannot read the mapping.
    """
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    notes: list[str] = []
    cf = dict(attrs)
    has_wkt = any(attr_text(attrs, k) for k in ("crs_wkt", "spatial_ref"))
    name = attr_text(attrs, "grid_mapping_name")
    try:
        if has_wkt or name:
            if not has_wkt:
                for key, unit_m in (("false_easting", x_unit_m), ("false_northing", y_unit_m)):
                    values = attr_numbers(attrs, key)
                    if values and unit_m != 1.0:
                        cf[key] = values[0] * unit_m  # CF: in the x/y units; pyproj: metres
                if not any(k in attrs for k in _EARTH_SHAPE):
                    notes.append(
                        "the grid mapping does not give the earth's shape: WGS84 assumed "
                        "(as pyproj)"
                    )
            crs = CRS.from_cf(cf)
        else:
            text = next((t for k in PROJ_ATTRS if "+proj=" in (t := attr_text(attrs, k) or "")), "")
            if not text:
                return "", [f"grid_mapping_name {name!r}: no CF grid mapping or PROJ string"]
            crs = CRS.from_user_input(text)
        return metre_proj(crs), notes
    except CRSError as exc:
        reason = " ".join(str(exc).split())[:200]
        return "", [*notes, f"pyproj cannot read the grid mapping ({reason})"]


def metre_proj(crs: Any) -> str:
    """A CRS as a PROJ string whose projected coordinates are metres.

    PROJ reads ``+x_0``/``+y_0``/``+a``/``+R`` in metres whatever ``+units`` says, so only the
    units of the output change.
    """
    with collected_warnings():  # "you will likely lose important projection information"
        text = crs.to_proj4()
    keep = [t for t in text.split() if not t.startswith(("+units=", "+to_meter=", "+type="))]
    if crs.is_projected:
        keep.append("+units=m")
    return " ".join(keep)


def _decoded(v: Any) -> np.ndarray:
    """A coordinate's values decoded by xarray (scale/offset applied, fill values NaN)."""
    import xarray as xr

    with collected_warnings():  # e.g. differing _FillValue and missing_value: both applied
        d = xr.conventions.decode_cf_variable("coordinate", v, decode_times=False)
        return np.asarray(d.values).astype(np.float64)


def _mean(x: np.ndarray) -> float:
    """Mean of the finite values (NaN if none; compares False, so no flip on no evidence)."""
    ok = np.isfinite(x)
    return float(x[ok].mean()) if ok.any() else math.nan


def _latlon(
    ds: Any, var: str, ydim: str, xdim: str, yc: Any, xc: Any, rows: int, cols: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """2-D latitude and longitude of the grid (from 1-D or 2-D coordinates), if any."""
    if (
        yc is not None
        and xc is not None
        and (role(yc.attrs), role(xc.attrs))
        == (
            "latitude",
            "longitude",
        )
    ):
        lat1, lon1 = _decoded(yc), _decoded(xc)
        return np.repeat(lat1[:, None], cols, axis=1), np.repeat(lon1[None, :], rows, axis=0)
    listed = (attr_text(ds.variables[var].attrs, "coordinates") or "").split()
    pool = [n for n in listed if n in ds.variables] + [
        str(n) for n in ds.variables if str(n) not in listed
    ]
    lat = lon = None
    for n in pool:
        c = ds.variables[n]
        if c.dims not in ((ydim, xdim), (xdim, ydim)):
            continue
        kind = role(c.attrs)
        if not kind and n in listed:  # named by `coordinates` but without CF attributes
            low = n.lower()
            kind = "latitude" if "lat" in low else "longitude" if "lon" in low else ""
        if kind not in ("latitude", "longitude"):
            continue
        values = _decoded(c)
        if c.dims == (xdim, ydim):
            values = values.T
        if kind == "latitude" and lat is None:
            lat = values
        elif kind == "longitude" and lon is None:
            lon = values
    return lat, lon
