"""Fuzzing the FMI, KNMI, HKO-7 and netCDF parsers: truncated, bit-flipped and spliced inputs.

Every input must end in a decoded `Frame` or the reader's `BadFileError` (a scan `Failure`),
never another exception and never a hang. FMI and KNMI use real files (plus a small synthetic
PGM so the FMI test runs without shared/data); HKO-7 uses files generated to the documented
format, since real HKO-7 files cannot be obtained. netCDF uses small files cut from the bundled
RADKLIM file (netCDF4/HDF5) and written from its values (netCDF4 and netCDF3).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import io
import signal
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from nowcast_cli.io import create_reader
from nowcast_cli.io.base import BadFileError, Failure, Frame, Reader, Scanned

REPO = Path(__file__).resolve().parents[2]
FMI_DIR = REPO / ".." / "shared" / "data" / "fmi" / "pgm_20160928_seq24"
KNMI_DIR = REPO / "sample_data" / "knmi" / "rad_nl25_20100826_0000_seq24"
DEADLINE = dt.timedelta(seconds=10)  # per example; a real frame decodes in ~20 ms
HANG_LIMIT_S = 60  # a stuck decoder fails the test instead of hanging the suite


@contextlib.contextmanager
def no_hang(seconds: int = HANG_LIMIT_S) -> Iterator[None]:
    """Raise TimeoutError in the main thread if the body runs longer than `seconds`."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"decoder did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Mutant(bytes):
    """File bytes with a short repr (Hypothesis warns, here an error, on huge argument reprs)."""

    def __repr__(self) -> str:
        return f"Mutant(len={len(self)}, head={bytes(self[:16])!r})"


def mutated(seeds: list[bytes], header: int = 1024) -> st.SearchStrategy[bytes]:
    """A seed truncated, bit-flipped (anywhere or in its header) or spliced with another."""
    return _mutated(seeds, header).map(Mutant)


@st.composite
def _mutated(draw: st.DrawFn, seeds: list[bytes], header: int = 1024) -> bytes:
    data = bytearray(seeds[draw(st.integers(0, len(seeds) - 1))])
    kind = draw(st.sampled_from(["truncate", "flip", "header-flip", "splice"]))
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data)))])
    if kind in ("flip", "header-flip") and data:
        hi = min(len(data), header) if kind == "header-flip" else len(data)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, hi - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    other = seeds[draw(st.integers(0, len(seeds) - 1))]
    cut_a = draw(st.integers(0, len(data)))
    cut_b = draw(st.integers(0, len(other)))
    return bytes(data[:cut_a]) + other[cut_b:]


def decode_all(reader: Reader, path: Path, workdir: Path) -> list[Frame]:
    """Scan and read like ingest does; only BadFileError may stop a read."""
    frames: list[Frame] = []
    reasons: list[str] = []
    with no_hang():
        results = reader.scan(path, workdir)
        assert results
        for result in results:
            assert isinstance(result, Scanned | Failure)
            if isinstance(result, Failure):
                assert result.reason
                continue
            try:
                frame = reader.read(result.item)
            except BadFileError as exc:
                reasons.append(exc.reason)
                continue
            assert isinstance(frame, Frame)
            assert frame.codes.shape == frame.valid.shape == result.info.grid.shape
            assert frame.valid.dtype == np.bool_
            assert frame.codes.dtype.kind == "u"
            assert int(frame.codes.max(initial=0)) < len(frame.table)
            frames.append(frame)
    assert all(reasons)  # a bad file always says why
    if currently_in_test_context():
        event(f"{len(frames)} frame(s), {len(reasons)} bad read(s)")  # --hypothesis-show-statistics
    return frames


# --- FMI ------------------------------------------------------------------------------------


def _fmi_seeds() -> list[bytes]:
    header = (
        "P5\n# composite_area FIN\n# projection_name SUOMI1\n# obstime 201609281445\n"
        "# producttype CAPPI\n# productname LOWEST\n# param CorrectedReflectivity\n"
        "# metersperpixel_x 999.674053\n# metersperpixel_y 999.62859\n# projection radar {\n"
        "# type stereographic\n# centrallongitude 25\n# centrallatitude 90\n"
        "# truelatitude 60\n# bottomleft 18.600000 57.930000\n# topright 34.903000 69.005000\n"
        "# }\n40 30\n255\n"
    )
    pixels = np.random.default_rng(0).integers(0, 256, 40 * 30, dtype=np.uint8).tobytes()
    synthetic = header.encode() + pixels
    seeds = [synthetic, gzip.compress(synthetic)]
    files = sorted(FMI_DIR.glob("*.pgm.gz")) if FMI_DIR.is_dir() else []
    if files:
        real = files[0].read_bytes()
        seeds += [real, gzip.decompress(real), files[-1].read_bytes()]
    return seeds


FMI_SEEDS = _fmi_seeds()


