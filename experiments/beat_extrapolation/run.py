"""Can a network trained for at most an hour on this 2-core CPU beat optical-flow extrapolation?

    python experiments/beat_extrapolation/run.py            # every run (hours; resumable)
    python experiments/beat_extrapolation/run.py --report   # RESULTS.md from scores.csv only

Every step is a ``nowcast`` command (ingest, train, predict, verify), run in
``experiments/beat_extrapolation/work/`` (``--work``). A run whose scores exist is skipped and
an interrupted one resumes (``nowcast train --resume``), so the script can be stopped and
restarted at will. It collects every number the report uses into ``scores.csv`` beside itself
(committed); ``report.py`` builds ``RESULTS.md`` from that file alone.

Data: the bundled 11 days of DWD RADKLIM rain (10–20 May 2018), DWD's Z–R relation;
10–16 May train, 17 May validation, 18–20 May test (issue times every 10 minutes), the
training copy at ``SIZE``² (``--size``).

The question (issue 20): mean CSI over the 10 forecast leads (5–50 min) at 0.5 and 2 mm/h, a
model's seeds against extrapolation (pysteps' Lucas–Kanade flow and semi-Lagrangian
advection, ``nowcast predict --model extrapolation``) on the same issue times, verified alike
(``nowcast verify --compare``, two-stage bootstrap over seeds and six-hour blocks of issue
times). The goal is met when both intervals of the difference lie above 0.

Every run is chosen by the same rule: its last weights (``--checkpoint last``), as the
authors test. Training budget: one hour per run (``elapsed_s`` of its metrics.csv, one
thread each, two runs at a time on the two cores).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DATA = REPO / "sample_data/netcdf/radklim_yw_20180510_seq3168/example_areal_reference_data.nc"
ATTRIBUTION = (
    "Source: Deutscher Wetterdienst (RADKLIM YW), spatially transformed and cut out; "
    "via pycomlink example data"
)
SCORES = HERE / "scores.csv"
THRESHOLDS = "0.5,2,5"
GOAL_THRESHOLDS = (0.5, 2.0)
BLOCK_HOURS = 6  # three test days → 12 blocks of issue times
BOOT = 1000
BUDGET_S = 3600  # one hour of training per run
SPLIT = [
    "--train",
    "2018-05-10:2018-05-16",
    "--valid",
    "2018-05-17:2018-05-17",
    "--test",
    "2018-05-18:2018-05-20",
]
SIZE = 32
# options every run shares (the data, the window, the optimiser)
COMMON = {
    "in-frames": 10,
    "out-frames": 10,
    "batch": 4,
    "stride": 1,
    "valid-samples": 64,
    "optimizer": "adam",
    "lr": 1e-3,
}
# name → model, loss, options (sizes, loss and schedule chosen by the pilot runs, see
# discussion.md: B-MAE beat B-MSE + B-MAE for both models, and both peaked at 1,000–1,500 steps)
CONFIGS: dict[str, dict[str, Any]] = {
    "rainnet": {
        "model": "rainnet",
        "loss": "mae",
        "options": {"layers": 3, "hidden": 16, "epochs": 3},
    },
    "simvp": {
        "model": "simvp",
        "loss": "mae",
        "options": {"layers": 4, "hidden": 16, "epochs": 3},
    },
}
SMOKE = {"layers": 2, "hidden": 4, "max-steps": 3, "valid-samples": 4}
SEEDS = [2021, 2022, 2023]
COLUMNS = [
    "section",
    "config",
    "seed",
    "lead_minutes",
    "threshold",
    "metric",
    "value",
    "low",
    "high",
]


@dataclass(frozen=True)
class Run:
    """One training run: a configuration and a seed."""

    config: str
    seed: int

    @property
    def folder(self) -> str:
        return f"runs/{self.config}-s{self.seed}"


@dataclass
class Experiment:
    work: Path
    size: int
    threads: int
    smoke: bool = False
    log: list[str] = field(default_factory=list)

    def nowcast(self, *args: str, capture: bool = False) -> str:
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            env[var] = str(self.threads)
        self.log.append("nowcast " + " ".join(args))
        out = subprocess.run(
            [sys.executable, "-m", "nowcast_cli", *args],
            cwd=self.work,
            env=env,
            check=True,
            text=True,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        )
        return out.stdout if capture else ""

    @property
    def store(self) -> str:
        return f"data/s{self.size}.zarr"

    def ingest(self) -> None:
        if (self.work / self.store / "zarr.json").is_file():
            return
        self.nowcast(
            "ingest",
            "netcdf",
            str(DATA),
            "--units",
            "mm",
            "--zr",
            "256,1.42",
            "--attribution",
            ATTRIBUTION,
            "--size",
            str(self.size),
            "--out",
            self.store,
            "-q",
        )

    def options(self, run: Run) -> list[str]:
        cfg = CONFIGS[run.config]
        opts = {**COMMON, **cfg["options"], **(SMOKE if self.smoke else {})}
        out = ["--model", cfg["model"], "--loss", cfg["loss"], "--seed", str(run.seed)]
        for k, v in opts.items():
            out += [f"--{k}", str(v)]
        return out

    def train(self, run: Run) -> None:
        folder = self.work / run.folder
        if (folder / "scores.json").is_file():
            return
        t0 = time.time()
        if (folder / "last.pt").is_file() and not (folder / "forecasts.zarr").is_dir():
            self.nowcast("train", "--resume", "--run", run.folder, "-q")
        elif not (folder / "forecasts.zarr").is_dir():
            if folder.exists():  # stopped before its first checkpoint: start again
                shutil.rmtree(folder)
            self.nowcast(
                "train",
                "--store",
                self.store,
                "--size",
                str(self.size),
                *self.options(run),
                *SPLIT,
                "--no-predict",
                "--run",
                run.folder,
                "-q",
            )
        # the same rule for every run: its last weights
        self.nowcast("predict", "--run", run.folder, "--checkpoint", "last", "-q")
        self.verify(run.folder)
        print(f"  {run.folder}: {(time.time() - t0) / 60:.1f} min", flush=True)

    def verify(self, folder: str) -> None:
        self.nowcast("verify", folder, "--thresholds", THRESHOLDS, "-q")

    def baselines(self, first: Run) -> list[str]:
        names = []
        for name in ("extrapolation", "persistence"):
            folder = self.work / "runs" / name
            if not (folder / "scores.json").is_file():
                if name == "extrapolation" and importlib.util.find_spec("pysteps") is None:
                    raise SystemExit("extrapolation needs pysteps: pip install 'nowcast[pysteps]'")
                if folder.exists():
                    shutil.rmtree(folder)
                self.nowcast(
                    "predict",
                    "--model",
                    name,
                    "--run",
                    first.folder,
                    "--out",
                    f"runs/{name}/forecasts.zarr",
                    "-q",
                )
                self.verify(f"runs/{name}")
            names.append(name)
        return names

    def compare(self, a: list[str], b: list[str]) -> dict[str, Any]:
        text = self.nowcast(
            "verify",
            "--compare",
            ",".join(a),
            ",".join(b),
            "--thresholds",
            THRESHOLDS,
            "--bootstrap",
            str(BOOT),
            "--block-hours",
            str(BLOCK_HOURS),
            "--json",
            capture=True,
        )
        result: dict[str, Any] = json.loads(text)
        return result


def _row(
    section: str,
    config: str,
    seed: Any,
    lead: Any,
    thr: Any,
    metric: str,
    value: Any,
    low: Any = "",
    high: Any = "",
) -> dict[str, Any]:
    """One line of scores.csv; thresholds written one way (``0.5``, ``2``), whatever the source."""
    thr = f"{float(thr):g}" if thr != "" else ""
    values = (section, config, seed, lead, thr, metric, value, low, high)
    return dict(zip(COLUMNS, values, strict=True))


def _scores_rows(exp: Experiment, folder: str, config: str, seed: Any) -> list[dict[str, Any]]:
    """A run's scores.csv: per lead and the mean over leads, for every score of THRESHOLDS."""
    rows = []
    with (exp.work / folder / "scores.csv").open(newline="") as fh:
        table = list(csv.DictReader(fh))
    for r in table:
        if r["threshold"] and r["metric"] in ("csi", "pod", "far", "bias", "hss"):
            rows.append(
                _row(
                    "score",
                    config,
                    seed,
                    r["lead_minutes"],
                    r["threshold"],
                    r["metric"],
                    r["value"],
                )
            )
    return rows


