"""Training samples (SPEC §4): gap-aware windows of a store, chronological splits, a loader.

A window is m + n frames (``in_frames`` + ``out_frames``) at the product interval Δ, anchored
at a stored frame t₀: slot k wants a frame at t₀ + k·Δ, and the stored frame nearest to that
time within Δ/2 fills it (HKO-7's occasional 5- and 7-minute steps are consecutive frames).
A window with more than ``max_missing`` empty slots is skipped; allowed missing frames are
zero-filled and not valid, as the HKO-7 benchmark does.

Splits are chronological, by calendar day (UTC; an HKO-7 store's Hong Kong days), and a window
belongs to a split only when all its days do:

1. ``--train/--valid/--test START:END`` date ranges, when any is given (a split without a
   range is empty); a split may have several (``START:END,START:END``, e.g. training days on
   both sides of a test block), and a window belongs to it when every day it touches lies in
   one of them (ranges of different splits must not overlap);
2. an HKO-7 store's own rainy-day lists (stored with it by ``nowcast ingest hko7``);
3. by default the store's days with data, 80/10/10 in time order;
4. a store spanning too few days for that: three contiguous blocks of its windows (80/10/10,
   no frame shared between blocks);
5. a store with too few windows for three blocks: training only, without validation.

Within a split, windows start ``stride`` intervals apart (default m + n: non-overlapping, as
the authors' loader; ``--stride 1`` takes every window). Everything is deterministic.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nowcast_cli.config import DataConfig, parse_ranges
from nowcast_cli.errors import DataError, StoreError
from nowcast_cli.store import Store, ensure_copy, iso, location

__all__ = [
    "MIX_BLOCKS",
    "SPLITS",
    "Split",
    "Splits",
    "WindowDataset",
    "batch_order",
    "check_size",
    "find_windows",
    "make_splits",
    "split_windows",
    "window_blocks",
]

SPLITS = ("train", "valid", "test")
_DAY = 86_400
_BLOCK = 65_536  # window starts per vectorized pass (bounds memory on long archives)


@dataclass(frozen=True)
class Split:
    """The windows of one split.

    Attributes
    ----------
    frames : np.ndarray
        (N, m + n) int64 frame indices into the store, -1 for a missing frame.
    start : np.ndarray
        (N,) int64 time (s UTC) of each window's first frame.
    issue_time : np.ndarray
        (N,) int64 time (s UTC) of each window's last observed frame (nominal when missing):
        the time a forecast from this window is issued.
    """

    frames: np.ndarray
    start: np.ndarray
    issue_time: np.ndarray

    def __len__(self) -> int:
        return len(self.start)

    def subset(self, index: np.ndarray) -> Split:
        """The windows at positions `index`."""
        return Split(self.frames[index], self.start[index], self.issue_time[index])


@dataclass(frozen=True)
class Splits:
    """Train, validation and test windows of a store, and how they were chosen."""

    train: Split
    valid: Split
    test: Split
    method: str  # "ranges", "hko7", "days", "blocks" or "train-only"
    note: str  # one sentence for the user (what was done, and why)
    # split → its date ranges, each [first day, last day] (ISO; "" for an open end)
    days: dict[str, list[list[str]]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Split:
        if name not in SPLITS:
            raise KeyError(name)
        split: Split = getattr(self, name)
        return split

    def describe(self) -> dict[str, Any]:
        """JSON/TOML-friendly summary (method, note, windows and time span per split)."""
        out: dict[str, Any] = {"method": self.method, "note": self.note}
        for name in SPLITS:
            s = self[name]
            out[name] = {
                "windows": len(s),
                "first": iso(int(s.start[0])) if len(s) else "",
                "last": iso(int(s.start[-1])) if len(s) else "",
            }
            if name in self.days:
                out[name]["days"] = self.days[name]
        return out


def check_size(store: Store, size: int) -> None:
    """Raise unless the store holds a `size`×`size` training copy (`ensure_copy` makes one)."""
    if size not in store.sizes:
        have = ", ".join(f"{s}×{s} (--size {s})" for s in store.sizes) or "none"
        raise StoreError(f"{store.path} has no {size}×{size} training copy (it has {have})")


def find_windows(
    times: np.ndarray, interval_s: int, length: int, max_missing: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every window of `length` slots anchored at a stored frame, gap-aware.

    Parameters
    ----------
    times : np.ndarray
        Strictly increasing frame times (s).
    interval_s : int
        Product interval Δ (s).
    length : int
        Slots per window.
    max_missing : int
        Most empty slots a window may have.

    Returns
    -------
    frames : np.ndarray
        (N, length) int64: the frame of each slot, -1 where none lies within Δ/2 of it.
    start : np.ndarray
        (N,) int64 anchor time of each window.
    """
    t = np.asarray(times, dtype=np.int64)
    if interval_s <= 0:
        raise StoreError("the store has no product interval (interval_seconds)")
    n = len(t)
    # the fast path: a window whose frames follow each other at exactly Δ is those frames
    # (each slot's nearest frame is at distance 0); only windows over a gap, an irregular
    # step or the end of the archive need the search (`_search_windows`)
    regular = np.zeros(n, dtype=bool)
    if n >= length:
        steps = np.concatenate([[0], np.cumsum(np.diff(t) == interval_s)])
        m = n - length + 1
        regular[:m] = steps[length - 1 : length - 1 + m] - steps[:m] == length - 1
    frames = np.empty((n, length), dtype=np.int64)
    frames[regular] = np.nonzero(regular)[0][:, None] + np.arange(length, dtype=np.int64)
    odd = np.nonzero(~regular)[0]
    frames[odd] = _search_windows(t, t[odd], interval_s, length)
    keep = (frames < 0).sum(1) <= max_missing
    return frames[keep], t[keep]


