"""netCDF ingest benchmark: speed and memory of the ``netcdf`` source, as ratios in one run.

Run on demand (``python benchmarks/bench_netcdf.py [--against REV]``); results go to
``benchmarks/results/netcdf.md``. Absolute times on a shared machine are noise, so each figure
is a ratio of timings taken alternately in the same run (median of the repeats):

1. ingest of the bundled 11-day RADKLIM file (3168 frames of 190×228, int16, 634-frame chunks):
   ``ingest("netcdf", [file], units="mm")`` — scan, decode, convert to pixels, write the Zarr
   store and its 120×120 copy — timed in a fresh process after a small warm-up ingest (imports
   done), against ``xarray.open_dataset(file).load()`` of the same file and, with
   ``--against REV``, against the same ingest by the package as it was at git revision REV;
2. reading a file stored one frame per chunk (the netCDF default for an unlimited time
   dimension; 480 frames of 300×300 float32) with the reader, ms per frame, against the same
   frames stored in 48-frame chunks (and against REV);
3. peak memory of ``nowcast ingest netcdf`` on 160 one-frame files of 300×300 with 1-D
   latitude/longitude coordinates, against the same files on a projected grid with a grid
   mapping (and both against REV): the reader keeps one file's latitude/longitude, so the two
   should be within 10%;
4. peak memory vs frames in one file (the bundled file cut to 1, 3 and 5 time chunks): the
   reader holds at most two blocks, so memory stops growing with the frames in a file.

Peak memory is the CLI process's own high-water mark of resident memory (``VmHWM`` in
``/proc/self/status``, read at exit: Linux only).
"""

from __future__ import annotations

import argparse
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
FILE = (
    REPO
    / "sample_data"
    / "netcdf"
    / "radklim_yw_20180510_seq3168"
    / "example_areal_reference_data.nc"
)
PER_FRAME_FILES = 160
SIDE = 300
CHUNK_FRAMES = 480

# Run in a fresh interpreter whose PYTHONPATH picks the package version (current or REV).
INGEST_SNIPPET = """
import json, sys, time
from pathlib import Path
from nowcast_cli.ingest import ingest
src, warm, out = map(Path, sys.argv[1:4])
ingest("netcdf", [warm], out / "warm.zarr", reader_options={"units": "mm"})
t = time.perf_counter()
report = ingest("netcdf", [src], out / "run.zarr", reader_options={"units": "mm"})
print(json.dumps({"seconds": time.perf_counter() - t, "written": report.written}))
"""
READ_SNIPPET = """
import json, sys, time
from pathlib import Path
from nowcast_cli.io import create_reader
from nowcast_cli.io.base import Scanned
path = Path(sys.argv[1])
reader = create_reader("netcdf")
items = [s.item for s in reader.scan(path, path.parent) if isinstance(s, Scanned)]
t = time.perf_counter()
for item in items:
    reader.read_pixels(item, (200.0, 1.6))
print(json.dumps({"ms_per_frame": 1000 * (time.perf_counter() - t) / len(items)}))
"""
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
XARRAY_SNIPPET = """
import json, sys, time
import xarray as xr
t = time.perf_counter()
with xr.open_dataset(sys.argv[1], engine="h5netcdf") as ds:
    ds.load()
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def export(rev: str, into: Path) -> Path:
    """The package as it was at git revision `rev`, extracted under `into`."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "nowcast_cli"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def env_for(root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(root)}


def snippet(code: str, root: Path, *args: Path) -> dict[str, Any]:
    """Run `code` with the package found under `root` (the working directory comes first on
    ``sys.path``, before the editable install)."""
    out = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        env=env_for(root),
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def run_cli(root: Path, src: Path, out: Path, *options: str) -> tuple[float, int]:
    """Wall time and peak RSS (bytes) of ``nowcast ingest netcdf`` with the package under
    `root`: the CLI process reports its own VmHWM at exit (ingest runs in threads, so that is
    all of it; the kernel's ``ru_maxrss`` of a child would include this big parent's)."""
    with tempfile.NamedTemporaryFile("r", suffix=".peak") as peak_file:
        cmd = [sys.executable, "-c", CLI_SNIPPET, "ingest", "netcdf", str(src), *options]
        cmd += ["--out", str(out), "--quiet"]
        t = time.perf_counter()
        env = {**env_for(root), "NOWCAST_BENCH_PEAK": peak_file.name}
        subprocess.run(cmd, env=env, cwd=root, check=True)
        seconds = time.perf_counter() - t
        peak_kb = int(Path(peak_file.name).read_text())
    shutil.rmtree(out, ignore_errors=True)
    return seconds, peak_kb * 1024


def cut(path: Path, frames: int) -> Path:
    """The first `frames` frames of the bundled file, raw values, chunked like the original."""
    import xarray as xr

    with xr.open_dataset(FILE, engine="h5netcdf", decode_cf=False) as ds:
        sub = ds.isel(time=slice(0, frames)).load()
        chunks = ds.rainfall_amount.encoding["chunksizes"]
    chunks = (min(chunks[0], frames), *chunks[1:])
    enc = {"rainfall_amount": {"chunksizes": chunks, "zlib": True, "complevel": 9, "shuffle": True}}
    sub.to_netcdf(path, engine="h5netcdf", encoding=enc)
    return path


