"""Training-pipeline samples/s from an S3 store vs the same store in a local folder.

Run on demand: ``python benchmarks/bench_cloud.py`` (needs the cloud extra and moto[server]);
results go to ``benchmarks/results/cloud.md`` and ``cloud.json``.

The S3 server is moto's emulator in its own process on a local port (``python -m
moto.server``), reached over HTTP through zarr's FsspecStore and s3fs, as a real bucket would
be (minus the network: what this measures is the request overhead and its latency, which is
what prefetching hides). The same synthetic store (moving rain cells, 120×120, two weeks of
5-minute frames) is written to both places through `Store`; each round reads the training
split's first windows in the engine's chunk-local order (`batch_order`, batch 4) with the
same decoded-chunk cache (the `MIX_BLOCKS` chunks shuffled together, far less than the copy),
local and S3 interleaved, fresh reader each round:

- ``batched``: `WindowDataset.__getitems__`, what the training DataLoader calls: the chunks a
  batch needs are requested together (`FrameReader.prefetch`);
- ``per window``: ``dataset[i]`` one window at a time (no prefetch), for reference;
- ``loader``: what ``nowcast train`` runs, a DataLoader over the same batches with
  ``--workers`` spawned worker processes (2, train's default on CUDA), each with its own reader
  and cache of the same size, and the DataLoader's look-ahead (2 batches per worker in
  flight): while one batch is used the next ones are fetched. Timed after each worker's first
  batch (the workers' start-up, once per epoch, is left out).

Figures are medians over rounds and ratios against the local store in the same round.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BUCKET = "nowcast-bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto server did not start")


def rate(
    path: str | Path, split: Any, batches: list[list[int]], cache: int, batched: bool
) -> float:
    from nowcast_cli.samples import WindowDataset

    ds = WindowDataset(path, 120, split, cache_bytes=cache)
    ds[batches[0][0]]  # open the store (not timed)
    t0 = time.perf_counter()
    n = 0
    for b in batches:
        if batched:
            n += len(ds.__getitems__(b))
        else:
            for i in b:
                ds[i]
            n += len(b)
    return n / (time.perf_counter() - t0)


def loader_rate(
    path: str | Path, split: Any, batches: list[list[int]], cache: int, workers: int
) -> float:
    """Samples/s through a DataLoader with `workers` spawned workers, after each worker's
    first batch (which includes its start-up)."""
    import torch

    from nowcast_cli.samples import WindowDataset

    ds = WindowDataset(path, 120, split, cache_bytes=cache)
    dl = torch.utils.data.DataLoader(
        ds, batch_sampler=batches, num_workers=workers, multiprocessing_context="spawn"
    )
    it = iter(dl)
    for _ in range(max(1, workers)):
        next(it)  # every worker is up and has delivered its first batch
    t0 = time.perf_counter()
    n = sum(len(b[0]) for b in it)
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of `loader`")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)

    port = free_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(env)
    server = start_server(port)
    try:
        import boto3

        from nowcast_cli.config import DataConfig
        from nowcast_cli.samples import MIX_BLOCKS, batch_order, make_splits, window_blocks
        from nowcast_cli.store import Store
        from tests.synthetic_store import make_store, regular_times

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        times = regular_times("2021-06-01", args.days * 288)
        tmp = Path(tempfile.mkdtemp(prefix="nowcast-bench-cloud-"))
        local = make_store(tmp / "local.zarr", times, size=120, seed=5)
        url = f"s3://{BUCKET}/bench.zarr"
        t0 = time.perf_counter()
        make_store(url, times, size=120, seed=5)  # type: ignore[arg-type]
        upload_s = time.perf_counter() - t0
        split = make_splits(DataConfig(size=120), local).train
        with Store.open(local) as st:
            chunk_t = st.time_chunk(120)
        blocks = window_blocks(split, chunk_t)
        order = batch_order(len(split), 4, 0, 0, blocks=blocks)[: args.batches]
        cache = 2 * (MIX_BLOCKS + 1) * chunk_t * 120 * 120  # frames + valid of 17 chunks
        names = ("local", "s3", "local_1", "s3_1", "local_loader", "s3_loader")
        res: dict[str, list[float]] = {k: [] for k in names}
        for _ in range(args.rounds):
            res["local_loader"].append(loader_rate(local, split, order, cache, args.workers))
            res["s3_loader"].append(loader_rate(url, split, order, cache, args.workers))
            res["local"].append(rate(local, split, order, cache, True))
            res["s3"].append(rate(url, split, order, cache, True))
            res["local_1"].append(rate(local, split, order, cache, False))
            res["s3_1"].append(rate(url, split, order, cache, False))
    finally:
        server.terminate()
        server.wait()
    med = {k: statistics.median(v) for k, v in res.items()}
    out = {
        "command": "python benchmarks/bench_cloud.py " + " ".join(argv or sys.argv[1:]),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "frames": len(times),
        "windows_read": sum(len(b) for b in order),
        "cache_mib": cache / 2**20,
        "copy_mib": 2 * len(times) * 120 * 120 / 2**20,
        "store_write_to_s3_s": upload_s,
        "samples_per_s": med,
        "rounds": res,
        "s3_over_local_batched": med["s3"] / med["local"],
        "s3_over_local_per_window": med["s3_1"] / med["local_1"],
        "workers": args.workers,
        "s3_over_local_loader": med["s3_loader"] / med["local_loader"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cloud.json").write_text(json.dumps(out, indent=2))
    (args.out / "cloud.md").write_text(markdown(out))
    print(markdown(out))
    return out


def markdown(r: dict[str, Any]) -> str:
    m = r["samples_per_s"]
    return "\n".join(
        [
            "# Training pipeline from S3 vs a local folder",
            "",
            f"`{r['command'].strip()}` on {os.cpu_count()} cores, {r['when']}; S3 = moto's "
            "emulator in its own process on a local port, through zarr's FsspecStore and s3fs.",
            "",
            f"{r['frames']} frames of 120×120 (decoded copy {r['copy_mib']:.0f} MiB), "
            f"{r['windows_read']} windows of 20 frames in the engine's chunk-local order, "
            f"decoded-chunk cache {r['cache_mib']:.0f} MiB for both; medians of "
            f"{len(r['rounds']['local'])} interleaved rounds.",
            "",
            "| read | local samples/s | S3 samples/s | S3 / local |",
            "|---|---:|---:|---:|",
            f"| batched (`__getitems__`: a batch's chunks requested together) | "
            f"{m['local']:.0f} | {m['s3']:.0f} | {r['s3_over_local_batched']:.2f} |",
            f"| per window (`dataset[i]`, no prefetch) | {m['local_1']:.0f} | {m['s3_1']:.0f} | "
            f"{r['s3_over_local_per_window']:.2f} |",
            f"| loader (`nowcast train`'s DataLoader, {r['workers']} workers, look-ahead) | "
            f"{m['local_loader']:.0f} | {m['s3_loader']:.0f} | "
            f"{r['s3_over_local_loader']:.2f} |",
            "",
        ]
    )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
