"""KNMI HDF5 reader: every bundled KNMI frame against pysteps' import_knmi_hdf5, plus edge cases."""

from __future__ import annotations

import calendar
import json
import pickle
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nowcast_cli import encoding
from nowcast_cli.errors import MissingDependencyError
from nowcast_cli.io import READERS, create_reader
from nowcast_cli.io.base import BadFileError, Failure, Frame, Item, Scanned

h5py = pytest.importorskip("h5py")

SAMPLE = (
    Path(__file__).resolve().parents[2] / "sample_data" / "knmi" / "rad_nl25_20100826_0000_seq24"
)
FILES = sorted(SAMPLE.glob("*.h5"))


def read_file(path: Path) -> Frame:
    reader = create_reader("knmi")
    (scanned,) = reader.scan(path, path.parent)
    assert isinstance(scanned, Scanned), scanned
    frame = reader.read(scanned.item)
    assert frame.info == scanned.info
    return frame


def name_time(path: Path) -> int:
    s = path.stem[-12:]
    return calendar.timegm((int(s[:4]), int(s[4:6]), int(s[6:8]), int(s[8:10]), int(s[10:12]), 0))


def test_sample_sequence_is_complete() -> None:
    assert len(FILES) == 24
    times = [name_time(p) for p in FILES]
    assert np.all(np.diff(times) == 300)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem[-12:])
def test_frame_equals_pysteps(path: Path) -> None:
    importers = pytest.importorskip("pysteps.io.importers")
    depth, _, meta = importers.import_knmi_hdf5(str(path))  # mm per 5 minutes, NaN = no data
    nodata = np.isnan(depth)
    a, b = READERS.get("knmi").zr
    # SPEC §3: R = depth * 60 / interval_minutes; dBZ = 10 log10(a R^b); P = floor(255 (dBZ +
    # 10) / 70 + 0.5) clipped to 0..255; R = 0 (no echo) and no data give P = 0
    rate = np.where(nodata, 0.0, depth) * 60.0 / meta["accutime"]
    with np.errstate(divide="ignore"):
        dbz = np.where(
            rate > 0, 10 * np.log10(a * np.power(np.where(rate > 0, rate, 1), b)), -np.inf
        )
    ref = np.clip(np.nan_to_num(np.floor(255 * (dbz + 10) / 70 + 0.5), neginf=0), 0, 255)
    frame = read_file(path)
    pix = encoding.encode_table(frame.table, frame.info.quantity, a, b)[frame.codes]
    assert pix.shape == depth.shape == (765, 700)
    np.testing.assert_array_equal(frame.valid, ~nodata)  # identical no-data mask
    assert int(np.abs(pix.astype(np.int16) - ref.astype(np.int16)).max()) <= 1  # pixel ±1
    assert int(nodata.sum()) == 398271
    np.testing.assert_allclose(frame.values()[~nodata], rate[~nodata], rtol=1e-6)
    # metadata
    assert frame.info.time == name_time(path)  # end of the 5-minute interval
    assert frame.info.interval_s == int(meta["accutime"] * 60)
    assert frame.info.quantity == "rain_rate"
    assert (a, b) == (meta["zr_a"], meta["zr_b"])
    g = frame.info.grid
    assert g.x_ll is not None
    assert g.y_ll is not None
    km = 1000.0 if meta["cartesian_unit"] == "km" else 1.0
    assert g.cell_m == meta["xpixelsize"] * km
    assert g.x_ll == pytest.approx(meta["x1"] * km)
    assert g.y_ll == pytest.approx(meta["y1"] * km)
    assert g.x_ll + g.cols * g.cell_m == pytest.approx(meta["x2"] * km)
    assert g.y_ll + g.rows * g.cell_m == pytest.approx(meta["y2"] * km)
    assert meta["yorigin"] == "upper"  # both north-up


def test_projection_in_metres_places_the_corners() -> None:
    pyproj = pytest.importorskip("pyproj")
    g = read_file(FILES[0]).info.grid
    assert g.x_ll is not None
    assert g.y_ll is not None
    with h5py.File(FILES[0], "r") as f:
        corners = np.asarray(f["geographic"].attrs["geo_product_corners"], dtype=float)
    proj = pyproj.Proj(g.projection)
    # geo_product_corners: lon/lat of lower-left, upper-left, upper-right, lower-right
    ll, ul, ur, lr = corners.reshape(4, 2)
    top = g.y_ll + g.rows * g.cell_m
    right = g.x_ll + g.cols * g.cell_m
    for (lon, lat), (x, y) in zip(
        (ll, ul, ur, lr),
        [(g.x_ll, g.y_ll), (g.x_ll, top), (right, top), (right, g.y_ll)],
        strict=True,
    ):
        px, py = proj(lon, lat)
        assert abs(px - x) < 1000
        assert abs(py - y) < 1000


