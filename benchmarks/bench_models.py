"""Training-step speed and memory of the models, and the cost of the focal frame loss.

Measures, in one process so that every figure comes from the same run:

1. forward + backward + Adam step time and peak memory per model at the paper's configuration
   (3 layers × 64 hidden, 3×3, 120×120, 10 + 10 frames; batch 4 by default), with scheduled
   sampling active (teacher_prob 0.5) and the B-MSE + B-MAE loss;
2. ``naive-convlstm``: a straightforward ConvLSTM written here, one convolution per gate and
   per input (8 per layer and step, each 64 → 64), fp32, eager, on the same rollout, to compare
   with our ``convlstm`` (one Winograd convolution over [x, h] for all gates on CPU) and with
   ``convlstm-direct`` (ours with torch's direct convolution: the suffix ``-direct`` works for
   every model);
3. the step-time ratio FF-MSE / MSE (same model, same data, steps interleaved so that load
   from other processes hits both alike), and the loss alone, forward + backward.

Variants are timed round-robin (A, B, A, B, …) because the machine may be shared; the figure
is the median. Memory: what autograd saves for backward in one step, counted by shape on the
meta device for every model (exact, instant, no compute), and on CUDA also the measured peak
(``torch.cuda.max_memory_allocated``). RSS on CPU is useless here: the allocator keeps freed
blocks, so after the first step a step's RSS growth is about zero.

The committed results (``results/models.md``) were made with (one line)::

    python benchmarks/bench_models.py --models convlstm,convlstm-direct,naive-convlstm
        --batch 4 --warmup 1 --repeats 3 --ffl-model convlstm --ffl-batch 4 --ffl-size 120
        --ffl-layers 1 --ffl-hidden 16 --ffl-repeats 15 --out benchmarks/results/models.json

The full measurement (all models at batch 4, ~30 GiB for MIM/MotionRNN) wants a bigger machine::

    python benchmarks/bench_models.py --batch 4 --repeats 3
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
from torch import Tensor, nn

from nowcast_cli.losses import build_loss
from nowcast_cli.models import count_parameters, create_model, first_output
from nowcast_cli.models._rollout import Nowcaster

RESULTS = Path(__file__).resolve().parent / "results"
ZR = (256.0, 1.42)  # the losses need a store's Z–R for their B- weights; DWD's
DIRECT = "-direct"  # model-name suffix: our cells with direct instead of Winograd convolutions
# the paper's Table II "Memory" column (A100, batch 4, 10 + 10 frames, 120×120)
PAPER_MEMORY_GB = {
    "convlstm": 7.77,
    "trajgru": 22.55,
    "predrnn": 16.72,
    "mim": 31.77,
    "motionrnn": 33.84,
}


class NaiveConvLSTMCell(nn.Module):
    """Reference cell: a separate 3×3 convolution for each gate and each input."""

    def __init__(self, hidden: int, kernel: int) -> None:
        super().__init__()

        def conv() -> nn.Conv2d:
            return nn.Conv2d(hidden, hidden, kernel, padding=kernel // 2)

        self.wx = nn.ModuleDict({g: conv() for g in "ifgo"})
        self.wh = nn.ModuleDict({g: conv() for g in "ifgo"})

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        i = torch.sigmoid(self.wx["i"](x) + self.wh["i"](h))
        f = torch.sigmoid(self.wx["f"](x) + self.wh["f"](h))
        g = torch.tanh(self.wx["g"](x) + self.wh["g"](h))
        o = torch.sigmoid(self.wx["o"](x) + self.wh["o"](h))
        c = f * c + i * g
        return o * torch.tanh(c), c


class NaiveConvLSTM(Nowcaster):
    """Reference ConvLSTM (naive cells) on the shared rollout."""

    def __init__(self, layers: int = 3, hidden: int = 64, kernel: int = 3, size: int = 120):
        super().__init__()
        self.config = argparse.Namespace(channels=1, size=size, hidden=hidden)
        self.embed = nn.Conv2d(1, hidden, 1)
        self.cells = nn.ModuleList(NaiveConvLSTMCell(hidden, kernel) for _ in range(layers))
        self.fc = nn.Conv2d(hidden, 1, 1)

    def init_state(self, x: Tensor) -> Any:
        b, _, _, h, w = x.shape
        zero = x.new_zeros(b, self.config.hidden, h, w)
        return [(zero, zero) for _ in self.cells]

    def step(self, frame: Tensor, state: Any) -> tuple[Tensor, Any]:
        z = self.embed(frame)
        new = []
        for cell, (h, c) in zip(self.cells, state, strict=True):
            z, c = cell(z, h, c)
            new.append((z, c))
        return self.fc(z), new


def build(name: str, args: argparse.Namespace) -> nn.Module:
    size = {"layers": args.layers, "hidden": args.hidden, "size": args.size}
    if name == "naive-convlstm":
        return NaiveConvLSTM(kernel=3, **size)
    model = create_model(name.removesuffix(DIRECT), **size)  # baselines ignore the sizes
    if name.endswith(DIRECT):
        model.set_conv_backend("direct")  # type: ignore[operator]
    return model


def saved_for_backward(name: str, args: argparse.Namespace) -> int:
    """Bytes autograd keeps for backward in one step, counted on the meta device (no compute).

    A training step's memory is dominated by these activations (batch × 19 steps × layers);
    counting them by shape is exact, instant, and immune to other processes, unlike RSS.
    """
    with torch.device("meta"):
        model = build(name, args)
    shape = (args.batch, args.in_frames + args.out_frames, 1, args.size, args.size)
    x = torch.empty(shape, device="meta")
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        s = t.untyped_storage()
        storages[s._cdata] = s.nbytes()  # one entry per storage: views share it
        return t

    m = args.in_frames
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x[:, :m], args.out_frames, teacher=x[:, m:], teacher_prob=0.5)
        build_loss(args.loss, zr=ZR)(out, x[:, 1:])
    return sum(storages.values())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(
    model: nn.Module,
    loss_name: str,
    x: Tensor,
    args: argparse.Namespace,
) -> Callable[[], float]:
    """One training step: rollout with scheduled sampling, loss, backward, Adam."""
    loss_fn = build_loss(loss_name, zr=ZR)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4) if count_parameters(model) else None
    gen = torch.Generator(device=x.device).manual_seed(0)
    m = args.in_frames

    def step() -> float:
        out = model(x[:, :m], args.out_frames, teacher=x[:, m:], teacher_prob=0.5, generator=gen)
        loss = loss_fn(out, x[:, first_output(model, m) :])  # every frame the model returns
        if opt is not None:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return float(loss.detach())

    return step


def timed(step: Callable[[], float], device: torch.device) -> tuple[float, int]:
    """Seconds for one step and, on CUDA, its peak allocated memory above the start (else 0)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    sync(device)
    t0 = time.perf_counter()
    step()
    sync(device)
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) - base if device.type == "cuda" else 0
    return dt, peak


