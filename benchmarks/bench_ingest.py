"""Ingest benchmarks: decode speed vs wradlib, whole-ingest throughput, memory vs frame count.

Run on demand (``make bench`` or ``python benchmarks/bench_ingest.py``); results are written to
``benchmarks/results/ingest.md``. Absolute times on a shared machine are noise: each figure is a
ratio against the reference measured in the same run.

1. decode: one RADOLAN file → pixels + valid mask with nowcast, vs wradlib's
   ``read_radolan_composite`` (decode only, no conversion), same file, median of repeats.
2. ingest: ``nowcast ingest`` of N 900×900 RY frames (decode, convert, write, 120×120 copy)
   vs wradlib decoding the same files alone, sequentially.
3. memory: peak RSS (process tree) of ``nowcast ingest`` for N and 10·N frames.

The N frames are real RY composites (sample_data) re-stamped to consecutive 5-minute times.
Threads: ours decodes on ``--workers`` threads (default: the cores), wradlib on one. Whole
commands against wradlib as a user times them (start-up included, bzip2 files): `bench_e2e.py`.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data" / "dwd"


def make_frames(folder: Path, n: int, start: int = 1_577_836_800) -> list[Path]:
    """Write n gzip RY files re-stamped from the sample sequence, 5 minutes apart."""
    seeds = [
        gzip.decompress(p.read_bytes()) for p in sorted((SAMPLE / "ry_20200101_seq13").iterdir())
    ]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        t = time.gmtime(start + 300 * i)
        data = bytearray(seeds[i % len(seeds)])
        data[2:8] = time.strftime("%d%H%M", t).encode()
        data[13:17] = time.strftime("%m%y", t).encode()
        p = folder / f"raa01-ry_10000-{time.strftime('%y%m%d%H%M', t)}-dwd---bin.gz"
        p.write_bytes(gzip.compress(bytes(data), compresslevel=6))
        paths.append(p)
    return paths


def bench_decode(repeats: int) -> list[dict[str, object]]:
    import wradlib.io

    from nowcast_cli.io import create_reader
    from nowcast_cli.io.base import Item

    reader = create_reader("dwd")

    ry = sorted((SAMPLE / "ry_20200101_seq13").iterdir())[0]
    plain = Path(tempfile.mkdtemp()) / "raa01-ry_10000-2001011500-dwd---bin"
    plain.write_bytes(gzip.decompress(ry.read_bytes()))
    files = {
        "RY plain 900x900": plain,
        "RY gzip 900x900": ry,
        "RY bzip2 900x900": sorted((SAMPLE / "ry_20251116_seq5_bz2").iterdir())[0],
        "RX gzip (1-byte)": SAMPLE / "misc" / "raa01-rx_10000-1408102050-dwd---bin.gz",
    }
    rows = []
    for label, path in files.items():

        def ours(path: Path = path) -> None:  # read, decompress, decode, convert to pixels
            reader.read_pixels(Item(path, path.name), (256.0, 1.42))

        def ref(path: Path = path) -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                wradlib.io.read_radolan_composite(str(path))

        t_ours, t_ref = _alternate(ours, ref, repeats)
        rows.append(
            {
                "file": label,
                "nowcast_ms": 1e3 * t_ours,
                "wradlib_ms": 1e3 * t_ref,
                "speedup": t_ref / t_ours,
            }
        )
    return rows


def _alternate(a, b, repeats: int) -> tuple[float, float]:
    """Median times of a and b, run alternately so load changes hit both."""
    a(), b()  # warm caches
    ta, tb = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        a()
        ta.append(time.perf_counter() - t)
        t = time.perf_counter()
        b()
        tb.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


def run_ingest(raw: Path, out: Path) -> tuple[float, int]:
    """Wall time and peak RSS (bytes, whole process tree) of `nowcast ingest`."""
    import psutil

    cmd = [
        sys.executable,
        "-m",
        "nowcast_cli",
        "ingest",
        "dwd",
        str(raw),
        "--out",
        str(out),
        "--quiet",
    ]
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


def bench_ingest(n: int, work: Path) -> dict[str, object]:
    import wradlib.io

    raw = work / f"raw{n}"
    files = make_frames(raw, n)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in files:
            wradlib.io.read_radolan_composite(str(f))
    t_ref = time.perf_counter() - t
    from nowcast_cli.ingest import ingest

    warm = work / "warm"
    make_frames(warm, 3)
    ingest("dwd", [warm], work / "warm.zarr")  # imports and numba caches, like wradlib's import
    t = time.perf_counter()
    ingest("dwd", [raw], work / f"lib{n}.zarr")
    t_lib = time.perf_counter() - t
    t_cli, _ = run_ingest(raw, work / f"store{n}.zarr")
    return {
        "frames": n,
        "nowcast_ingest_s": t_lib,
        "cli_s": t_cli,
        "wradlib_decode_s": t_ref,
        "speedup": t_ref / t_lib,
    }


def bench_memory(n: int, work: Path) -> list[dict[str, object]]:
    rows = []
    for k in (n, 10 * n):
        raw = work / f"mem{k}"
        make_frames(raw, k)
        seconds, peak = run_ingest(raw, work / f"mem{k}.zarr")
        rows.append({"frames": k, "seconds": seconds, "peak_rss_mb": peak / 2**20})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=15, help="decode repeats per file")
    ap.add_argument("--frames", type=int, default=300, help="frames for the ingest benchmark")
    ap.add_argument("--mem-frames", type=int, default=100, help="N for the N vs 10N memory test")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ingest.md")
    args = ap.parse_args()
    import os

    lines = [
        "# Ingest benchmark",
        "",
        f"`python benchmarks/bench_ingest.py --repeats {args.repeats} --frames {args.frames} "
        f"--mem-frames {args.mem_frames}` on {os.cpu_count()} cores (ours: "
        f"{os.cpu_count()} worker threads in the whole-ingest runs, one in the decode rows; "
        "wradlib: one), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "## Decode one frame from its file (median of repeats)",
        "",
        "nowcast: `DwdReader.read_pixels` (read, decompress, decode, convert to store pixels and "
        "valid mask); wradlib: `read_radolan_composite` (read, decompress, decode to floats).",
        "",
        "| file | nowcast ms | wradlib ms | speed-up |",
        "|---|---:|---:|---:|",
    ]
    for r in bench_decode(args.repeats):
        lines.append(
            f"| {r['file']} | {r['nowcast_ms']:.1f} | {r['wradlib_ms']:.1f} | {r['speedup']:.1f}× |"
        )
        print(lines[-1], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        r = bench_ingest(args.frames, work)
        lines += [
            "",
            "## Whole ingest vs wradlib decoding alone",
            "",
            "nowcast: `nowcast_cli.ingest.ingest` in-process after its imports (as wradlib's "
            "loop runs after `import wradlib`); CLI: `python -m nowcast_cli ingest`, wall time "
            "including interpreter start-up and imports.",
            "",
            "| frames | nowcast ingest s | CLI wall s | wradlib decode s | speed-up (in-process) |",
            "|---:|---:|---:|---:|---:|",
            f"| {r['frames']} | {r['nowcast_ingest_s']:.2f} | {r['cli_s']:.2f} "
            f"| {r['wradlib_decode_s']:.2f} | {r['speedup']:.2f}× |",
        ]
        print(lines[-1], flush=True)
        mem = bench_memory(args.mem_frames, work)
        lines += [
            "",
            "## Peak memory (RSS of the process tree) vs frames ingested",
            "",
            "| frames | seconds | peak RSS MB |",
            "|---:|---:|---:|",
            *[f"| {m['frames']} | {m['seconds']:.1f} | {m['peak_rss_mb']:.0f} |" for m in mem],
            "",
            f"Peak ratio {mem[1]['frames']}/{mem[0]['frames']} frames: "
            f"{mem[1]['peak_rss_mb'] / mem[0]['peak_rss_mb']:.2f}",
        ]
        print("\n".join(lines[-6:]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