@settings(max_examples=120, deadline=DEADLINE)
@given(mutated(FMI_SEEDS))
def test_fmi_mutated_files(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    tmp = tmp_path_factory.mktemp("fmi")
    path = tmp / "201609281445_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz"
    path.write_bytes(data)
    frames = decode_all(create_reader("fmi"), path, tmp)
    if data in FMI_SEEDS:
        assert len(frames) == 1  # unmutated inputs always decode


def test_fmi_seeds_decode(tmp_path: Path) -> None:
    """The fuzzer's seeds are valid files: a reader that rejected everything would fail here."""
    for i, seed in enumerate(FMI_SEEDS):
        path = tmp_path / f"{i}" / "201609281445_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz"
        path.parent.mkdir()
        path.write_bytes(seed)
        assert len(decode_all(create_reader("fmi"), path, path.parent)) == 1, i


# --- KNMI -----------------------------------------------------------------------------------

KNMI_SEEDS = [p.read_bytes() for p in sorted(KNMI_DIR.glob("*.h5"))[:3]]


@settings(max_examples=120, deadline=DEADLINE)
@given(mutated(KNMI_SEEDS, header=4096))
def test_knmi_mutated_files(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    pytest.importorskip("h5py")
    tmp = tmp_path_factory.mktemp("knmi")
    path = tmp / "RAD_NL25_RAP_5min_201008260000.h5"
    path.write_bytes(data)
    frames = decode_all(create_reader("knmi"), path, tmp)
    if data in KNMI_SEEDS:
        assert len(frames) == 1  # unmutated inputs always decode


def test_knmi_seeds_decode(tmp_path: Path) -> None:
    """The fuzzer's seeds are valid files: a reader that rejected everything would fail here."""
    assert len(KNMI_SEEDS) == 3
    for i, seed in enumerate(KNMI_SEEDS):
        path = tmp_path / f"{i}" / "RAD_NL25_RAP_5min_201008260000.h5"
        path.parent.mkdir()
        path.write_bytes(seed)
        assert len(decode_all(create_reader("knmi"), path, path.parent)) == 1, i


# --- HKO-7 ----------------------------------------------------------------------------------


def _hko7_seeds() -> tuple[list[bytes], list[bytes]]:
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:480, 0:480]
    pngs, masks = [], []
    for _ in range(2):
        cy, cx = rng.uniform(0, 480, 2)
        field = 250 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * 60.0**2))
        buf = io.BytesIO()
        Image.fromarray(field.astype(np.uint8), "L").save(buf, format="PNG")
        pngs.append(buf.getvalue())
        masks.append(zlib.compress((rng.random((480, 480)) > 0.2).tobytes(), 2))
    return pngs, masks


HKO7_PNGS, HKO7_MASKS = _hko7_seeds()


@settings(max_examples=120, deadline=DEADLINE)
@given(
    st.one_of(mutated(HKO7_PNGS, header=128), st.sampled_from(HKO7_PNGS).map(Mutant)),
    st.one_of(mutated(HKO7_MASKS, header=64), st.sampled_from(HKO7_MASKS).map(Mutant), st.none()),
)
def test_hko7_mutated_files(
    tmp_path_factory: pytest.TempPathFactory, png: bytes, mask: bytes | None
) -> None:
    tmp = tmp_path_factory.mktemp("hko7")
    png_dir = tmp / "radarPNG" / "2015" / "01" / "07"
    mask_dir = tmp / "radarPNG_mask" / "2015" / "01" / "07"
    png_dir.mkdir(parents=True)
    mask_dir.mkdir(parents=True)
    path = png_dir / "RAD150107000000.png"
    path.write_bytes(png)
    if mask is not None:
        (mask_dir / "RAD150107000000.mask").write_bytes(mask)
    frames = decode_all(create_reader("hko7"), path, tmp)
    if png in HKO7_PNGS and (mask is None or mask in HKO7_MASKS):
        assert len(frames) == 1  # unmutated inputs always decode


# --- netCDF ---------------------------------------------------------------------------------


def _netcdf_seeds(tmp: Path) -> list[bytes]:
    from tests.io._netcdf_files import (
        cut_of_bundle,
        per_frame_dataset,
        real_frames,
        write_netcdf3,
        write_netcdf4,
    )

    cut = cut_of_bundle(tmp / "cut.nc", 140, 3, chunk_t=3, crop=24, name="rr")
    mm, ends = real_frames(140, 1)
    one = per_frame_dataset(mm[0, :20, :24], ends[0], length1_time=False)
    return [
        cut.read_bytes(),
        write_netcdf4(one, tmp / "one4.nc").read_bytes(),
        write_netcdf3(one, tmp / "one3.nc").read_bytes(),
    ]


@pytest.fixture(scope="module")
def netcdf_seeds(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    pytest.importorskip("xarray")
    return _netcdf_seeds(tmp_path_factory.mktemp("ncseed"))


@settings(max_examples=120, deadline=DEADLINE)
@given(data=st.data())
def test_netcdf_mutated_files(
    tmp_path_factory: pytest.TempPathFactory, netcdf_seeds: list[bytes], data: st.DataObject
) -> None:
    blob = data.draw(st.one_of(mutated(netcdf_seeds, header=4096), st.sampled_from(netcdf_seeds)))
    tmp = tmp_path_factory.mktemp("nc")
    path = tmp / "frame.nc"
    path.write_bytes(blob)
    # every decision a user could be asked for is given, so only the file can be at fault
    reader = create_reader("netcdf", var="rr", units="mm", interval=5)
    frames = decode_all(reader, path, tmp)
    if blob in netcdf_seeds:
        assert len(frames) in (1, 3)  # unmutated inputs always decode