def round_robin(
    steps: dict[str, Callable[[], float]], repeats: int, warmup: int, device: torch.device
) -> dict[str, dict[str, Any]]:
    times: dict[str, list[float]] = {k: [] for k in steps}
    peaks: dict[str, int] = dict.fromkeys(steps, 0)
    for r in range(warmup + repeats):
        for name, step in steps.items():
            dt, peak = timed(step, device)
            print(f"  {name:<16} {'warmup' if r < warmup else 'timed '} {dt:8.2f} s", flush=True)
            if r >= warmup:
                times[name].append(dt)
                peaks[name] = max(peaks[name], peak)
    return {
        k: {"times_s": times[k], "median_s": statistics.median(times[k]), "peak_bytes": peaks[k]}
        for k in steps
    }


def loss_only(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Forward + backward time of MSE and FF-MSE alone on one step's output, in ms."""
    shape = (args.batch, args.in_frames + args.out_frames - 1, 1, args.size, args.size)
    g = torch.Generator(device=device).manual_seed(1)
    target = torch.rand(shape, generator=g, device=device)
    pred = torch.rand(shape, generator=g, device=device).requires_grad_(True)
    out: dict[str, list[float]] = {"mse": [], "ff-mse": []}
    fns = {k: build_loss(k, zr=ZR) for k in out}
    for r in range(args.loss_repeats + 3):
        for k, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn(pred, target).backward()
            sync(device)
            if r >= 3:
                out[k].append((time.perf_counter() - t0) * 1e3)
            pred.grad = None
    return {f"{k}_ms": statistics.median(v) for k, v in out.items()}


def markdown(report: dict[str, Any]) -> str:
    """The report as a short Markdown table."""
    cfg = report["config"]
    lines = [
        "# Model training-step benchmark",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {report['machine']['platform']}, {report['machine']['cpu_count']} CPUs, "
        f"torch {report['machine']['torch']} ({report['machine']['torch_threads']} threads), "
        f"device {report['machine']['device']}, load average at the end "
        f"{report['machine']['load_avg_at_end']}.",
        "",
        f"One step = rollout of {cfg['in_frames']} + {cfg['out_frames']} frames at batch "
        f"{cfg['batch']}, {cfg['size']}², {cfg['layers']} layers × {cfg['hidden']} hidden, "
        f"scheduled sampling, loss `{cfg['loss']}`, backward, Adam.",
        "",
        "| model | params | step time (median) [s] | all timed steps [s] | peak CUDA [MiB] |",
        "|---|---:|---:|---|---:|",
    ]
    for name, r in report["models"].items():
        steps = ", ".join(f"{t:.2f}" for t in r["times_s"])
        cuda = f"{r['peak_bytes'] / 2**20:,.0f}" if r["peak_bytes"] else "—"
        lines.append(f"| {name} | {r['params']:,} | {r['median_s']:.2f} | {steps} | {cuda} |")
    lines += [
        "",
        f"Memory autograd saves for backward in one step at batch {cfg['batch']} (counted on the "
        "meta device; the paper's Table II reports GPU memory at batch 4 on an A100):",
        "",
        "| model | saved for backward [GiB] | paper (batch 4) [GB] |",
        "|---|---:|---:|",
    ]
    for name, n_bytes in report["saved_for_backward_bytes"].items():
        paper = PAPER_MEMORY_GB.get(name)
        ref = f"{paper:.2f}" if paper is not None else "—"
        lines.append(f"| {name} | {n_bytes / 2**30:.2f} | {ref} |")
    if "speedup_vs_naive" in report:
        lines += [
            "",
            f"ConvLSTM speed-up over the naive cell: **{report['speedup_vs_naive']:.2f}×**",
        ]
    if "speedup_direct_vs_naive" in report:
        lines += [
            "",
            "The same ConvLSTM with direct (not Winograd) convolutions, over the naive cell: "
            f"{report['speedup_direct_vs_naive']:.2f}×",
        ]
    ffl = report.get("ffl")
    if ffl:
        c = ffl["config"]
        lines += [
            "",
            f"FF-MSE vs MSE training step ({c['model']}, batch {c['batch']}, {c['size']}², "
            f"{c['layers']}×{c['hidden']}, {len(ffl['mse']['times_s'])} interleaved pairs): "
            f"median ratio **{ffl['ratio_median']:.3f}**, ratio of medians "
            f"{ffl['ratio_of_medians']:.3f} (MSE {ffl['mse']['median_s']:.3f} s, "
            f"FF-MSE {ffl['ff-mse']['median_s']:.3f} s).",
            f"Loss alone, forward + backward: MSE {ffl['loss_only']['mse_ms']:.2f} ms, FF-MSE "
            f"{ffl['loss_only']['ff-mse_ms']:.2f} ms; the difference is "
            f"{100 * ffl['loss_only']['extra_vs_mse_step']:.3f}% of that MSE step.",
        ]
        lp = ffl.get("loss_only_at_model_size")
        if lp:
            lines.append(
                f"At the per-model size: MSE {lp['mse_ms']:.2f} ms, FF-MSE {lp['ff-mse_ms']:.2f} "
                f"ms, difference {100 * lp['extra_vs_step']:.4f}% of the {c['model']} step."
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default="convlstm,naive-convlstm,trajgru,predrnn,mim,motionrnn")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=120)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--in-frames", type=int, default=10)
    p.add_argument("--out-frames", type=int, default=10)
    p.add_argument("--repeats", type=int, default=2, help="timed steps per model")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per model first")
    p.add_argument("--loss", default="mse+mae", help="loss for the per-model timings")
    p.add_argument(
        "--memory-models",
        default="convlstm,naive-convlstm,trajgru,predrnn,mim,motionrnn,persistence",
        help="models whose saved-for-backward memory is counted (meta device, instant)",
    )
    p.add_argument("--ffl-model", default="convlstm", help="'' skips the FF-MSE/MSE ratio")
    p.add_argument("--ffl-batch", type=int, default=None, help="default: --batch")
    p.add_argument("--ffl-size", type=int, default=None, help="default: --size")
    p.add_argument("--ffl-layers", type=int, default=None, help="default: --layers")
    p.add_argument("--ffl-hidden", type=int, default=None, help="default: --hidden")
    p.add_argument("--ffl-repeats", type=int, default=5)
    p.add_argument("--loss-repeats", type=int, default=20)
    p.add_argument("--channels-last", action="store_true", help="channels-last weights/inputs")
    p.add_argument("--compile", action="store_true", help="torch.compile each recurrent cell")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=RESULTS / "models.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(2021)

    def prepare(model: nn.Module) -> nn.Module:
        model = model.to(device)
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if args.compile:
            for cell in getattr(model, "cells", []):
                cell.compile()
        return model

    shape = (args.batch, args.in_frames + args.out_frames, 1, args.size, args.size)
    x = torch.rand(shape, device=device)
    names = [n for n in args.models.split(",") if n]
    models = {n: prepare(build(n, args)) for n in names}
    print(f"models at batch {args.batch}, {args.size}², {args.layers}×{args.hidden}", flush=True)
    res = round_robin(
        {n: make_step(m, args.loss, x, args) for n, m in models.items()},
        args.repeats,
        args.warmup,
        device,
    )
    for n, m in models.items():
        res[n]["params"] = count_parameters(m)
    del models
    memory = {n: saved_for_backward(n, args) for n in args.memory_models.split(",") if n}

    ffl: dict[str, Any] = {}
    if args.ffl_model:
        fa = argparse.Namespace(**vars(args))
        fa.batch = args.ffl_batch or args.batch
        fa.size = args.ffl_size or args.size
        fa.layers = args.ffl_layers or args.layers
        fa.hidden = args.ffl_hidden or args.hidden
        print(
            f"FF-MSE vs MSE: {args.ffl_model} at batch {fa.batch}, {fa.size}², "
            f"{fa.layers}×{fa.hidden}",
            flush=True,
        )
        model = prepare(build(args.ffl_model, fa))
        xf = torch.rand((fa.batch, *shape[1:3], fa.size, fa.size), device=device)
        steps = {k: make_step(model, k, xf, fa) for k in ("mse", "ff-mse")}
        ffl = round_robin(steps, args.ffl_repeats, 1, device)
        ratios = [
            f / m for f, m in zip(ffl["ff-mse"]["times_s"], ffl["mse"]["times_s"], strict=True)
        ]
        ffl["config"] = {
            "model": args.ffl_model,
            "batch": fa.batch,
            "size": fa.size,
            "layers": fa.layers,
            "hidden": fa.hidden,
        }
        ffl["ratio_median"] = statistics.median(ratios)
        ffl["ratio_of_medians"] = ffl["ff-mse"]["median_s"] / ffl["mse"]["median_s"]
        # the loss alone at the ratio's size, and at the per-model size when that model ran
        lo = loss_only(fa, device)
        lo["extra_vs_mse_step"] = (lo["ff-mse_ms"] - lo["mse_ms"]) / (ffl["mse"]["median_s"] * 1e3)
        ffl["loss_only"] = lo
        if args.ffl_model in res:
            lp = loss_only(args, device)
            paper_ms = res[args.ffl_model]["median_s"] * 1e3
            lp["extra_vs_step"] = (lp["ff-mse_ms"] - lp["mse_ms"]) / paper_ms
            ffl["loss_only_at_model_size"] = lp

    report = {
        "command": "python benchmarks/bench_models.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "device": str(device),
            "load_avg_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        },
        "config": {k: str(v) for k, v in vars(args).items()},
        "models": res,
        "saved_for_backward_bytes": memory,
        "ffl": ffl,
    }
    if "convlstm" in res and "naive-convlstm" in res:
        report["speedup_vs_naive"] = res["naive-convlstm"]["median_s"] / res["convlstm"]["median_s"]
    if "convlstm" + DIRECT in res and "naive-convlstm" in res:
        report["speedup_direct_vs_naive"] = (
            res["naive-convlstm"]["median_s"] / res["convlstm" + DIRECT]["median_s"]
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(json.dumps({k: report[k] for k in ("models", "ffl") if k in report}, indent=1))
    if "speedup_vs_naive" in report:
        print(f"convlstm speed-up over the naive cell: {report['speedup_vs_naive']:.2f}×")
    if "speedup_direct_vs_naive" in report:
        print(f"convlstm-direct over the naive cell: {report['speedup_direct_vs_naive']:.2f}×")
    return report


if __name__ == "__main__":
    main()
