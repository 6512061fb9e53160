"""CF cases of the netcdf reader, each on a file built here and checked against an independent
decoding of the same file: xarray's ``open_dataset`` (and cftime's ``num2date``) for times,
pyproj for the georeference, netCDF4-python for valid_range masking, and hand-computed unit
factors. Files are written with netCDF4-python, raw values exactly as given.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from nowcast_cli.ingest import ingest
from nowcast_cli.io import create_reader
from nowcast_cli.io.base import Failure, Scanned
from nowcast_cli.store import Store
from tests.io._netcdf_files import write_cf
from tests.io.test_netcdf import MP, spec_pixels

xr = pytest.importorskip("xarray")
cftime = pytest.importorskip("cftime")
RNG = np.random.default_rng(24)
RAIN = np.round(RNG.gamma(0.6, 1.5, size=(4, 6, 7)), 2).astype(np.float32)  # mm per 5 min


def rain_file(
    path: Path,
    times: object,
    time_attrs: dict[str, object],
    *,
    time_dtype: str = "f8",
    frames: np.ndarray | None = None,
    var_attrs: dict[str, object] | None = None,
) -> Path:
    """Frames of 5-minute amounts on a 1 km projected grid stored north first."""
    data = RAIN if frames is None else frames
    n, rows, cols = data.shape
    attrs = {"standard_name": "rainfall_amount", "units": "mm", **(var_attrs or {})}
    return write_cf(
        path,
        {"time": n, "y": rows, "x": cols},
        {
            "time": (("time",), time_dtype, times, time_attrs),
            "y": (("y",), "f8", 1000.0 * (rows - np.arange(rows)), {"axis": "Y", "units": "m"}),
            "x": (("x",), "f8", 1000.0 * np.arange(cols), {"axis": "X", "units": "m"}),
            "rr": (("time", "y", "x"), str(data.dtype), data, attrs),
        },
    )


def xarray_seconds(path: Path, name: str = "time") -> np.ndarray:
    """xarray's decoding of a file's times: seconds since 1970 (NaT → INT64 min)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. the ambiguous-reference-date warning
        with xr.open_dataset(path) as ds:
            return ds[name].values.astype("datetime64[s]").astype(np.int64)


def _utc_seconds(d: object) -> int:
    """Seconds since 1970 of a cftime date (the same day in the proleptic Gregorian calendar)."""
    import datetime as dt

    g = d.change_calendar("proleptic_gregorian")  # type: ignore[attr-defined]
    fields = (g.year, g.month, g.day, g.hour, g.minute, g.second, g.microsecond)
    return round(dt.datetime(*fields, tzinfo=dt.UTC).timestamp())


def stored(path: Path, tmp_path: Path, **options: object) -> tuple[np.ndarray, np.ndarray, dict]:
    out = tmp_path / f"{path.stem}.zarr"
    report = ingest("netcdf", [path], out, sizes=(4,), reader_options=options or None)
    assert report.written > 0, report.failed
    with Store.open(out) as s:
        frames, _ = s.read(0, len(s))
        return s.times.copy(), frames, s.attrs


def failures(path: Path, **options: object) -> list[Failure]:
    found = create_reader("netcdf", **options).scan(path, path.parent)
    return [f for f in found if isinstance(f, Failure)]


# -- 1. missing times ------------------------------------------------------------------------------
def test_a_one_frame_file_whose_time_is_the_fill_value_is_refused(tmp_path: Path) -> None:
    path = rain_file(
        tmp_path / "one.nc",
        [-9999.0],
        {"units": "minutes since 2019-12-25 00:00", "_FillValue": -9999.0},
        frames=RAIN[:1],
    )
    assert xarray_seconds(path)[0] == np.datetime64("NaT").astype(np.int64)  # xarray: NaT
    (failure,) = failures(path, interval=5)
    assert failure.name == str(path)
    assert "no value" in failure.reason
    assert "missing" in failure.reason
    report = ingest("netcdf", [path], tmp_path / "s.zarr", reader_options={"interval": 5})
    assert report.written == 0
    assert not (tmp_path / "s.zarr").exists()  # nothing stored at a made-up time


