"""A year of radar on one machine: how ingest, the store, the window index and the training
pipeline behave as an archive grows from one week to one month to one year.

Run on demand: ``python benchmarks/bench_archive.py [--dir DIR]`` (about an hour on 2 cores
and ~15 GB of disk); results go to ``benchmarks/results/archive.md`` and ``archive.json``.
Resumable: the archive and the figures of finished milestones are kept in ``--dir``, and a
rerun carries on from there.

The archive is one RY-like store (900×900 frames every 5 minutes, the training copy 120×120)
grown to each milestone (7, 30 and 365 days: 2,016, 8,640 and 105,120 frames). Its frames are
the 18 bundled real RY composites, shifted (a drift of a few km per frame, another origin each
hour), rescaled in rain rate (a factor of 0.3–3 per day) and with dry days (45 %), so that
chunks compress like real radar. At each milestone:

- **ingest**: ``nowcast ingest dwd`` (a separate process, the real CLI) appends one more day to
  the store as it is then, in ``--ingest-rounds`` runs (3 by default, each a part of the day's
  288 gzip RY files: the bundled composites re-stamped); frames/s is frames written over the
  ingest's own time (``--json`` ``seconds``, without interpreter start-up), the median of the
  runs; peak memory the highest of the processes' high-water marks (``VmHWM``);
- **store size**: bytes on disk of the whole store;
- **open + index**: `Store.open` and reading its time axis, then the default split's window
  index (`make_splits`, 10 + 10 frames, 80/10/10 by day) and the training windows' chunks
  (`window_blocks`) — what ``nowcast train`` does before its first step (median of 3);
- **pipeline**: training windows read through `WindowDataset.__getitems__` in the engine's
  chunk-local order (`batch_order`, batch 4) from a cold reader with a decoded-chunk cache of
  the 33 chunks the order needs at once (the 16 chunks shuffled together and the next chunk
  of each, where windows that start near a chunk's end reach; 58 MiB: 1/50 of the year's
  decoded copy): the first ``--batches`` batches of epoch 0, or, when an epoch has fewer (a
  week has 18), whole epochs, each from a new cold reader, until as many are read. A week's
  later epochs in one reader would cost nothing at all, its copy fitting the cache: the cold
  epoch is the comparable unit. Beside samples/s, the chunk reads (decodes) per sample: each
  window reads its chunk once per group, and the next chunk as well when it reaches into it
  and that chunk is not cached, which happens more often the more chunks there are to
  shuffle. The pipelines are measured after the last milestone, on the final store
  (append-only, so a milestone's windows read the chunks they read then), in
  ``--pipeline-rounds`` rounds that read every milestone's windows once each: samples/s is
  the median over rounds, the ratio to the first milestone the median of the per-round
  ratios.

Between milestones the archive is filled with `Store.append`, the writer ingest itself uses,
from synthesized pixel frames and their 120×120 copies made by ingest's `Coarsener` (decoding
105,000 RADOLAN files would add an hour and measure the decoder, which bench_ingest measures);
the ingest figures are those of the CLI appending real files to the archive at its size.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data" / "dwd"
DAY = 288
START = 1_609_459_200  # 2021-01-01 00:00 UTC
CLI_SNIPPET = """
import atexit, os, runpy, sys

def peak():
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    with open(os.environ["NOWCAST_BENCH_PEAK"], "w") as f:
        f.write(str(kb))

atexit.register(peak)
sys.argv = ["nowcast", *sys.argv[1:]]
runpy.run_module("nowcast_cli", run_name="__main__", alter_sys=True)
"""


def seeds() -> list[bytes]:
    """The bundled RY composites, decompressed."""
    out = []
    for p in sorted(SAMPLE.glob("ry_*/*")):
        raw = p.read_bytes()
        out.append(gzip.decompress(raw) if p.suffix == ".gz" else bz2.decompress(raw))
    return out


def write_ry(folder: Path, t0: int, n: int, raw: list[bytes]) -> None:
    """n gzip RY files from `t0` every 5 minutes: the composites re-stamped in their header."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        t = time.gmtime(t0 + 300 * i)
        data = bytearray(raw[i % len(raw)])
        data[2:8] = time.strftime("%d%H%M", t).encode()
        data[13:17] = time.strftime("%m%y", t).encode()
        name = f"raa01-ry_10000-{time.strftime('%y%m%d%H%M', t)}-dwd---bin.gz"
        (folder / name).write_bytes(gzip.compress(bytes(data), compresslevel=1))


