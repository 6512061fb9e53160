"""DWD RADOLAN reader: every shared file against wradlib (independent reference) + edge cases."""

from __future__ import annotations

import bz2
import calendar
import gzip
import io
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest

from nowcast_cli import encoding
from nowcast_cli.io import create_reader
from nowcast_cli.io.base import BadFileError, Failure, Frame, Scanned
from nowcast_cli.io.dwd import HDF5_MAGIC, UNSUPPORTED, decode, parse_header


def _wradlib_io():  # type: ignore[no-untyped-def]
    """wradlib's io (the reference reader): only the tests that use it skip without it."""
    return pytest.importorskip("wradlib.io")


ZR = (256.0, 1.42)


def _reference_pixels(data: np.ndarray, attrs: dict) -> tuple[np.ndarray, np.ndarray]:
    """wradlib's decode (south-first, -9999 = no data) converted by the SPEC §3 formulas."""
    nodata = data == -9999
    if attrs["producttype"] in ("RX", "EX", "WX"):
        dbz = data / 2.0 - 32.5  # RVP6 code → dBZ
    else:
        rate = data * 3600.0 / attrs["intervalseconds"]  # depth per interval → mm/h
        with np.errstate(divide="ignore", invalid="ignore"):
            dbz = np.where(
                rate > 0,
                10 * np.log10(ZR[0] * np.power(np.where(rate > 0, rate, 1), ZR[1])),
                -np.inf,
            )
    pix = np.floor(255 * (dbz + 10) / 70 + 0.5)
    pix = np.clip(np.nan_to_num(pix, neginf=0), 0, 255).astype(np.uint8)
    pix[nodata] = 0
    return pix[::-1], ~nodata[::-1]  # north-up


def _wradlib_read(src):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _wradlib_io().read_radolan_composite(src)


def _shared_sources(root: Path):
    """(label, bytes) for every file and tar member under shared/data/dwd."""
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        raw = f.read_bytes()
        try:
            with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
                for m in tar.getmembers():
                    if m.isfile():
                        yield f"{f.relative_to(root)}:{m.name}", tar.extractfile(m).read()
                continue
        except tarfile.TarError:
            pass
        yield str(f.relative_to(root)), raw


def test_every_shared_file_matches_wradlib(shared_dwd: Path, tmp_path: Path) -> None:
    reader = create_reader("dwd")
    compared = unsupported = ascii_checked = odim_checked = 0
    for label, raw in _shared_sources(shared_dwd):
        plain = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        plain = bz2.decompress(plain) if plain[:3] == b"BZh" else plain
        if plain[:5] == b"ncols":
            _check_ascii(label, plain)
            ascii_checked += 1
            continue
        if plain[:8] == HDF5_MAGIC:
            _check_odim(label, plain, tmp_path)
            odim_checked += 1
            continue
        try:
            ref, attrs = _wradlib_read(io.BytesIO(plain))
        except Exception:  # wradlib cannot read it: outside the cross-check (HDF5, ASCII, PG)
            with pytest.raises(BadFileError):
                decode(plain, label)
            continue
        if attrs["producttype"] in UNSUPPORTED:
            with pytest.raises(BadFileError, match="unsupported product"):
                decode(plain, label)
            unsupported += 1
            continue
        # go through scan + read on the original (compressed) bytes, as ingest does
        path = tmp_path / f"f{compared}"
        path.write_bytes(raw if not label.count(":") else plain)
        (scanned,) = reader.scan(path, tmp_path)
        assert isinstance(scanned, Scanned), label
        frame = reader.read(scanned.item)
        assert frame.info.product == attrs["producttype"]
        lead = attrs.get("predictiontime", 0) or 0
        expected_time = calendar.timegm(attrs["datetime"].timetuple()) + 60 * lead  # UTC
        assert frame.info.time == expected_time, label
        pix = encoding.encode_table(frame.table, frame.info.quantity, *ZR)[frame.codes]
        ref_pix, ref_valid = _reference_pixels(ref, attrs)
        assert np.array_equal(frame.valid, ref_valid), f"{label}: no-data mask differs"
        _, fast_pix, fast_valid, _ = reader.read_pixels(scanned.item, ZR)  # fused kernel path
        assert np.array_equal(fast_valid, frame.valid)
        assert np.array_equal(fast_pix, np.where(frame.valid, pix, 0)), label
        diff = np.abs(pix.astype(int) - ref_pix.astype(int))
        assert diff.max() <= 1, f"{label}: pixel differs by {diff.max()}"
        compared += 1
    assert compared >= 60  # every staged grid file incl. the 25 RV tar members
    assert unsupported == 2  # FZ (undocumented scale) and %M (percent of normal)
    assert ascii_checked == 24  # RW-20221018.tar.gz
    assert odim_checked == 1  # raa01-rw_10000-latest-dwd---bin.hdf5


def _check_odim(label: str, plain: bytes, tmp_path: Path) -> None:
    """DWD's ODIM-HDF5 composites against wradlib's xarray reader (values, mask, grid, time)."""
    path = tmp_path / "odim.hdf5"
    path.write_bytes(plain)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = _wradlib_io().open_radolan_dataset(str(path))
    ref = ds["ACRR"].values  # mm per hour (RW), NaN = no data, rows north → south
    reader = create_reader("dwd")
    (scanned,) = reader.scan(path, tmp_path)
    assert isinstance(scanned, Scanned), label
    frame = reader.read(scanned.item)
    assert frame.info.product == "RW"
    assert frame.info.interval_s == 3600
    assert frame.info.time == int(ds.time.values[0].astype("datetime64[s]").astype(int))
    assert np.array_equal(frame.valid, ~np.isnan(ref))
    pix = encoding.encode_table(frame.table, frame.info.quantity, *ZR)[frame.codes]
    rate = np.where(np.isnan(ref), -9999, ref)
    ref_pix, _ = _reference_pixels(rate, {"producttype": "RW", "intervalseconds": 3600})
    assert np.abs(pix.astype(int) - ref_pix[::-1].astype(int)).max() <= 1
    assert np.allclose(scanned.info.grid.x_centres(), ds.x.values, atol=0.01)
    assert np.allclose(scanned.info.grid.y_centres(), ds.y.values, atol=0.01)