def _run_rows(exp: Experiment, run: Run) -> list[dict[str, Any]]:
    """Training time, steps and speed of a run (the last training row of its metrics.csv)."""
    with (exp.work / run.folder / "metrics.csv").open(newline="") as fh:
        last = [r for r in csv.DictReader(fh) if r["split"] == "train"][-1]
    seconds, steps = float(last["elapsed_s"]), int(last["step"])
    batch = int(COMMON["batch"])
    return [
        _row("run", run.config, run.seed, "", "", "train_seconds", seconds),
        _row("run", run.config, run.seed, "", "", "steps", steps),
        _row("run", run.config, run.seed, "", "", "samples_per_s", steps * batch / seconds),
    ]


def _setup_rows(exp: Experiment, configs: list[str]) -> list[dict[str, Any]]:
    """What was run: the frame size, the budget, the verification, each configuration."""
    rows = [
        _row("setup", "", "", "", "", "size", exp.size),
        _row("setup", "", "", "", "", "budget_s", BUDGET_S),
        _row("setup", "", "", "", "", "bootstrap", BOOT),
        _row("setup", "", "", "", "", "block_hours", BLOCK_HOURS),
        _row("setup", "", "", "", "", "threads", exp.threads),
    ]
    rows += [_row("setup", "", "", "", "", k, v) for k, v in COMMON.items()]
    for name in configs:
        cfg = CONFIGS[name]
        opts = {"model": cfg["model"], "loss": cfg["loss"], **cfg["options"]}
        if exp.smoke:
            opts.update(SMOKE)
        rows += [_row("config", name, "", "", "", k, v) for k, v in opts.items()]
    return rows


