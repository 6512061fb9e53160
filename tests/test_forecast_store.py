"""The forecast store (SPEC §8): round trip, crash safety, xarray, resolving defaults."""

from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from nowcast_cli.errors import StoreError
from nowcast_cli.store import ForecastStore, list_forecasts, resolve_forecasts
from tests.forecasts import T0, make_observations


@pytest.fixture
def obs(tmp_path: Path):
    return make_observations(tmp_path / "data" / "obs.zarr", days=1, per_day=8)


def _create(path: Path, obs, **kw) -> ForecastStore:
    kw.setdefault("size", 16)
    kw.setdefault("lead_minutes", [5, 10, 15])
    return ForecastStore.create(path, observations=obs, **kw)


def test_round_trip_in_chunks(tmp_path: Path, obs) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (7, 3, 16, 16)).astype(np.uint8)
    times = T0 + 300 * np.arange(7)
    with _create(
        tmp_path / "r" / "forecasts.zarr",
        obs,
        chunk_samples=3,
        attrs={"model": "persistence", "run": "r"},
    ) as fs:
        fs.append(times[:2], data[:2])
        fs.append(times[2:], data[2:])
    fs = ForecastStore.open(tmp_path / "r" / "forecasts.zarr")
    assert len(fs) == 7
    assert fs.chunk_samples == 3
    assert np.array_equal(fs.read(0, 7), data)
    assert np.array_equal(fs.read(3, 5), data[3:5])
    assert fs.issue_times.tolist() == times.tolist()
    assert fs.lead_minutes.tolist() == [5, 10, 15]
    assert fs.shape == (16, 16)
    assert fs.attrs["model"] == "persistence"
    ref = fs.observations
    assert ref["size"] == 16
    assert ref["shape"] == [16, 16]
    assert ref["grid"]["rows"] == 32
    assert ref["interval_seconds"] == 300
    assert fs.zr == obs.zr
    assert fs.observation_path() == Path(tmp_path / "data" / "obs.zarr")


def test_opens_with_xarray(tmp_path: Path, obs) -> None:
    xr = pytest.importorskip("xarray")
    with _create(tmp_path / "f.zarr", obs) as fs:
        fs.append([T0], np.ones((1, 3, 16, 16), np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr's consolidated-metadata notice
        ds = xr.open_zarr(tmp_path / "f.zarr")
    assert ds["forecast"].dims == ("sample", "lead", "y", "x")
    assert ds["issue_time"].dims == ("sample",)
    assert str(ds["issue_time"].values[0]).startswith("2020-01-01T00:00")
    assert ds["lead_minutes"].values.tolist() == [5, 10, 15]


def test_uncommitted_forecasts_are_invisible(tmp_path: Path, obs) -> None:
    path = tmp_path / "f.zarr"
    with _create(path, obs) as fs:
        fs.append([T0], np.full((1, 3, 16, 16), 1, np.uint8))
        # a run killed between writing the data and committing the issue time
        arr = fs.group["forecast"]
        arr.resize((2, 3, 16, 16))
        arr[1:2] = 9
    fs = ForecastStore.open(path)
    assert len(fs) == 1
    assert fs.uncommitted() == 1
    with ForecastStore.open(path, mode="a") as fs:
        fs.append([T0 + 300], np.full((1, 3, 16, 16), 2, np.uint8))
    fs = ForecastStore.open(path)
    assert fs.read(0, 2)[:, 0, 0, 0].tolist() == [1, 2]


def test_bad_appends_are_rejected(tmp_path: Path, obs) -> None:
    with _create(tmp_path / "f.zarr", obs) as fs:
        fs.append([T0 + 600], np.zeros((1, 3, 16, 16), np.uint8))
        with pytest.raises(StoreError, match="uint8"):
            fs.append([T0 + 900], np.zeros((1, 3, 16, 16), np.float32))
        with pytest.raises(StoreError, match=r"\(1, 3, 16, 16\)"):
            fs.append([T0 + 900], np.zeros((1, 2, 16, 16), np.uint8))
        with pytest.raises(StoreError, match="increase"):
            fs.append([T0], np.zeros((1, 3, 16, 16), np.uint8))
    with pytest.raises(StoreError, match="read-only"):
        ForecastStore.open(tmp_path / "f.zarr").append(
            [T0 + 900], np.zeros((1, 3, 16, 16), np.uint8)
        )


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"lead_minutes": [10, 5]}, "strictly increasing"),
        ({"lead_minutes": [5, 7]}, "multiples"),
        ({"size": 64}, "no 64x64 copy"),
    ],
)
def test_bad_layouts_are_rejected(tmp_path: Path, obs, kw, match: str) -> None:
    with pytest.raises(StoreError, match=match):
        _create(tmp_path / "f.zarr", obs, **kw)


