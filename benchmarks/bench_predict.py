"""`nowcast predict` throughput: forecasts per second, end to end, per model and baseline.

One run, on a generated store (moving rain cells, ``tests/synthetic_store.py``): for every
model, a tiny training run (1 step, so that a checkpoint exists) and then ``forecast`` of its
test split through the real path (issue times, reading the store, batched inference under
inference mode, uint8 encoding, appends to the forecast store); the baselines the same way.
Reported: samples/s of ``forecast`` alone (the training step is excluded), at a small
configuration (32², 1 × 16, 10 + 10 frames, batch 16) and ConvLSTM at the paper's (120²,
3 × 64). Ratios against persistence, measured in the same run.

Command (the committed results)::

    python benchmarks/bench_predict.py --out benchmarks/results/predict.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nowcast_cli.predict import PredictConfig, forecast  # noqa: E402
from nowcast_cli.train import configure, fit  # noqa: E402
from tests.synthetic_store import make_store, regular_times  # noqa: E402

MODELS = ["convlstm", "trajgru", "predrnn", "mim", "motionrnn"]


def rate(cfg: PredictConfig) -> dict[str, float]:
    t0 = time.perf_counter()
    result = forecast(cfg)
    seconds = time.perf_counter() - t0
    return {
        "samples": result.written,
        "seconds": seconds,
        "samples_per_s": result.written / seconds,
    }


def trained(store: Path, run: Path, model: str, **size: Any) -> Path:
    opts = {"store": str(store), "run": str(run), "model": model, "loss": "mse+mae",
            "max_steps": 1, "epochs": 1, "predict": False, "batch": 4, **size}  # fmt: skip
    fit(configure(opts))
    return run


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/predict.json")
    p.add_argument("--paper-samples", type=int, default=8)
    args = p.parse_args(argv)
    report: dict[str, Any] = {
        "command": "python " + " ".join(["benchmarks/bench_predict.py", *(argv or sys.argv[1:])]),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "small": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        # 5 days of 5-minute frames: 80/10/10 by day → one test day, 14 windows at stride 20;
        # --stride 2 gives 140 test issue times
        small = make_store(t / "small.zarr", regular_times("2020-01-01", 5 * 288), size=32)
        size = {"size": 32, "layers": 1, "hidden": 16, "stride": 2}
        base = trained(small, t / "base", "convlstm", **size)
        for name in ("persistence", "extrapolation"):
            print(f"{name} …", flush=True)
            cfg = PredictConfig(model=name, run=str(base), out=str(t / name / "f.zarr"))
            report["small"][name] = rate(cfg)
        for name in MODELS:
            print(f"{name} …", flush=True)
            run = trained(small, t / name, name, **size)
            report["small"][name] = rate(PredictConfig(run=str(run), batch=16))
        big = make_store(t / "big.zarr", regular_times("2020-01-01", 5 * 288), size=120)
        run = trained(big, t / "paper", "convlstm", size=120, stride=2)
        print("convlstm at the paper's size …", flush=True)
        cfg = PredictConfig(run=str(run), batch=4, start="2020-01-05T00:00",
                            end="2020-01-05T00:00")  # fmt: skip
        report["paper_convlstm"] = rate(
            PredictConfig(**{**cfg.__dict__, "end": _after(args.paper_samples)})
        )
    ref = report["small"]["persistence"]["samples_per_s"]
    for r in report["small"].values():
        r["vs_persistence"] = r["samples_per_s"] / ref
    report["machine"]["load_avg_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return report


def _after(n: int) -> str:
    """The end time giving `n` issue times from 2020-01-05 00:00 at 5-minute steps."""
    minutes = 5 * (n - 1)
    return f"2020-01-05T{minutes // 60:02d}:{minutes % 60:02d}"


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        "# Prediction throughput",
        "",
        f"Command: `{r['command']}`",
        "",
        f"Machine: {m['platform']}, {m['cpu_count']} CPUs, torch {m['torch']} "
        f"({m['threads']} threads), load average at the end {m['load_avg_at_end']}.",
        "",
        "`forecast` end to end (issue times, store reads, batched inference, uint8 encoding,",
        "forecast-store appends), 10 + 10 frames.",
        "",
        "Small configuration (32², 1 layer × 16, batch 16; baselines on the same issue times):",
        "",
        "| model | samples | samples/s | × persistence |",
        "|---|---:|---:|---:|",
    ]
    for name, x in r["small"].items():
        lines.append(
            f"| {name} | {x['samples']} | {x['samples_per_s']:.1f} | {x['vs_persistence']:.3f} |"
        )
    pc = r["paper_convlstm"]
    lines += [
        "",
        f"ConvLSTM at the paper's configuration (120², 3 × 64, batch 4): {pc['samples']} samples "
        f"in {pc['seconds']:.1f} s, **{pc['samples_per_s']:.2f} samples/s** (inference only).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