def _check_ascii(label: str, plain: bytes) -> None:
    """DWD's ASCII grids against numpy's own text parser.

    wradlib is no reference here: for ASCII input its no-data mask comes from
    ``np.where(data == flag)[0]`` on a 2-D array (row numbers, not pixels), so it marks the
    wrong pixels as missing.
    """
    values = np.loadtxt(io.BytesIO(plain), skiprows=6)  # rows north → south, -1 = no data
    frame = decode(plain, label)
    assert frame.info.product == "RW"
    assert frame.info.interval_s == 3600
    assert np.array_equal(frame.valid, values != -1)
    rate = values * 0.1  # 0.1 mm per hour
    pix, _ = _reference_pixels(
        np.where(values == -1, -9999, rate), {"producttype": "RW", "intervalseconds": 3600}
    )
    got = encoding.encode_table(frame.table, frame.info.quantity, *ZR)[frame.codes]
    assert np.abs(got.astype(int) - pix[::-1].astype(int)).max() <= 1


def test_compressed_equals_uncompressed(sample_dir: Path, tmp_path: Path) -> None:
    gz = sample_dir / "dwd" / "misc" / "raa01-rw_10000-1408030950-dwd---bin.gz"
    plain = gzip.decompress(gz.read_bytes())
    variants = {"plain": plain, "bz2": bz2.compress(plain), "gz": gz.read_bytes()}
    frames = [decode_path(tmp_path, name, data) for name, data in variants.items()]
    for f in frames[1:]:
        assert np.array_equal(f.codes, frames[0].codes)
        assert np.array_equal(f.valid, frames[0].valid)


def decode_path(tmp_path: Path, name: str, data: bytes) -> Frame:
    p = tmp_path / name
    p.write_bytes(data)
    reader = create_reader("dwd")
    (s,) = reader.scan(p, tmp_path)
    assert isinstance(s, Scanned)
    return reader.read(s.item)


def test_odd_suffix_and_trailing_bytes(ry_dir: Path, tmp_path: Path) -> None:
    src = next(iter(sorted(ry_dir.iterdir())))
    plain = gzip.decompress(src.read_bytes())
    ref = decode_path(tmp_path, "a", plain)
    odd = decode_path(
        tmp_path, "raa01-ry_10000-2001011500-dwd---bin_Braunsbach", plain + b"\x00" * 999
    )
    assert np.array_equal(ref.codes, odd.codes)
    assert ref.info.time == odd.info.time


def test_row_order_is_north_up(ry_dir: Path) -> None:
    src = sorted(ry_dir.iterdir())[0]
    frame = decode(gzip.decompress(src.read_bytes()), src.name)
    assert frame.valid.shape == (900, 900)
    # the file's first row is the southern edge: frame row 0 must be the file's last row
    plain = gzip.decompress(src.read_bytes())
    h = parse_header(plain, src.name)
    words = np.frombuffer(plain[h.size + 1 :], dtype="<u2", count=900 * 900).reshape(900, 900)
    assert np.array_equal(frame.valid, ((words & 0x2000) == 0)[::-1])


def test_tar_members_are_scanned(ry_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "ry.tar.bz2"
    with tarfile.open(archive, "w:bz2") as tar:
        for f in sorted(ry_dir.iterdir())[:3]:
            tar.add(f, arcname=f"sub/{f.name}")
    work = tmp_path / "work"
    results = create_reader("dwd").scan(archive, work)
    assert [type(r) for r in results] == [Scanned] * 3
    assert all(":" in r.info.name for r in results if isinstance(r, Scanned))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"hello world, not radar", "no end-of-header"),
        (b"RY011500100000120BY1620142VS 3SW 2.21.0PR E-02INT   5GP 900x 900\x03", "truncated"),
        (b"XX\x03", "not a RADOLAN composite"),
        (gzip.compress(b"RY011500", mtime=0), "no end-of-header"),
        (b"\x1f\x8b\x08\x00garbage-after-gzip-magic", "corrupt gzip"),
        (b"PG011500100000120BY 5\x03", "unsupported product PG"),
        (b"W3011500100000120BY1620142VS 3SW 2.21.0PR E-01INT4320GP 900x 900\x03", "sign bit"),
        (
            b"W4011500100000120BY1620142VS 3SW 2.21.0PR E-01INT5760GP 900x 900\x03",
            "unsupported product W4",
        ),
        (b"RY991500100000120GP 900x 900PR E-02INT 5\x03", "date is invalid"),
        (b"RY011500100000120PR E-02INT 5\x03", "no valid grid size"),
    ],
)
def test_bad_files_give_reasons(tmp_path: Path, content: bytes, reason: str) -> None:
    p = tmp_path / "bad"
    p.write_bytes(content)
    reader = create_reader("dwd")
    results = reader.scan(p, tmp_path)
    if isinstance(results[0], Failure):
        assert reason in results[0].reason
    else:
        with pytest.raises(BadFileError, match=reason):
            reader.read(results[0].item)