def test_leads_may_include_reconstructions(tmp_path: Path, obs) -> None:
    fs = _create(tmp_path / "f.zarr", obs, lead_minutes=[-5, 0, 5, 10])
    fs.close()
    assert ForecastStore.open(tmp_path / "f.zarr").lead_minutes.tolist() == [-5, 0, 5, 10]


def test_observation_store_is_found_after_moving_the_project(tmp_path: Path, obs) -> None:
    _create(tmp_path / "runs" / "a" / "forecasts.zarr", obs).close()
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    shutil.copytree(tmp_path, moved)
    shutil.rmtree(tmp_path / "data")
    fs = ForecastStore.open(moved / "runs" / "a" / "forecasts.zarr")
    assert fs.observation_path() == moved / "data" / "obs.zarr"
    gone = ForecastStore.open(tmp_path / "runs" / "a" / "forecasts.zarr")
    with pytest.raises(StoreError, match="pass it with --store"):
        gone.observation_path()
    shutil.rmtree(moved)


def test_not_a_forecast_store(tmp_path: Path, obs) -> None:
    with pytest.raises(StoreError, match="not a nowcast forecast store"):
        ForecastStore.open(obs.path)
    with pytest.raises(StoreError, match="no such forecast store"):
        ForecastStore.open(tmp_path / "nothing.zarr")


def test_resolve_forecasts(in_tmp: Path, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"none in ./runs/\*/forecasts.zarr; make some"):
        resolve_forecasts(None)
    obs = make_observations(in_tmp / "obs.zarr", days=1, per_day=6)
    for name, age in (("b", 100), ("a", 0)):  # "a" was written last: the most recent
        _create(in_tmp / "runs" / name / "forecasts.zarr", obs).close()
        stamp = in_tmp / "runs" / name / "forecasts.zarr" / "issue_time" / "zarr.json"
        os.utime(stamp, (time.time() - age, time.time() - age))
    assert [p.parent.name for p in list_forecasts()] == ["b", "a"]
    assert resolve_forecasts(None).parent.name == "a"
    assert resolve_forecasts("runs/b") == Path("runs/b/forecasts.zarr")
    assert resolve_forecasts("runs/b/forecasts.zarr") == Path("runs/b/forecasts.zarr")
    with pytest.raises(StoreError, match="neither a forecast store nor a run folder"):
        resolve_forecasts("runs")
    with pytest.raises(StoreError, match="no such forecast store or run folder"):
        resolve_forecasts("runs/c")


