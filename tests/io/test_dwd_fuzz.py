"""Fuzzing the RADOLAN parser with mutated real files: a frame or BadFileError, nothing else."""

from __future__ import annotations

import bz2
import gzip
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nowcast_cli import encoding
from nowcast_cli.io import create_reader
from nowcast_cli.io.base import BadFileError, Frame, Scanned

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "dwd"


def _seeds() -> list[bytes]:
    ry = sorted((SAMPLE / "ry_20200101_seq13").iterdir())[0].read_bytes()
    rx = (SAMPLE / "misc" / "raa01-rx_10000-1408102050-dwd---bin.gz").read_bytes()
    rybz = sorted((SAMPLE / "ry_20251116_seq5_bz2").iterdir())[0].read_bytes()
    plain = gzip.decompress(ry)
    odim = (SAMPLE / "misc" / "raa01-rw_10000-latest-dwd---bin.hdf5").read_bytes()
    return [ry, rx, rybz, plain, gzip.decompress(rx), bz2.decompress(rybz)[:4000], odim]


SEEDS = _seeds()
ZR = (256.0, 1.42)


class Mutant(bytes):
    """Mutated file bytes with a short repr (Hypothesis warns about huge argument reprs)."""

    def __repr__(self) -> str:
        return f"Mutant(len={len(self)}, head={bytes(self[:16])!r})"


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    return Mutant(draw(_mutated()))


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(SEEDS[draw(st.integers(0, len(SEEDS) - 1))])
    kind = draw(st.sampled_from(["truncate", "flip", "splice", "header-flip"]))
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data)))])
    if kind in ("flip", "header-flip"):
        hi = min(len(data), 400) if kind == "header-flip" else len(data)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, hi - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    other = SEEDS[draw(st.integers(0, len(SEEDS) - 1))]
    cut_a = draw(st.integers(0, len(data)))
    cut_b = draw(st.integers(0, len(other)))
    return bytes(data[:cut_a]) + other[cut_b:]


@settings(max_examples=150, deadline=10_000)
@given(mutated())
def test_mutated_files_decode_or_fail_cleanly(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    tmp = tmp_path_factory.mktemp("fuzz")
    path = tmp / "input"
    path.write_bytes(data)
    reader = create_reader("dwd")
    for result in reader.scan(path, tmp / "work"):
        if isinstance(result, Scanned):
            try:
                frame = reader.read(result.item)
            except BadFileError:
                with pytest.raises(BadFileError):
                    reader.read_pixels(result.item, ZR)
                continue
            assert isinstance(frame, Frame)
            _, pix, valid, _ = reader.read_pixels(result.item, ZR)  # fused kernel = reference
            lut = encoding.encode_table(frame.table, frame.info.quantity, *ZR)
            assert np.array_equal(valid, frame.valid)
            assert np.array_equal(pix, np.where(frame.valid, lut[frame.codes], 0))
            assert frame.codes.shape == frame.valid.shape == result.info.grid.shape
            assert int(frame.codes.max(initial=0)) < len(frame.table)


def test_seeds_decode(tmp_path: Path) -> None:
    """The fuzzer's seeds are valid files (but the one cut to 4000 bytes): a reader that
    rejected everything would pass the fuzz test, not this one."""
    reader = create_reader("dwd")
    for i, seed in enumerate(SEEDS):
        path = tmp_path / f"seed{i}"
        path.write_bytes(seed)
        (scanned,) = reader.scan(path, tmp_path / "work")
        if i == 5:  # bz2.decompress(rybz)[:4000]: a truncated file
            with pytest.raises(BadFileError, match="truncated"):
                reader.read(scanned.item)
            continue
        assert isinstance(scanned, Scanned), i
        assert isinstance(reader.read(scanned.item), Frame), i
