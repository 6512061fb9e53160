"""Frame times of a CF-netCDF file, decoded by xarray's CF time coder (cftime where needed).

`decode_times` hands the raw time values and their attributes to
``xarray.conventions.decode_cf_variable``, which masks ``_FillValue``/``missing_value``, applies
``scale_factor``/``add_offset`` and decodes ``<unit> since <date>`` in the variable's calendar
(the ``standard`` calendar is CF's mixed Julian/Gregorian one: cftime decodes reference dates
before 1582-10-15). A store holds real UTC instants, so only the real-world calendars are
accepted (standard, gregorian, proleptic_gregorian, julian); model calendars (``noleap``,
``360_day`` …) and ``utc``/``tai`` (which count leap seconds, which xarray does not decode) are
refused. Times are rounded to whole seconds.

`frame_times` chooses the frames' time variable and applies the reader's conventions: the frame
time is the end of the accumulation period (upper time bound, else the time itself) and the
interval comes from the bounds, a ``start_time`` variable, ``--interval`` or the time step.
A frame whose time is missing is left out (``present`` False) and reported by the reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nowcast_cli.errors import ConfigError
from nowcast_cli.io.netcdf.files import FileProblem, attr_text, collected_warnings

TIME_NAMES = ("valid_time", "time")
REAL_CALENDARS = frozenset({"standard", "gregorian", "proleptic_gregorian", "julian"})
LEAP_SECOND_CALENDARS = frozenset({"utc", "tai"})
# numpy's nanosecond times (what xarray and pandas decode to by default): 1678 to 2261
FIRST_S = int(np.datetime64("1678-01-01T00:00:00", "s").astype(np.int64))
END_S = int(np.datetime64("2262-01-01T00:00:00", "s").astype(np.int64))


def decode_times(
    name: str, values: np.ndarray, attrs: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Seconds since 1970-01-01 UTC (int64), where present (bool), and xarray's warnings.

    Raises
    ------
    FileProblem
        Without CF time units, for a calendar whose dates are not real times, for units xarray
        cannot decode, or for times outside 1678–2261.
    """
    import xarray as xr
    from xarray.coding.times import CFDatetimeCoder

    units = attr_text(attrs, "units")
    if not units or " since " not in f" {units.lower()} ":
        raise FileProblem(f"time {name!r} has no CF time units ('<unit> since <date>')")
    calendar = (attr_text(attrs, "calendar") or "standard").lower()
    if calendar in LEAP_SECOND_CALENDARS:
        raise FileProblem(
            f"time {name!r} uses calendar {calendar!r}, which counts leap seconds; xarray does "
            "not decode it (set calendar to standard if the values do not count leap seconds)"
        )
    if calendar not in REAL_CALENDARS:
        raise FileProblem(
            f"time {name!r} uses calendar {calendar!r}, whose dates are not real times: a store "
            f"holds UTC instants (calendars: {', '.join(sorted(REAL_CALENDARS))})"
        )
    raw = np.asarray(values)
    if raw.dtype.kind not in "iuf":
        raise FileProblem(f"time {name!r} holds {raw.dtype} values, not numbers")
    var = xr.Variable(tuple(f"d{i}" for i in range(raw.ndim)), raw, dict(attrs))
    try:
        with collected_warnings() as notes:
            decoded = xr.conventions.decode_cf_variable(
                name, var, mask_and_scale=True, decode_times=CFDatetimeCoder()
            )
            out = np.asarray(decoded.values)  # decoding is lazy: inside the block
    except (ValueError, TypeError, OverflowError, ArithmeticError) as exc:
        cause = exc.__cause__ or exc
        reason = " ".join(str(cause).split())[:200]
        raise FileProblem(
            f"time {name!r} has units {units!r} (calendar {calendar}) that xarray cannot "
            f"decode: {reason}"
        ) from None
    seconds, present = _seconds(out, name)
    bad = present & ((seconds < FIRST_S) | (seconds >= END_S))
    if bad.any():
        k = int(np.argmax(bad))
        raise FileProblem(
            f"time {name!r} value {k} is {_when(out.ravel()[k])}, outside the years 1678–2261 "
            "a store holds (numpy's nanosecond times)"
        )
    return seconds, present, [f"time {name!r}: xarray: {n}" for n in notes]


