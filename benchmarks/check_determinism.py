"""Determinism check: N separate ``nowcast train`` processes, same seed, bitwise the same state.

The README's determinism contract, checked as a user would: ingest the bundled RADKLIM
sequence once (32×32 copy), then run ``nowcast train`` N times as separate processes with the
same options (small ConvLSTM, CPU, the default ``--conv auto``, i.e. the Winograd kernels,
same thread count), and compare each run's ``last.pt``: model weights, optimizer state and
torch's generator state, by SHA-256. The first process starts with an empty numba cache (it
compiles the kernels, as a fresh install does); the others load them from that cache. Then,
for the same options, a run stopped mid-epoch (``--max-steps``) and resumed must write the
same ``last.pt`` and ``best.pt`` as the uninterrupted run.

    python benchmarks/check_determinism.py --runs 20 --out benchmarks/results/determinism.md

Exit status 1 if any state differs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "sample_data" / "netcdf" / "radklim_yw_20180510_seq3168"
TRAIN = [
    "--model", "convlstm", "--loss", "ff-mse", "--size", "32", "--layers", "2",
    "--hidden", "8", "--in-frames", "4", "--out-frames", "4", "--batch", "4",
    "--stride", "24", "--epochs", "2", "--valid-every", "4", "--valid-samples", "16", "--seed", "7",
    "--train", "2018-05-10:2018-05-16", "--valid", "2018-05-17:2018-05-17",
    "--test", "2018-05-18:2018-05-20", "--no-predict", "--quiet",
]  # fmt: skip


def _nowcast() -> str:
    return str(Path(sys.executable).with_name("nowcast"))


def _state_hash(path: Path) -> dict[str, str]:
    ck = torch.load(path, map_location="cpu", weights_only=True)
    out = {}
    for part in ("model_state", "optimizer", "rng"):
        h = hashlib.sha256()
        _feed(h, ck[part])
        out[part] = h.hexdigest()[:16]
    out["step"] = str(ck["step"])
    return out


def _feed(h: hashlib._Hash, obj: object) -> None:
    if isinstance(obj, torch.Tensor):
        h.update(obj.contiguous().numpy().tobytes())
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            h.update(str(k).encode())
            _feed(h, obj[k])
    elif isinstance(obj, list | tuple):
        for x in obj:
            _feed(h, x)
    else:
        h.update(repr(obj).encode())


def _row(name: str, h: dict[str, str]) -> str:
    return f"| {name} | {h['model_state']} | {h['optimizer']} | {h['rng']} |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--steps", type=int, default=12, help="training steps of each run")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "determinism.md")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nowcast-determinism-"))
    cache = work / "numba-cache"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    run = subprocess.run
    ingest = [_nowcast(), "ingest", "netcdf", str(DATA), "--units", "mm", "--zr", "256,1.42"]
    run([*ingest, "--size", "32", "--out", str(work / "s.zarr"), "--quiet"], check=True, cwd=work)
    store = ["--store", str(work / "s.zarr")]
    hashes, seconds = [], []
    for i in range(args.runs):
        t0 = time.perf_counter()
        folder = work / f"run{i}"
        cmd = [_nowcast(), "train", *TRAIN, *store, "--max-steps", str(args.steps)]
        run([*cmd, "--run", str(folder)], check=True, cwd=work, env=env)
        seconds.append(time.perf_counter() - t0)
        hashes.append(_state_hash(folder / "last.pt"))
        print(f"run {i + 1}/{args.runs}: {hashes[-1]} ({seconds[-1]:.1f} s)", flush=True)
    # stop mid-epoch, resume to the same step
    half = args.steps // 2 + 1
    folder = work / "resumed"
    run([_nowcast(), "train", *TRAIN, *store, "--max-steps", str(half), "--run", str(folder)],
        check=True, cwd=work, env=env)  # fmt: skip
    run([_nowcast(), "train", "--resume", "--run", str(folder), "--max-steps", str(args.steps),
         "--quiet"], check=True, cwd=work, env=env)  # fmt: skip
    resumed = _state_hash(folder / "last.pt")
    best = [(work / name / "best.pt") for name in ("run0", "resumed")]
    # validations at steps 4, 8, 12: both runs must have chosen the same weights
    best_same = all(p.is_file() for p in best) and _state_hash(best[0]) == _state_hash(best[1])
    distinct = {tuple(sorted(h.items())) for h in hashes}
    ok = len(distinct) == 1 and resumed == hashes[0] and best_same
    threads = torch.get_num_threads()
    lines = [
        "# Determinism check",
        "",
        f"`python benchmarks/check_determinism.py --runs {args.runs} --steps {args.steps}`",
        "",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{threads} threads, `--conv auto` (Winograd)",
        f"- {args.runs} separate `nowcast train` processes, {args.steps} steps each (the first "
        "with an empty numba cache): "
        f"{len(distinct)} distinct last.pt state(s) (model, optimizer, generator)",
        f"- stopped at step {half} (mid-epoch) and resumed to {args.steps}: last.pt "
        f"{'identical' if resumed == hashes[0] else 'DIFFERENT'}, best.pt "
        f"{'identical' if best_same else 'DIFFERENT'}",
        f"- first run {seconds[0]:.1f} s (compiles the kernels), later runs median "
        f"{sorted(seconds[1:])[len(seconds[1:]) // 2] if len(seconds) > 1 else float('nan'):.1f} s",
        "",
        f"Result: {'PASS' if ok else 'FAIL'}",
        "",
        "| run | model | optimizer | generator |",
        "|---:|---|---|---|",
        *(_row(str(i + 1), h) for i, h in enumerate(hashes)),
        _row("resumed", resumed),
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines[:10]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
