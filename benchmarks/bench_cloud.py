"""Training-pipeline samples/s from an S3 store vs the same store in a local folder.

Run on demand: ``python benchmarks/bench_cloud.py`` (needs the cloud extra and moto[server]);
results go to ``benchmarks/results/cloud.md`` and ``cloud.json``.

The S3 server is moto's emulator in its own process on a local port (``python -m
moto.server``), reached over HTTP through zarr's FsspecStore and s3fs, as a real bucket would
be (minus the network: what this measures is the request overhead and its latency, which is
what prefetching hides). The same synthetic store (moving rain cells, 120×120, two weeks of
5-minute frames) is written to both places through `Store`; each round reads the training
split's windows in the engine's chunk-local order (`batch_order`, batch 4) with the same
decoded-chunk cache, sized to what that order needs at once (the `MIX_BLOCKS` chunks shuffled
together and the next chunk of each, into which windows that start near a chunk's end reach:
2 × 16 + 1 chunks, far less than the copy), local and S3 interleaved, fresh reader each round:

- ``batched``: `WindowDataset.__getitems__`, what the training DataLoader calls: the chunks a
  batch needs are requested together (`FrameReader.prefetch`);
- ``per window``: ``dataset[i]`` one window at a time (no prefetch), for reference;
- ``loader, default``: what ``nowcast train`` runs on this CPU machine without ``--workers``:
  a DataLoader without worker processes, read in the training process; from a URL through
  the look-ahead thread (`LookAhead`, 2 batches ahead), from a folder synchronously;
- ``loader, N workers``: ``--workers N`` spawned worker processes (2: train's default on CUDA
  for a local store), each with its own reader and cache of the same size, and the
  DataLoader's look-ahead (2 batches per worker in flight). Timed after each worker's first
  batch (the workers' start-up, once per epoch, is left out).

For each S3 row, the requests the emulator served (GETs, per chunk object read) and the CPU
seconds the emulator itself used: on this machine it runs on the same cores as the reader.
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


def start_server(port: int, log: Any) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=log,  # one access-log line per request
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
    first batch (which includes its start-up); with 0 workers, as `Trainer.loader` reads
    without them (from a URL through `LookAhead`), after the first batch."""
    import torch

    from nowcast_cli.samples import WindowDataset
    from nowcast_cli.training.loop import LookAhead

    ds = WindowDataset(path, 120, split, cache_bytes=cache)
    dl: Any = torch.utils.data.DataLoader(
        ds,
        batch_sampler=batches,
        num_workers=workers,
        multiprocessing_context="spawn" if workers else None,
    )
    if not workers and not isinstance(ds.store_path, Path):
        dl = LookAhead(dl)
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
    log = tempfile.NamedTemporaryFile("w+", suffix=".log")  # noqa: SIM115 (closed below)
    server = start_server(port, log)

    def gets() -> int:
        log.flush()
        with open(log.name) as f:
            return sum('"GET ' in line for line in f)

    def cpu() -> float:
        fields = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def measured(fn: Any, *a: Any) -> tuple[float, int, float]:
        g0, c0 = gets(), cpu()
        r = fn(*a)
        time.sleep(0.2)  # the last access-log lines
        return r, gets() - g0, cpu() - c0

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
        chunks = len({int(f) // chunk_t for b in order for i in b for f in split.frames[i]})
        # frames + valid of the 16 chunks shuffled together and the next chunk of each
        cache = 2 * (2 * MIX_BLOCKS + 1) * chunk_t * 120 * 120
        names = ("", "_1", "_default", "_loader")
        res: dict[str, list[float]] = {f"{w}{k}": [] for k in names for w in ("local", "s3")}
        requests: dict[str, list[int]] = {f"s3{k}": [] for k in names}
        server_cpu: dict[str, list[float]] = {f"s3{k}": [] for k in names}
        jobs = {
            "_loader": (loader_rate, args.workers),
            "_default": (loader_rate, 0),
            "": (rate, True),
            "_1": (rate, False),
        }
        for _ in range(args.rounds):
            for k, (fn, arg) in jobs.items():
                res[f"local{k}"].append(fn(local, split, order, cache, arg))
                r, n, c = measured(fn, url, split, order, cache, arg)
                res[f"s3{k}"].append(r)
                requests[f"s3{k}"].append(n)
                server_cpu[f"s3{k}"].append(c)
    finally:
        server.terminate()
        server.wait()
        log.close()
    med = {k: statistics.median(v) for k, v in res.items()}
    out = {
        "command": "python benchmarks/bench_cloud.py " + " ".join(argv or sys.argv[1:]),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "frames": len(times),
        "windows_read": sum(len(b) for b in order),
        "chunks_read": chunks,
        "s3_gets": {k: statistics.median(v) for k, v in requests.items()},
        "s3_server_cpu_s": {k: statistics.median(v) for k, v in server_cpu.items()},
        "cache_mib": cache / 2**20,
        "copy_mib": 2 * len(times) * 120 * 120 / 2**20,
        "store_write_to_s3_s": upload_s,
        "samples_per_s": med,
        "rounds": res,
        "s3_over_local_batched": med["s3"] / med["local"],
        "s3_over_local_per_window": med["s3_1"] / med["local_1"],
        "workers": args.workers,
        "s3_over_local_loader": med["s3_loader"] / med["local_loader"],
        "s3_over_local_default": med["s3_default"] / med["local_default"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cloud.json").write_text(json.dumps(out, indent=2))
    (args.out / "cloud.md").write_text(markdown(out))
    print(markdown(out))
    return out


def markdown(r: dict[str, Any]) -> str:
    m, g, c = r["samples_per_s"], r["s3_gets"], r["s3_server_cpu_s"]
    objects = 2 * r["chunks_read"]  # frames and valid: one object each per chunk

    def row(label: str, k: str) -> str:
        return (
            f"| {label} | {m['local' + k]:.0f} | {m['s3' + k]:.0f} | "
            f"{m['s3' + k] / m['local' + k]:.2f} | {g['s3' + k]:.0f} "
            f"({g['s3' + k] / objects:.2f}) | {c['s3' + k]:.2f} |"
        )

    return "\n".join(
        [
            "# Training pipeline from S3 vs a local folder",
            "",
            f"`{r['command'].strip()}` on {os.cpu_count()} cores, {r['when']}; S3 = moto's "
            "emulator in its own process on a local port, through zarr's FsspecStore and s3fs.",
            "",
            f"{r['frames']} frames of 120×120 (decoded copy {r['copy_mib']:.0f} MiB), "
            f"{r['windows_read']} windows of 20 frames in the engine's chunk-local order "
            f"({r['chunks_read']} time chunks, {objects} chunk objects), decoded-chunk cache "
            f"{r['cache_mib']:.0f} MiB for both; medians of {len(r['rounds']['local'])} "
            "interleaved rounds. GETs: requests the emulator served during the S3 read (per "
            "chunk object read); emulator CPU: its own CPU seconds meanwhile, on the same cores.",
            "",
            "| read | local samples/s | S3 samples/s | S3 / local | S3 GETs (per object) "
            "| emulator CPU s |",
            "|---|---:|---:|---:|---:|---:|",
            row("batched (`__getitems__`: a batch's chunks requested together)", ""),
            row("per window (`dataset[i]`, no prefetch)", "_1"),
            row(
                "loader, `nowcast train`'s default on CPU (no worker process; from S3 the "
                "look-ahead thread)",
                "_default",
            ),
            row(f"loader, `--workers {r['workers']}` (worker processes, look-ahead)", "_loader"),
            "",
        ]
    )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
