"""CF-netCDF reader: every frame of the bundled 11-day file against xarray's own decode, the
one-file-per-frame layout with accumulation bounds and a grid mapping, units, time axes, errors.

References are independent of the reader: xarray's CF decoding (mask_and_scale, decode_times),
pyproj's ``CRS.from_cf`` for the grid mapping, and the SPEC §3 formulas written out here.
"""

from __future__ import annotations

import json
import pickle
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from nowcast_cli.errors import ConfigError, DataError, MissingDependencyError
from nowcast_cli.ingest import ingest
from nowcast_cli.io import create_reader
from nowcast_cli.io.base import BadFileError, Failure, Scanned
from nowcast_cli.io.netcdf import cf_projection, decode_times, parse_units
from nowcast_cli.store import Store
from tests.io._netcdf_files import (
    BUNDLED,
    RADOLAN_CRS,
    cut_of_bundle,
    per_frame_dataset,
    real_frames,
    wettest_start,
    write_netcdf3,
    write_netcdf4,
)

xr = pytest.importorskip("xarray")
MP = (200.0, 1.6)  # Marshall–Palmer, the netcdf default (SPEC §3)
FRAMES = 3168
T0 = 1525910400  # 2018-05-10 00:00 UTC, first frame of the bundle (its PROVENANCE)


def spec_pixels(rate: np.ndarray, a: float, b: float) -> np.ndarray:
    """SPEC §3 written out: dBZ = 10 log10(a R^b), P = floor(255 (dBZ + 10)/70 + 0.5), 0..255;
    R ≤ 0 and no data give 0."""
    wet = np.isfinite(rate) & (rate > 0)
    dbz = 10.0 * np.log10(a * rate[wet] ** b)  # only where it rains: most pixels are dry
    out = np.zeros(rate.shape, np.uint8)
    out[wet] = np.clip(np.floor(255.0 * (dbz + 10.0) / 70.0 + 0.5), 0, 255)
    return out


@pytest.fixture(scope="module")
def bundled_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("nc") / "radklim.zarr"
    report = ingest("netcdf", [BUNDLED], out, reader_options={"units": "mm"}, workers=2)
    assert (report.written, report.failed, report.skipped) == (FRAMES, [], [])
    return out


def test_bundled_file_every_frame_equals_xarray(bundled_store: Path) -> None:
    with Store.open(bundled_store) as s:
        times = s.times.copy()
        frames, valid = s.read(0, len(s))
        attrs = s.attrs
    assert frames.shape == (FRAMES, 190, 228)
    with xr.open_dataset(BUNDLED, engine="h5netcdf") as ds:  # xarray's own CF decode
        lat = ds.latitudes.values
        ref_times = ds.time.values.astype("datetime64[s]").astype(np.int64)
        # north-up: the file's latitudes grow with the row index, so its first row is south
        flip = np.nanmean(lat[0]) < np.nanmean(lat[-1])
        assert flip
        worst = 0
        for lo in range(0, FRAMES, 634):  # vectorised, one chunk of the file at a time
            mm = ds.rainfall_amount.isel(time=slice(lo, lo + 634)).values  # mm per 5 min
            mm = mm[:, ::-1] if flip else mm
            ref = spec_pixels(mm * 60.0 / 5.0, *MP)  # amount per 5 min → mm/h
            np.testing.assert_array_equal(valid[lo : lo + 634], ~np.isnan(mm))
            diff = np.abs(frames[lo : lo + 634].astype(int) - ref.astype(int))
            worst = max(worst, int(diff.max()))
    assert worst <= 1
    np.testing.assert_array_equal(times, ref_times)
    np.testing.assert_array_equal(times, T0 + 300 * np.arange(FRAMES))  # end of each period
    assert frames.max() > 150  # real heavy rain (19.7 mm/5 min) reached the store
    assert attrs["interval_seconds"] == 300
    assert attrs["netcdf"]["units_from"] == "--units"
    assert attrs["netcdf"]["units_in_file"] == "kg"
    assert attrs["zr"]["a"] == 200.0
    assert attrs["grid"]["projection"] == ""  # the grid mapping it names is not in the file
    assert any("RADOLAN_grid" in n for n in attrs["netcdf"]["notes"])