def _search_windows(t: np.ndarray, anchors: np.ndarray, interval_s: int, length: int) -> np.ndarray:
    """The frame of each slot of windows anchored at `anchors`: nearest within Δ/2, else -1."""
    half = interval_s / 2
    out = [np.zeros((0, length), np.int64)]
    offsets = interval_s * np.arange(length, dtype=np.int64)
    for b0 in range(0, len(anchors), _BLOCK):
        want = anchors[b0 : b0 + _BLOCK, None] + offsets[None, :]  # (k, L) slot times
        right = np.searchsorted(t, want, side="left")  # first frame at or after the slot
        left = right - 1
        t_r = t[np.minimum(right, len(t) - 1)]
        t_l = t[np.maximum(left, 0)]
        d_r = np.where(right < len(t), t_r - want, np.iinfo(np.int64).max)
        d_l = np.where(left >= 0, want - t_l, np.iinfo(np.int64).max)
        # nearest frame, the earlier on a tie, if within Δ/2 of the slot
        pick = np.where(d_l <= d_r, left, right)
        dist = np.minimum(d_l, d_r)
        idx = np.where(dist <= half, pick, -1)
        # a frame serves one slot only: a repeat (slots nearer each other than frames) is empty
        repeat = np.zeros_like(idx, dtype=bool)
        repeat[:, 1:] = (idx[:, 1:] == idx[:, :-1]) & (idx[:, 1:] >= 0)
        idx[repeat] = -1
        out.append(idx)
    return np.concatenate(out)


def _local_days(seconds: np.ndarray, tz: str | None) -> np.ndarray:
    """Calendar day number (days since 1970-01-01) of each time, in zone `tz` (None = UTC)."""
    s = np.asarray(seconds, dtype=np.int64)
    if tz is None or tz.upper() == "UTC":
        return s // _DAY
    import pandas as pd

    local = pd.to_datetime(s, unit="s", utc=True).tz_convert(tz).tz_localize(None)
    days: np.ndarray = local.values.astype("datetime64[D]").astype(np.int64)
    return days


def _day_number(d: dt.date) -> int:
    return (d - dt.date(1970, 1, 1)).days


def _day_iso(n: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=int(n))).isoformat()


def _stride_select(start: np.ndarray, stride_s: int, half: float) -> np.ndarray:
    """Positions of windows (sorted by start) kept greedily at least `stride_s` apart."""
    keep = []
    last = None
    for i, s in enumerate(start.tolist()):
        if last is None or s >= last + stride_s - half:
            keep.append(i)
            last = s
    return np.asarray(keep, dtype=np.int64)


def _empty(length: int) -> Split:
    z = np.zeros(0, np.int64)
    return Split(np.zeros((0, length), np.int64), z, z)


