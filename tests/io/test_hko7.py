"""HKO-7 reader on archives generated to the documented format (real frames are confidential).

The format (shared/research/hko7_format.md): ``radarPNG/YYYY/MM/DD/RADyymmddHHMM00.png`` 480x480
8-bit greyscale PNGs and ``radarPNG_mask/…/RADyymmddHHMM00.mask`` raw zlib streams (level 2,
so they start with 78 5E) of a 480x480 NumPy bool array, True = valid.
"""

from __future__ import annotations

import calendar
import datetime as dt
import io
import json
import pickle
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nowcast_cli import encoding
from nowcast_cli.errors import ConfigError
from nowcast_cli.io import READERS, create_reader
from nowcast_cli.io.base import BadFileError, Failure, Frame, Reader, Scanned
from nowcast_cli.io.hko7 import Hko7Reader, dbz_table, decode_mask, parse_timezone

SHARED_META = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "hko7" / "metadata"
LOCAL_TIMES = [dt.datetime(2015, 1, 7, 0, 0) + dt.timedelta(minutes=6 * i) for i in range(3)]


def png_bytes(pixels: np.ndarray, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, format="PNG")
    return buf.getvalue()


def mask_bytes(mask: np.ndarray) -> bytes:
    return zlib.compress(np.ascontiguousarray(mask, dtype=bool).tobytes(), 2)


def frame_pixels(rng: np.random.Generator) -> np.ndarray:
    """A radar-like field: smooth blobs plus every pixel value somewhere."""
    y, x = np.mgrid[0:480, 0:480]
    field = np.zeros((480, 480))
    for _ in range(4):
        cy, cx, r = rng.uniform(0, 480), rng.uniform(0, 480), rng.uniform(20, 120)
        field += 250 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r**2))
    pixels = np.clip(field + rng.normal(0, 3, field.shape), 0, 255).astype(np.uint8)
    pixels[0, :256] = np.arange(256)  # every code, 0..255
    return pixels


def rel_dir(t: dt.datetime) -> Path:
    return Path(f"{t:%Y}", f"{t:%m}", f"{t:%d}")


def stem(t: dt.datetime) -> str:
    return f"RAD{t:%y%m%d%H%M}00"


def write_archive(
    png_root: Path, mask_root: Path | None, seed: int = 0, times: list[dt.datetime] = LOCAL_TIMES
) -> dict[str, tuple[np.ndarray, np.ndarray, dt.datetime]]:
    """Write frames (and masks when `mask_root`) and return name -> (pixels, mask, local time)."""
    rng = np.random.default_rng(seed)
    out = {}
    for t in times:
        pixels = frame_pixels(rng)
        mask = rng.random((480, 480)) > 0.1
        d = png_root / rel_dir(t)
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{stem(t)}.png").write_bytes(png_bytes(pixels))
        if mask_root is not None:
            md = mask_root / rel_dir(t)
            md.mkdir(parents=True, exist_ok=True)
            raw = mask_bytes(mask)
            assert raw[:2] == b"\x78\x5e"  # zlib level 2, as the benchmark writes them
            (md / f"{stem(t)}.mask").write_bytes(raw)
        out[f"{stem(t)}.png"] = (pixels, mask, t)
    return out


def utc_seconds(local: dt.datetime, hours_ahead: float) -> int:
    return calendar.timegm((local - dt.timedelta(hours=hours_ahead)).timetuple())


def ingest_like(reader: Reader, roots: list[Path], workdir: Path) -> list[Frame]:
    """What the ingest pipeline does with a reader: candidates, scan, read."""
    frames = []
    for path in reader.candidates(roots):
        for result in reader.scan(path, workdir):
            assert isinstance(result, Scanned), result
            frames.append(reader.read(result.item))
    return sorted(frames, key=lambda f: f.info.time)