@pytest.mark.parametrize("missing", [0, 2, 3], ids=["first", "middle", "last"])
def test_frames_whose_time_is_missing_are_skipped_and_reported(
    tmp_path: Path, missing: int
) -> None:
    minutes = np.array([5.0, 10.0, 15.0, 20.0])
    minutes[missing] = -9999.0
    attrs = {"units": "minutes since 2019-12-25 00:00", "missing_value": -9999.0}
    path = rain_file(tmp_path / "m.nc", minutes, attrs)
    ref = xarray_seconds(path)
    keep = np.arange(4) != missing
    assert np.isnat(ref[~keep].astype("datetime64[s]")).all()
    (failure,) = failures(path)
    assert failure.name == f"{path}[{missing}]"
    assert "no time" in failure.reason
    times, frames, _ = stored(path, tmp_path)
    np.testing.assert_array_equal(times, ref[keep])
    expected = spec_pixels(RAIN[keep].astype(np.float64) * 12.0, *MP)
    assert int(np.abs(frames.astype(int) - expected.astype(int)).max()) <= 1


# -- 2. reference dates, calendars, scale_factor, units of time ------------------------------------
@pytest.mark.parametrize(
    ("units", "calendar", "values", "first"),
    [
        # NCEP style; CF's standard calendar is mixed Julian/Gregorian: 2012-01-01, while the
        # proleptic Gregorian count (datetime.toordinal) would give 2012-01-03
        ("hours since 1-1-1 00:00:0.0", "standard", [17628096.0, 17628096.25], "2012-01-01"),
        ("hours since 0001-01-01", "standard", [17628096.0, 17628096.25], "2012-01-01"),
        ("hours since 0001-01-01", "proleptic_gregorian", [17628048.0, 17628048.25], "2012-01-01"),
        # 1582-10-01 is Julian: ten days before its proleptic Gregorian namesake
        ("days since 1582-10-01", "standard", [157075.0, 157075.0 + 1 / 96], "2012-10-31"),
        ("days since 2019-12-25", "julian", [0.0, 1 / 96], "2020-01-07"),
        ("nanoseconds since 2018-05-10 00:00:00", "standard", [0.0, 9e11], "2018-05-10"),
        ("minutes since 2018-05-10 00:00:00 utc", "gregorian", [0.0, 15.0], "2018-05-10"),
    ],
)
def test_times_are_what_xarray_and_cftime_decode(
    tmp_path: Path, units: str, calendar: str, values: list[float], first: str
) -> None:
    t = np.array(values)
    path = rain_file(tmp_path / "t.nc", t, {"units": units, "calendar": calendar}, frames=RAIN[:2])
    times, _, attrs = stored(path, tmp_path)
    if calendar != "julian":  # xarray decodes Julian dates to cftime objects
        np.testing.assert_array_equal(times, xarray_seconds(path))
    if not units.startswith("nanoseconds"):  # cftime has no nanoseconds
        dates = cftime.num2date(t, units.replace(" utc", ""), calendar)
        np.testing.assert_array_equal(times, [_utc_seconds(d) for d in dates])
    assert str(np.datetime64(int(times[0]), "s")).startswith(first)
    assert np.diff(times)[0] == 900  # 15-minute frames
    if units.startswith("hours since 1-1-1"):  # xarray's warning is kept as a note
        assert any("Ambiguous reference date" in n for n in attrs["netcdf"]["notes"])


