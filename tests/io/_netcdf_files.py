"""Small CF-netCDF files written from the real values of the bundled RADKLIM file.

The values are real (decoded by xarray from the bundled file); the layouts are the other common
CF layouts: one file per frame with an accumulation period (time bounds) on a projected grid
with a grid mapping, in netCDF4 (HDF5, float32) and netCDF3 (int16 packed with scale and offset).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
BUNDLED = (
    REPO
    / "sample_data"
    / "netcdf"
    / "radklim_yw_20180510_seq3168"
    / "example_areal_reference_data.nc"
)
# The RADOLAN polar stereographic grid (DWD), as a CF grid mapping
RADOLAN_CRS = {
    "grid_mapping_name": "polar_stereographic",
    "straight_vertical_longitude_from_pole": 10.0,
    "latitude_of_projection_origin": 90.0,
    "standard_parallel": 60.0,
    "false_easting": 0.0,
    "false_northing": 0.0,
    "earth_radius": 6370040.0,
}


def real_frames(start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """mm per 5 minutes (NaN = no data) and end times of frames start…start+count of the bundle,
    in the file's row order (south first), decoded by xarray."""
    mm, ends = _real_frames(start, count)
    return mm.copy(), ends.copy()


@functools.lru_cache(maxsize=8)
def _real_frames(start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    import xarray as xr

    with xr.open_dataset(BUNDLED, engine="h5netcdf") as ds:
        sub = ds.rainfall_amount.isel(time=slice(start, start + count))
        return sub.values.astype(np.float64), sub.time.values


@functools.lru_cache(maxsize=8)
def wettest_start(count: int, search: int = 600) -> int:
    """First frame of the wettest run of `count` frames among the first `search` (real rain)."""
    import xarray as xr

    with xr.open_dataset(BUNDLED, engine="h5netcdf") as ds:
        wet = (ds.rainfall_amount.isel(time=slice(0, search)) > 0).sum(("y", "x")).values
    run = np.convolve(wet, np.ones(count), mode="valid")
    return int(np.argmax(run))


def per_frame_dataset(
    mm: np.ndarray, end: np.datetime64, *, length1_time: bool, label_at_start: bool = True
) -> Any:
    """One 5-minute accumulation on a 1 km polar stereographic grid, stored south to north.

    The time coordinate is the start of the period (as some archives label it) unless
    `label_at_start` is False; ``time_bnds`` holds [start, end].
    """
    import xarray as xr

    rows, cols = mm.shape
    x = np.arange(cols) + 0.5 - 523.462167  # km, west to east
    y = np.arange(rows) + 0.5 - 4658.644724  # km, increasing: row 0 is the southern edge
    epoch = np.datetime64("2018-05-10T00:00:00")
    end_min = float((end - epoch) / np.timedelta64(1, "m"))
    start_min = end_min - 5.0
    label = start_min if label_at_start else end_min
    time_attrs = {
        "units": "minutes since 2018-05-10 00:00:00",
        "calendar": "standard",
        "standard_name": "time",
        "bounds": "time_bnds",
    }
    var_attrs = {
        "standard_name": "precipitation_amount",
        "units": "kg m-2",
        "long_name": "5-minute precipitation",
        "grid_mapping": "crs",
        "cell_methods": "time: sum",
    }
    coords: dict[str, Any] = {
        "x": ("x", x, {"standard_name": "projection_x_coordinate", "units": "km"}),
        "y": ("y", y, {"standard_name": "projection_y_coordinate", "units": "km"}),
    }
    if length1_time:
        coords["time"] = ("time", [label], time_attrs)
        data = {
            "rr": (("time", "y", "x"), mm[None].astype(np.float32), var_attrs),
            "time_bnds": (("time", "nv"), [[start_min, end_min]], {}),
        }
    else:
        coords["time"] = ((), label, time_attrs)
        data = {
            "rr": (("y", "x"), mm.astype(np.float32), var_attrs),
            "time_bnds": (("nv",), [start_min, end_min], {}),
        }
    data["crs"] = ((), np.int32(0), dict(RADOLAN_CRS))
    return xr.Dataset(data, coords=coords, attrs={"Conventions": "CF-1.8", "institution": "test"})


def write_netcdf4(ds: Any, path: Path) -> Path:
    """Float32 with a NaN fill value, netCDF4/HDF5 through h5netcdf."""
    enc = {"rr": {"_FillValue": np.float32(np.nan), "zlib": True}}
    ds.to_netcdf(path, engine="h5netcdf", encoding=enc)
    return path


def write_netcdf3(ds: Any, path: Path) -> Path:
    """int16 packed (scale 0.01, offset 1.0, fill -32767), netCDF3 through scipy."""
    enc = {"rr": {"dtype": "int16", "scale_factor": 0.01, "add_offset": 1.0, "_FillValue": -32767}}
    ds.to_netcdf(path, engine="scipy", encoding=enc)
    return path


def cut_of_bundle(
    path: Path,
    start: int,
    count: int,
    chunk_t: int,
    crop: int | None = None,
    name: str = "rainfall_amount",
) -> Path:
    """Frames start…start+count of the bundled file, raw int16 and attributes unchanged,
    chunked (chunk_t, …) in time like the original; optionally only the first `crop` rows (and
    `crop` + 4 columns), the variable renamed to `name`."""
    import xarray as xr

    with xr.open_dataset(BUNDLED, engine="h5netcdf", decode_cf=False) as ds:
        sub = ds.isel(time=slice(start, start + count))
        if crop is not None:
            sub = sub.isel(y=slice(0, crop), x=slice(0, crop + 4))
        sub = sub.load().rename({"rainfall_amount": name})
    rows, cols = sub[name].shape[1:]
    enc = {name: {"chunksizes": (chunk_t, rows, cols), "zlib": True, "shuffle": True}}
    sub.to_netcdf(path, engine="h5netcdf", encoding=enc)
    return path


def write_cf(
    path: Path,
    dims: dict[str, int],
    variables: dict[str, tuple[tuple[str, ...], str, Any, dict[str, Any]]],
    *,
    chunks: dict[str, tuple[int, ...]] | None = None,
    global_attrs: dict[str, Any] | None = None,
) -> Path:
    """A netCDF4 file written with netCDF4-python exactly as given: raw values, attributes in
    order (``_FillValue`` set at creation), no automatic packing or masking on write.

    ``variables[name] = (dims, dtype, raw values, attributes)``.
    """
    import netCDF4

    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.set_auto_maskandscale(False)
        for name, size in dims.items():
            ds.createDimension(name, size)
        for name, (vdims, dtype, values, attrs) in variables.items():
            attrs = dict(attrs)
            fill = attrs.pop("_FillValue", None)
            chunksizes = (chunks or {}).get(name)
            v = ds.createVariable(
                name,
                dtype,
                vdims,
                fill_value=fill if fill is not None else False,
                chunksizes=chunksizes,
                zlib=chunksizes is not None,
            )
            v.set_auto_maskandscale(False)
            for k, a in attrs.items():
                v.setncattr(k, a)
            v[...] = np.asarray(values, dtype=dtype)
        for k, a in (global_attrs or {}).items():
            ds.setncattr(k, a)
    return path