def split_windows(store: Store, cfg: DataConfig) -> Splits:
    """Windows of each split of `store` under `cfg` (see the module docstring).

    Raises
    ------
    DataError
        If the store has no window at all (the message says how many frames it has and
        a window needs).
    ConfigError
        If date ranges overlap or do not parse.
    """
    times = store.times
    interval = store.interval_s
    length = cfg.window
    frames, start = find_windows(times, interval, length, cfg.max_missing)
    if len(start) == 0:
        raise DataError(_no_window_message(store, times, interval, cfg))
    issue = np.where(
        frames[:, cfg.in_frames - 1] >= 0,
        times[np.maximum(frames[:, cfg.in_frames - 1], 0)],
        start + (cfg.in_frames - 1) * interval,
    )
    every = Split(frames, start, issue)
    # the time of each window's last frame as stored: with irregular steps (HKO-7) it may lie
    # up to Δ/2 after the nominal start + (length − 1)·Δ, and past midnight when that is not
    end = times[frames.max(axis=1)]
    tz = _calendar_zone(store)
    first_day, last_day = _local_days(start, tz), _local_days(end, tz)
    stride_s = cfg.window_stride * interval
    half = interval / 2

    def pick(mask: np.ndarray) -> Split:
        sel = np.nonzero(mask)[0]
        return every.subset(sel[_stride_select(start[sel], stride_s, half)])

    ranges = {name: getattr(cfg, name) for name in SPLITS}
    rainy = store.attrs.get("rainy_days")
    if any(v is not None for v in ranges.values()):
        bounds = _range_bounds(ranges)
        splits = {
            name: pick(_within(first_day, last_day, spans)) if spans else _empty(length)
            for name, spans in bounds.items()
        }
        inf = 10**9
        days = {
            name: [[_day_iso(lo) if lo > -inf else "", _day_iso(hi) if hi < inf else ""]
                   for lo, hi in spans]
            for name, spans in bounds.items()
            if spans
        }  # fmt: skip
        given = ", ".join(f"--{n} {v}" for n, v in ranges.items() if v is not None)
        return Splits(
            splits["train"], splits["valid"], splits["test"], "ranges", f"date ranges {given}", days
        )
    if isinstance(rainy, dict) and all(isinstance(rainy.get(n), list) for n in SPLITS):
        sets = {n: _day_set(rainy[n]) for n in SPLITS}
        splits = {n: pick(np.isin(first_day, sets[n]) & np.isin(last_day, sets[n])) for n in SPLITS}
        if len(splits["train"]):
            note = (
                "HKO-7 rainy-day lists ("
                + ", ".join(f"{len(rainy[n])} {n}" for n in SPLITS)
                + " days)"
            )
            return Splits(
                splits["train"], splits["valid"], splits["test"], method="hko7", note=note
            )
    # 80/10/10 of the days with data, chronologically
    data_days = np.unique(_local_days(times, tz))
    n = len(data_days)
    n_hold = max(1, round(0.1 * n))
    if n - 2 * n_hold >= 1:
        cut1, cut2 = data_days[n - 2 * n_hold], data_days[n - n_hold]
        inf = 10**9
        cuts = {
            "train": (-inf, cut1 - 1),
            "valid": (cut1, cut2 - 1),
            "test": (cut2, inf),
        }
        splits = {
            name: pick((first_day >= lo) & (last_day <= hi)) for name, (lo, hi) in cuts.items()
        }
        if all(len(s) for s in splits.values()):
            counts = (n - 2 * n_hold, n_hold, n_hold)
            days = {
                name: [[_day_iso(max(lo, data_days[0])), _day_iso(min(hi, data_days[-1]))]]
                for name, (lo, hi) in cuts.items()
            }
            note = "80/10/10 by day: {} train, {} validation, {} test days".format(*counts)
            return Splits(splits["train"], splits["valid"], splits["test"], "days", note, days)
    return _block_splits(pick(np.ones(len(start), bool)), times, length, n)


def _block_splits(strided: Split, times: np.ndarray, length: int, n_days: int) -> Splits:
    """Three contiguous blocks of windows (80/10/10), no frame shared; else training only."""
    total = len(strided)
    n_hold = max(1, round(0.1 * total))
    s = strided.start
    e = times[strided.frames.max(axis=1)] if total else s  # each window's last stored frame
    test_first = total - n_hold
    # valid: the n_hold windows that end before the test block starts (no shared frame)
    v_end = np.nonzero(e < s[test_first])[0] if test_first >= 0 else np.zeros(0, int)
    if len(v_end) >= n_hold:
        v_last = v_end[-1]
        v_first = v_last - n_hold + 1
        t_idx = np.nonzero(e < s[v_first])[0]
        if len(t_idx):
            idx = np.arange(total)
            days = "day" if n_days == 1 else "days"
            return Splits(
                train=strided.subset(t_idx),
                valid=strided.subset(idx[v_first : v_last + 1]),
                test=strided.subset(idx[test_first:]),
                method="blocks",
                note=(
                    f"the store spans {n_days} {days}, too few to split by day: three "
                    f"contiguous blocks of its {total} windows instead"
                ),
            )
    return Splits(
        train=strided,
        valid=_empty(length),
        test=_empty(length),
        method="train-only",
        note=(
            f"the store has {total} window(s), too few for training, validation and test "
            "blocks: training only, without validation"
        ),
    )


