"""Training engine speed: data pipeline, training samples/s per model, FF-MSE vs MSE, memory.

Everything is measured in one run on generated stores (moving rain cells, ``tests/
synthetic_store.py``) so that the figures are ratios against references of the same run:

1. data pipeline: 20×120×120 windows per second from a Zarr store, in a shuffled epoch order,
   through `nowcast_cli.samples.WindowDataset` (whole time chunks decoded once, bounded LRU
   cache), directly and through a DataLoader with 2 spawned workers, against a naive
   per-window read through zarr's array API (``Store.read``) in the same run;
2. training samples/s of every model through `nowcast_cli.train.fit` itself (the real loop:
   loader, scheduled sampling, loss, backward, clipping, AdamHD, logs), at a small
   configuration, and ConvLSTM at the paper's configuration (batch 4, 3 × 64, 120²,
   10 + 10 frames; one step after a warm-up one, ~25 s each here);
3. FF-MSE vs MSE: step time ratio, same model and data, median over steps;
4. memory: what autograd saves for backward in one step at batch 4, per model at the paper's
   configuration, counted on the meta device by ``bench_models.saved_for_backward``.

Command (the committed results)::

    python benchmarks/bench_train.py --out benchmarks/results/train.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_models import PAPER_MEMORY_GB, saved_for_backward  # noqa: E402

from nowcast_cli.config import DataConfig  # noqa: E402
from nowcast_cli.samples import (  # noqa: E402
    MIX_BLOCKS,
    WindowDataset,
    batch_order,
    make_splits,
    window_blocks,
)
from nowcast_cli.store import Store  # noqa: E402
from nowcast_cli.train import configure, fit  # noqa: E402
from tests.synthetic_store import make_store, regular_times  # noqa: E402

MODELS = ["convlstm", "trajgru", "predrnn", "mim", "motionrnn"]


class _Rounds(torch.utils.data.Sampler[list[int]]):
    """A batch sampler whose batches are replaced between rounds (a persistent loader's)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def data_pipeline(tmp: Path, frames: int, n: int, rounds: int = 4) -> dict[str, Any]:
    """Windows/s of each reader, interleaved: every round gives each reader its next slice of
    the same shuffled order (naive, uncached, cached, chunk-local, DataLoader, naive, …), so
    that load from other processes hits all alike; rates are totals over the rounds."""
    path = make_store(tmp / "pipe.zarr", regular_times("2020-01-01", frames), size=120, seed=3)
    cfg = DataConfig(size=120)  # training's windows: 10 + 10 frames, non-overlapping
    split = make_splits(cfg, path).train
    n = min(n, len(split) - len(split) % (4 * rounds))
    order = np.random.default_rng(0).permutation(len(split))[:n]
    out: dict[str, Any] = {
        "store_frames": frames,
        "windows": n,
        "window": "20×120×120",
        "rounds": rounds,
        "threads": torch.get_num_threads(),
    }
    store = Store.open(path)  # naive: one zarr read per window (frames + valid)

    def naive(idx: list[int]) -> int:
        for i in idx:
            s = split.frames[i]
            store.read(int(s[0]), int(s[-1]) + 1, 120)
        return len(idx)

    uncached = WindowDataset(path, 120, split, cache_bytes=0)  # an archive ≫ the cache
    cached = WindowDataset(path, 120, split)
    # the engine's order: chunk-local (MIX_BLOCKS chunks shuffled together), with a cache that
    # holds only those chunks, as on an archive far larger than any cache
    chunk_t = store.time_chunk(120)
    chunk_bytes = 2 * chunk_t * 120 * 120  # frames + valid, decoded
    blocks = window_blocks(split, chunk_t)
    local = [i for b in batch_order(len(split), 4, 0, 0, blocks=blocks) for i in b][:n]
    chunked = WindowDataset(path, 120, split, cache_bytes=2 * (MIX_BLOCKS + 1) * chunk_bytes)
    out["chunk_local_cache_mib"] = 2 * (MIX_BLOCKS + 1) * chunk_bytes / 2**20
    sampler = _Rounds()
    loader = torch.utils.data.DataLoader(
        WindowDataset(path, 120, split),
        batch_sampler=sampler,
        num_workers=2,
        multiprocessing_context="spawn",
        persistent_workers=True,
    )
    sampler.batches = [[int(i) for i in order[:4]]]
    list(loader)  # worker start-up (spawn + imports) is paid once per run, not per sample

    def dataset(ds: WindowDataset) -> Any:
        def read(idx: list[int]) -> int:
            for i in idx:
                ds[int(i)]
            return len(idx)

        return read

    def through_loader(idx: list[int]) -> int:
        sampler.batches = [idx[k : k + 4] for k in range(0, len(idx) - 3, 4)]
        return sum(len(f) for f, _ in loader)

    readers = {  # name: (read function, the order it reads in, share of the windows)
        "naive_zarr_per_window": (naive, order, 4),  # slow: a quarter of the windows
        "dataset_uncached": (dataset(uncached), order, 1),
        "dataset_direct": (dataset(cached), order, 1),
        "dataset_chunk_local": (dataset(chunked), np.asarray(local), 1),
        "dataloader_2_workers": (through_loader, order, 1),
    }
    seconds = dict.fromkeys(readers, 0.0)
    count = dict.fromkeys(readers, 0)
    for r in range(rounds):
        for name, (read, idx_all, share) in readers.items():
            k = len(idx_all) // share // rounds
            idx = [int(i) for i in idx_all[r * k : (r + 1) * k]]
            t0 = time.perf_counter()
            count[name] += read(idx)
            seconds[name] += time.perf_counter() - t0
    store.close()
    for name in readers:
        out[name] = count[name] / seconds[name]
    out["speedup_direct"] = out["dataset_direct"] / out["naive_zarr_per_window"]
    out["speedup_uncached"] = out["dataset_uncached"] / out["naive_zarr_per_window"]
    out["speedup_chunk_local"] = out["dataset_chunk_local"] / out["naive_zarr_per_window"]
    out["speedup_loader"] = out["dataloader_2_workers"] / out["naive_zarr_per_window"]
    return out


def engine_rate(store: Path, run: Path, steps: int, **opts: Any) -> dict[str, Any]:
    """Samples/s of the real loop: median of the per-step rates after the first step."""
    cfg = configure(
        {"store": str(store), "run": str(run), "max_steps": steps, "predict": False, **opts}
    )
    fit(cfg)
    with (run / "metrics.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "train"]
    rates = [float(r["samples_per_s"]) for r in rows[1:]]
    return {
        "samples_per_s": statistics.median(rates),
        "s_per_step": opts.get("batch", 4) / statistics.median(rates),
        "rates": rates,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    # 80% of 21,000 frames in non-overlapping 20-frame windows: 840 training windows; the
    # decoded 120² copy (frames + valid) is 605 MB, more than the reader's 256 MiB cache
    p.add_argument("--pipe-frames", type=int, default=21_000)
    p.add_argument("--pipe-windows", type=int, default=800)
    p.add_argument("--small-steps", type=int, default=4)
    p.add_argument("--ffl-steps", type=int, default=8)
    p.add_argument("--paper", default="convlstm", help="models at the paper config ('' = none)")
    p.add_argument("--only-pipeline", action="store_true", help="measure the data pipeline only")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/train.json")
    args = p.parse_args(argv)
    report: dict[str, Any] = {
        "command": "python benchmarks/bench_train.py " + " ".join(argv or sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
    }
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print("data pipeline …", flush=True)
        report["pipeline"] = data_pipeline(tmp, args.pipe_frames, args.pipe_windows)
        print(json.dumps(report["pipeline"], indent=1), flush=True)
        if args.only_pipeline:
            report["machine"]["load_avg_at_end"] = os.getloadavg()
            args.out.write_text(json.dumps(report, indent=2) + "\n")
            md = [*header(report, "Training data pipeline"), *pipeline_markdown(report["pipeline"])]
            args.out.with_suffix(".md").write_text("\n".join(md))
            return report
        small = make_store(tmp / "s32.zarr", regular_times("2020-01-01", 600), size=32)
        base = {"loss": "mse+mae", "size": 32, "layers": 1, "hidden": 16, "batch": 4, "epochs": 1}
        report["small_config"] = {
            "size": 32,
            "layers": 1,
            "hidden": 16,
            "batch": 4,
            "frames": "10+10",
        }
        report["small"] = {}
        for name in MODELS:
            print(f"small {name} …", flush=True)
            r = engine_rate(small, tmp / f"small-{name}", args.small_steps, model=name, **base)
            report["small"][name] = r
        ref = report["small"]["convlstm"]["samples_per_s"]
        for r in report["small"].values():
            r["vs_convlstm"] = r["samples_per_s"] / ref
        print("FF-MSE vs MSE …", flush=True)
        ffl = {}
        for loss in ("mse", "ff-mse"):
            ffl[loss] = engine_rate(
                small,
                tmp / f"ffl-{loss}",
                args.ffl_steps,
                model="convlstm",
                **{**base, "loss": loss},
            )
        report["ffl"] = {
            **ffl,
            "step_time_ratio_ff_over_plain": ffl["mse"]["samples_per_s"]
            / ffl["ff-mse"]["samples_per_s"],
        }
        report["paper"] = {}
        paper_models = [m for m in args.paper.split(",") if m]
        if paper_models:
            big = make_store(tmp / "s120.zarr", regular_times("2020-01-01", 400), size=120)
            for name in paper_models:
                print(f"paper config {name} (slow) …", flush=True)
                report["paper"][name] = engine_rate(
                    big, tmp / f"paper-{name}", 2, model=name, loss="mse+mae", epochs=1
                )
    mem_args = argparse.Namespace(
        batch=4, size=120, layers=3, hidden=64, in_frames=10, out_frames=10, loss="mse+mae"
    )
    report["saved_for_backward_GiB"] = {m: saved_for_backward(m, mem_args) / 2**30 for m in MODELS}
    report["machine"]["load_avg_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return report


def header(r: dict[str, Any], title: str) -> list[str]:
    m = r["machine"]
    return [
        f"# {title}",
        "",
        f"Command: `{r['command']}`",
        "",
        f"Machine: {m['platform']}, {m['cpu_count']} CPUs, torch {m['torch']} "
        f"({m['threads']} threads), load average at the end {m['load_avg_at_end']}. The machine "
        "is shared: read the ratios, the absolute numbers are context only.",
        "",
    ]


def pipeline_markdown(p: dict[str, Any]) -> list[str]:
    return [
        f"## Data pipeline ({p['window']} windows, shuffled, store of {p['store_frames']} frames)",
        "",
        f"{p['windows']} windows (the naive reader a quarter of them) in {p['rounds']} "
        "interleaved rounds: each round every reader reads its next slice, so load from other "
        "processes hits all alike. One thread per reader; the DataLoader's 2 worker processes "
        "read in parallel.",
        "",
        "| reader | windows/s | × naive |",
        "|---|---:|---:|",
        f"| naive: `Store.read` per window | {p['naive_zarr_per_window']:.0f} | 1.00 |",
        f"| `WindowDataset`, 1 process, no cache | {p['dataset_uncached']:.0f} "
        f"| {p['speedup_uncached']:.2f} |",
        f"| `WindowDataset`, 1 process, 256 MiB cache | {p['dataset_direct']:.0f} "
        f"| {p['speedup_direct']:.2f} |",
        f"| `WindowDataset`, chunk-local order (training's), "
        f"{p['chunk_local_cache_mib']:.0f} MiB cache | {p['dataset_chunk_local']:.0f} "
        f"| {p['speedup_chunk_local']:.2f} |",
        f"| DataLoader, 2 workers | {p['dataloader_2_workers']:.0f} | {p['speedup_loader']:.2f} |",
        "",
    ]


def markdown(r: dict[str, Any]) -> str:
    lines = [
        *header(r, "Training engine benchmark"),
        *pipeline_markdown(r["pipeline"]),
        "## Training samples/s through `fit` (CPU)",
        "",
        "Small configuration: {size}², {layers} layer × {hidden}, batch {batch}, {frames} frames, "
        "B-MSE + B-MAE, AdamHD, scheduled sampling.".format(**r["small_config"]),
        "",
        "| model | samples/s | s/step | × convlstm |",
        "|---|---:|---:|---:|",
    ]
    for name, x in r["small"].items():
        lines.append(
            f"| {name} | {x['samples_per_s']:.2f} | {x['s_per_step']:.3f} "
            f"| {x['vs_convlstm']:.2f} |"
        )
    if r["paper"]:
        lines += [
            "",
            "Paper configuration (120², 3 × 64, batch 4, 10 + 10 frames), after a warm-up step:",
            "",
            "| model | samples/s | s/step |",
            "|---|---:|---:|",
        ]
        for name, x in r["paper"].items():
            lines.append(f"| {name} | {x['samples_per_s']:.3f} | {x['s_per_step']:.1f} |")
    f = r["ffl"]
    lines += [
        "",
        f"FF-MSE vs MSE (convlstm, small configuration): step time ratio "
        f"**{f['step_time_ratio_ff_over_plain']:.3f}** (MSE {f['mse']['s_per_step']:.3f} s, "
        f"FF-MSE {f['ff-mse']['s_per_step']:.3f} s per step, medians).",
        "",
        "## Memory at batch 4, paper configuration",
        "",
        "Saved for backward in one step (meta device, `bench_models.saved_for_backward`):",
        "",
        "| model | GiB | paper (A100) GB |",
        "|---|---:|---:|",
    ]
    for name, gib in r["saved_for_backward_GiB"].items():
        lines.append(f"| {name} | {gib:.2f} | {PAPER_MEMORY_GB.get(name, float('nan')):.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