def cli_ingest(src: Path, store: Path) -> dict[str, Any]:
    """``nowcast ingest dwd SRC --out STORE --json`` in its own process: its report and peak."""
    with tempfile.NamedTemporaryFile("r", suffix=".peak") as peak:
        cmd = [sys.executable, "-c", CLI_SNIPPET, "ingest", "dwd", str(src), "--out", str(store)]
        env = {**os.environ, "NOWCAST_BENCH_PEAK": peak.name}
        t = time.perf_counter()
        done = subprocess.run([*cmd, "--json"], env=env, check=True, capture_output=True)
        wall = time.perf_counter() - t
        report = json.loads(done.stdout)
        report["peak_mib"] = int(Path(peak.name).read_text()) / 1024
    report["wall_s"] = wall
    return report


class Synth:
    """RY-like frames from the bundled real fields: shifted, rescaled, with dry days."""

    def __init__(self, zr: tuple[float, float]) -> None:
        from nowcast_cli.io import create_reader

        reader = create_reader("dwd")
        self.pix, self.valid = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for p in sorted(SAMPLE.glob("ry_*/*")):
                for s in reader.scan(p, Path(tmp)):
                    _, pix, valid, _ = reader.read_pixels(s.item, zr)  # type: ignore[union-attr]
                    self.pix.append(pix)
                    self.valid.append(valid)
        self.b = zr[1]

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        day, hour = divmod(i, DAY), i // 12
        g = np.random.default_rng([day])
        valid = self.valid[0]
        if g.random() < 0.45:
            return np.zeros_like(self.pix[0]), valid
        h = np.random.default_rng([day, hour])
        k = int(h.integers(len(self.pix)))
        step = i % 12
        dy, dx = (h.integers(-300, 300, 2) + step * h.integers(-4, 5, 2)).tolist()
        scale = float(np.exp(g.uniform(np.log(0.3), np.log(3.0))))
        shift = round(255 / 70 * 10 * self.b * np.log10(scale))
        src = np.roll(self.pix[k], (dy, dx), axis=(0, 1)).astype(np.int16)
        pix = np.where(src > 0, np.clip(src + shift, 1, 255), 0).astype(np.uint8)
        pix[~valid] = 0
        return pix, valid


def fill(store_path: Path, n_target: int, synth: Synth) -> float:
    """Append synthesized frames until the store holds `n_target`; seconds taken."""
    from nowcast_cli.resample import Coarsener
    from nowcast_cli.store import Store

    t0 = time.perf_counter()
    with Store.open(store_path, mode="a") as st:
        size = st.sizes[0]
        coarsen = Coarsener(st.shape, size, st.zr, st.crop(size))
        n = len(st)
        last = int(st.times[-1])
        while n < n_target:
            k = min(32 - n % 8 if n % 8 else 32, n_target - n)
            frames, valid, cf, cv = [], [], [], []
            for i in range(n, n + k):
                p, v = synth.frame(i)
                c = coarsen(p, v)
                frames.append(p)
                valid.append(v)
                cf.append(c[0])
                cv.append(c[1])
            times = last + 300 * np.arange(1, k + 1, dtype=np.int64)
            st.append(
                times, np.stack(frames), np.stack(valid), {size: (np.stack(cf), np.stack(cv))}
            )
            last, n = int(times[-1]), n + k
    return time.perf_counter() - t0


def store_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def open_and_index(path: Path, size: int = 120, save: Path | None = None) -> dict[str, float]:
    """Open + window index (median of 3); `save`: where to keep the training windows."""
    from nowcast_cli.config import DataConfig
    from nowcast_cli.samples import make_splits, window_blocks
    from nowcast_cli.store import Store

    opens, index = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        with Store.open(path) as st:
            n = len(st)
            chunk_t = st.time_chunk(size)
        t1 = time.perf_counter()
        splits = make_splits(DataConfig(size=size), path)
        window_blocks(splits.train, chunk_t)
        t2 = time.perf_counter()
        opens.append(t1 - t0)
        index.append(t2 - t1)
    if save is not None:
        np.save(save, splits.train.frames)
    return {
        "frames": n,
        "open_s": statistics.median(opens),
        "index_s": statistics.median(index),
        "train_windows": len(splits.train),
    }