def test_bundled_store_grid_and_copies(bundled_store: Path) -> None:
    with Store.open(bundled_store) as s:
        lat = np.asarray(s.group["latitude"][:])
        crop = s.crop(120)
        summary = s.summary()
    with xr.open_dataset(BUNDLED, engine="h5netcdf") as ds:
        np.testing.assert_allclose(lat, ds.latitudes.values[::-1])  # north-up, row 0 north
    assert lat[0].mean() > lat[-1].mean()
    assert crop is not None
    assert crop.as_list() == [19, 0, 209, 190]  # largest centred square of 190x228
    assert summary["coarse"][0]["stretched"] is False
    zs = xr.open_zarr(bundled_store)
    assert zs.frames.sizes == {"time": FRAMES, "y": 190, "x": 228}
    assert str(zs.time.values[-1]).startswith("2018-05-20T23:55")


def test_cli_ingest_and_info(bundled_store: Path) -> None:
    from typer.testing import CliRunner

    from nowcast_cli.cli import app

    result = CliRunner().invoke(app, ["info", str(bundled_store), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert (info["source"], info["product"], info["frames"]) == (
        "netcdf",
        "rainfall_amount",
        FRAMES,
    )
    assert (info["start"], info["end"], info["gaps"]) == ("2018-05-10 00:00", "2018-05-20 23:55", 0)
    table = CliRunner().invoke(app, ["info", str(bundled_store)]).stdout
    assert "x 19–209" in table
    assert "Deutscher Wetterdienst" in table


def test_bundled_file_without_units_is_refused(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from nowcast_cli.cli import app

    out = tmp_path / "s.zarr"
    result = CliRunner().invoke(app, ["ingest", "netcdf", str(BUNDLED), "--out", str(out)])
    assert result.exit_code == 1
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("Error: ")
    assert "'kg'" in lines[0]
    assert "--units" in lines[0]
    assert not out.exists()  # nothing written


# -- one file per frame: accumulation bounds, grid mapping, netCDF4 and netCDF3 ------------------
@pytest.fixture(scope="module")
def per_frame_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("scipy")  # xarray writes netCDF3 with scipy
    d = tmp_path_factory.mktemp("perframe")
    start = wettest_start(6)
    mm, ends = real_frames(start, 6)
    for k in range(6):
        ds = per_frame_dataset(mm[k], ends[k], length1_time=k % 2 == 0)
        stamp = str(ends[k])[:16].replace("-", "").replace(":", "").replace("T", "")
        if k < 4:
            write_netcdf4(ds, d / f"rr_{stamp}.nc")
        else:
            write_netcdf3(ds, d / f"rr_{stamp}.nc")
    return d


def test_per_frame_files_round_trip(per_frame_dir: Path, tmp_path: Path) -> None:
    pyproj = pytest.importorskip("pyproj")
    out = tmp_path / "pf.zarr"
    report = ingest("netcdf", [per_frame_dir], out, workers=2)
    assert (report.written, report.failed) == (6, [])
    with Store.open(out) as s:
        frames, valid = s.read(0, 6)
        times = s.times.copy()
        attrs = s.attrs
        xs, ys = np.asarray(s.group["x"][:]), np.asarray(s.group["y"][:])
    for k, f in enumerate(sorted(per_frame_dir.iterdir())):
        with xr.open_dataset(f) as ds:  # xarray's decode: packing, fill, times, bounds
            mm = ds.rr.values.reshape(190, 228).astype(np.float64)
            bounds = ds.time_bnds.values.reshape(2).astype("datetime64[s]").astype(np.int64)
            y = ds.y.values
            x = ds.x.values
        order = np.argsort(-y)  # north-up: largest y first
        mm = mm[order]
        ref = spec_pixels(mm * 60.0 / ((bounds[1] - bounds[0]) / 60.0), *MP)
        np.testing.assert_array_equal(valid[k], ~np.isnan(mm), err_msg=f.name)
        assert int(np.abs(frames[k].astype(int) - ref.astype(int)).max()) <= 1, f.name
        assert times[k] == bounds.max()  # end of the accumulation period, not the time label
        np.testing.assert_allclose(ys, y[order] * 1000.0)
        np.testing.assert_allclose(xs, x * 1000.0)
    assert np.all(np.diff(times) == 300)
    assert attrs["interval_seconds"] == 300
    assert attrs["netcdf"]["interval_from"] == "time bounds (time_bnds)"
    assert attrs["grid"]["cell_m"] == 1000.0
    # the grid mapping becomes a PROJ string equivalent to pyproj's reading of it
    ours = pyproj.Transformer.from_crs("EPSG:4326", attrs["grid"]["projection"], always_xy=True)
    ref_crs = pyproj.CRS.from_cf(RADOLAN_CRS)
    theirs = pyproj.Transformer.from_crs("EPSG:4326", ref_crs, always_xy=True)
    for lon, lat in [(3.6, 46.9), (15.7, 54.7), (10.0, 51.0)]:
        np.testing.assert_allclose(ours.transform(lon, lat), theirs.transform(lon, lat), atol=1e-3)


def test_packed_and_float_paths_agree(per_frame_dir: Path) -> None:
    reader = create_reader("netcdf")
    for f in sorted(per_frame_dir.iterdir()):
        (scanned,) = reader.scan(f, f.parent)
        assert isinstance(scanned, Scanned)
        frame = reader.read(scanned.item)
        _, pix, valid, _ = reader.read_pixels(scanned.item, MP)
        from nowcast_cli.encoding import encode_table

        slow = encode_table(frame.table, frame.info.quantity, *MP)[frame.codes]
        np.testing.assert_array_equal(valid, frame.valid)
        np.testing.assert_array_equal(pix, np.where(frame.valid, slow, 0))
        assert frame.info == scanned.info


# -- streaming: blocks read once, shared by threads, memory bounded --------------------------------
def test_blocks_are_read_once_and_shared_by_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = cut_of_bundle(tmp_path / "cut.nc", 100, 60, chunk_t=10)
    # blocks of whole 10-frame chunks: 25 frames' bytes hold two chunks (20 frames)
    monkeypatch.setattr("nowcast_cli.io.netcdf.layout.BLOCK_BYTES", 25 * 190 * 228 * 2)
    reader = create_reader("netcdf", units="mm")
    scanned = [s for s in reader.scan(path, tmp_path) if isinstance(s, Scanned)]
    assert len(scanned) == 60
    serial = create_reader("netcdf", units="mm")
    expected = [serial.read_pixels(s.item, MP)[1] for s in scanned]
    sizes: list[int] = []
    lock = threading.Lock()

    def read(i: int) -> np.ndarray:
        pix = reader.read_pixels(scanned[i].item, MP)[1]
        with lock:
            sizes.append(len(reader.blocks))
        return pix

    with ThreadPoolExecutor(4) as pool:  # in order, as ingest submits them
        got = list(pool.map(read, range(60)))
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    assert reader.blocks.loads == 3  # 60 frames in 20-frame blocks: each block read once
    assert max(sizes) <= reader.blocks.capacity + 1  # never more blocks held than the cache's
    with xr.open_dataset(path) as ds:  # the cut holds the bundle's values
        ref = spec_pixels(ds.rainfall_amount.values[:, ::-1] * 12.0, *MP)
    assert int(np.abs(np.stack(got).astype(int) - ref.astype(int)).max()) <= 1


def test_netcdf3_without_scipy_is_one_clear_error(
    per_frame_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nc3 = sorted(per_frame_dir.iterdir())[-1]
    assert nc3.read_bytes()[:3] == b"CDF"
    monkeypatch.setitem(sys.modules, "scipy", None)  # `import scipy` raises ImportError
    with pytest.raises(MissingDependencyError, match=r"netCDF3.*needs scipy: pip install scipy"):
        create_reader("netcdf").scan(nc3, per_frame_dir)


def test_reader_pickles_without_its_caches() -> None:
    reader = pickle.loads(pickle.dumps(create_reader("netcdf", units="mm", zr="300,1.5")))
    assert reader.store_attrs()["zr"]["a"] == 300.0
    assert len(reader.blocks) == 0


# -- units, times, projections against their references --------------------------------------------
@pytest.mark.parametrize(
    ("text", "kind", "factor"),
    [
        ("mm", "amount", 1.0),
        ("kg m-2", "amount", 1.0),
        ("kg m**-2", "amount", 1.0),
        ("kg/m2", "amount", 1.0),
        ("kg.m-2", "amount", 1.0),
        ("millimetres", "amount", 1.0),
        ("m", "amount", 1000.0),
        ("mm/h", "rate", 1.0),
        ("mm h-1", "rate", 1.0),
        ("mm hr-1", "rate", 1.0),
        ("mm h^-1", "rate", 1.0),
        ("mm per hour", "rate", 1.0),
        ("mm/min", "rate", 60.0),
        ("kg m-2 s-1", "rate", 3600.0),
        ("mm s-1", "rate", 3600.0),
        ("m s-1", "rate", 3.6e6),
        ("m/s", "rate", 3.6e6),
        ("mm/day", "rate", 1 / 24),
        ("dBZ", "reflectivity", 1.0),
        ("DBZ", "reflectivity", 1.0),
        ("0.1 mm", "amount", 0.1),
        ("cm", "amount", 10.0),
        ("1e-3 m", "amount", 1.0),
        ("m/hr", "rate", 1000.0),
        ("kg s-1 m-2", "rate", 3600.0),
        ("mm/(5 min)", "rate", 12.0),
        ("kg m-2 day-1", "rate", 1 / 24),
        ("in/hr", "rate", 25.4),
        ("m6 m-3", "reflectivity", 1e18),  # linear Z in m6 m-3: ×1e18 to mm6 m-3
    ],
)
def test_units_are_understood(text: str, kind: str, factor: float) -> None:
    u = parse_units(text)
    assert u is not None
    assert (u.kind, u.factor) == (kind, pytest.approx(factor))


@pytest.mark.parametrize(
    # UDUNITS reads "mm/5min" as mm / 5 × min, and is case-sensitive ("MM" is not "mm")
    "text",
    ["kg", "", "1", "mm/5min", "K", "mm h", "dB", "degrees", "s", "Pa", "MM/H", None],
)
def test_units_that_do_not_say_what_values_are(text: str | None) -> None:
    assert parse_units(text) is None


@pytest.mark.parametrize(
    ("values", "units"),
    [
        ([160895.1666666667, 160895.25, 160895.3333333333], "hours since 2000-01-01T00:50:00"),
        ([0, 86400, 1e9], "seconds since 1970-01-01 00:00:00"),
        ([17661.5, 17662.0], "days since 1970-01-01"),
        ([0.0, 5.0, 10.0], "minutes since 2018-05-10 00:00:00 UTC"),
        ([0.0, 90.0], "minutes since 2018-05-10T12:00:00+02:00"),
    ],
)
def test_times_decode_like_cftime(values: list[float], units: str) -> None:
    import cftime

    dates = cftime.num2date(
        np.array(values),
        units,
        "standard",
        only_use_python_datetimes=True,
        only_use_cftime_datetimes=False,
    )
    ref = [
        (np.datetime64(d, "us") - np.datetime64("1970-01-01")) / np.timedelta64(1, "s")
        for d in dates
    ]
    got, present, notes = decode_times(
        "t", np.array(values), {"units": units, "calendar": "standard"}
    )
    np.testing.assert_array_equal(got, np.round(ref).astype(np.int64))
    assert present.all()
    assert notes == []


@pytest.mark.parametrize(
    "attrs",
    [
        RADOLAN_CRS,
        {
            "grid_mapping_name": "lambert_conformal_conic",
            "standard_parallel": [35.0, 65.0],
            "longitude_of_central_meridian": 10.0,
            "latitude_of_projection_origin": 52.0,
            "false_easting": 4000000.0,
            "false_northing": 2800000.0,
            "semi_major_axis": 6378137.0,
            "inverse_flattening": 298.257223563,
        },
        {
            "grid_mapping_name": "lambert_azimuthal_equal_area",
            "longitude_of_projection_origin": 10.0,
            "latitude_of_projection_origin": 52.0,
            "false_easting": 4321000.0,
            "false_northing": 3210000.0,
            "semi_major_axis": 6378137.0,
            "semi_minor_axis": 6356752.314140356,
        },
        {
            "grid_mapping_name": "transverse_mercator",
            "scale_factor_at_central_meridian": 0.9996,
            "longitude_of_central_meridian": 9.0,
            "latitude_of_projection_origin": 0.0,
            "false_easting": 500000.0,
            "false_northing": 0.0,
        },
        {
            "grid_mapping_name": "stereographic",
            "longitude_of_projection_origin": 25.0,
            "latitude_of_projection_origin": 90.0,
            "scale_factor_at_projection_origin": 0.97,
            "earth_radius": 6371288.0,
        },
        {
            "grid_mapping_name": "albers_conical_equal_area",
            "standard_parallel": [29.5, 45.5],
            "longitude_of_central_meridian": -96.0,
            "latitude_of_projection_origin": 23.0,
        },
        {
            "grid_mapping_name": "mercator",
            "longitude_of_projection_origin": 0.0,
            "standard_parallel": 45.0,
        },
    ],
    ids=lambda a: a["grid_mapping_name"],
)
def test_grid_mappings_match_pyproj(attrs: dict[str, object]) -> None:
    pyproj = pytest.importorskip("pyproj")
    proj, _ = cf_projection(attrs)
    ours = pyproj.Transformer.from_crs("EPSG:4326", proj, always_xy=True)
    theirs = pyproj.Transformer.from_crs("EPSG:4326", pyproj.CRS.from_cf(attrs), always_xy=True)
    for lon, lat in [(10.0, 52.0), (3.5, 47.2), (17.0, 56.0), (25.0, 61.0), (-90.0, 40.0)]:
        np.testing.assert_allclose(ours.transform(lon, lat), theirs.transform(lon, lat), atol=1e-3)


# -- bad input ------------------------------------------------------------------------------------
def _dataset(**variables: tuple) -> object:
    times = {"time": ("time", [0.0, 5.0, 10.0], {"units": "minutes since 2020-01-01 00:00"})}
    return xr.Dataset(variables, coords=times)


def _field(**attrs: object) -> tuple:
    return (("time", "y", "x"), np.ones((3, 4, 5), np.float32), dict(attrs))


def _scan(path: Path, **options: object) -> list[Scanned | Failure]:
    return create_reader("netcdf", **options).scan(path, path.parent)


def test_no_precipitation_variable_lists_the_variables(tmp_path: Path) -> None:
    path = tmp_path / "t.nc"
    _dataset(t2m=_field(standard_name="air_temperature", units="K"), wind=_field()).to_netcdf(path)
    (failure,) = _scan(path)
    assert isinstance(failure, Failure)
    for word in ("no precipitation-like variable", "t2m", "wind", "time", "--var"):
        assert word in failure.reason
    report = ingest("netcdf", [path], tmp_path / "s.zarr", sizes=(2,))  # named, skipped
    assert report.written == 0
    assert report.failed[0].name == str(path)


def test_two_candidates_ask_for_var(tmp_path: Path) -> None:
    path = tmp_path / "two.nc"
    _dataset(
        rr=_field(standard_name="rainfall_amount", units="mm"),
        rate=_field(standard_name="lwe_precipitation_rate", units="mm/h"),
    ).to_netcdf(path)
    with pytest.raises(ConfigError, match=r"rr \(standard_name rainfall_amount\).*--var"):
        _scan(path)
    scanned = _scan(path, var="rate")
    assert len(scanned) == 3
    assert isinstance(scanned[0], Scanned)
    assert scanned[0].info.product == "rate"
    (missing,) = _scan(path, var="nope")
    assert isinstance(missing, Failure)
    assert "no variable 'nope'" in missing.reason
    assert "rate" in missing.reason


@pytest.mark.parametrize(
    ("minutes", "reason"),
    [
        ([0.0, 10.0, 5.0], "not monotonic"),
        ([0.0, 5.0, 5.0], "duplicates"),
    ],
)
def test_bad_time_axes_are_bad_files(tmp_path: Path, minutes: list[float], reason: str) -> None:
    path = tmp_path / "t.nc"
    ds = _dataset(rr=_field(standard_name="rainfall_amount", units="mm"))
    ds = ds.assign_coords(time=("time", minutes, {"units": "minutes since 2020-01-01 00:00"}))
    ds.to_netcdf(path)
    (failure,) = _scan(path)
    assert isinstance(failure, Failure)
    assert reason in failure.reason
    good = tmp_path / "good"
    good.mkdir()
    _dataset(rr=_field(standard_name="rainfall_amount", units="mm")).to_netcdf(good / "g.nc")
    report = ingest("netcdf", [good, path], tmp_path / "s.zarr", sizes=(2,))  # SPEC §9
    assert report.written == 3
    assert [f.name for f in report.failed] == [str(path)]


def test_units_must_fit_the_standard_name(tmp_path: Path) -> None:
    path = tmp_path / "u.nc"
    _dataset(rr=_field(standard_name="rainfall_amount", units="mm h-1")).to_netcdf(path)
    with pytest.raises(ConfigError, match=r"a rate\) but standard_name 'rainfall_amount'.*--units"):
        _scan(path)
    assert len(_scan(path, units="mm")) == 3


def test_one_frame_without_period_needs_interval(tmp_path: Path) -> None:
    path = tmp_path / "one.nc"
    ds = xr.Dataset(
        {"rr": (("y", "x"), np.ones((4, 5)), {"standard_name": "rainfall_rate", "units": "mm/h"})},
        coords={"time": ((), 0.0, {"units": "minutes since 2020-01-01 00:00"})},
    )
    ds.to_netcdf(path)
    with pytest.raises(ConfigError, match="--interval"):
        _scan(path)
    (scanned,) = _scan(path, interval=5)
    assert isinstance(scanned, Scanned)
    assert scanned.info.interval_s == 300
    assert scanned.info.grid.orientation.startswith("as stored")  # no coordinates


def test_option_errors(tmp_path: Path) -> None:
    for units in ("bananas", "K", "m s-1 m"):  # not UDUNITS; a temperature; not rain
        with pytest.raises(ConfigError, match=f"--units '{units}' is not understood"):
            create_reader("netcdf", units=units)
    with pytest.raises(ConfigError, match="--zr"):
        create_reader("netcdf", zr="200")
    with pytest.raises(ConfigError, match="positive"):
        create_reader("netcdf", zr="-1,1.6")
    with pytest.raises(ConfigError, match="--interval"):
        create_reader("netcdf", interval=0)
    with pytest.raises(ConfigError, match=r"--units does not apply to source 'dwd'"):
        ingest("dwd", [tmp_path], tmp_path / "s.zarr", reader_options={"units": "mm"})


def test_not_netcdf_and_damaged_files(tmp_path: Path) -> None:
    cases = {"empty.nc": b"", "text.nc": b"hello", "trunc.nc": BUNDLED.read_bytes()[:5000]}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        (failure,) = _scan(tmp_path / name, units="mm")
        assert isinstance(failure, Failure), name
        assert failure.reason


def test_zr_option_reaches_the_store(tmp_path: Path) -> None:
    path = cut_of_bundle(tmp_path / "cut.nc", 140, 8, chunk_t=8)
    out = tmp_path / "s.zarr"
    ingest("netcdf", [path], out, reader_options={"units": "mm", "zr": "300,1.5"})
    with Store.open(out) as s:
        assert s.zr == (300.0, 1.5)
        frames, _ = s.read(0, 8)
    with xr.open_dataset(path) as ds:
        ref = spec_pixels(ds.rainfall_amount.values[:, ::-1] * 12.0, 300.0, 1.5)
    assert int(np.abs(frames.astype(int) - ref.astype(int)).max()) <= 1
    with pytest.raises(ConfigError, match=r"Z = 300 R\^1.5"):
        ingest("netcdf", [path], out, reader_options={"units": "mm", "zr": "200,1.6"})


def test_different_latlon_grids_are_not_mixed(tmp_path: Path) -> None:
    a = cut_of_bundle(tmp_path / "a.nc", 0, 2, chunk_t=2, crop=40)
    b = cut_of_bundle(tmp_path / "b.nc", 2, 2, chunk_t=2, crop=40)
    with xr.open_dataset(b, decode_cf=False) as ds:
        moved = ds.load()
    moved["latitudes"] = moved.latitudes + 10
    b.unlink()
    moved.to_netcdf(b, engine="h5netcdf")
    with pytest.raises(DataError, match="different latitude/longitude"):
        ingest("netcdf", [a, b], tmp_path / "s.zarr", reader_options={"units": "mm"})
    assert not (tmp_path / "s.zarr").exists()


def test_reading_a_vanished_file_is_a_bad_file(tmp_path: Path) -> None:
    from nowcast_cli.io.base import Item

    with pytest.raises(BadFileError, match="cannot read"):
        create_reader("netcdf").read(Item(tmp_path / "gone.nc", "gone.nc", (("frame", "0"),)))


def spec_dbz_pixels(dbz: np.ndarray) -> np.ndarray:
    p = np.clip(
        np.floor(255.0 * (np.where(np.isfinite(dbz), dbz, -10.0) + 10.0) / 70.0 + 0.5), 0, 255
    )
    return p.astype(np.uint8)


@pytest.mark.parametrize(
    ("name", "units", "to_store"),
    [
        ("precipitation_flux", "kg m-2 s-1", lambda v: spec_pixels(v * 3600.0, *MP)),
        ("rainfall_rate", "m s-1", lambda v: spec_pixels(v * 3.6e6, *MP)),
        ("lwe_precipitation_rate", "mm/h", lambda v: spec_pixels(v, *MP)),
        ("equivalent_reflectivity_factor", "dBZ", spec_dbz_pixels),
        (
            "equivalent_reflectivity_factor",
            "mm6 m-3",
            lambda v: spec_dbz_pixels(10 * np.log10(np.where(v > 0, v, np.nan))),
        ),
    ],
)
def test_rates_and_reflectivities(tmp_path: Path, name: str, units: str, to_store) -> None:
    """Multi-frame files on a 1-D latitude/longitude grid stored south→north and east→west."""
    mm, _ = real_frames(wettest_start(3), 3)
    values = mm[:, :30, :40] * 12.0  # real rain rates (mm/h)
    if name == "precipitation_flux":
        values = values / 3600.0
    elif name == "rainfall_rate":
        values = values / 3.6e6
    elif units == "dBZ":
        values = np.where(
            values > 0, 10 * np.log10(200 * np.where(values > 0, values, 1) ** 1.6), -32.0
        )
    elif units == "mm6 m-3":
        values = 200 * values**1.6
    lat = 50.0 + 0.01 * np.arange(30)  # increasing: row 0 south
    lon = 12.0 - 0.015 * np.arange(40)  # decreasing: column 0 east
    ds = xr.Dataset(
        {
            "v": (
                ("time", "lat", "lon"),
                values.astype(np.float32),
                {"standard_name": name, "units": units},
            )
        },
        coords={
            "time": ("time", [0.0, 300.0, 600.0], {"units": "seconds since 2018-05-10 12:00:00"}),
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
    )
    path = tmp_path / "v.nc"
    ds.to_netcdf(path, engine="h5netcdf", encoding={"v": {"_FillValue": np.float32(np.nan)}})
    out = tmp_path / "s.zarr"
    report = ingest("netcdf", [path], out, sizes=(10,))
    assert report.written == 3
    with Store.open(out) as s:
        frames, valid = s.read(0, 3)
        lat_s = np.asarray(s.group["latitude"][:])
        lon_s = np.asarray(s.group["longitude"][:])
        assert s.interval_s == 300
        assert s.attrs["zr"]["a"] == 200.0
    with xr.open_dataset(path) as ref_ds:
        v = ref_ds.v.values.astype(np.float64)[:, ::-1, ::-1]  # north-up, west to east
    np.testing.assert_array_equal(valid, ~np.isnan(v))
    assert int(np.abs(frames.astype(int) - to_store(v).astype(int)).max()) <= 1
    assert frames.max() > 0
    assert lat_s[0, 0] == pytest.approx(lat[-1])
    assert lon_s[0, 0] == pytest.approx(lon[-1])


def test_time_after_y_x_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "yxt.nc"
    xr.Dataset(
        {
            "rr": (
                ("y", "x", "time"),
                np.ones((4, 5, 3)),
                {"standard_name": "rainfall_amount", "units": "mm"},
            )
        },
        coords={"time": ("time", [0.0, 5.0, 10.0], {"units": "minutes since 2020-01-01"})},
    ).to_netcdf(path)
    (failure,) = _scan(path)
    assert isinstance(failure, Failure)
    assert "last two must be y and x" in failure.reason
