"""End to end as a user times it: whole `nowcast` commands against the reference libraries.

Run on demand: ``python benchmarks/bench_e2e.py``; results go to ``benchmarks/results/e2e.md``
and ``e2e.json`` (the bz2 archive is made once, in the temporary folder, and kept). Every
`nowcast` figure is the wall time of the whole command in a fresh process (interpreter
start-up, imports, numba's cache, the first frame: the user's wait).
Rounds interleave ours and the reference, so that load from other processes on a shared
machine hits both alike; the figures are medians over rounds, with each round's ratio listed
(their spread), and the CPU seconds of each side (all threads), which load from other processes
hardly moves. Thread counts are stated for both sides: ours runs with its defaults (its kernel
threads and ingest's workers = the cores) and, for comparison, with one thread; the references
are single-threaded (NumPy and pure Python loops).

Data: a RADOLAN RY archive of real composites, the five bzip2 frames of
``sample_data/dwd/ry_20251116_seq5_bz2`` (light rain on ~9% of the valid pixels), re-stamped 5
minutes apart from 2020-01-01 00:00 UTC and shifted by a row every cycle (moving rain),
written as DWD names them and recompressed with bzip2 -9 as DWD ships them.

1. verify: the archive's first 140 frames (900×900), ingested; persistence forecasts of every
   issue time of the day on the full grid (``nowcast predict --model persistence --native
   --start 2020-01-01 --end 2020-01-01``: the last issue times' leads run past the archive's
   end, as on a real one-day archive); then ``nowcast verify --thresholds 0.5,2,5,10,30
   --scores categorical --quiet`` against pysteps' ``det_cat_fct_init``/``det_cat_fct_accum``
   frame by frame and threshold by threshold on the same frames in memory. The reference
   gets every advantage: only its loop is timed (not its start-up, imports or reading), on
   the valid pixels extracted beforehand as uint8 (its threshold P(τ) − 0.5 on integer
   pixels is our P ≥ P(τ)). Its pooled tables give CSI, POD, FAR and BIAS per lead and
   threshold, checked equal to our ``scores.json`` (the observed pairs only). With
   ``--all-scores`` the default verify (all 13 scores, SSIM included) is timed too.
2. ingest: ``nowcast ingest dwd RAW --out NEW.zarr --quiet`` of 400 frames (decode, convert,
   120×120 copy, write) against one process that imports wradlib and decodes the same files
   with ``read_radolan_composite`` one after the other, writing nothing.
"""

from __future__ import annotations

import argparse
import bz2
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "sample_data" / "dwd" / "ry_20251116_seq5_bz2"
THRESHOLDS = "0.5,2,5,10,30"
START = 1_577_836_800  # 2020-01-01 00:00 UTC
NOWCAST = [sys.executable, "-m", "nowcast_cli"]

PYSTEPS = r"""
import contextlib, io, json, sys, time
import numpy as np
from nowcast_cli import encoding
from nowcast_cli.store import ForecastStore, Store
fs = ForecastStore.open(sys.argv[1])
obs = Store.open(fs.observation_path())
lm = fs.lead_minutes
sel = np.nonzero(lm > 0)[0]
of, ov = obs.read(0, len(obs))
observed = [of[u][ov[u]] for u in range(len(obs))]  # each frame's valid pixels, once
px = encoding.event_pixels([float(t) for t in sys.argv[2].split(",")], *obs.zr)
pairs = []  # (lead, forecast valid pixels, observed valid pixels): only the observed pairs
for s, t in enumerate(fs.issue_times):
    fc = fs.read(s, s + 1)[0]
    for j, m in enumerate(lm[sel]):
        u = np.searchsorted(obs.times, t + 60 * m)
        if u < len(obs) and obs.times[u] == t + 60 * m:
            pairs.append((j, fc[sel[j]][ov[u]], observed[u]))
with contextlib.redirect_stdout(io.StringIO()):
    from pysteps.verification import detcatscores as d
t0 = time.perf_counter()
c0 = time.process_time()
tabs = []
for p in px:
    per_lead = [d.det_cat_fct_init(float(p) - 0.5) for _ in sel]
    for j, f, o in pairs:
        d.det_cat_fct_accum(per_lead[j], f, o)
    tabs.append(per_lead)
seconds = time.perf_counter() - t0
cpu = time.process_time() - c0
counts = [[[tab[k] for k in ("hits", "misses", "false_alarms", "correct_negatives")]
           for tab in per_lead] for per_lead in tabs]  # (K, L, 4)
print(json.dumps({"seconds": seconds, "cpu": cpu, "pairs": len(pairs),
                  "counts": np.asarray(counts).tolist()}))
"""

