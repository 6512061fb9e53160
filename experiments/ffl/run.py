"""Does the focal frame loss help? The whole study, with nowcast's command line only.

    python experiments/ffl/run.py              # the CPU study (hours on 2 cores; resumable)
    python experiments/ffl/run.py --report     # rewrite RESULTS.md from the runs there are
    python experiments/ffl/run.py --paper      # the paper's configuration, on a GPU

Every step is a ``nowcast`` command (ingest, train, predict, verify, plot), run in
``experiments/ffl/work/`` (``--work``); a run whose scores exist is skipped and an interrupted
one resumes (``nowcast train --resume``), so the script can be stopped and restarted at will.
It writes ``RESULTS.md`` and its figures beside itself.

Data: the bundled 11 days of DWD RADKLIM rain (10–20 May 2018), DWD's Z–R relation;
10–16 May train, 17 May validation, 18–20 May test (427 issue times every 10 minutes).

Studies (seeds 2021, 2022, …; every configuration sees identical data, steps and schedule):

- main: ``mse+mae`` (the paper's B-MSE + B-MAE) against ``ff-mse+mae`` (k = 2, ε = 0.01),
  ConvLSTM, 5 seeds each; persistence and extrapolation as reference rows;
- k: ``ff-mse+mae`` with k = 1, 3, 4 (3 seeds; k = 2 are the main runs' first three seeds,
  k = 0 is the plain loss exactly — checked with one run);
- frames: ``--loss-frames forecast`` against all 19 frames (focal loss, 3 seeds);
- ff-mse: ``ff-mse`` against ``mse``, the command users type (3 seeds each).

Configuration (CPU): ConvLSTM 3 layers × 16 channels on the 32×32 training copy (6 km cells),
10 observed and 10 forecast frames (50-minute nowcasts), batch 4, AdamHD at lr 5e-4 (the
paper's), 8 epochs of the windows every 10 minutes (2000 steps), scheduled sampling over the
run. ``--paper``: 120×120, 3 × 64, 30 epochs of non-overlapping windows, on CUDA.
"""

from __future__ import annotations

import argparse
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
THRESHOLDS = "0.5,2,5,10"
BLOCK_HOURS = 6  # three test days → 12 blocks of issue times
BOOT = 1000
SPLIT = [
    "--train", "2018-05-10:2018-05-16",
    "--valid", "2018-05-17:2018-05-17",
    "--test", "2018-05-18:2018-05-20",
]  # fmt: skip
CPU = {
    "size": 32, "layers": 3, "hidden": 16, "in-frames": 10, "out-frames": 10, "batch": 4,
    "stride": 2, "epochs": 8, "valid-samples": 64,
}  # fmt: skip
PAPER = {"size": 120, "layers": 3, "hidden": 64, "in-frames": 10, "out-frames": 10,
         "batch": 4, "epochs": 30, "device": "cuda"}  # fmt: skip
SEEDS = [2021, 2022, 2023, 2024, 2025]


@dataclass(frozen=True)
class Run:
    """One training run of the study."""

    name: str  # configuration, e.g. "ff" or "ff-k3"
    seed: int
    loss: str
    extra: tuple[str, ...] = ()

    @property
    def folder(self) -> str:
        return f"runs/{self.name}-s{self.seed}"


def plan(seeds: int) -> list[Run]:
    """Every run, the main comparison first."""
    out = []
    for s in SEEDS[:seeds]:
        out += [Run("plain", s, "mse+mae"), Run("ff", s, "ff-mse+mae")]
    out.append(Run("ff-k0", SEEDS[0], "ff-mse+mae", ("--ff-k", "0")))  # = plain, bit for bit
    for s in SEEDS[:3]:
        out += [Run(f"ff-k{k}", s, "ff-mse+mae", ("--ff-k", str(k))) for k in (1, 3, 4)]
        out.append(Run("ff-forecast", s, "ff-mse+mae", ("--loss-frames", "forecast")))
        out += [Run("mse", s, "mse"), Run("ff-mse", s, "ff-mse")]
    return out


