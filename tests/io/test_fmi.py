"""FMI PGM reader: every shared FMI frame against pysteps' import_fmi_pgm, plus edge cases."""

from __future__ import annotations

import calendar
import gzip
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from nowcast_cli import encoding
from nowcast_cli.io import READERS, create_reader
from nowcast_cli.io.base import BadFileError, Failure, Frame, Scanned

FMI_DIR = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "fmi" / "pgm_20160928_seq24"
)
FILES = sorted(FMI_DIR.glob("*.pgm.gz")) if FMI_DIR.is_dir() else []
needs_data = pytest.mark.skipif(not FILES, reason="shared/data/fmi is not beside the repository")


def read_file(path: Path) -> Frame:
    reader = create_reader("fmi")
    (scanned,) = reader.scan(path, path.parent)
    assert isinstance(scanned, Scanned), scanned
    frame = reader.read(scanned.item)
    assert frame.info == scanned.info
    return frame


def store_pixels(frame: Frame) -> np.ndarray:
    a, b = READERS.get("fmi").zr
    pixels: np.ndarray = encoding.encode_table(frame.table, frame.info.quantity, a, b)[frame.codes]
    return pixels


def name_time(path: Path) -> int:
    s = path.name[:12]
    return calendar.timegm((int(s[:4]), int(s[4:6]), int(s[6:8]), int(s[8:10]), int(s[10:12]), 0))


@needs_data
def test_shared_sequence_is_complete() -> None:
    assert len(FILES) == 24


@needs_data
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name[:12])
def test_frame_equals_pysteps(path: Path) -> None:
    importers = pytest.importorskip("pysteps.io.importers")
    dbz, _, meta = importers.import_fmi_pgm(str(path), gzipped=True)
    nodata = np.isnan(dbz)
    # SPEC §3: P = floor(255 (dBZ + 10) / 70 + 0.5) clipped to 0..255, 0 where no data
    ref = np.floor(255.0 * (np.where(nodata, -10.0, dbz) + 10.0) / 70.0 + 0.5)
    ref = np.clip(ref, 0, 255).astype(np.int16)
    frame = read_file(path)
    pix = store_pixels(frame).astype(np.int16)
    assert pix.shape == dbz.shape == (1226, 760)
    np.testing.assert_array_equal(frame.valid, ~nodata)  # identical no-data mask
    assert int(np.abs(pix - ref).max()) <= 1  # pixel level ±1
    assert int(nodata.sum()) == 226844
    # physical values agree too, not only after quantization to pixels
    np.testing.assert_allclose(frame.values()[~nodata], dbz[~nodata])
    # metadata
    assert frame.info.time == name_time(path)
    assert frame.info.interval_s == int(meta["accutime"] * 60)
    assert frame.info.quantity == "reflectivity"
    assert READERS.get("fmi").zr == (meta["zr_a"], meta["zr_b"])
    g = frame.info.grid
    assert g.x_ll is not None
    assert g.y_ll is not None
    assert g.x_ll == pytest.approx(meta["x1"], abs=0.01)
    assert g.y_ll == pytest.approx(meta["y1"], abs=0.01)
    assert g.cell_m == meta["xpixelsize"]
    assert g.x_ll + g.cols * g.cell_m == pytest.approx(meta["x2"], abs=0.01)
    assert g.y_ll + g.rows * meta["ypixelsize"] == pytest.approx(meta["y2"], abs=0.01)
    assert meta["yorigin"] == "upper"  # both north-up


@needs_data
def test_projection_matches_pysteps_projection() -> None:
    pyproj = pytest.importorskip("pyproj")
    importers = pytest.importorskip("pysteps.io.importers")
    _, _, meta = importers.import_fmi_pgm(str(FILES[0]), gzipped=True)
    g = read_file(FILES[0]).info.grid
    ours, theirs = pyproj.Proj(g.projection), pyproj.Proj(meta["projection"])
    for lon, lat in [(18.6, 57.93), (25.0, 65.0), (34.9, 69.0)]:
        np.testing.assert_allclose(ours(lon, lat), theirs(lon, lat), atol=0.01)


@needs_data
def test_plain_pgm_equals_gzip(tmp_path: Path) -> None:
    plain = tmp_path / FILES[3].name.removesuffix(".gz")
    plain.write_bytes(gzip.decompress(FILES[3].read_bytes()))
    a, b = read_file(FILES[3]), read_file(plain)
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.valid, b.valid)
    assert a.info.time == b.info.time