def test_store_attrs_and_pickle() -> None:
    reader = pickle.loads(pickle.dumps(create_reader("knmi")))
    attrs = reader.store_attrs()
    json.dumps(attrs)
    assert attrs["zr"]["a"] == 200.0
    assert attrs["zr"]["b"] == 1.6
    assert "KNMI" in attrs["attribution"]


def test_missing_h5py_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` raise ImportError
    with pytest.raises(MissingDependencyError, match=r"nowcast\[hdf5\]"):
        create_reader("knmi")


def edited_copy(tmp_path: Path, edit: Callable[[Any], object]) -> Path:
    path = tmp_path / FILES[5].name
    shutil.copyfile(FILES[5], path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def test_reflectivity_variant(tmp_path: Path) -> None:
    def edit(f: Any) -> None:
        f["image1"].attrs["image_geo_parameter"] = np.bytes_(b"REFLECTIVITY_[DBZ]")
        f["image1/calibration"].attrs["calibration_formulas"] = np.bytes_(b"GEO=0.5*PV-32.0")

    frame = read_file(edited_copy(tmp_path, edit))
    assert frame.info.quantity == "reflectivity"
    base = read_file(FILES[5])
    np.testing.assert_array_equal(frame.codes, base.codes)
    np.testing.assert_allclose(frame.table[:3], [-32.0, -31.5, -31.0])


def test_south_up_storage_is_flipped(tmp_path: Path) -> None:
    def edit(f: Any) -> None:
        data = f["image1/image_data"][...]
        f["image1/image_data"][...] = data[::-1]
        f["geographic"].attrs["geo_pixel_size_y"] = np.array([1.0], dtype=np.float32)
        f["geographic"].attrs["geo_row_offset"] = np.array([-4415.0], dtype=np.float32)

    frame = read_file(edited_copy(tmp_path, edit))
    base = read_file(FILES[5])
    np.testing.assert_array_equal(frame.codes, base.codes)
    np.testing.assert_array_equal(frame.valid, base.valid)
    assert frame.info.grid.y_ll == base.info.grid.y_ll


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda f: f["image1"].attrs.__setitem__("image_geo_parameter", b"WIND"), "unsupported"),
        (
            lambda f: f["image1/calibration"].attrs.__setitem__("calibration_formulas", b"LOG"),
            "calibration",
        ),
        (
            lambda f: f["overview"].attrs.__setitem__("product_datetime_end", b"31-FOO-2010;0"),
            "time stamp",
        ),
        (lambda f: f["geographic"].attrs.__setitem__("geo_number_rows", 700), "geographic"),
        (lambda f: f.__delitem__("overview"), "not a KNMI composite"),
        (lambda f: f["image1/calibration"].attrs.__delitem__("calibration_formulas"), "missing"),
    ],
)
def test_wrong_products_are_bad_files(
    tmp_path: Path, edit: Callable[[Any], object], reason: str
) -> None:
    (result,) = create_reader("knmi").scan(edited_copy(tmp_path, edit), tmp_path)
    assert isinstance(result, Failure)
    assert reason in result.reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"", "empty"), (b"\x89HDF\r\n\x1a\n" + b"\x00" * 50, "HDF5"), (b"hello", "HDF5")],
)
def test_not_hdf5(tmp_path: Path, data: bytes, reason: str) -> None:
    path = tmp_path / "x.h5"
    path.write_bytes(data)
    reader = create_reader("knmi")
    (result,) = reader.scan(path, tmp_path)
    assert isinstance(result, Failure)
    assert reason in result.reason
    with pytest.raises(BadFileError):
        reader.read(Item(path, path.name))


def test_candidates_skip_non_hdf5_files(tmp_path: Path) -> None:
    reader = create_reader("knmi")
    found = reader.candidates([SAMPLE.parent])
    assert found == FILES  # ATTRIBUTION.md is not a candidate
    shutil.copyfile(FILES[0], tmp_path / "no_suffix")  # recognised by its signature
    (tmp_path / "notes.txt").write_text("x")
    assert reader.candidates([tmp_path]) == [tmp_path / "no_suffix"]
    assert reader.candidates([tmp_path / "notes.txt"]) == [tmp_path / "notes.txt"]  # as given