@dataclass
class Study:
    work: Path
    config: dict[str, Any]
    threads: int
    log: list[str] = field(default_factory=list)

    def nowcast(self, *args: str, capture: bool = False) -> str:
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            env[var] = str(self.threads)
        cmd = [sys.executable, "-m", "nowcast_cli", *args]
        self.log.append("nowcast " + " ".join(args))
        out = subprocess.run(
            cmd, cwd=self.work, env=env, check=True, text=True,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        )  # fmt: skip
        return out.stdout if capture else ""

    def options(self) -> list[str]:
        out = []
        for k, v in self.config.items():
            out += [f"--{k}", str(v)]
        return out

    def ingest(self) -> None:
        if (self.work / "nowcast-data/netcdf.zarr/zarr.json").is_file():
            return
        self.nowcast("ingest", "netcdf", str(DATA), "--units", "mm", "--zr", "256,1.42",
                     "--attribution", ATTRIBUTION,
                     "--size", str(self.config["size"]), "-q")  # fmt: skip

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
            self.nowcast("train", "--model", "convlstm", "--loss", run.loss, "--seed",
                         str(run.seed), "--run", run.folder, *self.options(), *SPLIT,
                         *run.extra, "-q")  # fmt: skip
        self.verify(run.folder)
        print(f"  {run.folder}: {(time.time() - t0) / 60:.1f} min", flush=True)

    def verify(self, folder: str) -> None:
        self.nowcast("verify", folder, "--thresholds", THRESHOLDS, "--bootstrap", str(BOOT),
                     "--block-hours", str(BLOCK_HOURS), "-q")  # fmt: skip

    def baselines(self) -> None:
        first = f"runs/plain-s{SEEDS[0]}"
        for name in ("persistence", "extrapolation"):
            folder = self.work / "runs" / name
            if (folder / "scores.json").is_file():
                continue
            if name == "extrapolation" and importlib.util.find_spec("pysteps") is None:
                print("  extrapolation skipped: pysteps is not installed "
                      "(pip install 'nowcast[pysteps]')", flush=True)  # fmt: skip
                continue
            if folder.exists():
                shutil.rmtree(folder)
            self.nowcast("predict", "--model", name, "--run", first,
                         "--out", f"runs/{name}/forecasts.zarr", "-q")  # fmt: skip
            self.verify(f"runs/{name}")

    def compare(self, a: list[str], b: list[str]) -> dict[str, Any]:
        text = self.nowcast("verify", "--compare", ",".join(a), ",".join(b), "--thresholds",
                            THRESHOLDS, "--bootstrap", str(BOOT), "--block-hours",
                            str(BLOCK_HOURS), "--json", capture=True)  # fmt: skip
        result: dict[str, Any] = json.loads(text)
        return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", type=Path, default=HERE / "work")
    p.add_argument("--results", type=Path, default=HERE, help="where RESULTS.md and figures/ go")
    p.add_argument("--paper", action="store_true", help="the paper's configuration (CUDA)")
    p.add_argument("--seeds", type=int, default=5, help="seeds of the main comparison")
    p.add_argument("--jobs", type=int, default=2, help="runs trained at once (1 thread each)")
    p.add_argument("--only", choices=["main", "all"], default="all")
    p.add_argument("--report", action="store_true", help="only rewrite RESULTS.md")
    p.add_argument("--smoke", action="store_true", help="5 steps per run (--paper: on CUDA)")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 2) // args.jobs)
    config = PAPER if args.paper else CPU
    if args.smoke:  # on --paper the paper's model on CUDA, else a tiny one
        small = {} if args.paper else {"layers": 1, "hidden": 4}
        config = {**config, **small, "max-steps": 5, "valid-every": 5, "valid-samples": 4}
    study = Study(args.work, config, threads)
    runs = plan(args.seeds)
    if args.only == "main":
        runs = runs[: 2 * args.seeds]
    t0 = time.time()
    if not args.report:
        study.ingest()
        pending = [r for r in runs if not (study.work / r.folder / "scores.json").is_file()]
        print(f"{len(pending)} of {len(runs)} runs to train, {args.jobs} at a time", flush=True)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(study.train, pending))
        study.baselines()
    from report import write_report  # the analysis, beside this script

    seconds = None if args.report else time.time() - t0  # --report trains nothing
    write_report(study, runs, SEEDS, seconds, paper=args.paper, out_dir=args.results)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
