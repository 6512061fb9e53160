"""Verification benchmarks: end to end vs pysteps, kernel vs a memory pass, memory vs samples.

Run on demand: ``python benchmarks/bench_verify.py``; results go to
``benchmarks/results/verify.md`` and ``verify.json``. Absolute times on a shared machine are
noise: every figure is a ratio against a reference measured in the same run (each timing the
best of its repeats, references and ours interleaved). Everything here runs in one process,
after imports; `bench_e2e.py` times whole commands as a user does. Threads: ours uses
``_kernels.threads()`` kernel threads (the cores, or ``NUMBA_NUM_THREADS``), pysteps one.

Data: realistic rain on a 480×480 grid — the real KNMI RAD_NL25 composites of
``sample_data/knmi`` (rain over the Netherlands, 2010-08-26), a 480×480 window over the radar
domain (no-data pixels included), cycled and shifted by a pixel every cycle to make
S + L consecutive 5-minute frames; the forecasts are the persistence forecasts of those
frames, each lead shifted by a further pixel (a moving-forecast error), uint8 in a forecast
store of S samples × L leads.

1. in process (from the Zarr stores to the scores, after imports; `bench_e2e.py` times the
   whole command): ``verify.evaluate`` of the forecast store (categorical scores at 5 thresholds,
   from opening the Zarr stores to the scores) vs pysteps' ``det_cat_fct_accum`` called frame
   by frame and threshold by threshold on arrays already in memory (uint8 pixels, threshold
   P(τ) − 0.5 for our P ≥ P(τ), and only the valid pixels, extracted beforehand, outside
   the timing); the counts are checked equal. Also the full default verify (all 13 scores,
   SSIM included) for information.
2. kernel: the contingency kernel on the in-memory arrays vs one parallel numba pass summing
   the same bytes (forecast, observation, valid) — the memory-bound floor.
3. memory: peak RSS (VmHWM) of a fresh process verifying S/10, S and 10·S samples.
4. extrapolation baseline (pysteps Lucas–Kanade + semi-Lagrangian) throughput on 120×120.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
THRESHOLDS = (0.5, 2.0, 5.0, 10.0, 30.0)
EDGE = 480
WINDOW = (slice(150, 150 + EDGE), slice(110, 110 + EDGE))  # over the KNMI radar domain


def knmi_frames(workdir: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    from nowcast_cli.ingest import ingest
    from nowcast_cli.store import Store

    out = workdir / "knmi.zarr"
    ingest("knmi", [REPO / "sample_data" / "knmi"], out, workers=2)
    s = Store.open(out)
    f, v = s.read(0, len(s))
    return f[:, WINDOW[0], WINDOW[1]].copy(), v[:, WINDOW[0], WINDOW[1]].copy(), s.zr


def build(workdir: Path, samples: int, leads: int, name: str, seeds: tuple) -> Path:
    """Observation store of samples + leads frames and the persistence forecast store."""
    from nowcast_cli.grid import Grid
    from nowcast_cli.store import ForecastStore, Store

    frames, valid, zr = seeds
    n_obs = samples + leads
    k = len(frames)
    obs_f = np.empty((n_obs, EDGE, EDGE), np.uint8)
    obs_v = np.empty((n_obs, EDGE, EDGE), bool)
    for t in range(n_obs):
        shift = (t // k, (t // k) // 2)
        obs_f[t] = np.roll(frames[t % k], shift, (0, 1))
        obs_v[t] = np.roll(valid[t % k], shift, (0, 1))
    obs_f[~obs_v] = 0
    t0 = 1_282_780_800
    attrs = {
        "source": "knmi",
        "product": "bench",
        "interval_seconds": 300,
        "zr": {"a": zr[0], "b": zr[1]},
    }
    opath = workdir / f"{name}-obs.zarr"
    with Store.create(opath, attrs=attrs, grid=Grid("bench 480", EDGE, EDGE), sizes=()) as st:
        for lo in range(0, n_obs, 64):
            hi = min(n_obs, lo + 64)
            st.append(t0 + 300 * np.arange(lo, hi), obs_f[lo:hi], obs_v[lo:hi], {})
    obs = Store.open(opath)
    fpath = workdir / name / "forecasts.zarr"
    fs = ForecastStore.create(
        fpath,
        observations=obs,
        size=None,
        lead_minutes=5 * np.arange(1, leads + 1),
        attrs={"model": "bench"},
    )
    with fs:
        batch = 8
        for lo in range(0, samples, batch):
            hi = min(samples, lo + batch)
            out = np.empty((hi - lo, leads, EDGE, EDGE), np.uint8)
            for s in range(lo, hi):
                for ll in range(leads):
                    out[s - lo, ll] = np.roll(obs_f[s], ll + 1, 1)
            fs.append(t0 + 300 * np.arange(lo, hi), out)
    return fpath


def in_memory(fpath: Path):
    from nowcast_cli import encoding
    from nowcast_cli.store import ForecastStore, Store

    fs = ForecastStore.open(fpath)
    obs = Store.open(fs.observation_path())
    fc = fs.read(0, len(fs))
    of, ov = obs.read(0, len(obs))
    s_n, l_n = fc.shape[:2]
    index = np.arange(s_n)[:, None] + np.arange(1, l_n + 1)[None, :]
    px = encoding.event_pixels(list(THRESHOLDS), *obs.zr)
    return fc, of, ov, index, px


def valid_pairs(fc, of, ov, index) -> list[tuple[np.ndarray, np.ndarray]]:
    """The valid pixels of every (sample, lead) pair, as pysteps needs them (it cannot mask)."""
    s_n, l_n = index.shape
    return [
        (fc[s, ll][ov[index[s, ll]]], of[index[s, ll]][ov[index[s, ll]]])
        for s in range(s_n)
        for ll in range(l_n)
    ]


def time_pysteps(pairs, l_n: int, px) -> tuple[float, np.ndarray]:
    """pysteps' accumulation, frame by frame and threshold by threshold; (seconds, counts)."""
    with contextlib.redirect_stdout(io.StringIO()):
        from pysteps.verification import detcatscores as d
    counts = np.zeros((l_n, len(px), 4), np.int64)
    t = time.perf_counter()
    tabs = []
    for p in px:
        per_lead = [d.det_cat_fct_init(float(p) - 0.5) for _ in range(l_n)]
        for j, (pred, obs) in enumerate(pairs):
            d.det_cat_fct_accum(per_lead[j % l_n], pred, obs)
        tabs.append(per_lead)
    dt = time.perf_counter() - t
    for k, per_lead in enumerate(tabs):
        for ll, tab in enumerate(per_lead):
            counts[ll, k] = [
                tab["hits"],
                tab["misses"],
                tab["false_alarms"],
                tab["correct_negatives"],
            ]
    return dt, counts


