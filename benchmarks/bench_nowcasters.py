"""Training speed and forecast latency of RainNet and SimVP against ConvLSTM, on this CPU.

For each frame size, every model is built at that size and timed in one process, round robin
(A, B, C, A, B, C, …) so that load from other processes hits all alike; figures are medians:

- training: one step = forward of 10 observed → 10 forecast frames at batch 4 (scheduled
  sampling at probability 0.5 where a model feeds frames back), the balanced ``mse+mae`` loss
  over every frame the model returns, backward, Adam; reported as samples per second;
- forecast: one issue time (batch 1), 10 observed → 10 forecast frames under
  ``torch.inference_mode``, in milliseconds.

Ratios are against ConvLSTM at the same size, measured in the same run. Models are given as
``name:option=value,…`` (`create_model` options), e.g. the committed results
(``results/nowcasters.md``) come from (one line)::

    python benchmarks/bench_nowcasters.py --sizes 64,120
        --models convlstm:layers=3,hidden=16 rainnet:layers=3,hidden=16
        simvp:hidden=16,layers=4,translator_ratio=4 --threads 1 --repeats 5
        --out benchmarks/results/nowcasters.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nowcast_cli.losses import build_loss
from nowcast_cli.models import count_parameters, create_model, first_output

RESULTS = Path(__file__).resolve().parent / "results"
ZR = (256.0, 1.42)  # DWD's Z–R, for the B- weights of the loss
BASE = "convlstm"


def parse_spec(spec: str) -> tuple[str, dict[str, int]]:
    """``simvp:hidden=16,layers=4`` → ("simvp", {"hidden": 16, "layers": 4})."""
    name, _, opts = spec.partition(":")
    options = {}
    for item in filter(None, opts.split(",")):
        key, _, value = item.partition("=")
        options[key] = int(value)
    return name, options


def training_step(model: nn.Module, args: argparse.Namespace) -> Callable[[], None]:
    """One optimizer step on a fixed random batch (the data is not what is timed)."""
    m, n = args.in_frames, args.out_frames
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, m + n, 1, model.config.size, model.config.size, generator=g)
    target = x[:, first_output(model, m) :]  # every frame the model returns
    loss_fn = build_loss("mse+mae", zr=ZR)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    draws = torch.Generator().manual_seed(1)

    def step() -> None:
        model.train()
        out = model(x[:, :m], n, teacher=x[:, m:], teacher_prob=0.5, generator=draws)
        loss = loss_fn(out, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def forecast_step(model: nn.Module, args: argparse.Namespace) -> Callable[[], None]:
    """One issue time: m observed frames → n forecasts, inference mode."""
    size = model.config.size
    x = torch.rand(1, args.in_frames, 1, size, size, generator=torch.Generator().manual_seed(2))

    def step() -> None:
        model.eval()
        with torch.inference_mode():
            model(x, args.out_frames)

    return step


def round_robin(steps: dict[str, Callable[[], None]], repeats: int, warmup: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {k: [] for k in steps}
    for r in range(warmup + repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[name].append(dt)
    return {k: {"times_s": v, "median_s": statistics.median(v)} for k, v in times.items()}


def measure(size: int, specs: list[str], args: argparse.Namespace) -> dict[str, Any]:
    models: dict[str, nn.Module] = {}
    rows: dict[str, Any] = {}
    for spec in specs:  # keyed by spec: one model may come in several sizes
        name, opts = parse_spec(spec)
        if name == "simvp":
            opts.setdefault("in_frames", args.in_frames)
        torch.manual_seed(0)
        models[spec] = create_model(name, size=size, **opts)
        rows[spec] = {"model": name, "options": opts, "params": count_parameters(models[spec])}
    print(f"{size}²: training", flush=True)
    train = round_robin(
        {k: training_step(v, args) for k, v in models.items()}, args.repeats, args.warmup
    )
    print(f"{size}²: forecasts", flush=True)
    fcst = round_robin(
        {k: forecast_step(v, args) for k, v in models.items()}, args.forecast_repeats, 1
    )
    for k, row in rows.items():
        row["train_step_s"] = train[k]["median_s"]
        row["train_steps_s"] = train[k]["times_s"]
        row["samples_per_s"] = args.batch / train[k]["median_s"]
        row["forecast_ms"] = fcst[k]["median_s"] * 1e3
        row["forecast_all_ms"] = [t * 1e3 for t in fcst[k]["times_s"]]
    base_specs = [k for k, r in rows.items() if r["model"] == BASE]
    if base_specs:
        base = rows[base_specs[0]]
        for row in rows.values():
            row["train_speed_vs_convlstm"] = row["samples_per_s"] / base["samples_per_s"]
            row["forecast_time_vs_convlstm"] = row["forecast_ms"] / base["forecast_ms"]
    return {"size": size, "models": rows}


def markdown(report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [
        "# RainNet and SimVP against ConvLSTM: training speed and forecast latency (CPU)",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {report['machine']}, torch {report['torch']} ({cfg['threads']} thread(s); numba "
        f"{cfg.get('numba_threads', '?')}), "
        f"load average at the end {report['load_end']}.",
        "",
        f"Training: one step = {cfg['in_frames']} observed → {cfg['out_frames']} forecast "
        f"frames at batch {cfg['batch']}, scheduled sampling 0.5, balanced `mse+mae`, backward, "
        f"Adam; median of {cfg['repeats']} steps after {cfg['warmup']} untimed. Forecast: one "
        f"issue time (batch 1) under inference mode, median of {cfg['forecast_repeats']}. "
        "Round robin over the models; ratios against ConvLSTM at the same size, same run.",
        "",
        "| size | model | options | params | training [samples/s] | × ConvLSTM | "
        "forecast per issue time [ms] | × ConvLSTM |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for block in report["sizes"]:
        for r in block["models"].values():
            opts = ", ".join(f"{k} {v}" for k, v in r["options"].items())
            lines.append(
                f"| {block['size']}² | {r['model']} | {opts} | {r['params']:,} | "
                f"{r['samples_per_s']:.2f} | {r.get('train_speed_vs_convlstm', 1):.2f} | "
                f"{r['forecast_ms']:.0f} | {r.get('forecast_time_vs_convlstm', 1):.2f} |"
            )
    lines += [
        "",
        "× ConvLSTM: training samples/s over ConvLSTM's (higher is faster); forecast time over "
        "ConvLSTM's (lower is faster).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=["convlstm", "rainnet", "simvp"])
    p.add_argument("--sizes", default="64,120", help="frame sizes, comma-separated")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--in-frames", type=int, default=10)
    p.add_argument("--out-frames", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5, help="timed training steps per model")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--forecast-repeats", type=int, default=10)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch and numba threads (default: theirs); ConvLSTM's Winograd kernels run on "
        "numba's threads, so both are set (as the experiments' NUMBA_NUM_THREADS does)",
    )
    p.add_argument("--out", type=Path, default=None, help="JSON path; .md beside it")
    args = p.parse_args(argv)
    import numba

    if args.threads:
        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)
    report: dict[str, Any] = {
        "command": "python benchmarks/bench_nowcasters.py " + " ".join(argv or sys.argv[1:]),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "torch": torch.__version__,
        "config": {
            "batch": args.batch,
            "in_frames": args.in_frames,
            "out_frames": args.out_frames,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "forecast_repeats": args.forecast_repeats,
            "threads": torch.get_num_threads(),
            "numba_threads": numba.get_num_threads(),
        },
        "sizes": [measure(int(s), args.models, args) for s in args.sizes.split(",")],
    }
    report["load_end"] = [round(v, 2) for v in os.getloadavg()]
    text = markdown(report)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(text)
    return report


if __name__ == "__main__":
    main()