def _calendar_zone(store: Store) -> str | None:
    """The zone whose calendar days split the store: HKO-7 lists are Hong Kong days."""
    if isinstance(store.attrs.get("rainy_days"), dict):
        tz = store.attrs.get("time_zone", {})
        if isinstance(tz, dict) and isinstance(tz.get("file_names"), str):
            return str(tz["file_names"])
        return "Asia/Hong_Kong"
    return None


def _day_set(days: list[str]) -> np.ndarray:
    return np.array([_day_number(dt.date.fromisoformat(d)) for d in days], dtype=np.int64)


def _range_bounds(ranges: dict[str, str | None]) -> dict[str, list[tuple[int, int]]]:
    """Inclusive day-number spans per split ([] = no range), adjacent ranges merged.

    Raises
    ------
    ConfigError
        If a range does not parse, or ranges of two splits share a day.
    """
    from nowcast_cli.errors import ConfigError

    inf = 10**9
    out: dict[str, list[tuple[int, int]]] = {}
    for name, text in ranges.items():
        spans: list[tuple[int, int]] = []
        for start, end in parse_ranges(text, name) if text is not None else []:
            lo, hi = (_day_number(start) if start else -inf), (_day_number(end) if end else inf)
            if spans and lo == spans[-1][1] + 1:  # the day after the previous range: one span
                spans[-1] = (spans[-1][0], hi)
            else:
                spans.append((lo, hi))
        out[name] = spans
    names = list(out)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if any(alo <= bhi and blo <= ahi for alo, ahi in out[a] for blo, bhi in out[b]):
                raise ConfigError(f"--{a} {ranges[a]} and --{b} {ranges[b]} overlap")
    return out


def _within(
    first_day: np.ndarray, last_day: np.ndarray, spans: list[tuple[int, int]]
) -> np.ndarray:
    """Windows whose first and last day lie in one span (so every day between does too)."""
    mask = np.zeros(len(first_day), bool)
    for lo, hi in spans:
        mask |= (first_day >= lo) & (last_day <= hi)
    return mask


def _no_window_message(store: Store, times: np.ndarray, interval: int, cfg: DataConfig) -> str:
    run = 0
    if len(times):
        breaks = np.nonzero(np.diff(times) > 1.5 * interval)[0]
        edges = np.concatenate([[-1], breaks, [len(times) - 1]])
        run = int(np.diff(edges).max())
    return (
        f"{store.path} has no training window: it has {len(times)} frame(s), at most {run} "
        f"consecutive, and a window needs {cfg.window} consecutive frames (--in-frames "
        f"{cfg.in_frames} + --out-frames {cfg.out_frames}) with at most {cfg.max_missing} "
        "missing (--max-missing)"
    )


def make_splits(cfg: DataConfig, store_path: str | Path) -> Splits:
    """Open the store, check its training copy and split its windows (see `split_windows`)."""
    ensure_copy(store_path, cfg.size)
    with Store.open(store_path) as store:
        check_size(store, cfg.size)
        splits = split_windows(store, cfg)
    if cfg.valid_samples and len(splits.valid) > cfg.valid_samples:
        pos = np.unique(np.linspace(0, len(splits.valid) - 1, cfg.valid_samples).round())
        splits = dataclasses.replace(splits, valid=splits.valid.subset(pos.astype(np.int64)))
    return splits