def best(fn, repeats: int) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def peak_rss(fpath: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of a fresh process verifying `fpath` (categorical scores).

    VmHWM of /proc/self/status, not getrusage: Linux carries ru_maxrss across exec, so a
    child of this (large) process would report the parent's peak.
    """
    code = (
        f"import sys, time; sys.path.insert(0, {str(REPO)!r})\n"
        "from nowcast_cli import verify\n"
        f"t = time.perf_counter(); verify.evaluate({str(fpath)!r}, thresholds={THRESHOLDS!r}, "
        "groups=('categorical',))\n"
        "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0]\n"
        "print(time.perf_counter() - t, hwm.split()[1])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    secs, kb = out.stdout.split()
    return float(secs), int(kb) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--leads", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5, help="timings of ours per round")
    ap.add_argument("--rounds", type=int, default=3, help="pysteps timings, interleaved")
    ap.add_argument("--mem-samples", type=int, default=20, help="smallest memory test")
    args = ap.parse_args()

    from nowcast_cli import verify
    from nowcast_cli.metrics import _kernels

    work = Path(tempfile.mkdtemp(prefix="bench-verify-"))
    results: dict[str, object] = {
        "command": "python benchmarks/bench_verify.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "samples": args.samples,
        "leads": args.leads,
        "edge": EDGE,
        "threads_ours": _kernels.threads(),
        "batch_mb": verify.BATCH_BYTES >> 20,
        "threads_pysteps": 1,
    }
    try:
        seeds = knmi_frames(work)
        wet = float((seeds[0][seeds[1]] >= 103).mean())
        results["wet_fraction_valid_0.5mmh"] = round(wet, 3)
        results["valid_fraction"] = round(float(seeds[1].mean()), 3)
        fpath = build(work, args.samples, args.leads, "big", seeds)
        # warm up (numba caches compiled kernels; zarr codecs) on the same store
        verify.evaluate(fpath, thresholds=THRESHOLDS)

        # 1. end to end vs pysteps, and the full default verify
        fc, of, ov, index, px = in_memory(fpath)
        pairs = valid_pairs(fc, of, ov, index)
        t_py, t_ours, rounds = [], [], []
        for _ in range(args.rounds):  # interleaved, so that both meet the same machine load
            dt, py_counts = time_pysteps(pairs, args.leads, px)
            t_py.append(dt)
            ours, _ = best(
                lambda: verify.evaluate(fpath, thresholds=THRESHOLDS, groups=("categorical",)),
                args.repeats,
            )
            t_ours.append(ours)
            rounds.append(round(dt / ours, 1))
        del pairs
        t_full, _ = best(lambda: verify.evaluate(fpath, thresholds=THRESHOLDS), 2)
        from nowcast_cli.metrics import Contingency

        acc = Contingency.init(1, args.leads, px)
        acc.accumulate(fc, of, ov, index, np.zeros(len(fc), np.int64))
        assert np.array_equal(acc.counts[0], py_counts), "counts differ from pysteps"
        results["end_to_end"] = {
            "pysteps_s": round(min(t_py), 3),
            "ours_categorical_s": round(min(t_ours), 3),
            "speedup": round(min(t_py) / min(t_ours), 1),
            "speedup_per_round": rounds,
            "ours_all_scores_s": round(t_full, 3),
            "forecast_bytes": int(fc.nbytes),
        }

        # 2. kernel alone vs one parallel pass over the same bytes
        f3 = np.ascontiguousarray(fc.reshape(fc.shape[0], fc.shape[1], -1))
        o2 = np.ascontiguousarray(of.reshape(len(of), -1))
        v2 = np.ascontiguousarray(ov.reshape(len(ov), -1)).view(np.uint8)
        idx = np.ascontiguousarray(index, dtype=np.int64)
        pk = px.astype(np.uint8)
        _kernels.forecast_counts(f3, o2, v2, idx, pk)
        _kernels.byte_pass(f3, o2, v2, idx)
        tk, tp = [], []
        for _ in range(args.repeats * 2):
            t = time.perf_counter()
            _kernels.forecast_counts(f3, o2, v2, idx, pk)
            tk.append(time.perf_counter() - t)
            t = time.perf_counter()
            _kernels.byte_pass(f3, o2, v2, idx)
            tp.append(time.perf_counter() - t)
        results["kernel"] = {
            "kernel_s": round(min(tk), 4),
            "byte_pass_s": round(min(tp), 4),
            "ratio": round(min(tk) / min(tp), 2),
            "kernel_gb_s": round(3 * f3.nbytes / min(tk) / 1e9, 1),
        }
        del fc, of, ov, f3, o2, v2

        # 3. peak memory as samples grow 10x and 100x
        mem = []
        for n in (args.mem_samples, args.samples, 10 * args.samples):
            path = fpath if n == args.samples else build(work, n, args.leads, f"m{n}", seeds)
            secs, mb = peak_rss(path)
            # the same with glibc's mmap threshold fixed at 1 MiB: freed chunk buffers go back
            # to the system at once (tells allocator retention from data kept per sample)
            _, mb_fixed = peak_rss(path, {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)})
            mem.append(
                {
                    "samples": n,
                    "seconds": round(secs, 2),
                    "peak_rss_mb": round(mb),
                    "peak_rss_mb_fixed_mmap_threshold": round(mb_fixed),
                }
            )
            if path != fpath:
                shutil.rmtree(path.parent, ignore_errors=True)
        results["memory"] = mem

        # 4. extrapolation baseline throughput (120×120, 10 in, 10 out)
        from nowcast_cli import baselines

        coarse = seeds[0][:, ::4, ::4][:, :120, :120].copy()
        baselines.extrapolate(coarse[:10], 10)
        n_ex = 10
        t = time.perf_counter()
        for i in range(n_ex):
            baselines.extrapolate(coarse[i : i + 10], 10)
        results["extrapolation_samples_per_s"] = round(n_ex / (time.perf_counter() - t), 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write(results)


def write(r: dict) -> None:
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "verify.json").write_text(json.dumps(r, indent=2) + "\n")
    e, k, m = r["end_to_end"], r["kernel"], r["memory"]
    lines = [
        "# Verification benchmark",
        "",
        f"`{r['command'].strip()}` on {os.cpu_count()} shared cores, {r['date']}; ours with "
        f"{r['threads_ours']} kernel threads, pysteps with {r['threads_pysteps']} (NumPy, "
        "single-threaded). In one process, after imports: `bench_e2e.md` has whole commands.",
        "",
        f"Data: {r['samples']} samples × {r['leads']} leads × {r['edge']}×{r['edge']} uint8 "
        f"from the real KNMI sample (valid fraction {r['valid_fraction']}, "
        f"{r['wet_fraction_valid_0.5mmh']:.0%} of valid pixels ≥ 0.5 mm/h), "
        f"{e['forecast_bytes'] / 1e6:.0f} MB of forecasts; 5 thresholds (0.5, 2, 5, 10, 30 mm/h).",
        "",
        "## In one process vs pysteps (after imports; whole commands: `e2e.md`)",
        "",
        "ours: `verify.evaluate(store, groups=('categorical',))` from the Zarr stores to the "
        "scores; pysteps: `det_cat_fct_accum` per frame and threshold on arrays in memory "
        "(valid pixels pre-extracted); counts checked equal. Rounds interleave one pysteps "
        "run with the best of several of ours.",
        "",
        "| | seconds |",
        "|---|---:|",
        f"| pysteps `det_cat_fct_accum`, arrays in memory | {e['pysteps_s']} |",
        f"| nowcast verify, categorical, from Zarr | {e['ours_categorical_s']} |",
        f"| **speed-up** (best of each) | **{e['speedup']}×** |",
        f"| speed-up in each round | {', '.join(f'{x}×' for x in e['speedup_per_round'])} |",
        f"| nowcast verify, all 13 scores incl. SSIM (information) | {e['ours_all_scores_s']} |",
        "",
        "## Contingency kernel vs one parallel pass over the same bytes",
        "",
        "| kernel s | byte pass s | kernel / pass | kernel GB/s (f + o + valid) |",
        "|---:|---:|---:|---:|",
        f"| {k['kernel_s']} | {k['byte_pass_s']} | {k['ratio']}× | {k['kernel_gb_s']} |",
        "",
        "## Peak memory (RSS of a fresh process) vs samples verified",
        "",
        "`verify.evaluate` (categorical scores; the continuous ones stream through the same "
        "batches) in a fresh process; forecasts are read in batches of about "
        f"{r['batch_mb']} MB (two "
        "reused buffers: one scored, one being read), each with its observed frames. The "
        "smallest run ends before the buffers and the read-ahead reach their steady size; from "
        "S to 10·S samples the peak should not move. The second column repeats the runs with "
        "glibc's mmap threshold fixed (`MALLOC_MMAP_THRESHOLD_=1048576`, freed buffers go back "
        "to the system at once), to tell allocator retention from data kept per sample.",
        "",
        "| samples | seconds | peak RSS MB | same, fixed mmap threshold |",
        "|---:|---:|---:|---:|",
        *[
            f"| {x['samples']} | {x['seconds']} | {x['peak_rss_mb']} | "
            f"{x['peak_rss_mb_fixed_mmap_threshold']} |"
            for x in m
        ],
        "",
        "## Extrapolation baseline",
        "",
        f"pysteps Lucas–Kanade + semi-Lagrangian, 120×120, 10 in → 10 out: "
        f"{r['extrapolation_samples_per_s']} samples/s (one core's worth; single process).",
        "",
    ]
    (out / "verify.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