def rain(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Rain-like mm per 5 minutes: mostly dry, gamma-distributed where wet."""
    wet = rng.random(shape) < 0.3
    return np.where(wet, rng.gamma(0.8, 1.0, shape), 0.0).astype(np.float32)


def chunked_file(path: Path, chunk_t: int) -> Path:
    """CHUNK_FRAMES frames of SIDE² on a projected grid, stored `chunk_t` frames per chunk."""
    import xarray as xr

    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {
            "rr": (
                ("time", "y", "x"),
                rain(rng, CHUNK_FRAMES, SIDE, SIDE),
                {"standard_name": "rainfall_amount", "units": "mm"},
            )
        },
        coords={
            "time": ("time", 5.0 * np.arange(CHUNK_FRAMES), {"units": "minutes since 2020-01-01"}),
            "y": ("y", 1000.0 * (SIDE - np.arange(SIDE)), {"axis": "Y", "units": "m"}),
            "x": ("x", 1000.0 * np.arange(SIDE), {"axis": "X", "units": "m"}),
        },
    )
    enc = {"rr": {"chunksizes": (chunk_t, SIDE, SIDE), "zlib": True, "_FillValue": np.nan}}
    ds.to_netcdf(path, engine="h5netcdf", encoding=enc)
    return path


def per_frame_files(folder: Path, latlon: bool) -> Path:
    """PER_FRAME_FILES one-frame files of SIDE², on a 1-D latitude/longitude grid or on a
    polar stereographic grid with a grid mapping (same values)."""
    import xarray as xr

    folder.mkdir()
    rng = np.random.default_rng(1)
    if latlon:
        coords: dict[str, Any] = {
            "lat": ("lat", 55.0 - 0.01 * np.arange(SIDE), {"units": "degrees_north"}),
            "lon": ("lon", 5.0 + 0.015 * np.arange(SIDE), {"units": "degrees_east"}),
        }
        dims, extra = ("time", "lat", "lon"), {}
    else:
        coords = {
            "y": ("y", 1000.0 * (SIDE - np.arange(SIDE)), {"axis": "Y", "units": "m"}),
            "x": ("x", 1000.0 * np.arange(SIDE), {"axis": "X", "units": "m"}),
        }
        dims = ("time", "y", "x")
        gm = {
            "grid_mapping_name": "polar_stereographic",
            "straight_vertical_longitude_from_pole": 10.0,
            "latitude_of_projection_origin": 90.0,
            "standard_parallel": 60.0,
            "earth_radius": 6370040.0,
        }
        extra = {"crs": ((), np.int32(0), gm)}
    for k in range(PER_FRAME_FILES):
        attrs = {"standard_name": "rainfall_amount", "units": "mm"}
        if not latlon:
            attrs["grid_mapping"] = "crs"
        ds = xr.Dataset(
            {"rr": (dims, rain(rng, 1, SIDE, SIDE), attrs), **extra},
            coords={
                **coords,
                "time": ("time", [5.0 * k], {"units": "minutes since 2020-01-01"}),
            },
        )
        enc = {"rr": {"zlib": True, "_FillValue": np.nan}}
        ds.to_netcdf(folder / f"rr_{k:04d}.nc", engine="h5netcdf", encoding=enc)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=3, help="alternating repeats of each timing")
    ap.add_argument("--against", metavar="REV", help="git revision to compare with (e.g. main)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "netcdf.md")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        versions = {"current": REPO}
        if args.against:
            versions[args.against] = export(args.against, work / "old")
        names = list(versions)
        small = cut(work / "small.nc", 64)

        # 1. ingest of the bundled file vs xarray load (vs REV)
        ingest_s: dict[str, list[float]] = {n: [] for n in names}
        load_s: list[float] = []
        written = 0
        for r in range(args.repeats):
            for n in names:
                out = work / f"ingest-{r}-{n}"
                res = snippet(INGEST_SNIPPET, versions[n], FILE, small, out)
                ingest_s[n].append(res["seconds"])
                written = res["written"]
                shutil.rmtree(out, ignore_errors=True)
            load_s.append(snippet(XARRAY_SNIPPET, REPO, FILE)["seconds"])
            runs = ", ".join(f"{n} {ingest_s[n][-1]:.2f} s" for n in names)
            print(f"ingest: {runs}; xarray load {load_s[-1]:.2f} s", flush=True)

        # 2. one frame per chunk vs 48-frame chunks
        one = chunked_file(work / "chunk1.nc", 1)
        many = chunked_file(work / "chunk48.nc", 48)
        read_ms: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.repeats):
            for n in names:
                for chunk_t, path in ((1, one), (48, many)):
                    ms = snippet(READ_SNIPPET, versions[n], path)["ms_per_frame"]
                    read_ms.setdefault((n, chunk_t), []).append(ms)
            print("read ms/frame:", {k: round(v[-1], 2) for k, v in read_ms.items()}, flush=True)

        # 3. 160 one-frame lat/lon files vs projected
        grids = {
            "latitude/longitude (1-D lat, lon)": per_frame_files(work / "latlon", True),
            "projected x/y + grid mapping": per_frame_files(work / "proj", False),
        }
        peaks: dict[tuple[str, str], list[int]] = {}
        for _ in range(args.repeats):
            for n in names:
                for g, folder in grids.items():
                    _, peak = run_cli(versions[n], folder, work / "pf.zarr", "--interval", "5")
                    peaks.setdefault((n, g), []).append(peak)
            print("per-frame peak MB:", {k: v[-1] >> 20 for k, v in peaks.items()}, flush=True)

        # 4. memory vs frames in one file (current version)
        t_cli, peak_full = run_cli(REPO, FILE, work / "cli.zarr", "--units", "mm")
        by_frames = []
        for k in (634, 1902):
            part = cut(work / f"part{k}.nc", k)
            by_frames.append((k, run_cli(REPO, part, work / f"part{k}.zarr", "--units", "mm")[1]))
        by_frames.append((written, peak_full))

    med = statistics.median
    against = f" --against {args.against}" if args.against else ""
    lines = [
        "# netCDF ingest benchmark",
        "",
        f"`python benchmarks/bench_netcdf.py --repeats {args.repeats}{against}` on "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
        "Every timing runs in a fresh process; the versions alternate in each repeat; "
        "medians.",
        "",
        "## 1. Ingest of the bundled 11-day file",
        "",
        "File: `sample_data/netcdf/radklim_yw_20180510_seq3168/example_areal_reference_data.nc` "
        f"(10.2 MB, {written} frames of 190×228, int16 × 0.01, gzip chunks of 634 frames). "
        "Ingest: `ingest('netcdf', [file], units='mm')` after a warm-up ingest (imports done) — "
        "scan, decode, convert to pixels, write the Zarr store and its 120×120 copy. xarray: "
        "`xarray.open_dataset(file, engine='h5netcdf').load()` alone (float64, nothing written).",
        "",
        "| version | ingest s | ratio to xarray load | ratio to current | all runs s |",
        "|---|---:|---:|---:|---|",
    ]
    for n in names:
        lines.append(
            f"| {n} | {med(ingest_s[n]):.2f} | {med(ingest_s[n]) / med(load_s):.2f}× | "
            f"{med(ingest_s[n]) / med(ingest_s['current']):.2f}× | "
            f"{', '.join(f'{x:.2f}' for x in ingest_s[n])} |"
        )
    lines += [
        f"| xarray load | {med(load_s):.2f} | 1.00× | | {', '.join(f'{x:.2f}' for x in load_s)} |",
        "",
        f"CLI `nowcast ingest netcdf FILE --units mm` wall time (current), start-up and imports "
        f"included: {t_cli:.2f} s.",
        "",
        "## 2. Reading a file stored one frame per chunk",
        "",
        f"{CHUNK_FRAMES} frames of {SIDE}×{SIDE} float32 (gzip), read with the reader "
        "(`scan`, then `read_pixels` of every frame in order, one thread).",
        "",
        "| version | 1-frame chunks ms/frame | 48-frame chunks ms/frame | ratio 1 / 48 |",
        "|---|---:|---:|---:|",
    ]
    for n in names:
        a, b = med(read_ms[(n, 1)]), med(read_ms[(n, 48)])
        lines.append(f"| {n} | {a:.2f} | {b:.2f} | {a / b:.2f}× |")
    lines += [
        "",
        f"## 3. Peak memory: {PER_FRAME_FILES} one-frame files of {SIDE}×{SIDE}",
        "",
        f"`nowcast ingest netcdf FOLDER --interval 5` on {PER_FRAME_FILES} files (float32, "
        "gzip), the same values on a latitude/longitude grid and on a projected grid; peak RSS "
        "of the CLI process (ingest runs in threads).",
        "",
        "| version | grid | peak RSS MB | runs MB | ratio to projected |",
        "|---|---|---:|---|---:|",
    ]
    for n in names:
        proj = med(peaks[(n, "projected x/y + grid mapping")])
        for g in grids:
            p = peaks[(n, g)]
            lines.append(
                f"| {n} | {g} | {med(p) / 2**20:.0f} | "
                f"{', '.join(str(x >> 20) for x in p)} | {med(p) / proj:.3f} |"
            )
    lines += [
        "",
        "## 4. Peak memory vs frames in one file (current)",
        "",
        "| frames in file | time chunks | peak RSS MB |",
        "|---:|---:|---:|",
        *[f"| {k} | {round(k / 634)} | {peak / 2**20:.0f} |" for k, peak in by_frames],
        "",
        f"Peak ratio {written}/1902 frames: {by_frames[2][1] / by_frames[1][1]:.2f}; "
        f"{written}/634 frames: {by_frames[2][1] / by_frames[0][1]:.2f} (one chunk: one block "
        "held).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