WRADLIB = r"""
import sys, warnings
from pathlib import Path
import wradlib.io
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    for f in sorted(Path(sys.argv[1]).iterdir()):
        wradlib.io.read_radolan_composite(str(f))
"""


def make_archive(folder: Path, n: int) -> list[Path]:
    """`n` RY bz2 files, the sample frames cycled, re-stamped and moved a row per cycle."""
    seeds = [bz2.decompress(p.read_bytes()) for p in sorted(SEEDS.iterdir())]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        t = time.gmtime(START + 300 * i)
        raw = seeds[i % len(seeds)]
        head = raw.index(b"\x03") + 1
        payload = raw[head:]
        shift = (i // len(seeds)) % 900 * 1800  # whole rows of 900 two-byte words
        data = bytearray(raw[:head] + payload[-shift:] + payload[:-shift] if shift else raw)
        data[2:8] = time.strftime("%d%H%M", t).encode()
        data[13:17] = time.strftime("%m%y", t).encode()
        p = folder / f"raa01-ry_10000-{time.strftime('%y%m%d%H%M', t)}-dwd---bin.bz2"
        if not p.exists():
            p.write_bytes(bz2.compress(bytes(data), 9))
        paths.append(p)
    return paths


CPU: dict[str, list[float]] = {}  # CPU seconds (user + system) of the last command, by label


def run(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None, label: str = ""
) -> tuple[float, str]:
    """Wall seconds of a command in a fresh process, and its stdout (its CPU seconds, all
    threads, are kept under `label`: a figure that load from other processes hardly moves)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    dt = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    if label:
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        CPU.setdefault(label, []).append(cpu)
    return dt, out.stdout


def check_counts(scores: dict[str, Any], counts: list[Any]) -> int:
    """pysteps' pooled tables against scores.json: CSI, POD, FAR, BIAS per lead, threshold."""
    import numpy as np

    from nowcast_cli.metrics import categorical

    c = np.transpose(np.asarray(counts, dtype=np.int64), (1, 0, 2))  # (L, K, 4)
    theirs = categorical.scores(c)
    checked = 0
    for name in ("csi", "pod", "far", "bias"):
        ours = np.array(scores["per_lead"][name], dtype=float)
        want = np.asarray(theirs[name], dtype=float)
        ok = np.isfinite(want)
        assert np.array_equal(np.isfinite(ours), ok), name
        assert np.allclose(ours[ok], want[ok], rtol=1e-12, atol=0), name
        checked += int(ok.sum())
    return checked


def bench_verify(
    work: Path, archive: list[Path], rounds: int, all_scores: bool = False
) -> dict[str, Any]:
    day = work / "verify"
    raw = day / "raw"
    raw.mkdir(parents=True)
    for p in archive[:140]:
        os.link(p, raw / p.name)
    run([*NOWCAST, "ingest", "dwd", str(raw), "--quiet"], day)
    day_span = ["--start", "2020-01-01", "--end", "2020-01-01"]
    run([*NOWCAST, "predict", "--model", "persistence", "--native", *day_span, "--quiet"], day)
    (forecasts,) = day.glob("runs/*/forecasts.zarr")
    verify = [*NOWCAST, "verify", "--thresholds", THRESHOLDS, "--scores", "categorical", "-q"]
    run(verify, day)  # numba's cache and the OS file cache warm, as for a returning user
    ours, ours1, ref, ref_cpu = [], [], [], []
    for _ in range(rounds):
        ours.append(run(verify, day, label="verify")[0])
        ours1.append(run(verify, day, {"NUMBA_NUM_THREADS": "1"}, label="verify-1")[0])
        _, out = run([sys.executable, "-c", PYSTEPS, str(forecasts), THRESHOLDS], REPO)
        r = json.loads(out)
        ref.append(r["seconds"])
        ref_cpu.append(r["cpu"])
    scores = json.loads((forecasts.parent / "scores.json").read_text())
    checked = check_counts(scores, r["counts"])
    full = (
        run([*NOWCAST, "verify", "--thresholds", THRESHOLDS, "-q"], day)[0] if all_scores else None
    )
    return {
        "command": " ".join(["nowcast", *verify[3:]]),
        "frames": 140,
        "samples": scores["samples"],
        "forecast_frames": scores["forecast_frames"],
        "frames_scored": scores["frames_scored"],
        "unobserved": scores["unobserved"]["without_observation"],
        "pairs_pysteps": r["pairs"],
        "scores_checked_equal": checked,
        "ours_s": ours,
        "ours_1_thread_s": ours1,
        "pysteps_loop_s": ref,
        "ratio": [b / a for a, b in zip(ours, ref, strict=True)],
        "ratio_1_thread": [b / a for a, b in zip(ours1, ref, strict=True)],
        "ours_cpu_s": CPU["verify"],
        "ours_1_thread_cpu_s": CPU["verify-1"],
        "pysteps_loop_cpu_s": ref_cpu,
        "cpu_ratio": [b / a for a, b in zip(CPU["verify"], ref_cpu, strict=True)],
        "all_scores_s": full,
    }


def bench_ingest(work: Path, archive: list[Path], rounds: int) -> dict[str, Any]:
    raw = work / "ingest" / "raw"
    raw.mkdir(parents=True)
    for p in archive:
        os.link(p, raw / p.name)
    out = work / "ingest" / "s.zarr"

    def ours(*extra: str) -> float:
        shutil.rmtree(out, ignore_errors=True)
        label = "ingest-1" if extra else "ingest"
        cmd = [*NOWCAST, "ingest", "dwd", str(raw), "--out", str(out), "-q", *extra]
        dt, _ = run(cmd, REPO, label=label)
        from nowcast_cli.store import Store

        with Store.open(out) as s:
            assert len(s) == len(archive), len(s)
        return dt

    ours()  # numba's cache and the OS file cache warm
    a, a1, ref = [], [], []
    for _ in range(rounds):
        a.append(ours())
        a1.append(ours("--workers", "1"))
        ref.append(run([sys.executable, "-c", WRADLIB, str(raw)], REPO, label="wradlib")[0])
    shutil.rmtree(out, ignore_errors=True)
    return {
        "command": f"nowcast ingest dwd RAW --out NEW.zarr --quiet ({len(archive)} RY bz2 files)",
        "frames": len(archive),
        "ours_s": a,
        "ours_1_worker_s": a1,
        "wradlib_process_s": ref,
        "ratio": [b / x for x, b in zip(a, ref, strict=True)],
        "ratio_1_worker": [b / x for x, b in zip(a1, ref, strict=True)],
        "ours_cpu_s": CPU["ingest"][1:],  # the first was the warm-up
        "ours_1_worker_cpu_s": CPU["ingest-1"],
        "wradlib_cpu_s": CPU["wradlib"],
        "cpu_ratio": [b / x for x, b in zip(CPU["ingest"][1:], CPU["wradlib"], strict=True)],
    }


def spread(ratios: list[float]) -> str:
    return ", ".join(f"{r:.2f}×" for r in ratios)


def write(r: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "e2e.json").write_text(json.dumps(r, indent=2) + "\n")
    v, g = r["verify"], r["ingest"]
    med = statistics.median
    full = (
        [f"| default verify, all 13 scores incl. SSIM (information) | {v['all_scores_s']:.1f} "
         "| | | |"]
        if v["all_scores_s"] is not None
        else []
    )  # fmt: skip
    lines = [
        "# End-to-end benchmark (whole commands, as a user times them)",
        "",
        f"`{r['command'].strip()}` on {r['cpus']} cores (load average "
        f"{r['load_before']} before, {r['load_after']} after), {r['date']}; "
        f"{r['rounds']} interleaved rounds. Wall seconds are what a user waits; CPU seconds "
        "(user + system, all threads) are what the work costs; under load from other "
        "processes both grow (the cores share their caches), so compare ratios within one run.",
        "",
        f"Threads: ours with its defaults — {r['kernel_threads']} kernel threads (verify), "
        f"{r['cpus']} ingest workers — and with one; pysteps and wradlib run single-threaded "
        "(NumPy, Python loops).",
        "",
        "## verify vs pysteps `det_cat_fct`, frame by frame",
        "",
        f"{v['frames']} RY frames 900×900, persistence forecasts of {v['samples']} issue times "
        f"× 10 leads on the full grid: {v['forecast_frames']} forecast frames, of which "
        f"{v['unobserved']} have no observation (the archive ends) and "
        f"{v['frames_scored']} are scored; 5 thresholds. pysteps: its loop alone, on the "
        f"{v['pairs_pysteps']} observed pairs in memory (valid pixels, uint8), its start-up "
        f"and reading left out. {v['scores_checked_equal']} scores (CSI, POD, FAR, BIAS per "
        "lead and threshold) checked equal to pysteps' pooled tables.",
        "",
        "| | wall s (median) | speed-up (median) | per round | CPU s (median) |",
        "|---|---:|---:|---|---:|",
        f"| pysteps loop, in memory (1 thread) | {med(v['pysteps_loop_s']):.2f} | | "
        f"{spread_s(v['pysteps_loop_s'])} | {med(v['pysteps_loop_cpu_s']):.2f} |",
        f"| `{v['command']}` ({r['kernel_threads']} threads) | {med(v['ours_s']):.2f} | "
        f"**{med(v['ratio']):.1f}×** | {spread(v['ratio'])} | {med(v['ours_cpu_s']):.2f} |",
        f"| the same, `NUMBA_NUM_THREADS=1` | {med(v['ours_1_thread_s']):.2f} | "
        f"{med(v['ratio_1_thread']):.1f}× | {spread(v['ratio_1_thread'])} | "
        f"{med(v['ours_1_thread_cpu_s']):.2f} |",
        *full,
        "",
        f"CPU-time ratio, pysteps loop / whole verify command: **{med(v['cpu_ratio']):.1f}×** "
        f"({spread(v['cpu_ratio'])}).",
        "",
        "## ingest vs wradlib's `read_radolan_composite` decoding alone",
        "",
        f"{g['frames']} RY bz2 files; wradlib: one process importing wradlib and decoding every "
        "file, writing nothing; ours: the whole ingest (decode, convert, 120×120 copy, write).",
        "",
        "| | wall s (median) | speed-up (median) | per round | CPU s (median) |",
        "|---|---:|---:|---|---:|",
        f"| wradlib process (1 thread) | {med(g['wradlib_process_s']):.2f} | | "
        f"{spread_s(g['wradlib_process_s'])} | {med(g['wradlib_cpu_s']):.2f} |",
        f"| `{g['command']}` ({r['cpus']} workers) | {med(g['ours_s']):.2f} | "
        f"**{med(g['ratio']):.2f}×** | {spread(g['ratio'])} | {med(g['ours_cpu_s']):.2f} |",
        f"| the same, `--workers 1` | {med(g['ours_1_worker_s']):.2f} | "
        f"{med(g['ratio_1_worker']):.2f}× | {spread(g['ratio_1_worker'])} | "
        f"{med(g['ours_1_worker_cpu_s']):.2f} |",
        "",
        f"CPU-time ratio, wradlib / whole ingest: **{med(g['cpu_ratio']):.2f}×** "
        f"({spread(g['cpu_ratio'])}).",
        "",
    ]
    (out / "e2e.md").write_text("\n".join(lines))
    print("\n".join(lines))


def spread_s(values: list[float]) -> str:
    return ", ".join(f"{x:.2f} s" for x in values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--frames", type=int, default=400, help="files of the ingest benchmark")
    ap.add_argument("--only", choices=["verify", "ingest"], default=None)
    ap.add_argument(
        "--archive",
        type=Path,
        default=Path(tempfile.gettempdir()) / "nowcast-bench-ry-archive",
        help="where the bz2 archive is made once and kept (it takes minutes)",
    )
    ap.add_argument("--all-scores", action="store_true", help="also time the default verify")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from nowcast_cli.metrics._kernels import threads

    work = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    result: dict[str, Any] = {
        "command": "python benchmarks/bench_e2e.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "kernel_threads": threads(),
        "rounds": args.rounds,
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        archive = make_archive(args.archive, max(args.frames, 140))
        if args.only in (None, "verify"):
            result["verify"] = bench_verify(work, archive, args.rounds, args.all_scores)
        if args.only in (None, "ingest"):
            result["ingest"] = bench_ingest(work, archive[: args.frames], args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.only is None:
        write(result, args.out)
    else:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