@needs_data
def test_store_attrs_and_pickle() -> None:
    reader = pickle.loads(pickle.dumps(create_reader("fmi")))
    attrs = reader.store_attrs()
    json.dumps(attrs)
    assert attrs["zr"]["a"] == 223.0
    assert attrs["zr"]["b"] == 1.53
    assert "pysteps" in attrs["zr"]["reference"]
    assert "FMI" in attrs["attribution"]


def pgm(header_lines: list[str], width: int = 4, height: int = 3, maxval: int = 255) -> bytes:
    head = "P5\n" + "".join(f"# {line}\n" for line in header_lines)
    head += f"{width} {height}\n{maxval}\n"
    return head.encode() + bytes(range(width * height))


def scan_bytes(
    tmp_path: Path, data: bytes, name: str = "201609281445_fmi.pgm"
) -> list[Scanned | Failure]:
    path = tmp_path / name
    path.write_bytes(data)
    return create_reader("fmi").scan(path, tmp_path)


def test_small_synthetic_pgm(tmp_path: Path) -> None:
    data = pgm(["obstime 202001021530", "param CorrectedReflectivity"])
    data = data[:-1] + b"\xff"  # last pixel: no data
    (scanned,) = scan_bytes(tmp_path, data)
    assert isinstance(scanned, Scanned)
    frame = create_reader("fmi").read(scanned.item)
    assert frame.info.time == calendar.timegm((2020, 1, 2, 15, 30, 0))
    assert frame.codes.shape == (3, 4)
    np.testing.assert_array_equal(frame.values().ravel()[:11], 0.5 * np.arange(11) - 32)
    assert not frame.valid[2, 3]
    assert frame.valid.sum() == 11
    assert frame.info.grid.projection == ""  # no projection block: not georeferenced


def test_time_falls_back_to_file_name(tmp_path: Path) -> None:
    (scanned,) = scan_bytes(tmp_path, pgm(["param DBZ"]))
    assert isinstance(scanned, Scanned)
    assert scanned.info.time == calendar.timegm((2016, 9, 28, 14, 45, 0))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"P2\n4 3\n255\n0 1 2", "ASCII"),
        (b"GIF89a", "not a binary PGM"),
        (pgm(["obstime 202001021530"], maxval=65535), "8-bit"),
        (pgm(["obstime 202001021530"])[:-3], "truncated"),
        (pgm(["obstime 202001021530"])[:20], "truncated"),
        (pgm(["obstime 202013021530"]), "valid date"),
        (pgm(["obstime 2020010215"]), "YYYYMMDDHHMM"),
        (pgm(["obstime 202001021530", "param RainRate"]), "unsupported parameter"),
        (pgm(["obstime 202001021530"], width=0), "image size"),
        (pgm(["obstime 202001021530"], maxval=5), "maximum"),
    ],
)
def test_bad_files(tmp_path: Path, data: bytes, reason: str) -> None:
    results = scan_bytes(tmp_path, data, name="x.pgm")
    if isinstance(results[0], Failure):
        assert reason in results[0].reason
        return
    with pytest.raises(BadFileError, match=reason):
        create_reader("fmi").read(results[0].item)


@needs_data
def test_truncated_or_corrupt_gzip_is_a_bad_file(tmp_path: Path) -> None:
    raw = FILES[0].read_bytes()
    reader = create_reader("fmi")
    for i, data in enumerate([raw[: len(raw) // 2], raw[:-4], raw[:-20] + b"\x00" * 20]):
        path = tmp_path / f"{i}.pgm.gz"
        path.write_bytes(data)
        (scanned,) = reader.scan(path, tmp_path)
        assert isinstance(scanned, Scanned)
        with pytest.raises(BadFileError):
            reader.read(scanned.item)


def test_candidates_skip_non_pgm_files(tmp_path: Path) -> None:
    (tmp_path / "a.pgm.gz").write_bytes(gzip.compress(pgm(["obstime 202001021530"])))
    (tmp_path / "b.pgm").write_bytes(pgm(["obstime 202001021535"]))
    (tmp_path / "c").write_bytes(pgm(["obstime 202001021540"]))  # recognised by its signature
    (tmp_path / "README.md").write_text("x")
    reader = create_reader("fmi")
    assert reader.candidates([tmp_path]) == [tmp_path / n for n in ("a.pgm.gz", "b.pgm", "c")]
    assert reader.candidates([tmp_path / "README.md"]) == [tmp_path / "README.md"]  # as given
