"""The ingest pipeline: real sample files, bad input, resume after a kill, mixing products."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from nowcast_cli import encoding
from nowcast_cli.errors import ConfigError, DataError, StoreError
from nowcast_cli.ingest import ingest
from nowcast_cli.io.dwd import decode
from nowcast_cli.store import Store

REPO = Path(__file__).resolve().parents[1]


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with Store.open(path) as s:
        n = len(s)
        f, v = s.read(0, n)
        cf, cv = s.read(0, n, size=s.sizes[0])
        return {"time": s.times.copy(), "frames": f, "valid": v, "cf": cf, "cv": cv}


def test_ingest_sample_matches_direct_decode(ry_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ry.zarr"
    report = ingest("dwd", [ry_dir], out, workers=2)
    assert (report.written, report.present, report.failed) == (13, 0, [])
    assert (report.start, report.end) == ("2020-01-01 15:00", "2020-01-01 16:00")
    arrays = _arrays(out)
    for i, f in enumerate(sorted(ry_dir.iterdir())):
        frame = decode(gzip.decompress(f.read_bytes()), f.name)
        pix = encoding.encode_table(frame.table, frame.info.quantity, 256.0, 1.42)[frame.codes]
        assert np.array_equal(arrays["frames"][i], pix)
        assert np.array_equal(arrays["valid"][i], frame.valid)
    assert arrays["cf"].shape == (13, 120, 120)
    assert np.all(np.diff(arrays["time"]) == 300)
    with Store.open(out) as s:
        assert s.attrs["product"] == "RY"
        assert s.attrs["attribution"] == "Source: Deutscher Wetterdienst (DWD)"
        assert s.zr == (256.0, 1.42)
        assert s.attrs["grid"]["projection"].startswith("+proj=stere")


def test_rerun_adds_nothing(ry_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ry.zarr"
    ingest("dwd", [ry_dir], out, workers=1)
    before = _arrays(out)
    again = ingest("dwd", [ry_dir], out, workers=1)
    assert (again.written, again.present) == (0, 13)
    after = _arrays(out)
    for k in before:
        assert np.array_equal(before[k], after[k])


def test_a_size_an_existing_store_lacks_is_made_from_its_frames(
    ry_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ingest --size 24` into a store made at 16 adds the 24² copy (it was ignored), the
    same copy a new store ingested at 24 gets; without --size no copy is added."""
    import json

    from typer.testing import CliRunner

    from nowcast_cli.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    args = ["ingest", "dwd", str(ry_dir), "--out"]
    assert runner.invoke(app, [*args, "a.zarr", "--size", "16", "-q"]).exit_code == 0
    again = runner.invoke(app, [*args, "a.zarr", "--size", "24", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["training_copies_made"] == [24]
    assert runner.invoke(app, [*args, "b.zarr", "--size", "24", "-q"]).exit_code == 0
    with Store.open(tmp_path / "a.zarr") as a, Store.open(tmp_path / "b.zarr") as b:
        assert a.sizes == [16, 24]
        for x, y in zip(a.read(0, len(a), size=24), b.read(0, len(b), size=24), strict=True):
            assert np.array_equal(x, y)
    plain = runner.invoke(app, [*args, "a.zarr", "--json"])  # no --size: nothing added
    assert json.loads(plain.stdout)["training_copies_made"] == []
    with Store.open(tmp_path / "a.zarr") as a:
        assert a.sizes == [16, 24]


def _bad_dir(ry_dir: Path, tmp_path: Path) -> Path:
    d = tmp_path / "raw"
    d.mkdir()
    files = sorted(ry_dir.iterdir())
    for f in files[:5]:
        shutil.copy(f, d / f.name)
    plain = gzip.decompress(files[5].read_bytes())
    (d / "truncated.bin").write_bytes(plain[: len(plain) // 2])
    (d / "empty.bin").write_bytes(b"")
    (d / "garbage.bin").write_bytes(bytes(range(256)) * 10)
    other = gzip.decompress(files[6].read_bytes())
    (d / "header-only.bin").write_bytes(other[: other.index(b"\x03") + 1])
    return d


def test_bad_files_are_named_and_skipped(ry_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.zarr"
    report = ingest("dwd", [_bad_dir(ry_dir, tmp_path)], out, workers=2)
    assert report.written == 5
    reasons = {Path(f.name).name: f.reason for f in report.failed}
    assert set(reasons) == {"truncated.bin", "empty.bin", "garbage.bin", "header-only.bin"}
    assert "truncated" in reasons["truncated.bin"]
    assert "empty" in reasons["empty.bin"]
    assert "truncated" in reasons["header-only.bin"]
    with Store.open(out) as s:
        assert len(s) == 5
        (log,) = s.read_log()
        assert len(log["failures"]) == 4


def test_strict_fails_and_writes_nothing(ry_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.zarr"
    with pytest.raises(DataError, match="--strict"):
        ingest("dwd", [_bad_dir(ry_dir, tmp_path)], out, strict=True, workers=1)
    assert not out.exists()


def test_a_store_whose_every_frame_fails_is_not_left_behind(ry_dir: Path, tmp_path: Path) -> None:
    """Headers that scan (so a store is created) but data that does not decode."""
    d = _bad_dir(ry_dir, tmp_path)
    for f in d.iterdir():
        if f.name not in ("truncated.bin", "header-only.bin"):
            f.unlink()
    out = tmp_path / "new" / "deeper" / "s.zarr"
    report = ingest("dwd", [d], out, workers=1)
    assert (report.written, len(report.failed)) == (0, 2)
    assert not (tmp_path / "new").exists()


def test_mixed_products_are_an_error(sample_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="mixes products") as exc:
        ingest("dwd", [sample_dir / "dwd"], tmp_path / "s.zarr", workers=1)
    assert "RY" in str(exc.value)
    assert "RW" in str(exc.value)
    assert not (tmp_path / "s.zarr").exists()
    # two RW files on different grids (binary 900x900, ODIM 1200x1100) are a mix too
    with pytest.raises(DataError, match=r"RW 900x900 every 60 min.*RW 1200x1100"):
        ingest("dwd", [sample_dir / "dwd"], tmp_path / "s.zarr", product="rw", workers=1)
    report = ingest("dwd", [sample_dir / "dwd"], tmp_path / "s.zarr", product="rx", workers=1)
    assert report.written == 1
    assert report.product == "RX"
    with pytest.raises(DataError, match="holds RX"):
        ingest("dwd", [sample_dir / "dwd" / "ry_20200101_seq13"], tmp_path / "s.zarr", workers=1)


def test_older_frames_are_skipped_not_inserted(ry_dir: Path, tmp_path: Path) -> None:
    files = sorted(ry_dir.iterdir())
    late, early = tmp_path / "late", tmp_path / "early"
    late.mkdir()
    early.mkdir()
    for f in files[6:]:
        shutil.copy(f, late)
    for f in files[:3]:
        shutil.copy(f, early)
    out = tmp_path / "s.zarr"
    ingest("dwd", [late], out, workers=1)
    report = ingest("dwd", [early], out, workers=1)
    assert report.written == 0
    assert len(report.skipped) == 3
    assert "append-only" in report.skipped[0].reason


def test_input_errors(tmp_path: Path, ry_dir: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        ingest("dwd", [tmp_path / "nope"], tmp_path / "s.zarr")
    with pytest.raises(ConfigError, match="does not apply"):
        ingest("dwd", [ry_dir], tmp_path / "s.zarr", reader_options={"timezone": "UTC"})
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no files"):
        ingest("dwd", [tmp_path / "empty"], tmp_path / "s.zarr")
    (tmp_path / "notastore").mkdir()
    (tmp_path / "notastore" / "file").write_text("x")
    with pytest.raises(StoreError, match="not a nowcast store"):
        ingest("dwd", [ry_dir], tmp_path / "notastore")


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from nowcast_cli import store
    from nowcast_cli.ingest import ingest

    sys.modules["nowcast_cli.ingest"].WRITE_BATCH = 8  # one chunk per append: 8 + 5 frames

    real_commit = store.Store.commit
    calls = []

    def commit(self, n, times):
        calls.append(n)
        if len(calls) == 2:  # the second batch's data is written, its commit never happens
            os.kill(os.getpid(), signal.SIGKILL)
        real_commit(self, n, times)

    store.Store.commit = commit
    ingest("dwd", [sys.argv[1]], sys.argv[2], workers=1)
    """
)


def test_killed_ingest_resumes_to_the_clean_result(ry_dir: Path, tmp_path: Path) -> None:
    clean, killed = tmp_path / "clean.zarr", tmp_path / "killed.zarr"
    ingest("dwd", [ry_dir], clean, workers=1)
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(ry_dir), str(killed)], cwd=REPO, check=False
    )
    assert proc.returncode == -9
    with Store.open(killed) as s:
        assert len(s) == 8  # first chunk-aligned batch committed
        assert s.uncommitted() == 5  # second batch written but invisible
    report = ingest("dwd", [ry_dir], killed, workers=1)
    assert (report.written, report.present) == (5, 8)
    a, b = _arrays(clean), _arrays(killed)
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_dwd_names_plan_the_scan_and_headers_are_checked_at_read(
    ry_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files in DWD's naming after the first are planned from their names (no header
    decompression); a name that lies about its time is caught when the frame is read."""
    from nowcast_cli.io import dwd

    raw = tmp_path / "raw"
    raw.mkdir()
    files = sorted(ry_dir.iterdir())
    for f in files:
        shutil.copy(f, raw / f.name)
    liar = raw / "raa01-ry_10000-2001011610-dwd---bin.gz"  # holds the 15:05 frame
    shutil.copy(files[1], liar)
    heads = []
    real = dwd.decompress

    def counting(data, name, limit=None):  # type: ignore[no-untyped-def]
        if limit is not None:
            heads.append(name)
        return real(data, name, limit)

    monkeypatch.setattr(dwd, "decompress", counting)
    report = ingest("dwd", [raw], tmp_path / "s.zarr", workers=1)
    assert len(heads) == 1  # only the first file's header was decompressed
    assert report.written == 13
    (failed,) = report.failed
    assert failed.name == str(liar)
    assert failed.reason == (
        "its header says RY 2020-01-01 15:05, 900x900 every 5 min, its scan (file name) said "
        "RY 2020-01-01 16:10, 900x900 every 5 min"
    )
    direct = ingest("dwd", [ry_dir], tmp_path / "direct.zarr", workers=1)
    assert direct.written == 13
    with Store.open(tmp_path / "s.zarr") as a, Store.open(tmp_path / "direct.zarr") as b:
        assert np.array_equal(a.times, b.times)
        assert np.array_equal(a.read(0, 13)[0], b.read(0, 13)[0])