def test_scale_factor_and_add_offset_on_time_are_applied(tmp_path: Path) -> None:
    path = rain_file(
        tmp_path / "t.nc",
        np.array([1, 2, 3, 4], np.int16),
        {"units": "minutes since 2019-12-25 00:00", "scale_factor": 5.0, "add_offset": 60.0},
        time_dtype="i2",
    )
    times, _, attrs = stored(path, tmp_path)
    ref = xarray_seconds(path)
    np.testing.assert_array_equal(times, ref)
    assert np.all(np.diff(times) == 300)  # 5 minutes apart, not 1
    assert str(np.datetime64(int(times[0]), "s")) == "2019-12-25T01:05:00"
    assert attrs["interval_seconds"] == 300


@pytest.mark.parametrize(
    ("calendar", "words"),
    [
        ("360_day", "not real times"),
        ("noleap", "not real times"),
        ("utc", "leap seconds"),
    ],
)
def test_calendars_a_store_cannot_hold_are_refused(
    tmp_path: Path, calendar: str, words: str
) -> None:
    path = rain_file(
        tmp_path / "c.nc", [0.0, 5.0, 10.0, 15.0], {"units": "minutes since 2020-01-01"}
    )
    with xr.open_dataset(path, decode_times=False) as ds:
        ds = ds.load()
    ds.time.attrs["calendar"] = calendar
    path.unlink()
    ds.to_netcdf(path)
    (failure,) = failures(path)
    assert failure.name == str(path)
    assert calendar in failure.reason
    assert words in failure.reason