def assert_round_trip(
    frames: list[Frame],
    expected: dict[str, tuple[np.ndarray, np.ndarray, dt.datetime]],
    hours_ahead: float = 8.0,
) -> None:
    reader = READERS.get("hko7")
    assert [f.info.name for f in frames] == sorted(expected)
    for frame in frames:
        pixels, mask, local = expected[frame.info.name]
        store_pixels = encoding.encode_table(frame.table, frame.info.quantity, *reader.zr)[
            frame.codes
        ]
        assert store_pixels.dtype == np.uint8
        np.testing.assert_array_equal(store_pixels, pixels)  # PNG pixel in = store pixel out
        np.testing.assert_array_equal(frame.valid, mask)  # mask in = valid out
        assert frame.info.time == utc_seconds(local, hours_ahead)  # file time in = time out
        assert frame.info.interval_s == 360
        assert frame.info.grid.shape == (480, 480)
        assert frame.warnings == []


def test_flat_archive_round_trips_exactly(tmp_path: Path) -> None:
    root = tmp_path / "HKO-data"
    expected = write_archive(root / "radarPNG", root / "radarPNG_mask")
    (root / "preview.png").write_bytes(png_bytes(np.zeros((10, 10), np.uint8)))  # not a frame
    reader = create_reader("hko7")
    assert len(reader.candidates([root])) == 3
    assert_round_trip(ingest_like(reader, [root], tmp_path / "work"), expected)


def test_nested_archive_round_trips_exactly(tmp_path: Path) -> None:
    root = tmp_path / "HKO-data"
    expected = write_archive(root / "radarPNG" / "radarPNG", root / "radarPNG" / "radarPNG_mask")
    reader = create_reader("hko7")
    assert_round_trip(ingest_like(reader, [root], tmp_path / "work"), expected)
    # pointing at the inner tree or at one day's folder finds the same masks
    inner = root / "radarPNG" / "radarPNG"
    assert_round_trip(ingest_like(reader, [inner], tmp_path / "work"), expected)
    day = inner / "2015" / "01" / "07"
    assert_round_trip(ingest_like(reader, [day], tmp_path / "work"), expected)


def test_nested_png_tree_with_outer_mask_tree(tmp_path: Path) -> None:
    root = tmp_path / "HKO-data"
    expected = write_archive(root / "radarPNG" / "radarPNG", root / "radarPNG_mask")
    assert_round_trip(ingest_like(create_reader("hko7"), [root], tmp_path / "w"), expected)


def test_mask_root_option(tmp_path: Path) -> None:
    expected = write_archive(tmp_path / "a" / "radarPNG", tmp_path / "elsewhere" / "masks")
    reader = create_reader("hko7", mask_root=str(tmp_path / "elsewhere" / "masks"))
    assert_round_trip(ingest_like(reader, [tmp_path / "a"], tmp_path / "w"), expected)
    # without the option the masks are not found: all valid, with a warning
    frames = ingest_like(create_reader("hko7"), [tmp_path / "a"], tmp_path / "w")
    assert all(f.valid.all() and f.warnings for f in frames)


def test_mask_root_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        create_reader("hko7", mask_root=tmp_path / "missing")


def test_missing_mask_is_all_valid_with_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "radarPNG"
    expected = write_archive(root, None)
    reader = create_reader("hko7")
    frames = ingest_like(reader, [tmp_path], tmp_path / "w")
    assert len(frames) == 3
    for frame in frames:
        assert frame.valid.all()
        assert frame.valid.shape == (480, 480)
        assert len(frame.warnings) == 1
        assert "no mask file" in frame.warnings[0]
        assert "radarPNG_mask" in frame.warnings[0]  # says where it looked
        pixels = expected[frame.info.name][0]
        np.testing.assert_array_equal(
            encoding.encode_table(frame.table, "reflectivity", *reader.zr)[frame.codes], pixels
        )