#: scores.csv section suffix → the keys of a comparison's (value, low, high): the difference
#: A − B, then A (the model's seeds pooled) and B (the baseline) with their own intervals
PARTS = {"": ("a_minus_b", "low", "high"), "-a": ("a", "a_low", "a_high"),
         "-b": ("b", "b_low", "b_high")}  # fmt: skip


def _compare_rows(cmp: dict[str, Any], config: str, seeds: list[int], ref: str) -> list[dict]:
    """Pooled and per-seed differences config − ref, mean over leads and per lead."""
    rows = []
    ths = cmp["thresholds_mm_h"]
    section = f"vs-{ref}"
    for metric in ("csi", "hss"):
        m, pl = cmp["mean_over_leads"][metric], cmp["per_lead"][metric]
        for j, thr in enumerate(ths):
            for suffix, (v, lo, hi) in PARTS.items():
                vals = (m[v][j], m[lo][j], m[hi][j])
                rows.append(_row(section + suffix, config, "all", "mean", thr, metric, *vals))
            for i, minutes in enumerate(cmp["lead_minutes"]):
                vals = (pl["a_minus_b"][i][j], pl["low"][i][j], pl["high"][i][j])
                rows.append(_row(section, config, "all", minutes, thr, metric, *vals))
    # each seed's own difference (intervals over blocks of issue times); with one seed the
    # pooled comparison is that seed's
    pairs = cmp.get("per_pair") or [cmp]
    for seed, pair in zip(seeds, pairs, strict=True):
        for metric in ("csi", "hss"):
            m = pair["mean_over_leads"][metric]
            for j, thr in enumerate(ths):
                vals = (m["a_minus_b"][j], m["low"][j], m["high"][j])
                rows.append(_row(f"{section}-seed", config, seed, "mean", thr, metric, *vals))
    shared = cmp["shared_issue_times"]
    rows.append(_row(section, config, "all", "", "", "shared_issue_times", shared))
    rows.append(_row(section, config, "all", "", "", "blocks", cmp["bootstrap"]["blocks"]))
    return rows


def collect(exp: Experiment, runs: list[Run], baselines: list[str], out: Path) -> None:
    """Every number of the report into one CSV."""
    rows = _setup_rows(exp, list(dict.fromkeys(r.config for r in runs)))
    for name in baselines:
        rows += _scores_rows(exp, f"runs/{name}", name, "")
    for run in runs:
        rows += _run_rows(exp, run)
        rows += _scores_rows(exp, run.folder, run.config, run.seed)
    for config in dict.fromkeys(r.config for r in runs):
        mine = [r for r in runs if r.config == config]
        a = [r.folder for r in mine]
        seeds = [r.seed for r in mine]
        # extrapolation stores the forecast leads only, as RainNet and SimVP do; persistence
        # also stores reconstructions, which `verify --compare` cannot pair with them yet:
        # it is a reference row (its own scores)
        cmp = exp.compare(a, ["runs/extrapolation"] * len(a))
        rows += _compare_rows(cmp, config, seeds, "extrapolation")
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", type=Path, default=HERE / "work")
    p.add_argument("--scores", type=Path, default=SCORES, help="the CSV of every number")
    p.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    p.add_argument("--size", type=int, default=SIZE, help="training copy (frame size)")
    p.add_argument("--configs", default=",".join(CONFIGS), help="which configurations to run")
    p.add_argument("--seeds", type=int, default=len(SEEDS))
    p.add_argument("--jobs", type=int, default=2, help="runs trained at once (1 thread each)")
    p.add_argument("--report", action="store_true", help="only rewrite RESULTS.md")
    p.add_argument("--smoke", action="store_true", help="tiny models, 3 steps per run")
    args = p.parse_args(argv)
    from report import write_report  # the analysis, beside this script

    if not args.report:
        args.work.mkdir(parents=True, exist_ok=True)
        threads = max(1, (os.cpu_count() or 2) // args.jobs)
        exp = Experiment(args.work, args.size, threads, smoke=args.smoke)
        configs = [c for c in args.configs.split(",") if c]
        unknown = sorted(set(configs) - set(CONFIGS))
        if unknown:
            raise SystemExit(f"unknown configuration(s) {unknown}; valid: {', '.join(CONFIGS)}")
        runs = [Run(c, s) for s in SEEDS[: args.seeds] for c in configs]
        exp.ingest()
        pending = [r for r in runs if not (exp.work / r.folder / "scores.json").is_file()]
        print(f"{len(pending)} of {len(runs)} runs to train, {args.jobs} at a time", flush=True)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(exp.train, pending))
        baselines = exp.baselines(runs[0])
        collect(exp, runs, baselines, args.scores)
    write_report(args.scores, args.results)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
