"""Training on a GPU at the paper's configuration: s/step and peak memory per model, fp32 against
bf16 autocast, eager against ``--compile``, beside the paper's A100 figures.

Every figure is the real loop, `nowcast_cli.train.fit` (data from a Zarr store, scheduled
sampling, B-MSE + B-MAE, backward, clipping, AdamHD, logs), on a generated store (moving rain
cells, ``tests/synthetic_store.py``): 120², 3 layers × 64, batch 4, 10 + 10 frames. s/step is the
median of the per-step wall times after the first step (which holds cuDNN's autotuning, and with
``--compile`` the compilation, reported apart as ``first_step_s``); peak memory is
``torch.cuda.max_memory_allocated`` over the run. The paper's figures (Table II: A100, batch 4)
are context, not a reference of this run: other chip, other code. The ratios between variants
are of this run.

Command (the committed results; on a machine with CUDA)::

    python benchmarks/bench_gpu.py --out benchmarks/results/gpu.json

Results are rewritten after every measurement, so a run cut short keeps what it measured;
``--deadline S`` skips what would start after S seconds.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_models import PAPER_MEMORY_GB  # noqa: E402
from bench_train import MODELS, engine_rate  # noqa: E402

MIN_STEPS = 6  # the first step is untimed (autotuning, compilation): 5 timed steps at least

from tests.synthetic_store import make_store, regular_times  # noqa: E402

# the paper's Table II, one A100, batch 4: seconds per training step
PAPER_S_PER_STEP = {
    "convlstm": 0.097,
    "trajgru": 0.62,
    "predrnn": 0.24,
    "mim": 0.46,
    "motionrnn": 0.78,
}
VARIANTS = {
    "fp32": {"precision": "fp32", "compile": False},
    "bf16": {"precision": "bf16", "compile": False},
    "fp32-compile": {"precision": "fp32", "compile": True},
    "bf16-compile": {"precision": "bf16", "compile": True},
}


def measure(store: Path, run: Path, model: str, variant: str, steps: int) -> dict[str, Any]:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    r = engine_rate(
        store,
        run,
        steps,
        model=model,
        loss="mse+mae",
        epochs=1,
        valid_samples=4,
        device="cuda",
        **VARIANTS[variant],
    )
    r["wall_s"] = time.perf_counter() - t0
    with (run / "metrics.csv").open() as fh:
        first = next(row for row in csv.DictReader(fh) if row["split"] == "train")
    r["first_step_s"] = 4 / float(first["samples_per_s"])
    r["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return r


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--compile-models", default=",".join(MODELS), help="models timed compiled")
    p.add_argument(
        "--steps", type=int, default=12, help="steps per measurement (first untimed; ≥ 6)"
    )
    p.add_argument("--deadline", type=float, default=None, help="start nothing after S seconds")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/gpu.json")
    args = p.parse_args(argv)
    if args.steps < MIN_STEPS:
        sys.exit(f"Error: --steps {args.steps}: the median needs ≥ {MIN_STEPS - 1} timed steps")
    if not torch.cuda.is_available():
        sys.exit("Error: bench_gpu.py needs a CUDA device")
    t_start = time.perf_counter()
    props = torch.cuda.get_device_properties(0)
    report: dict[str, Any] = {
        "command": "python benchmarks/bench_gpu.py " + " ".join(argv or sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "gpu": props.name,
            "gpu_memory_gib": props.total_memory / 2**30,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        },
        "config": "120², 3 × 64, batch 4, 10 + 10 frames, mse+mae, AdamHD",
        "results": {},
        "skipped": [],
    }
    models = [m for m in args.models.split(",") if m]
    compiled = set(args.compile_models.split(","))
    variants = [v for v in args.variants.split(",") if v]
    # eager first (every model), then the compiled variants, model by model: slowest to start
    order = [(v, m) for v in variants if "compile" not in v for m in models]
    order += [(v, m) for m in models if m in compiled for v in variants if "compile" in v]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        store = make_store(tmp / "s120.zarr", regular_times("2020-01-01", 400), size=120)
        for variant, model in order:
            if args.deadline and time.perf_counter() - t_start > args.deadline:
                report["skipped"].append(f"{model} {variant}")
                continue
            print(f"{model} {variant} …", flush=True)
            try:
                r = measure(store, tmp / f"{model}-{variant}", model, variant, args.steps)
            except Exception as exc:  # a failed variant is a result too
                r = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            report["results"].setdefault(model, {})[variant] = r
            print(f"  {json.dumps({k: v for k, v in r.items() if k != 'rates'})}", flush=True)
            write(report, args.out)
    report["total_s"] = time.perf_counter() - t_start
    write(report, args.out)
    print(markdown(report))
    return report


def write(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))


def timed_steps(r: dict[str, Any]) -> str:
    """How many steps each s/step figure is the median of (all figures alike, or a range)."""
    n = sorted(
        {len(e["rates"]) - 1 for x in r["results"].values() for e in x.values() if "rates" in e}
    )
    return "?" if not n else str(n[0]) if len(n) == 1 else f"{n[0]}–{n[-1]}"


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    variants = sorted({v for x in r["results"].values() for v in x}, key=list(VARIANTS).index)
    lines = [
        "# Training on a GPU at the paper's configuration",
        "",
        f"Command: `{r['command']}`",
        "",
        f"Machine: {m['gpu']} ({m['gpu_memory_gib']:.0f} GiB), torch {m['torch']}, CUDA "
        f"{m['cuda']}, cuDNN TF32 {m['cudnn_tf32']}. {r['config']}, through `fit`; s/step is the "
        f"median of {timed_steps(r)} timed steps after the first, memory the peak allocated. "
        "Paper: Table II, one A100.",
        "",
        "| model | "
        + " | ".join(f"{v} s/step" for v in variants)
        + " | paper s/step | "
        + " | ".join(f"{v} GiB" for v in variants)
        + " | paper GB |",
        "|---|" + "---:|" * (2 * len(variants) + 2),
    ]
    for name, x in r["results"].items():
        secs, mem = [], []
        for v in variants:
            e = x.get(v)
            if e is None:
                secs.append("—")
                mem.append("—")
            elif "error" in e:
                secs.append("failed")
                mem.append("—")
            else:
                secs.append(f"{e['s_per_step']:.3f}")
                mem.append(f"{e['peak_gib']:.1f}")
        lines.append(
            f"| {name} | "
            + " | ".join(secs)
            + f" | {PAPER_S_PER_STEP[name]:.3f} | "
            + " | ".join(mem)
            + f" | {PAPER_MEMORY_GB[name]:.1f} |"
        )
    lines.append("")
    for name, x in r["results"].items():
        for v, e in x.items():
            if "error" in e:
                lines.append(f"- {name} {v} failed: {e['error']}")
            elif "compile" in v:
                lines.append(f"- {name} {v}: first step (compilation) {e['first_step_s']:.1f} s")
    if r["skipped"]:
        lines.append(f"- skipped (deadline): {', '.join(r['skipped'])}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