def _bad_masks() -> dict[str, bytes]:
    ok = np.ones((480, 480), bool)
    full = mask_bytes(ok)
    return {
        "too small": zlib.compress(np.ones((240, 480), bool).tobytes(), 2),
        "too large": zlib.compress(np.ones((481, 480), bool).tobytes(), 2),
        "not zlib": b"\x00" * 100,
        "empty": b"",
        "truncated": full[: len(full) // 2],
        "checksum": full[:-1] + bytes([full[-1] ^ 1]),
        "not boolean": zlib.compress(np.full(480 * 480, 7, np.uint8).tobytes(), 2),
        "gzip container": b"\x1f\x8b" + full,
    }


@pytest.mark.parametrize("kind", sorted(_bad_masks()))
def test_bad_mask_is_a_bad_file(tmp_path: Path, kind: str) -> None:
    write_archive(tmp_path / "radarPNG", tmp_path / "radarPNG_mask", times=LOCAL_TIMES[:1])
    mask = tmp_path / "radarPNG_mask" / rel_dir(LOCAL_TIMES[0]) / f"{stem(LOCAL_TIMES[0])}.mask"
    mask.write_bytes(_bad_masks()[kind])
    reader = create_reader("hko7")
    (scanned,) = reader.scan(reader.candidates([tmp_path])[0], tmp_path / "w")
    assert isinstance(scanned, Scanned)
    with pytest.raises(BadFileError) as exc:
        reader.read(scanned.item)
    assert exc.value.name == f"{stem(LOCAL_TIMES[0])}.png"
    assert "mask" in exc.value.reason


def test_decode_mask_accepts_the_documented_format() -> None:
    rng = np.random.default_rng(3)
    mask = rng.random((480, 480)) > 0.5
    np.testing.assert_array_equal(decode_mask(mask_bytes(mask), "x.mask"), mask)
    np.testing.assert_array_equal(decode_mask(zlib.compress(mask.tobytes(), 9), "x.mask"), mask)


@pytest.mark.parametrize(
    ("tz", "hours_ahead"),
    [(None, 8.0), ("Asia/Hong_Kong", 8.0), ("UTC", 0.0), ("+08:00", 8.0), ("-0330", -3.5),
     ("UTC+5", 5.0), ("Etc/GMT-8", 8.0)],
)  # fmt: skip
def test_time_zone(tmp_path: Path, tz: str | None, hours_ahead: float) -> None:
    expected = write_archive(tmp_path / "radarPNG", tmp_path / "radarPNG_mask")
    reader = create_reader("hko7") if tz is None else create_reader("hko7", timezone=tz)
    assert_round_trip(ingest_like(reader, [tmp_path], tmp_path / "w"), expected, hours_ahead)
    attrs = reader.store_attrs()
    assert attrs["time_zone"]["file_names"] == (tz or "Asia/Hong_Kong")
    assert "does not state" in attrs["time_zone"]["note"]


def test_daylight_saving_zone_converts_per_date(tmp_path: Path) -> None:
    times = [dt.datetime(2015, 1, 7, 12, 0), dt.datetime(2015, 7, 7, 12, 0)]
    write_archive(tmp_path / "radarPNG", tmp_path / "radarPNG_mask", times=times)
    frames = ingest_like(create_reader("hko7", timezone="Europe/Berlin"), [tmp_path], tmp_path)
    assert [f.info.time for f in frames] == [utc_seconds(times[0], 1), utc_seconds(times[1], 2)]


@pytest.mark.parametrize("tz", ["Mars/Olympus", "+25:00", "", "Asia", "../etc/passwd"])
def test_bad_time_zone_is_a_config_error(tz: str) -> None:
    with pytest.raises(ConfigError, match="time zone"):
        create_reader("hko7", timezone=tz)


def test_parse_timezone_fixed_offsets() -> None:
    assert parse_timezone("+08:00").utcoffset(None) == dt.timedelta(hours=8)
    assert parse_timezone("GMT-2").utcoffset(None) == dt.timedelta(hours=-2)
    assert parse_timezone("Z").utcoffset(None) == dt.timedelta(0)


def test_table_encodes_every_pixel_to_itself() -> None:
    zr = READERS.get("hko7").zr
    codes = np.arange(256)
    np.testing.assert_array_equal(
        encoding.encode_table(dbz_table(), "reflectivity", *zr)[codes], codes.astype(np.uint8)
    )
    np.testing.assert_allclose(dbz_table(), encoding.pixel_to_dbz(codes))


def test_static_mask_and_day_lists() -> None:
    reader = create_reader("hko7")
    static = reader.static_arrays()
    assert set(static) == {"exclude_mask"}
    mask = static["exclude_mask"]
    assert mask.shape == (480, 480)
    assert mask.dtype == np.uint8
    assert int(mask.sum()) == 53084
    assert set(np.unique(mask)) == {0, 1}
    attrs = reader.store_attrs()
    json.dumps(attrs)  # store attributes must be JSON
    days = attrs["rainy_days"]
    assert (len(days["train"]), len(days["valid"]), len(days["test"])) == (812, 50, 131)
    assert days["test"][:2] == ["2015-01-07", "2015-01-12"]
    assert days["train"][0] == "2009-02-15"
    assert days["uncertain"] == ["2014-05-02", "2014-06-12"]
    assert all(d.startswith("2015") for d in days["test"])
    assert not any(d.startswith("2015") for d in days["train"] + days["valid"])
    assert attrs["zr"] == {"a": 58.53, "b": 1.56, "reference": reader.zr_reference}
    assert attrs["source"] == "hko7"


def test_shipped_metadata_equals_the_benchmark_files() -> None:
    if not SHARED_META.is_dir():
        pytest.skip("shared/data/hko7/metadata is not beside the repository")
    import warnings

    with warnings.catch_warnings():
        # the benchmark's mask_dat.npz was written by Python 2; NumPy warns when reading it
        warnings.filterwarnings("ignore", message=".*created on Python 2", category=UserWarning)
        with np.load(SHARED_META / "mask_dat.npz", allow_pickle=False) as z:
            original = np.array(z["exclude_mask"])
    np.testing.assert_array_equal(create_reader("hko7").static_arrays()["exclude_mask"], original)
    package = Path(__file__).resolve().parents[2] / "nowcast_cli" / "data" / "hko7"
    for name in ("hko7_rainy_train_days.txt", "hko7_rainy_valid_days.txt",
                 "hko7_rainy_test_days.txt", "uncertain_days.txt"):  # fmt: skip
        assert (package / name).read_bytes() == (SHARED_META / name).read_bytes()


def test_scan_rejects_bad_names_and_non_frames(tmp_path: Path) -> None:
    d = tmp_path / "radarPNG" / "2015" / "01" / "07"
    d.mkdir(parents=True)
    good = png_bytes(np.zeros((480, 480), np.uint8))
    cases = {
        "RAD150107000000.txt.png": good,  # not the name pattern
        "RAD151307000000.png": good,  # month 13
        "RAD150107000600.png": png_bytes(np.zeros((240, 480), np.uint8)),
        "RAD150107001200.png": b"GIF89a" + b"\x00" * 100,
        "RAD150107001800.png": b"",
        "RAD150107002400.png": good[:20],
    }
    for name, data in cases.items():
        (d / name).write_bytes(data)
    reader = create_reader("hko7")
    results = [r for p in reader.candidates([tmp_path]) for r in reader.scan(p, tmp_path)]
    assert len(results) == len(cases)
    reasons = {Path(r.name).name: r.reason for r in results if isinstance(r, Failure)}
    assert set(reasons) == set(cases)
    assert "RADyymmddHHMM00" in reasons["RAD150107000000.txt.png"]
    assert "invalid date" in reasons["RAD151307000000.png"]
    assert "480x240" in reasons["RAD150107000600.png"]
    assert "not a PNG" in reasons["RAD150107001200.png"]
    assert "empty" in reasons["RAD150107001800.png"]
    assert "truncated" in reasons["RAD150107002400.png"]


def _read_one(tmp_path: Path, data: bytes) -> Frame:
    t = LOCAL_TIMES[0]
    write_archive(tmp_path / "radarPNG", tmp_path / "radarPNG_mask", times=[t])
    path = tmp_path / "radarPNG" / rel_dir(t) / f"{stem(t)}.png"
    path.write_bytes(data)
    reader = create_reader("hko7")
    (scanned,) = reader.scan(path, tmp_path)
    assert isinstance(scanned, Scanned)
    return reader.read(scanned.item)


def test_grey_saved_as_colour_is_read_exactly(tmp_path: Path) -> None:
    grey = frame_pixels(np.random.default_rng(1))
    frame = _read_one(tmp_path, png_bytes(np.stack([grey] * 3, axis=-1), "RGB"))
    np.testing.assert_array_equal(frame.codes, grey)


@pytest.mark.parametrize("kind", ["colour", "16-bit", "corrupt IDAT"])
def test_unusable_png_is_a_bad_file(tmp_path: Path, kind: str) -> None:
    grey = frame_pixels(np.random.default_rng(2))
    if kind == "colour":
        rgb = np.stack([grey, grey, 255 - grey], axis=-1)
        data = png_bytes(rgb, "RGB")
    elif kind == "16-bit":
        buf = io.BytesIO()
        Image.fromarray(grey.astype(np.uint16) * 200).save(buf, format="PNG")
        data = buf.getvalue()
    else:
        raw = bytearray(png_bytes(grey))
        idat = raw.find(b"IDAT")
        raw[idat + 4 : idat + 40] = b"\xff" * 36
        data = bytes(raw)
    with pytest.raises(BadFileError):
        _read_one(tmp_path, data)


def test_candidates(tmp_path: Path) -> None:
    write_archive(tmp_path / "x" / "radarPNG", tmp_path / "x" / "radarPNG_mask")
    (tmp_path / "x" / "radarPNG_mask" / "stray.png").write_bytes(b"")
    reader = create_reader("hko7")
    found = reader.candidates([tmp_path])
    assert [p.name for p in found] == [f"{stem(t)}.png" for t in LOCAL_TIMES]
    assert all("radarPNG_mask" not in p.parts for p in found)
    # a folder without radarPNG trees: all its PNGs; a file named explicitly: taken as given
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "RAD150107000000.png").write_bytes(b"")
    (flat / "notes.txt").write_bytes(b"")
    assert reader.candidates([flat]) == [flat / "RAD150107000000.png"]
    assert reader.candidates([flat / "notes.txt"]) == [flat / "notes.txt"]