def pipeline_epoch(path: Path, frames: np.ndarray, batches: int) -> tuple[float, float, int]:
    """Cold epochs of the training windows `frames` of the store at `path`, in the engine's
    order: the first `batches` batches of epoch 0, or, when the epoch has fewer, the whole
    epoch from a new cold reader as many times as it takes to read at least `batches`
    (samples/s, chunk reads per window read, batches per epoch)."""
    from nowcast_cli.samples import MIX_BLOCKS, Split, WindowDataset, batch_order, window_blocks
    from nowcast_cli.store import Store

    z = np.zeros(len(frames), np.int64)
    split = Split(frames, z, z)
    with Store.open(path) as st:
        chunk_t = st.time_chunk(120)
    order = batch_order(len(split), 4, 0, 0, blocks=window_blocks(split, chunk_t))[:batches]
    cache = 2 * (2 * MIX_BLOCKS + 1) * chunk_t * 120 * 120  # frames + valid
    count, seconds, windows = [0], 0.0, 0
    while windows < 4 * batches:
        ds = WindowDataset(path, 120, split, cache_bytes=cache)
        ds[order[0][0]]  # open (not timed)
        reader = ds._reader
        reader._cache.clear()  # cold: the opening read's chunks count too
        reader._held = 0
        real = reader._decode

        def counting(which: int, c: int, real: Any = real) -> Any:
            count[0] += 1
            return real(which, c)

        reader._decode = counting
        t0 = time.perf_counter()
        for b in order:
            ds.__getitems__(b)
        seconds += time.perf_counter() - t0
        windows += 4 * len(order)
    # a chunk read decodes frames and valid
    return windows / seconds, count[0] / 2 / windows, len(order)


def pipelines(
    path: Path, days: list[int], folder: Path, batches: int, rounds: int
) -> dict[str, Any]:
    """Every milestone's pipeline epoch on the final store, interleaved: `rounds` rounds of one
    cold epoch per milestone (the store is append-only, so the windows a milestone's split
    chose read the same chunks now as then), so that the machine's drift hits every
    milestone alike and each round gives a ratio to the first milestone from the same minute.
    """
    from nowcast_cli.samples import MIX_BLOCKS
    from nowcast_cli.store import Store

    frames = {d: np.load(folder / f"train_windows_{d}.npy") for d in days}
    rates: dict[int, list[float]] = {d: [] for d in days}
    reads: dict[int, tuple[float, int]] = {}  # chunk reads per window, batches per epoch
    for _ in range(rounds):
        for d in days:
            rate, *reads[d] = pipeline_epoch(path, frames[d], batches)
            rates[d].append(rate)
    with Store.open(path) as st:
        chunk_t = st.time_chunk(120)
    first = days[0]
    return {
        "cache_mib": 2 * (2 * MIX_BLOCKS + 1) * chunk_t * 120 * 120 / 2**20,
        "rounds": rounds,
        "rows": {
            str(d): {
                "samples_per_s": statistics.median(rates[d]),
                "samples_per_s_runs": rates[d],
                "ratio_to_first": statistics.median(
                    [x / y for x, y in zip(rates[d], rates[first], strict=True)]
                ),
                "reads_per_window": reads[d][0],
                "pipeline_batches": reads[d][1],
            }
            for d in days
        },
    }


def year_index(folder: Path, days: int = 365) -> dict[str, Any]:
    """Open + window index of a store with a year's time axis (8×8 frames: only `time` matters).

    `Store.open` reads the time axis, the index is built from it alone: on a year of tiny
    frames they cost what they cost on a year of 900×900 ones.
    """
    from tests.synthetic_store import make_store

    times = START + 300 * np.arange(days * DAY, dtype=np.int64)
    path = make_store(folder / "year-time-axis.zarr", times, size=8)
    return {"days": days, **open_and_index(path, size=8)}