def _seconds(out: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Whole seconds (rounded) and presence of decoded datetime64 or cftime values."""
    flat = out.ravel()
    if flat.dtype.kind == "M":
        ns = flat.astype("datetime64[ns]")
        present = ~np.isnat(ns)
        n = ns.astype(np.int64)
        seconds = np.where(present, (n + 500_000_000) // 1_000_000_000, 0)
        return seconds.astype(np.int64), present
    if flat.dtype.kind != "O":
        raise FileProblem(f"time {name!r} did not decode to dates ({flat.dtype})")
    import cftime

    seconds = np.zeros(flat.size, np.int64)
    present = np.zeros(flat.size, bool)
    for i, d in enumerate(flat):
        if not isinstance(d, cftime.datetime):
            continue  # a masked (missing) value
        # julian and pre-1582 standard dates: the same instant in the proleptic Gregorian
        # calendar (cftime keeps the Julian day), then seconds since 1970
        g = d.change_calendar("proleptic_gregorian")
        s = cftime.date2num(g, "seconds since 1970-01-01", "proleptic_gregorian")
        seconds[i], present[i] = round(float(s)), True
    return seconds, present


def _when(value: object) -> str:
    if isinstance(value, np.datetime64):
        return str(value.astype("datetime64[s]")).replace("T", " ")
    return str(value)


def iso(t: int) -> str:
    """``YYYY-MM-DD HH:MM`` of seconds since 1970 UTC."""
    return str(np.datetime64(int(t), "s")).replace("T", " ")[:16]


@dataclass
class FrameTimes:
    """The frames' end times and accumulation interval, and where they came from."""

    ends: np.ndarray  # int64 seconds UTC, end of each frame's period (0 where not present)
    present: np.ndarray  # bool: the frame has a time (False: its time is missing)
    interval_s: int
    interval_from: str
    variable: str
    notes: list[str] = field(default_factory=list)


def is_time_coord(ds: Any, name: str) -> bool:
    """A variable that holds CF times: standard_name time, axis T, or ``… since …`` units."""
    if name not in ds.variables:
        return False
    a = ds.variables[name].attrs
    units = attr_text(a, "units") or ""
    return (
        attr_text(a, "standard_name") == "time"
        or attr_text(a, "axis") == "T"
        or " since " in units.lower()
    )


def time_variable(ds: Any, time_dim: str | None) -> str:
    """The variable holding the frames' valid times."""
    want = (time_dim,) if time_dim is not None else ()
    shape_ok = [
        str(n)
        for n, v in ds.variables.items()
        if is_time_coord(ds, str(n)) and (v.dims == want or (not want and v.size == 1))
    ]
    for name in (*TIME_NAMES, time_dim):
        if name in shape_ok:
            return name
    if len(shape_ok) == 1:
        return shape_ok[0]
    raise FileProblem(
        "has no time coordinate for its frames (a CF time variable such as time or valid_time)"
    )


def frame_times(
    ds: Any, path: Path, time_dim: str | None, interval_given: int | None
) -> FrameTimes:
    """End times, presence and interval of the frames (see the module docstring).

    Raises
    ------
    FileProblem
        For a time axis that is empty, all missing, not increasing, or with periods that
        disagree with each other or with ``--interval``.
    ConfigError
        For one frame with no period in the file and no ``--interval``.
    """
    tname = time_variable(ds, time_dim)
    tv = ds.variables[tname]
    t, present, notes = decode_times(tname, np.asarray(tv.values).ravel(), tv.attrs)
    n = len(t)
    if n == 0:
        raise FileProblem(f"time variable {tname!r} is empty")
    start: np.ndarray | None = None
    source = ""
    bname = attr_text(tv.attrs, "bounds")
    if bname and bname in ds.variables:
        bv = ds.variables[bname]
        b = np.asarray(bv.values).reshape(-1)
        if b.size != 2 * n:
            raise FileProblem(f"time bounds {bname!r} have {b.size} values for {n} times")
        # CF: bounds without units or calendar take the time variable's
        inherited = {k: tv.attrs[k] for k in ("units", "calendar") if k in tv.attrs}
        bs, b_ok, b_notes = decode_times(bname, b, {**inherited, **bv.attrs})
        pairs = bs.reshape(n, 2)
        start, t = pairs.min(axis=1), pairs.max(axis=1)
        present &= b_ok.reshape(n, 2).all(axis=1)
        notes += b_notes
        source = f"time bounds ({bname})"
    elif "start_time" in ds.variables and ds.variables["start_time"].size == n:
        sv = ds.variables["start_time"]
        start, s_ok, s_notes = decode_times("start_time", np.asarray(sv.values).ravel(), sv.attrs)
        present &= s_ok
        notes += s_notes
        source = "start_time"
    if not present.any():
        raise FileProblem(f"time variable {tname!r} has no value: all {n} are missing")
    ends = np.where(present, t, 0).astype(np.int64)
    kept = np.nonzero(present)[0]
    _check_increasing(ends, kept, tname)
    if start is not None:
        periods = np.unique((t - start)[kept])
        if len(periods) != 1 or periods[0] <= 0:
            shown = ", ".join(f"{p} s" for p in periods[:5])
            raise FileProblem(
                f"accumulation periods from {source} are not one positive length ({shown})"
            )
        interval = int(periods[0])
        if interval_given is not None and interval_given != interval:
            raise FileProblem(
                f"its {source} give a {interval / 60:g}-minute period; "
                f"--interval {interval_given / 60:g} disagrees"
            )
        return FrameTimes(ends, present, interval, source, tname, notes)
    if interval_given is not None:
        return FrameTimes(ends, present, interval_given, "--interval", tname, notes)
    if len(kept) >= 2:
        steps = np.diff(ends[kept])
        step = int(steps.min())
        if np.any(steps % step):
            raise FileProblem(
                f"time steps of {tname!r} are irregular "
                f"({', '.join(map(str, np.unique(steps)[:5]))} s): give the interval with "
                "--interval MINUTES"
            )
        return FrameTimes(ends, present, step, "time step", tname, notes)
    raise ConfigError(
        f"{path}: one frame and no time bounds or start_time, so "
        "its interval (accumulation period) is unknown: give it with --interval MINUTES"
    )


def _check_increasing(ends: np.ndarray, kept: np.ndarray, tname: str) -> None:
    """Present frames strictly increasing in time (frame numbers as in the file)."""
    d = np.diff(ends[kept])
    back = np.nonzero(d < 0)[0]
    if len(back):
        i, j = int(kept[back[0]]), int(kept[back[0] + 1])
        raise FileProblem(
            f"time {tname!r} is not monotonic: frame {j} ({iso(ends[j])}) comes after "
            f"frame {i} ({iso(ends[i])})"
        )
    same = np.nonzero(d == 0)[0]
    if len(same):
        i, j = int(kept[same[0]]), int(kept[same[0] + 1])
        raise FileProblem(
            f"time {tname!r} has duplicates: frames {i} and {j} are both {iso(ends[i])} "
            f"({len(same)} duplicate{'s' if len(same) > 1 else ''})"
        )