class WindowDataset(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """The windows of a split as uint8 frames and bool masks, read straight from the store.

    Item i is ``(frames, valid)``, both shaped (m + n, 1, S, S) (uint8 pixels, bool), a
    missing frame all zero and not valid. Convert with ``frames / 255`` on the device: the
    uint8 tensor is 4× smaller to move. Picklable: each process (a spawned data worker)
    opens the store itself, and its reader keeps at most `cache_bytes` of decoded chunks.
    """

    def __init__(
        self, store_path: str | Path, size: int, split: Split, cache_bytes: int = 256 * 2**20
    ) -> None:
        self.store_path = location(store_path)
        self.size = size
        self.frames = split.frames
        self.cache_bytes = cache_bytes
        self._reader: Any = None

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._reader is None:
            self._reader = Store.open(self.store_path).frame_reader(self.size, self.cache_bytes)
        f, v = self._reader.read(self.frames[i])
        return torch.from_numpy(f).unsqueeze(1), torch.from_numpy(v).unsqueeze(1)

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A batch of items, the DataLoader's batched fetch.

        From a URL, the chunks of the whole batch are requested together first
        (`FrameReader.prefetch`): one round trip instead of one per chunk.
        """
        if self._reader is None:
            self._reader = Store.open(self.store_path).frame_reader(self.size, self.cache_bytes)
        self._reader.prefetch(self.frames[np.asarray(indices, dtype=np.int64)])
        return [self[i] for i in indices]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_reader"] = None  # each process opens its own
        return state


#: time chunks whose windows are shuffled together (see `batch_order`)
MIX_BLOCKS = 16


def window_blocks(split: Split, chunk_frames: int) -> np.ndarray:
    """The time chunk of the store that holds each window's first present frame, (N,) int64."""
    first = np.where(split.frames >= 0, split.frames, np.iinfo(np.int64).max).min(axis=1)
    blocks: np.ndarray = first // max(1, chunk_frames)
    return blocks


def batch_order(
    n: int,
    batch: int,
    seed: int,
    epoch: int,
    rank: int = 0,
    world: int = 1,
    blocks: np.ndarray | None = None,
    mix: int = MIX_BLOCKS,
) -> list[list[int]]:
    """The training batches of one epoch, as process `rank` of `world` sees them.

    The epoch's order is a permutation of the n windows drawn from (seed, epoch) alone, cut
    into n // batch full global batches: the n mod batch windows at the end of the
    permutation are left out of that epoch (other ones each epoch, so none is left out for
    good), so that every step has the same batch size, DDP shares are equal and the loss
    scale never changes; process `rank` of `world` takes the rank-th contiguous slice of
    each global batch. The global batches are the same for any `world`, which is what makes
    a DistributedDataParallel run equal a single-process one.

    With `blocks` (the store's time chunk of each window, `window_blocks`), the permutation
    is chunk-local: the chunks are visited in random order, `mix` at a time, and the windows
    of those `mix` chunks are shuffled together. Every window still comes once per epoch and
    every batch mixes windows from up to `mix` distant parts of the archive, but each chunk
    is read and decoded about once per epoch instead of once or twice per window: the loader
    then keeps pace on archives far larger than its cache, which must hold the `mix` chunks and
    the next chunk of each (windows that start near a chunk's end reach into it): with less,
    chunks are evicted and read again within their group.
    """
    g = np.random.default_rng([seed, epoch])
    if blocks is None:
        perm = g.permutation(n)
    else:
        ids, which = np.unique(np.asarray(blocks)[:n], return_inverse=True)
        position = np.empty(len(ids), dtype=np.int64)
        position[g.permutation(len(ids))] = np.arange(len(ids))
        group = position[which] // max(1, mix)  # the chunks shuffled together
        perm = np.lexsort((g.random(n), group))  # by group, at random within a group
    local = batch // world
    out = []
    for b in range(n // batch):
        glob = perm[b * batch : (b + 1) * batch]
        out.append(glob[rank * local : (rank + 1) * local].tolist())
    return out


class BatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of one process for global steps ``start_step`` … across epochs (resumable)."""

    def __init__(
        self,
        n: int,
        batch: int,
        seed: int,
        steps_per_epoch: int,
        start_step: int,
        stop_step: int,
        rank: int = 0,
        world: int = 1,
        blocks: np.ndarray | None = None,
    ) -> None:
        self.args = (n, batch, seed, rank, world)
        self.blocks = blocks
        self.steps_per_epoch = steps_per_epoch
        self.start, self.stop = start_step, stop_step

    def __iter__(self) -> Iterator[list[int]]:
        n, batch, seed, rank, world = self.args
        step = self.start
        while step < self.stop:
            epoch, offset = divmod(step, self.steps_per_epoch)
            order = batch_order(n, batch, seed, epoch, rank, world, self.blocks)
            for b in order[offset:]:
                if step >= self.stop:
                    return
                yield b
                step += 1

    def __len__(self) -> int:
        return max(0, self.stop - self.start)
