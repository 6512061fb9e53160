"""CF-netCDF precipitation and reflectivity grids (source ``netcdf``), read with the CF stack.

Layouts: one file holding (time, y, x) frames — or (time, x, y), read transposed — or one file
per frame whose time is a scalar or a length-1 dimension. Length-1 dimensions besides time, y
and x are dropped. The reader is split by concern, each part decoding with the library that
defines it:

- `units`: the variable's units with UDUNITS-2 (cf-units): amounts per time step become mm/h
  through the interval, rates are converted to mm/h, dBZ is kept, linear Z becomes dBZ. Units
  that are missing, not precipitation, or contradict the ``standard_name`` stop the run with an
  error naming ``--units``: never a guess.
- `times`: the frame times with xarray's CF time coder (fill values, scale/offset, every real
  calendar; cftime for the mixed Julian/Gregorian ``standard`` calendar before 1582); the frame
  time is the end of the accumulation period; a frame without a time is skipped and reported.
- `grid`: which dimensions are y and x (cf-xarray's CF criteria), the projection
  (``pyproj.CRS.from_cf``; false easting/northing in the x/y units), the corners, north-up flips,
  latitude/longitude kept as static arrays when they are the only georeference.
- `layout`: the variable, packing (scale/offset, ``_Unsigned``, fill values as xarray masks them,
  ``valid_range``/``valid_min``/``valid_max`` as netCDF4 masks them) and read blocks of a file.
- `reader`: `NetcdfReader` (registered as ``netcdf``): scan, blocks of whole time chunks shared
  by the worker threads, lookup-table decoding, what the store records.
"""

from __future__ import annotations

from nowcast_cli.io.netcdf.grid import cf_projection
from nowcast_cli.io.netcdf.layout import Options, describe_file
from nowcast_cli.io.netcdf.reader import NetcdfReader, parse_zr
from nowcast_cli.io.netcdf.times import decode_times
from nowcast_cli.io.netcdf.units import STANDARD_NAMES, UNITS_HELP, Units, parse_units

__all__ = [
    "STANDARD_NAMES",
    "UNITS_HELP",
    "NetcdfReader",
    "Options",
    "Units",
    "cf_projection",
    "decode_times",
    "describe_file",
    "parse_units",
    "parse_zr",
]
