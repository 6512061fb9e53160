"""netCDF ingest benchmark: the bundled 11-day RADKLIM file end to end vs xarray loading it.

Run on demand (``python benchmarks/bench_netcdf.py``); results go to
``benchmarks/results/netcdf.md``. Absolute times on a shared machine are noise, so the figure is
the ratio of two timings taken alternately in the same run (median of the repeats):

1. ingest: ``nowcast_cli.ingest.ingest("netcdf", [file], units="mm")`` — scan, decode 3168
   frames, convert to store pixels, write the Zarr store and its 120×120 training copy — in a
   process that has already imported everything (a small warm-up ingest);
2. reference: ``xarray.open_dataset(file, engine="h5netcdf").load()`` of the same file alone
   (decode to float64 with scale factor and fill values applied; nothing written).

Also: the CLI's wall time (interpreter start-up and imports included), and the peak RSS of the
CLI ingesting copies of the file holding its first 1, 3 and 5 time chunks (634, 1902 and 3168
frames, same chunking): the reader keeps at most two decoded blocks of one chunk each, so memory
stops growing once a file has more than two chunks, whatever its number of frames.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILE = (
    REPO
    / "sample_data"
    / "netcdf"
    / "radklim_yw_20180510_seq3168"
    / "example_areal_reference_data.nc"
)


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


def run_cli(src: Path, out: Path) -> tuple[float, int]:
    """Wall time and peak RSS (bytes, process tree) of ``nowcast ingest netcdf``."""
    import psutil

    cmd = [sys.executable, "-m", "nowcast_cli", "ingest", "netcdf", str(src), "--units", "mm"]
    cmd += ["--out", str(out), "--quiet"]
    t = time.perf_counter()
    proc = psutil.Popen(cmd)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    if proc.returncode:
        raise SystemExit(f"ingest failed with exit code {proc.returncode}")
    return time.perf_counter() - t, peak


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=3, help="alternating repeats of each timing")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "netcdf.md")
    args = ap.parse_args()

    import xarray as xr

    from nowcast_cli.ingest import ingest

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        small = cut(work / "small.nc", 64)
        ingest("netcdf", [small], work / "warm.zarr", reader_options={"units": "mm"})  # imports

        def ours() -> tuple[float, int]:
            out = work / "run.zarr"
            shutil.rmtree(out, ignore_errors=True)
            t = time.perf_counter()
            report = ingest("netcdf", [FILE], out, reader_options={"units": "mm"})
            return time.perf_counter() - t, report.written

        def ref() -> float:
            t = time.perf_counter()
            with xr.open_dataset(FILE, engine="h5netcdf") as ds:
                ds.load()
            return time.perf_counter() - t

        t_ours, t_ref = [], []
        written = 0
        for _ in range(args.repeats):
            seconds, written = ours()
            t_ours.append(seconds)
            t_ref.append(ref())
            print(f"ingest {t_ours[-1]:.2f} s, xarray load {t_ref[-1]:.2f} s", flush=True)
        med_ours, med_ref = statistics.median(t_ours), statistics.median(t_ref)

        t_cli, peak_full = run_cli(FILE, work / "cli.zarr")
        peaks = []
        for k in (634, 1902):
            part = cut(work / f"part{k}.nc", k)
            peaks.append((k, run_cli(part, work / f"part{k}.zarr")[1]))
        peaks.append((written, peak_full))

    lines = [
        "# netCDF ingest benchmark",
        "",
        f"`python benchmarks/bench_netcdf.py --repeats {args.repeats}` on {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "File: `sample_data/netcdf/radklim_yw_20180510_seq3168/example_areal_reference_data.nc` "
        f"(10.2 MB, {written} frames of 190×228, int16 × 0.01, gzip chunks of 634 frames).",
        "",
        "## End-to-end ingest vs xarray loading the file (median of alternating repeats)",
        "",
        "nowcast: `ingest('netcdf', [file], units='mm')` in-process after its imports — scan, "
        "decode, convert to pixels, write the Zarr store and its 120×120 copy. xarray: "
        "`xarray.open_dataset(file, engine='h5netcdf').load()` alone (float64, nothing written).",
        "",
        "| nowcast ingest s | xarray load s | ratio (ingest / load) | all runs (ingest; load) |",
        "|---:|---:|---:|---|",
        f"| {med_ours:.2f} | {med_ref:.2f} | {med_ours / med_ref:.2f}× | "
        f"{', '.join(f'{x:.2f}' for x in t_ours)}; {', '.join(f'{x:.2f}' for x in t_ref)} |",
        "",
        f"CLI `nowcast ingest netcdf FILE --units mm` wall time, start-up and imports included: "
        f"{t_cli:.2f} s.",
        "",
        "## Peak memory (RSS of the CLI's process tree) vs frames in the file",
        "",
        "| frames in file | time chunks | peak RSS MB |",
        "|---:|---:|---:|",
        *[f"| {k} | {round(k / 634)} | {peak / 2**20:.0f} |" for k, peak in peaks],
        "",
        f"Peak ratio {written}/1902 frames: {peaks[2][1] / peaks[1][1]:.2f}; "
        f"{written}/634 frames: {peaks[2][1] / peaks[0][1]:.2f} (one chunk: one block held).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
