"""Sample windows, splits and the loader (SPEC §4), on small generated stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nowcast_cli.config import DataConfig
from nowcast_cli.errors import ConfigError, DataError
from nowcast_cli.samples import (
    MIX_BLOCKS,
    WindowDataset,
    batch_order,
    find_windows,
    make_splits,
    window_blocks,
)
from nowcast_cli.store import Store
from tests.synthetic_store import make_store, regular_times

T0 = 1_577_836_800  # 2020-01-01 00:00 UTC


def test_windows_regular_and_across_a_gap() -> None:
    t = T0 + 300 * np.array([0, 1, 2, 3, 4, 6, 7, 8, 9])  # slot 5 missing
    frames, start = find_windows(t, 300, 4, max_missing=0)
    # windows of 4 consecutive slots: starting at 0, 1 (up to slot 4) and 6 (6..9)
    assert (start - T0).tolist() == [0, 300, 1800]
    assert frames.tolist() == [[0, 1, 2, 3], [1, 2, 3, 4], [5, 6, 7, 8]]
    frames, start = find_windows(t, 300, 4, max_missing=1)
    assert ((start - T0) // 300).tolist() == [0, 1, 2, 3, 4, 6, 7]
    row = frames[((start - T0) // 300).tolist().index(2)]  # slots 2, 3, 4, (5 missing)
    assert row.tolist() == [2, 3, 4, -1]


def test_hko_irregular_steps_count_as_consecutive() -> None:
    # 6-minute product with a 5- and a 7-minute step: still 5 consecutive slots
    t = T0 + 60 * np.array([0, 6, 11, 18, 24])
    frames, _ = find_windows(t, 360, 5, max_missing=0)
    assert frames.tolist() == [[0, 1, 2, 3, 4]]
    # a frame 4 minutes off its slot (more than half an interval) is not that slot's frame
    t2 = T0 + 60 * np.array([0, 6, 16, 18, 24])
    frames2, _ = find_windows(t2, 360, 5, max_missing=0)
    assert frames2.tolist() == []


def _cfg(**kw) -> DataConfig:
    base = {"size": 8, "in_frames": 3, "out_frames": 3}
    return DataConfig(**{**base, **kw})


def test_split_by_day_is_chronological_and_disjoint(tmp_path: Path) -> None:
    path = make_store(tmp_path / "s.zarr", regular_times("2020-01-01", 288 * 10), size=8)
    splits = make_splits(_cfg(), path)
    assert splits.method == "days"
    assert "8 train, 1 validation, 1 test days" in splits.note
    day = 86_400
    for name, (lo, hi) in {"train": (0, 8), "valid": (8, 9), "test": (9, 10)}.items():
        s = splits[name]
        assert len(s) > 0
        assert s.start.min() >= T0 + lo * day
        assert s.start.max() + 5 * 300 < T0 + hi * day  # whole windows inside the days
    # non-overlapping by default (stride = 6 frames) and the issue time is the 3rd frame
    assert np.all(np.diff(splits.train.start) >= 6 * 300)
    assert np.array_equal(splits.test.issue_time, splits.test.start + 2 * 300)
    again = make_splits(_cfg(), path)
    assert np.array_equal(again.train.frames, splits.train.frames)


def test_few_days_fall_back_to_blocks_then_to_training_only(tmp_path: Path) -> None:
    path = make_store(tmp_path / "s.zarr", regular_times("2020-01-01", 120), size=8)
    splits = make_splits(_cfg(stride=1), path)
    assert splits.method == "blocks"
    assert "too few to split by day" in splits.note
    used = [set(splits[n].frames.ravel().tolist()) for n in ("train", "valid", "test")]
    assert not (used[0] & used[1])
    assert not (used[1] & used[2])
    assert not (used[0] & used[2])
    assert splits.valid.start.min() > splits.train.start.max()
    assert splits.test.start.min() > splits.valid.start.max()
    assert len(splits.test) == round(0.1 * (120 - 5))

    small = make_store(tmp_path / "t.zarr", regular_times("2020-01-01", 8), size=8)
    splits = make_splits(_cfg(), small)
    assert splits.method == "train-only"
    assert len(splits.train) == 1
    assert len(splits.valid) == 0
    assert "without validation" in splits.note


def test_date_ranges_and_overlap(tmp_path: Path) -> None:
    path = make_store(tmp_path / "s.zarr", regular_times("2020-01-01", 288 * 4), size=8)
    splits = make_splits(_cfg(train="2020-01-01:2020-01-02", test="2020-01-04:"), path)
    assert splits.method == "ranges"
    assert len(splits.valid) == 0
    assert splits.train.start.max() < T0 + 2 * 86_400
    assert splits.test.start.min() >= T0 + 3 * 86_400
    with pytest.raises(ConfigError, match="overlap"):
        make_splits(_cfg(train="2020-01-01:2020-01-02", valid="2020-01-02:2020-01-03"), path)
    with pytest.raises(ConfigError, match="not a date"):
        _cfg(train="2020-01-01:tomorrow")


def test_hko7_rainy_days_in_hong_kong_time(tmp_path: Path) -> None:
    # frames every 6 min on 2015-01-07 00:00 .. 23:54 Hong Kong time (= 16:00 UTC the day before)
    start = np.datetime64("2015-01-06T16:00", "s").astype(np.int64)
    times = start + 360 * np.arange(240)
    attrs = {
        "source": "hko7",
        "rainy_days": {"train": ["2015-01-07"], "valid": [], "test": [], "uncertain": []},
        "time_zone": {"file_names": "Asia/Hong_Kong"},
    }
    path = make_store(tmp_path / "h.zarr", times, size=8, interval=360, attrs=attrs)
    splits = make_splits(_cfg(), path)
    assert splits.method == "hko7"
    assert len(splits.train) == 240 // 6  # the whole local day, in UTC it spans two days


def test_no_window_and_missing_size(tmp_path: Path) -> None:
    path = make_store(tmp_path / "s.zarr", regular_times("2020-01-01", 5), size=8)
    with pytest.raises(DataError, match=r"has 5 frame\(s\), at most 5 consecutive.*needs 6"):
        make_splits(_cfg(), path)
    # a missing copy is made (then the windows are still too short), one beyond the grid not
    with pytest.raises(DataError, match=r"has 5 frame\(s\)"):
        make_splits(_cfg(size=4), path)
    with Store.open(path) as store:
        assert store.sizes == [8, 4]
    with pytest.raises(ConfigError, match=r"16x16 training copy cannot be made from its 8x8"):
        make_splits(_cfg(size=16), path)


def test_dataset_reads_the_store_and_fills_missing(tmp_path: Path) -> None:
    times = T0 + 300 * np.array([0, 1, 2, 4, 5, 6, 7, 8])
    path = make_store(tmp_path / "s.zarr", times, size=8)
    splits = make_splits(_cfg(max_missing=1, stride=1), path)
    every = np.concatenate([splits[n].frames for n in ("train", "valid", "test")])
    ds = WindowDataset(path, 8, splits.train, cache_bytes=100)  # smaller than a chunk
    with Store.open(path) as store:
        full_f, full_v = store.read(0, len(store), 8)
    for i in range(len(ds)):
        f, v = ds[i]
        assert f.shape == (6, 1, 8, 8)
        assert f.dtype.is_floating_point is False
        for k, j in enumerate(splits.train.frames[i]):
            if j < 0:
                assert not f[k].any()
                assert not v[k].any()
            else:
                assert np.array_equal(f[k, 0].numpy(), full_f[j])
                assert np.array_equal(v[k, 0].numpy(), full_v[j])
    assert (every < 0).any()  # the gap produced a window with a missing frame


def test_reader_cache_stays_bounded(tmp_path: Path) -> None:
    path = make_store(tmp_path / "s.zarr", regular_times("2020-01-01", 300), size=8)
    with Store.open(path) as store:
        reader = store.frame_reader(8, cache_bytes=3 * 64 * 64)
        for start in range(0, 290, 7):
            f, _ = reader.read(np.arange(start, start + 10))
            assert np.array_equal(f, store.read(start, start + 10, 8)[0])
            assert reader._held <= reader.cache_bytes


def test_batch_order_shares_global_batches_between_processes() -> None:
    single = batch_order(23, 4, seed=7, epoch=2)
    assert len(single) == 5
    assert all(len(b) == 4 for b in single)
    assert len({i for b in single for i in b}) == 20
    halves = [batch_order(23, 4, 7, 2, rank=r, world=2) for r in (0, 1)]
    assert [a + b for a, b in zip(*halves, strict=True)] == single
    assert batch_order(23, 4, 7, 3) != single


def test_chunk_local_order_visits_each_window_once_and_mixes_chunks() -> None:
    blocks = np.repeat(np.arange(40), 8)  # 40 time chunks of 8 windows each
    order = batch_order(len(blocks), 4, seed=3, epoch=0, blocks=blocks, mix=4)
    flat = [i for b in order for i in b]
    assert sorted(flat) == list(range(len(blocks)))  # every window once
    for g in range(10):  # consecutive groups of 4 chunks × 8 windows
        assert len(set(blocks[flat[32 * g : 32 * (g + 1)]])) == 4
    mixed = sum(len(set(blocks[b])) > 1 for b in order)
    assert mixed > len(order) // 2  # batches draw from several chunks, not one
    halves = [batch_order(len(blocks), 4, 3, 0, r, 2, blocks=blocks, mix=4) for r in (0, 1)]
    assert [a + b for a, b in zip(*halves, strict=True)] == order
    assert batch_order(len(blocks), 4, 3, 1, blocks=blocks, mix=4) != order


def test_chunk_local_order_decodes_each_chunk_about_once(tmp_path: Path) -> None:
    path = make_store(tmp_path / "s.zarr", regular_times("2020-01-01", 640), size=8)
    split = make_splits(DataConfig(size=8, in_frames=3, out_frames=3, stride=2), path).train
    with Store.open(path) as store:
        chunk_t = store.time_chunk(8)
        blocks = window_blocks(split, chunk_t)
        reader = store.frame_reader(8, cache_bytes=2 * 2 * (MIX_BLOCKS + 2) * chunk_t * 64)
        decoded: list[tuple[int, int]] = []
        real = reader._decode

        def counting(which: int, c: int) -> np.ndarray:
            decoded.append((which, c))
            return real(which, c)

        reader._decode = counting  # type: ignore[method-assign]
        for batch in batch_order(len(split), 4, 0, 0, blocks=blocks):
            for i in batch:
                reader.read(split.frames[i])
    n_chunks = 640 // chunk_t
    # frames and valid of every chunk, plus a few re-reads where windows straddle two chunks
    assert len(decoded) <= 2 * n_chunks * 1.5


def test_no_window_reaches_into_the_next_split_through_an_irregular_step(tmp_path: Path) -> None:
    # 5-minute frames; on the evening of 2020-01-01 a 7-minute step puts the frame of the
    # 23:59 slot at 00:01: a window anchored at 23:44 nominally ends on day 1 but reads a
    # frame of day 2, and must belong to neither split
    day1 = regular_times("2020-01-01T20:04", 45)  # 20:04 … 23:44
    evening = day1[-1] + 60 * np.array([5, 10])  # 23:49, 23:54
    day2 = regular_times("2020-01-02T00:01", 40)  # 00:01 (7 minutes after 23:54) …
    path = make_store(tmp_path / "s.zarr", np.concatenate([day1, evening, day2]), size=8)
    cfg = _cfg(in_frames=2, out_frames=2, stride=1, train="2020-01-01:2020-01-01",
               valid="2020-01-02:2020-01-02")  # fmt: skip
    splits = make_splits(cfg, path)
    with Store.open(path) as s:
        times = s.times
    day = 86_400
    for name in ("train", "valid"):
        split = splits[name]
        first = times[split.frames.min(axis=1)] // day
        last = times[split.frames.max(axis=1)] // day
        assert (first == last).all(), name  # every frame of a window on one day
    anchors = splits.train.start
    assert (anchors == day1[-1]).sum() == 0  # the 23:44 window: its last frame is 00:01
    assert (anchors == day1[-2]).sum() == 1  # the 23:39 window ends at 23:54, inside day 1


def test_blocks_share_no_frame_with_irregular_steps(tmp_path: Path) -> None:
    # one day (too few for day splits): frames 5 minutes apart with 7-minute steps, so that
    # windows' last frames lie up to 2 minutes after their nominal end
    steps = np.tile([300, 300, 420, 180], 40)
    times = T0 + np.concatenate([[0], np.cumsum(steps)])
    path = make_store(tmp_path / "b.zarr", times, size=8)
    splits = make_splits(_cfg(in_frames=2, out_frames=2, stride=1), path)
    assert splits.method == "blocks"
    used = {
        name: set(splits[name].frames.ravel().tolist()) - {-1}
        for name in ("train", "valid", "test")
    }
    assert not used["train"] & used["valid"]
    assert not used["valid"] & used["test"]
    assert not used["train"] & used["test"]


def _windows_by_hand(t: list[int], interval: int, length: int, max_missing: int):
    """Every window by a direct loop: each slot's nearest frame within Δ/2 (earlier on a tie),
    a frame serving the previous slot again counts as missing."""
    rows, starts = [], []
    for a in t:
        row = []
        for k in range(length):
            want = a + k * interval
            best = min(range(len(t)), key=lambda j: (abs(t[j] - want), t[j]))
            j = best if abs(t[best] - want) <= interval / 2 else -1
            row.append(-1 if row and j >= 0 and row[-1] == j else j)
        if sum(v < 0 for v in row) <= max_missing:
            rows.append(row)
            starts.append(a)
    return rows, starts


def test_find_windows_fast_path_matches_a_direct_loop() -> None:
    # regular runs take the fast path, gaps, irregular steps and the archive's end the search
    rng = np.random.default_rng(7)
    for _ in range(40):
        steps = rng.choice([300] * 6 + [240, 360, 600, 1500], size=int(rng.integers(0, 60)))
        t = np.cumsum(steps).astype(np.int64)
        length, max_missing = int(rng.integers(1, 7)), int(rng.integers(0, 3))
        frames, start = find_windows(t, 300, length, max_missing)
        rows, starts = _windows_by_hand(t.tolist(), 300, length, max_missing)
        assert frames.tolist() == rows
        assert start.tolist() == starts
