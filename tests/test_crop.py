"""Training copies of non-square grids keep square cells: the largest centred square or --crop.

The reference coarsens the stored full-resolution pixels by plain block means of rain rate
(SPEC §2: area mean in rain rate, valid where at least half the area is valid), written out here
with the SPEC §3 formulas, on the real 765x700 KNMI sample.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from nowcast_cli.cli import app
from nowcast_cli.errors import ConfigError
from nowcast_cli.grid import Box, centred_square, parse_box
from nowcast_cli.ingest import ingest
from nowcast_cli.resample import Coarsener
from nowcast_cli.store import Store

KNMI = Path(__file__).resolve().parents[1] / "sample_data" / "knmi" / "rad_nl25_20100826_0000_seq24"
ZR = (200.0, 1.6)  # KNMI's Z–R


def rate_of(pix: np.ndarray) -> np.ndarray:
    dbz = 70.0 * pix / 255.0 - 10.0
    return np.where(pix > 0, (10 ** (dbz / 10.0) / ZR[0]) ** (1.0 / ZR[1]), 0.0)


def pixel_of(rate: np.ndarray) -> np.ndarray:
    r = np.where(rate > 0, rate, 1.0)
    p = np.clip(np.floor(255 * (10 * np.log10(ZR[0] * r ** ZR[1]) + 10) / 70 + 0.5), 0, 255)
    return np.where(rate > 0, p, 0).astype(np.uint8)


def block_reference(
    frames: np.ndarray, valid: np.ndarray, y0: int, x0: int, side: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """k×k block means of rain rate over the valid pixels of the square at (y0, x0)."""
    n = side // k
    f = frames[:, y0 : y0 + side, x0 : x0 + side]
    v = valid[:, y0 : y0 + side, x0 : x0 + side]
    r = np.where(v, rate_of(f), 0.0).reshape(len(f), n, k, n, k).sum(axis=(2, 4))
    cnt = v.reshape(len(f), n, k, n, k).sum(axis=(2, 4))
    ok = cnt >= k * k / 2
    mean = np.divide(r, cnt, out=np.zeros_like(r), where=cnt > 0)
    return np.where(ok, pixel_of(mean), 0), ok


def _check_copy(store: Path, y0: int, x0: int, side: int, size: int) -> None:
    with Store.open(store) as s:
        frames, valid = s.read(0, len(s))
        coarse, cvalid = s.read(0, len(s), size=size)
    ref, ref_ok = block_reference(frames, valid, y0, x0, side, side // size)
    np.testing.assert_array_equal(cvalid, ref_ok)
    assert int(np.abs(coarse.astype(int) - ref.astype(int)).max()) <= 1
    assert coarse.max() > 0


def test_centred_square_of_a_non_square_grid(tmp_path: Path) -> None:
    out = tmp_path / "k.zarr"
    ingest("knmi", [KNMI], out, sizes=(70,), workers=2)
    with Store.open(out) as s:
        assert s.shape == (765, 700)
        assert s.crop(70) == Box(0, 32, 700, 732)  # (765 - 700) // 2 = 32 rows above
        crop_m = s.group["coarse/70"].attrs["crop_m"]
        y = np.asarray(s.group["y"][:])
    _check_copy(out, 32, 0, 700, 70)
    # the recorded projected bounds are the edges of the cropped cells
    assert crop_m["y_max"] == pytest.approx(y[32] + 500.0)
    assert crop_m["y_min"] == pytest.approx(y[731] - 500.0)
    info = CliRunner().invoke(app, ["info", str(out), "--json"])
    (copy,) = json.loads(info.stdout)["coarse"]
    assert (
        copy["description"]
        == "700x700 px at x 0–700, y 32–732 (largest centred square of the grid)"
    )


def test_crop_option_chooses_the_region(tmp_path: Path) -> None:
    out = tmp_path / "k.zarr"
    files = sorted(KNMI.glob("*.h5"))
    ingest("knmi", files[:4], out, sizes=(70,), crop="0,65,700,765", workers=1)
    _check_copy(out, 65, 0, 700, 70)
    ingest("knmi", files[4:6], out, crop="0,65,700,765", workers=1)  # same region: appends
    with pytest.raises(ConfigError, match="covers 0,65,700,765; --crop 0,0,700,700 differs"):
        ingest("knmi", files[6:8], out, crop="0,0,700,700")
    with Store.open(out) as s:
        assert len(s) == 6
        assert s.group["coarse/70"].attrs["crop_rule"] == "chosen at ingest (--crop)"


@pytest.mark.parametrize(
    ("crop", "match"),
    [
        ("0,0,700,600", "must be square"),
        ("100,100,900,900", "not inside"),
        ("0,0,50,50", "smaller than the 70x70"),
        ("a,b,c,d", "four non-negative integers"),
        ("1,2,3", "four non-negative integers"),
    ],
)
def test_bad_crops(tmp_path: Path, crop: str, match: str) -> None:
    out = tmp_path / "k.zarr"
    with pytest.raises(ConfigError, match=match):
        ingest("knmi", sorted(KNMI.glob("*.h5"))[:2], out, sizes=(70,), crop=crop)
    assert not out.exists() or not any(out.iterdir())


def test_cli_crop_error_is_one_line(in_tmp: Path) -> None:
    result = CliRunner().invoke(app, ["ingest", "knmi", str(KNMI), "--crop", "0,0,700,600"])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("Error: crop 0,0,700,600 is 700x600 pixels")


def test_store_without_crop_record_keeps_stretching(tmp_path: Path) -> None:
    """A store from before crop records: appends coarsen the whole grid, as its first frames."""
    out = tmp_path / "old.zarr"
    files = sorted(KNMI.glob("*.h5"))
    ingest("knmi", files[:3], out, sizes=(70,), workers=1)
    group = zarr.open_group(out, mode="r+", use_consolidated=False)  # as nowcast writes
    for key in ("crop", "crop_m", "crop_rule", "crop_note"):
        del group["coarse/70"].attrs[key]
    ingest("knmi", files[3:5], out, workers=1)
    with Store.open(out) as s:
        assert s.crop(70) is None
        frames, valid = s.read(3, 5)
        coarse, _ = s.read(3, 5, size=70)
        summary = s.summary()
    stretch = Coarsener((765, 700), 70, ZR)  # the whole grid, anisotropic cells
    for k in range(2):
        np.testing.assert_array_equal(coarse[k], stretch(frames[k], valid[k])[0])
    assert "stretched over the whole 765x700 grid" in summary["coarse"][0]["description"]
    with pytest.raises(ConfigError, match="made before crop regions were recorded"):
        ingest("knmi", files[5:6], out, crop="0,0,700,700")


def test_square_grids_use_the_whole_grid(tmp_path: Path, ry_dir: Path) -> None:
    out = tmp_path / "ry.zarr"
    ingest("dwd", [ry_dir], out, workers=1)
    with Store.open(out) as s:
        assert s.crop(120) == Box(0, 0, 900, 900)
        assert s.summary()["coarse"][0]["description"] == "whole 900x900 grid"


@pytest.mark.parametrize(
    ("shape", "box"),
    [
        ((765, 700), Box(0, 32, 700, 732)),
        ((1100, 900), Box(0, 100, 900, 1000)),
        ((1200, 1100), Box(0, 50, 1100, 1150)),
        ((1226, 760), Box(0, 233, 760, 993)),
        ((190, 228), Box(19, 0, 209, 190)),
        ((480, 480), Box(0, 0, 480, 480)),
    ],
)
def test_centred_squares(shape: tuple[int, int], box: Box) -> None:
    assert centred_square(*shape) == box


def test_parse_box() -> None:
    assert parse_box(" 19, 0,209,190") == Box(19, 0, 209, 190)
    assert parse_box([1, 2, 3, 4]) == Box(1, 2, 3, 4)
    with pytest.raises(ConfigError):
        parse_box("-1,0,10,10")