def test_mask_next_to_png_outside_trees(tmp_path: Path) -> None:
    t = LOCAL_TIMES[0]
    expected = write_archive(tmp_path, tmp_path, times=[t])  # png and mask side by side
    frames = ingest_like(create_reader("hko7"), [tmp_path], tmp_path / "w")
    assert_round_trip(frames, expected)


def test_reader_is_picklable(tmp_path: Path) -> None:
    expected = write_archive(
        tmp_path / "radarPNG", tmp_path / "radarPNG_mask", times=LOCAL_TIMES[:1]
    )
    reader = pickle.loads(pickle.dumps(create_reader("hko7", timezone="+08:00")))
    assert_round_trip(ingest_like(reader, [tmp_path], tmp_path / "w"), expected)


def test_registry_describes_hko7() -> None:
    assert "HKO-7" in READERS.describe()["hko7"]
    assert READERS.get("HKO7") is Hko7Reader


def test_store_round_trip_through_ingest(tmp_path: Path) -> None:
    """The whole pipeline: PNG pixel in = store pixel out (every pixel), mask = valid, times."""
    from nowcast_cli.ingest import ingest
    from nowcast_cli.store import Store

    root = tmp_path / "HKO-data"
    expected = write_archive(root / "radarPNG", root / "radarPNG_mask", seed=3)
    report = ingest("hko7", [root], tmp_path / "hko7.zarr", workers=1)
    assert (report.written, report.failed, report.warnings) == (3, [], [])
    with Store.open(tmp_path / "hko7.zarr") as store:
        frames, valid = store.read(0, len(store))
        assert store.attrs["product"] == report.product
        assert np.array_equal(
            store.group["exclude_mask"][:], Hko7Reader().static_arrays()["exclude_mask"]
        )
        for i, name in enumerate(sorted(expected)):
            pixels, mask, local = expected[name]
            np.testing.assert_array_equal(frames[i], pixels)
            np.testing.assert_array_equal(valid[i], mask)
            assert store.times[i] == utc_seconds(local, 8.0)