def test_a_refused_file_is_one_error_line_with_strict(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from nowcast_cli.cli import app

    path = rain_file(
        tmp_path / "c.nc",
        [0.0, 5.0, 10.0, 15.0],
        {"units": "minutes since 2020-01-01", "calendar": "360_day"},
    )
    out = tmp_path / "s.zarr"
    result = CliRunner().invoke(app, ["ingest", "netcdf", str(path), "--out", str(out), "--strict"])
    assert result.exit_code != 0
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert str(path) in lines[0]
    assert "360_day" in lines[0]
    assert not out.exists()


# -- 3. the georeference ---------------------------------------------------------------------------
def test_km_grid_false_easting_is_in_km(tmp_path: Path) -> None:
    """CF gives false_easting in the x units; pyproj reads metres: pixel (0, 0) must land where
    the metre CRS the file was made from puts it (8.70°E 44.68°N)."""
    pyproj = pytest.importorskip("pyproj")
    lcc_m = pyproj.CRS.from_proj4(
        "+proj=lcc +lat_1=35 +lat_2=65 +lat_0=52 +lon_0=10 +x_0=4000000 +y_0=2800000 +ellps=GRS80"
    )
    x0, y0 = pyproj.Transformer.from_crs("EPSG:4326", lcc_m, always_xy=True).transform(8.70, 44.68)
    rows, cols = 6, 7
    gm = {
        "grid_mapping_name": "lambert_conformal_conic",
        "standard_parallel": [35.0, 65.0],
        "longitude_of_central_meridian": 10.0,
        "latitude_of_projection_origin": 52.0,
        "false_easting": 4000.0,  # km, like x and y
        "false_northing": 2800.0,
        "semi_major_axis": 6378137.0,
        "inverse_flattening": 298.257222101,
    }
    km = {"standard_name": "projection_x_coordinate", "units": "km"}
    path = write_cf(
        tmp_path / "lcc.nc",
        {"time": 2, "y": rows, "x": cols},
        {
            "time": (("time",), "f8", [0.0, 5.0], {"units": "minutes since 2020-01-01"}),
            "y": (
                ("y",),
                "f8",
                (y0 - 2000.0 * np.arange(rows)) / 1000.0,
                {**km, "standard_name": "projection_y_coordinate"},
            ),
            "x": (("x",), "f8", (x0 + 2000.0 * np.arange(cols)) / 1000.0, km),
            "crs": ((), "i4", 0, gm),
            "rr": (
                ("time", "y", "x"),
                "f4",
                RAIN[:2, :rows, :cols],
                {"standard_name": "rainfall_amount", "units": "mm", "grid_mapping": "crs"},
            ),
        },
    )
    _, _, attrs = stored(path, tmp_path)
    grid = attrs["grid"]
    assert grid["cell_m"] == pytest.approx(2000.0)
    x_centre = grid["x_ll_m"] + grid["cell_m"] / 2
    y_centre = grid["y_ll_m"] + grid["cell_m"] * (rows - 0.5)  # row 0 is the northern edge
    back = pyproj.Transformer.from_crs(grid["projection"], "EPSG:4326", always_xy=True)
    lon, lat = back.transform(x_centre, y_centre)
    assert (lon, lat) == (pytest.approx(8.70, abs=1e-6), pytest.approx(44.68, abs=1e-6))


def test_crs_wkt_and_azimuthal_equidistant_are_read_by_pyproj(tmp_path: Path) -> None:
    pyproj = pytest.importorskip("pyproj")
    from nowcast_cli.io.netcdf import cf_projection

    laea = pyproj.CRS.from_epsg(3035)
    proj, notes = cf_projection({"crs_wkt": laea.to_wkt()})
    assert notes == []
    aeqd = {
        "grid_mapping_name": "azimuthal_equidistant",
        "longitude_of_projection_origin": 8.8,
        "latitude_of_projection_origin": 53.6,
        "false_easting": 0.0,
        "false_northing": 0.0,
        "earth_radius": 6371000.0,
    }
    proj2, _ = cf_projection(aeqd)
    for ours, theirs in ((proj, laea), (proj2, pyproj.CRS.from_cf(aeqd))):
        a = pyproj.Transformer.from_crs("EPSG:4326", ours, always_xy=True)
        b = pyproj.Transformer.from_crs("EPSG:4326", theirs, always_xy=True)
        for lon, lat in [(10.0, 52.0), (8.0, 54.0), (12.5, 48.0)]:
            np.testing.assert_allclose(a.transform(lon, lat), b.transform(lon, lat), atol=1e-3)


def test_a_proj_string_in_km_becomes_metres_as_proj_reads_it() -> None:
    """PROJ reads +x_0 and +a in metres whatever +units says: only the output unit changes."""
    pyproj = pytest.importorskip("pyproj")
    from nowcast_cli.io.netcdf import cf_projection

    text = "+proj=stere +lat_0=90 +lat_ts=60 +lon_0=10 +x_0=523.5 +a=6370040 +b=6370040 +units=km"
    proj, _ = cf_projection({"proj4": text})
    assert "+units=m" in proj
    ours = pyproj.Transformer.from_crs("EPSG:4326", proj, always_xy=True)
    km = pyproj.Transformer.from_crs("EPSG:4326", text, always_xy=True)
    for lon, lat in [(10.0, 52.0), (3.5, 47.2)]:
        np.testing.assert_allclose(
            ours.transform(lon, lat), np.array(km.transform(lon, lat)) * 1000.0, atol=1e-3
        )


def test_time_lon_lat_variables_are_read_transposed(tmp_path: Path) -> None:
    """The IMERG layout: precipitation (time, lon, lat), latitudes south to north."""
    lon = 10.05 + 0.1 * np.arange(7)
    lat = 40.05 + 0.1 * np.arange(6)
    rate = np.transpose(RAIN[:3], (0, 2, 1)) * 12.0  # (time, lon, lat), mm/h
    path = write_cf(
        tmp_path / "imerg.nc",
        {"time": 3, "lon": 7, "lat": 6},
        {
            "time": (("time",), "f8", [0.0, 30.0, 60.0], {"units": "minutes since 2020-01-01"}),
            "lon": (("lon",), "f8", lon, {"units": "degrees_east", "standard_name": "longitude"}),
            "lat": (("lat",), "f8", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "precipitation": (
                ("time", "lon", "lat"),
                "f4",
                rate,
                {"units": "mm/hr", "_FillValue": np.float32(-9999.9)},
            ),
        },
    )
    _, frames, attrs = stored(path, tmp_path)
    with xr.open_dataset(path) as ds:  # xarray names the dimensions: put lat first, north up
        ref = ds.precipitation.transpose("time", "lat", "lon").sortby("lat", ascending=False)
        expected = spec_pixels(ref.values.astype(np.float64), *MP)
        ref_lat = ref.lat.values
    np.testing.assert_array_equal(frames, expected)
    assert attrs["grid"]["orientation"].startswith("north-up")
    assert (attrs["grid"]["rows"], attrs["grid"]["cols"]) == (6, 7)
    assert "transposed" in attrs["netcdf"]["orientation_in_file"]
    with Store.open(tmp_path / "imerg.zarr") as s:
        np.testing.assert_allclose(np.asarray(s.group["latitude"][:])[:, 0], ref_lat)


# -- 4. memory per file with latitude/longitude ----------------------------------------------------
def test_latlon_per_frame_files_keep_one_copy_of_the_coordinates(tmp_path: Path) -> None:
    import tracemalloc

    n, size = 12, 120
    lat2d, lon2d = np.meshgrid(
        50.0 - 0.01 * np.arange(size), 5.0 + 0.01 * np.arange(size), indexing="ij"
    )
    for k in range(n):
        write_cf(
            tmp_path / f"f{k:02d}.nc",
            {"time": 1, "y": size, "x": size},
            {
                "time": (("time",), "f8", [5.0 * k], {"units": "minutes since 2020-01-01"}),
                "lat": (("y", "x"), "f8", lat2d, {"standard_name": "latitude"}),
                "lon": (("y", "x"), "f8", lon2d, {"standard_name": "longitude"}),
                "rr": (
                    ("time", "y", "x"),
                    "f4",
                    np.zeros((1, size, size), np.float32),
                    {"standard_name": "rainfall_amount", "units": "mm", "coordinates": "lat lon"},
                ),
            },
        )
    one_copy = 2 * lat2d.nbytes  # latitude and longitude, float64
    reader = create_reader("netcdf", interval=5)
    tracemalloc.start()
    try:
        for f in sorted(tmp_path.glob("*.nc")):
            assert all(isinstance(s, Scanned) for s in reader.scan(f, tmp_path))
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept < 1.5 * one_copy  # one file's coordinates, not one per file (12 copies)
    static = reader.static_arrays()
    np.testing.assert_array_equal(static["latitude"], lat2d)


# -- 5. units --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("units", "name", "to_mm_per_h"),
    [
        ("0.1 mm", "rainfall_amount", 0.1 * 12.0),  # tenths of mm per 5 minutes
        ("cm", "precipitation_amount", 10.0 * 12.0),
        ("m/hr", "rainfall_rate", 1000.0),
        ("kg s-1 m-2", "precipitation_flux", 3600.0),
        ("mm per hour", "rainfall_rate", 1.0),
    ],
)
def test_unit_spellings_convert_like_hand_computed_factors(
    tmp_path: Path, units: str, name: str, to_mm_per_h: float
) -> None:
    raw = (RAIN * 12.0 / to_mm_per_h).astype(np.float32)  # values that are RAIN × 12 mm/h
    path = rain_file(
        tmp_path / "u.nc",
        [5.0, 10.0, 15.0, 20.0],
        {"units": "minutes since 2020-01-01"},
        frames=raw,
        var_attrs={"standard_name": name, "units": units},
    )
    _, frames, attrs = stored(path, tmp_path)
    with xr.open_dataset(path) as ds:
        expected = spec_pixels(ds.rr.values.astype(np.float64) * to_mm_per_h, *MP)
    assert int(np.abs(frames.astype(int) - expected.astype(int)).max()) <= 1
    assert attrs["netcdf"]["units_used"] == units
    # the same units given with --units for a file whose own units say nothing
    bad = rain_file(
        tmp_path / "kg.nc",
        [5.0, 10.0, 15.0, 20.0],
        {"units": "minutes since 2020-01-01"},
        frames=raw,
        var_attrs={"standard_name": name, "units": "kg"},
    )
    _, frames2, _ = stored(bad, tmp_path, units=units)
    np.testing.assert_array_equal(frames2, frames)


# -- 6. valid_range / valid_min / valid_max --------------------------------------------------------
@pytest.mark.parametrize(
    ("dtype", "attrs"),
    [
        ("i2", {"scale_factor": 0.01, "valid_range": np.array([0, 3000], np.int16)}),
        ("i2", {"scale_factor": 0.01, "valid_min": np.int16(0)}),
        ("f4", {"valid_max": np.float32(4.0)}),
        ("f4", {"valid_min": np.float32(0.0), "valid_max": np.float32(4.0)}),
    ],
    ids=["packed-range", "packed-min", "float-max", "float-min-max"],
)
def test_valid_range_masks_like_netcdf4(tmp_path: Path, dtype: str, attrs: dict) -> None:
    netCDF4 = pytest.importorskip("netCDF4")
    mm = RAIN.astype(np.float64).copy()
    mm[0, 0, :3] = [-0.5, 31.0, 5.0]  # below, above and inside the ranges
    raw = np.round(mm / 0.01).astype(np.int16) if dtype == "i2" else mm.astype(np.float32)
    path = rain_file(
        tmp_path / "v.nc",
        [5.0, 10.0, 15.0, 20.0],
        {"units": "minutes since 2020-01-01"},
        frames=raw,
        var_attrs={**attrs, "_FillValue": np.array(-9999, dtype)},
    )
    with netCDF4.Dataset(path) as ds:  # the reference: netCDF4's masked array
        ref = ds["rr"][:]
    ref_valid = ~np.ma.getmaskarray(ref)
    assert not ref_valid.all()  # the case masks something
    out = tmp_path / "s.zarr"
    ingest("netcdf", [path], out, sizes=(4,))
    with Store.open(out) as s:
        frames, valid = s.read(0, 4)
    np.testing.assert_array_equal(valid, ref_valid)
    expected = spec_pixels(np.where(ref_valid, ref.filled(0.0), 0.0) * 12.0, *MP)
    assert int(np.abs(frames.astype(int) - expected.astype(int)).max()) <= 1


# -- 7. files stored one frame per chunk -----------------------------------------------------------
def test_one_frame_per_chunk_files_are_opened_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nowcast_cli.io.netcdf import reader as reader_module

    n = 48
    data = np.tile(RAIN, (n // 4, 1, 1))
    path = write_cf(
        tmp_path / "chunks.nc",
        {"time": n, "y": 6, "x": 7},
        {
            "time": (("time",), "f8", 5.0 * np.arange(n), {"units": "minutes since 2020-01-01"}),
            "rr": (
                ("time", "y", "x"),
                "f4",
                data,
                {"standard_name": "rainfall_amount", "units": "mm"},
            ),
        },
        chunks={"rr": (1, 6, 7)},
    )
    with xr.open_dataset(path) as ds:
        assert ds.rr.encoding["chunksizes"] == (1, 6, 7)
        expected = spec_pixels(ds.rr.values.astype(np.float64) * 12.0, *MP)
    opened: list[Path] = []
    real_open = reader_module.open_dataset

    def counting_open(p: Path, engine: str) -> object:
        opened.append(p)
        return real_open(p, engine)

    monkeypatch.setattr(reader_module, "open_dataset", counting_open)
    reader = create_reader("netcdf")
    scanned = [s for s in reader.scan(path, tmp_path) if isinstance(s, Scanned)]
    got = np.stack([reader.read_pixels(s.item, MP)[1] for s in scanned])
    assert len(opened) == 1  # one read of 48 one-frame chunks, not 48 opens
    assert reader.blocks.loads == 1
    np.testing.assert_array_equal(got, expected)