def shown_args(argv: list[str] | None) -> list[str]:
    """The command's arguments as recorded: without ``--dir`` and ``--out`` (where the work
    and the results went, paths of this machine, not what was measured)."""
    args, out = list(sys.argv[1:] if argv is None else argv), []
    skip = False
    for a in args:
        if skip:
            skip = False
        elif a in ("--dir", "--out"):
            skip = True
        elif not a.startswith(("--dir=", "--out=")):
            out.append(a)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description="A year of radar through ingest and training")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "nowcast-archive")
    ap.add_argument("--milestones", default="7,30,365", help="archive lengths in days")
    ap.add_argument("--batches", type=int, default=150, help="pipeline batches per archive")
    ap.add_argument(
        "--pipeline-rounds", type=int, default=11, help="interleaved pipeline epochs per archive"
    )
    ap.add_argument("--ingest-rounds", type=int, default=3, help="ingest runs per archive")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument(
        "--year-index", action="store_true", help="also: open + index on a year's time axis"
    )
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    args.dir.mkdir(parents=True, exist_ok=True)
    store = args.dir / "archive.zarr"
    state_file = args.dir / "results.json"
    state: dict[str, Any] = json.loads(state_file.read_text()) if state_file.exists() else {}
    raw = seeds()
    if not store.exists():  # the first hour through the CLI: the store as ingest makes it
        write_ry(args.dir / "first", START, 12, raw)
        cli_ingest(args.dir / "first", store)
        shutil.rmtree(args.dir / "first")
    from nowcast_cli.store import Store

    with Store.open(store) as st:
        synth = Synth(st.zr)
    for days in [int(d) for d in args.milestones.split(",")]:
        key = str(days)
        if key in state:
            continue
        fill_s = fill(store, days * DAY - DAY, synth)
        with Store.open(store) as st:
            n0, t_last = len(st), int(st.times[-1])
        reps = []
        for part in np.array_split(np.arange(DAY), args.ingest_rounds):
            src = args.dir / "slice"
            shutil.rmtree(src, ignore_errors=True)
            write_ry(src, t_last + 300 * (1 + int(part[0])), len(part), raw)
            reps.append(cli_ingest(src, store))
            shutil.rmtree(src)
        rates = [r["written"] / r["seconds"] for r in reps]
        row = {
            "days": days,
            "frames_before_ingest": n0,
            "fill_s": fill_s,
            "ingest_frames": sum(r["written"] for r in reps),
            "ingest_s": [r["seconds"] for r in reps],
            "ingest_frames_per_s": statistics.median(rates),
            "ingest_frames_per_s_runs": rates,
            "ingest_wall_s": [r["wall_s"] for r in reps],
            "ingest_peak_mib": max(r["peak_mib"] for r in reps),
            "store_gib": store_bytes(store) / 2**30,
            **open_and_index(store, save=args.dir / f"train_windows_{days}.npy"),
        }
        state[key] = row
        state_file.write_text(json.dumps(state, indent=2))
        print(json.dumps(row), flush=True)
    if args.year_index and "year_index" not in state:
        state["year_index"] = year_index(args.dir)
        state_file.write_text(json.dumps(state, indent=2))
    done = sorted(int(k) for k in state if k.isdigit())
    pipe = pipelines(store, done, args.dir, args.batches, args.pipeline_rounds)
    out = {
        "command": "python benchmarks/bench_archive.py " + " ".join(shown_args(argv)),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": [{**state[str(d)], **pipe["rows"][str(d)]} for d in done],
        "cache_mib": pipe["cache_mib"],
        "pipeline_rounds": pipe["rounds"],
        "year_index": state.get("year_index"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "archive.json").write_text(json.dumps(out, indent=2))
    (args.out / "archive.md").write_text(markdown(out))
    print(markdown(out))
    return out


def markdown(r: dict[str, Any]) -> str:
    rows = r["rows"]
    first = rows[0]
    lines = [
        "# A year of radar: ingest, store, window index and pipeline as the archive grows",
        "",
        f"`{r['command'].strip()}` on {os.cpu_count()} cores, {r['when']} (see the script's "
        "docstring for what each figure covers).",
        "",
        "| archive | frames | ingest frames/s | ingest peak MiB | store GiB | open s "
        "| window index s | pipeline samples/s | chunk reads per sample |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['days']} days | {row['frames']:,} | {row['ingest_frames_per_s']:.0f} "
            f"({row['ingest_frames_per_s'] / first['ingest_frames_per_s']:.2f}×) "
            f"| {row['ingest_peak_mib']:.0f} | {row['store_gib']:.2f} | {row['open_s']:.3f} "
            f"| {row['index_s']:.3f} | {row['samples_per_s']:.0f} "
            f"({row['ratio_to_first']:.2f}×) "
            f"| {row['reads_per_window']:.2f} |"
        )
    lines += [
        "",
        f"Pipeline cache: {r['cache_mib']:.0f} MiB of decoded chunks for every archive. "
        "Ratios in brackets are against the first row: ingest's of the medians, the "
        "pipeline's the median of the per-round ratios (every archive's epoch is read once "
        f"per round, {r['pipeline_rounds']} rounds, on the final store).",
        "",
        "Per archive, each ingest run's frames/s and each pipeline run's samples/s (the table "
        "gives their medians), and the batches the pipeline read:",
        "",
    ]
    for row in rows:
        runs = row.get("ingest_frames_per_s_runs", [row["ingest_frames_per_s"]])
        lines.append(
            f"- {row['days']} days: ingest {', '.join(f'{x:.0f}' for x in runs)} frames/s; "
            f"pipeline {row['pipeline_batches']} batches of epoch 0, "
            + ", ".join(f"{x:.0f}" for x in row["samples_per_s_runs"])
            + " samples/s"
        )
    lines.append("")
    y = r.get("year_index")
    if y:
        lines += [
            f"Open + window index on a year's time axis ({y['frames']:,} frames, `--year-index`"
            f"): open {y['open_s']:.3f} s, window index {y['index_s']:.3f} s "
            f"({y['train_windows']:,} training windows).",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