def test_direct_chunk_reads_equal_zarr(tmp_path: Path) -> None:
    import zarr
    from zarr.codecs import BloscCodec
    from zarr.storage import LocalStore

    from nowcast_cli.store import _read_rows

    rng = np.random.default_rng(5)
    g = zarr.open_group(LocalStore(tmp_path / "z"), mode="w")
    data = rng.integers(0, 256, (23, 3, 5, 4)).astype(np.uint8)
    mask = rng.random((23, 5, 4)) > 0.5
    arrays = {
        "zstd": (
            g.create_array("zstd", shape=data.shape, chunks=(4, 3, 5, 4), dtype="uint8"),
            data,
        ),
        "plain": (
            g.create_array(
                "sub/plain", shape=data.shape, chunks=(5, 3, 5, 4), dtype="uint8", compressors=None
            ),
            data,
        ),
        "bool": (g.create_array("mask", shape=mask.shape, chunks=(6, 5, 4), dtype="bool"), mask),
        "per-lead": (  # forecast stores: one lead per chunk
            g.create_array("perlead", shape=data.shape, chunks=(4, 1, 5, 4), dtype="uint8"),
            data,
        ),
        "per-lead-uint16": (
            g.create_array("perlead16", shape=data.shape, chunks=(1, 1, 5, 4), dtype="uint16"),
            data.astype(np.uint16) * 3,
        ),
        "uint16": (  # fine forecasts: 2-byte values, little-endian
            g.create_array("fine", shape=data.shape, chunks=(4, 3, 5, 4), dtype="uint16"),
            data.astype(np.uint16) * 257 + 1,
        ),
        # layouts the direct path does not handle go through zarr
        "blosc": (
            g.create_array(
                "blosc",
                shape=data.shape,
                chunks=(4, 3, 5, 4),
                dtype="uint8",
                compressors=[BloscCodec()],
            ),
            data,
        ),
        "split": (
            g.create_array("split", shape=data.shape, chunks=(4, 3, 2, 4), dtype="uint8"),
            data,
        ),
    }
    for arr, values in arrays.values():
        arr[:] = values
    # a chunk that was never written reads as the fill value
    (tmp_path / "z" / "zstd" / "c" / "1" / "0" / "0" / "0").unlink()
    (tmp_path / "z" / "fine" / "c" / "2" / "0" / "0" / "0").unlink()
    (tmp_path / "z" / "perlead" / "c" / "1" / "2" / "0" / "0").unlink()
    expect = {
        "zstd": data.copy(),
        "uint16": arrays["uint16"][1].copy(),
        "per-lead": data.copy(),
    }
    expect["zstd"][4:8] = 0
    expect["uint16"][8:12] = 0
    expect["per-lead"][4:8, 2] = 0
    for name, (arr, values) in arrays.items():
        want_all = expect.get(name, values)
        for start, stop in [(0, 23), (3, 9), (8, 12), (22, 23), (5, 5), (0, 1)]:
            got = _read_rows(tmp_path / "z", arr, start, stop)
            assert got.dtype == values.dtype, name
            assert np.array_equal(got, want_all[start:stop]), (name, start, stop)
            assert np.array_equal(got, np.asarray(arr[start:stop])), (name, start, stop)
            if values.ndim == 4:  # a selection of leads, in any order, into a buffer
                for leads in ([1], [2, 0], [0, 1, 2]):
                    buf = np.full((stop - start + 2, len(leads), 5, 4), 7, values.dtype)
                    got = _read_rows(tmp_path / "z", arr, start, stop, out=buf, leads=leads)
                    want = want_all[start:stop][:, leads]
                    assert np.array_equal(got, want), (name, start, stop, leads)


def test_fine_forecasts_round_trip_and_are_required_where_kept(tmp_path: Path, obs) -> None:
    rng = np.random.default_rng(1)
    x = rng.random((4, 3, 16, 16))
    from nowcast_cli import encoding

    pixels, fine = encoding.unit_to_pixel(x), encoding.unit_to_fine(x)
    assert np.abs(fine / 256 - x * 255).max() <= 1 / 512 + 1e-9
    times = T0 + 300 * np.arange(4)
    with _create(tmp_path / "f" / "forecasts.zarr", obs, chunk_samples=3, fine=True) as fs:
        assert fs.has_fine
        with pytest.raises(StoreError, match="keeps fine forecasts"):
            fs.append(times[:1], pixels[:1])
        with pytest.raises(StoreError, match="must be uint16"):
            fs.append(times[:1], pixels[:1], pixels[:1])
        fs.append(times, pixels, fine)
    fs = ForecastStore.open(tmp_path / "f" / "forecasts.zarr")
    assert np.array_equal(fs.read(0, 4), pixels)
    assert np.array_equal(fs.read(1, 3, fine=True), fine[1:3])
    with _create(tmp_path / "p" / "forecasts.zarr", obs) as plain:
        assert not plain.has_fine
        with pytest.raises(StoreError, match="keeps no fine forecasts"):
            plain.append(times, pixels, fine)
        with pytest.raises(StoreError, match="holds no forecast_fine"):
            plain.read(0, 0, fine=True)
