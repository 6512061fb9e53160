from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nowcast_cli.errors import StoreError
from nowcast_cli.io.base import Grid
from nowcast_cli.store import Store, find_gaps

GRID = Grid("test 6x5", 6, 5, 1000.0, "+proj=stere", 0.0, 0.0)
ATTRS = {"source": "test", "product": "T", "interval_seconds": 300, "zr": {"a": 200.0, "b": 1.6}}


def _coarse(frames: np.ndarray, valid: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    return {2: (frames[:, :2, :2].copy(), valid[:, :2, :2].copy())}


def _make(path: Path) -> Store:
    return Store.create(path, attrs=ATTRS, grid=GRID, sizes=(2,))


@settings(max_examples=25)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=4), st.integers(0, 2**32 - 1))
def test_appends_round_trip(tmp_path_factory, batches: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    path = tmp_path_factory.mktemp("s") / "a.zarr"
    all_f, all_v, all_t = [], [], []
    t0 = 1_600_000_000
    with _make(path) as store:
        for k in batches:
            f = rng.integers(0, 256, (k, 6, 5), dtype=np.uint8)
            v = rng.random((k, 6, 5)) > 0.3
            t = t0 + 300 * np.arange(len(all_t), len(all_t) + k)
            store.append(t, f, v, _coarse(f, v))
            all_f.append(f)
            all_v.append(v)
            all_t.extend(t.tolist())
    with Store.open(path) as store:
        f, v = store.read(0, len(store))
        assert np.array_equal(f, np.concatenate(all_f))
        assert np.array_equal(v, np.concatenate(all_v))
        assert store.times.tolist() == all_t
        cf, _ = store.read(0, len(store), size=2)
        assert np.array_equal(cf, np.concatenate(all_f)[:, :2, :2])


def test_uncommitted_data_is_invisible_and_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    f = np.full((3, 6, 5), 7, np.uint8)
    v = np.ones((3, 6, 5), bool)
    with _make(path) as store:
        store.append(np.array([0, 300, 600]), f, v, _coarse(f, v))
        store.write_data(3, f + 1, v, _coarse(f + 1, v))  # a run killed before its commit
    with Store.open(path) as store:
        assert len(store) == 3
        assert store.uncommitted() == 3
    with Store.open(path, mode="a") as store:
        store.append(np.array([900]), f[:1] + 2, v[:1], _coarse(f[:1] + 2, v[:1]))
        frames, _ = store.read(0, 4)
        assert frames[:, 0, 0].tolist() == [7, 7, 7, 9]
        assert store.uncommitted() == 0


def test_append_rejects_non_increasing_times(tmp_path: Path) -> None:
    f = np.zeros((2, 6, 5), np.uint8)
    v = np.ones((2, 6, 5), bool)
    with _make(tmp_path / "s.zarr") as store:
        store.append(np.array([600, 900]), f, v, _coarse(f, v))
        with pytest.raises(StoreError, match="increase"):
            store.append(np.array([300, 1200]), f, v, _coarse(f, v))


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    with _make(path), pytest.raises(StoreError, match="another nowcast process"):
        Store.open(path, mode="a")
    Store.open(path, mode="a").close()  # lock released


def test_xarray_opens_the_store(tmp_path: Path) -> None:
    xr = pytest.importorskip("xarray")
    path = tmp_path / "s.zarr"
    f = np.full((2, 6, 5), 255, np.uint8)
    v = np.ones((2, 6, 5), bool)
    with _make(path) as store:
        store.append(np.array([1_577_890_800, 1_577_891_100]), f, v, _coarse(f, v))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(path)
    assert ds.frames.dims == ("time", "y", "x")
    assert str(ds.time.values[0]).startswith("2020-01-01T15:00")
    assert float(ds.frames.max()) == pytest.approx(60.0)  # CF scale/offset decode to dBZ


def test_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such store"):
        Store.open(tmp_path / "missing.zarr")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "x").write_text("x")
    with pytest.raises(StoreError, match="not a nowcast store"):
        Store.open(tmp_path / "dir")
    with pytest.raises(StoreError, match="not an empty directory"):
        _make(tmp_path / "dir")


def test_find_gaps() -> None:
    t = np.array([0, 300, 600, 1500, 1800, 3600])
    gaps = find_gaps(t, 300)
    assert [(g.after, g.before, g.missing) for g in gaps] == [(600, 1500, 2), (1800, 3600, 5)]
    assert find_gaps(np.array([0]), 300) == []


def _copy(path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    with Store.open(path) as s:
        return s.read(0, len(s), size)


def test_a_missing_training_copy_is_made_as_ingest_makes_it(
    tmp_path: Path, ry_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ensure_copy` on a store ingested at 120 equals ingesting at --size 32 directly, an
    interrupted build leaves nothing visible, and later ingests keep the new copy up."""
    from nowcast_cli import resample
    from nowcast_cli.ingest import ingest
    from nowcast_cli.store import ensure_copy

    files = sorted(ry_dir.iterdir())
    first, rest = tmp_path / "first", tmp_path / "rest"
    first.mkdir()
    rest.mkdir()
    for f in files[:9]:
        (first / f.name).write_bytes(f.read_bytes())
    for f in files[9:]:
        (rest / f.name).write_bytes(f.read_bytes())
    ingest("dwd", [ry_dir], tmp_path / "direct.zarr", sizes=(32,), workers=1)
    store = tmp_path / "store.zarr"
    ingest("dwd", [first], store, workers=1)

    def broken(self, pixels, valid):  # type: ignore[no-untyped-def]
        raise RuntimeError("killed")

    with monkeypatch.context() as m:
        m.setattr(resample.Coarsener, "__call__", broken)
        with pytest.raises(RuntimeError, match="killed"):
            ensure_copy(store, 32)
    with Store.open(store) as s:
        assert s.sizes == [120]
        with pytest.raises(StoreError, match="no 32x32 copy"):
            s.read(0, 1, 32)
    assert ensure_copy(store, 32) is True
    assert ensure_copy(store, 32) is False  # made once
    with Store.open(store) as s, Store.open(tmp_path / "direct.zarr") as d:
        assert s.sizes == [120, 32]
        assert s.crop(32) == d.crop(32)
        assert s.summary()["coarse"][1] == d.summary()["coarse"][0]
    ingest("dwd", [rest], store, workers=1)  # appends maintain the new copy
    got, want = _copy(store, 32), _copy(tmp_path / "direct.zarr", 32)
    assert got[0].shape == (13, 32, 32)
    assert np.array_equal(got[0], want[0])
    assert np.array_equal(got[1], want[1])
