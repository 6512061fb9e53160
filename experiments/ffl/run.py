"""Does the focal frame loss help? The whole study, with nowcast's command line; resumable.

    python experiments/ffl/run.py                # the CPU study on the bundled data
    python experiments/ffl/run.py --hours 2      # one part: no run starts after 2 hours
    python experiments/ffl/run.py --report       # RESULTS.md again, from scores.csv alone
    python experiments/ffl/run.py --paper        # the paper's sizes, 30 epochs, on CUDA
    python experiments/ffl/run.py --store S.zarr --results DIR   # the study on your store

Design. Two arms differ in the loss only: ``mse+mae`` (B-MSE + B-MAE, the paper's baseline;
"plain") and ``ff-mse+mae`` (its focal-frame form, k = 2, ε = 0.01; "ff"). Every model is
trained with both, for each seed (2021, 2022, …: initial weights, data order and scheduled-
sampling draws) and each fold (three blocks of test days rotated over the store's days, each
with its own validation day and every other day for training, on both sides of the test block
where there are such days). One training run gives both selection rules, the same for both
arms: ``best.pt`` chosen by validation B-MSE + B-MAE (``nowcast train``'s default, independent
of the loss) and ``last.pt``, the final weights; each is forecast (``nowcast predict``) and
verified (``nowcast verify``) on the fold's test days.

Every step is a ``nowcast`` command run in ``experiments/ffl/work/`` (``--work``), with a fixed
number of threads per process (``--jobs`` runs at once, the cores shared between them). A run's
folder is complete when its ``.done`` marker exists; an interrupted run resumes (``nowcast
train --resume``, ``nowcast predict`` skips the issue times it wrote), and a run whose scores are
already in ``scores.csv`` is skipped even without its folder, so new arms or models can be added
later by rerunning this script. At the end of every invocation the finished runs' scores go to
``scores.csv`` (tidy: one row per run × selection rule × lead × threshold × score) together with
each comparison's block- and hierarchical-bootstrap intervals (computed from the runs' per-block
tables, kept in ``blocks/`` beside scores.csv), and report.py writes RESULTS.md from that file
alone.

CPU configuration (this machine, 2 cores): the 32×32 training copy (6 km cells) of 10–20 May
2018, 10 observed and 10 forecast frames (50-minute nowcasts), batch 4, AdamHD at lr 5e-4 (the
paper's), 2 epochs of the windows every 10 minutes (~500 steps), validation every 50 steps on
64 windows, ConvLSTM 3 × 16, PredRNN 3 × 8 and SimVP (N_T = 4, hid_S = 16; it forecasts the
10 frames at once, so its focal weights are over those 10), 8 seeds, 3 folds. ``--paper``: the
120×120 copy, 3 × 64 (SimVP at its authors' defaults), 30 epochs of non-overlapping windows,
validation every epoch on every window, on CUDA.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterable, Iterator
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
THRESHOLDS = (0.5, 2.0, 5.0, 10.0)
BLOCK_HOURS = 6  # three test days → 12 blocks of issue times per fold
BOOT = 2000
SEEDS = tuple(range(2021, 2029))
ARMS = {"plain": "mse+mae", "ff": "ff-mse+mae"}  # the comparison is ff − plain
RULES = ("val-bmse+bmae", "last")  # best.pt under train's default --select, and last.pt
#: scores kept per run in scores.csv (all of nowcast verify's but ETS)
KEEP = ("csi", "pod", "far", "hss", "bias", "mse", "mae", "b_mse", "b_mae", "gdl", "psnr", "ssim")
COLUMNS = (
    "model", "fold", "arm", "seed", "rule", "lead_min", "threshold", "score", "stat", "value",
)  # fmt: skip
CPU = {
    "size": 32, "in-frames": 10, "out-frames": 10, "batch": 4, "stride": 2, "epochs": 2,
    "valid-every": 50, "valid-samples": 64, "device": "cpu",
}  # fmt: skip
#: the CPU sizes; SimVP as in experiments/beat_extrapolation (N_T = 4, hid_S = 16, hid_T = 64)
CPU_MODELS = {
    "convlstm": {"layers": 3, "hidden": 16},
    "predrnn": {"layers": 3, "hidden": 8},
    "simvp": {"layers": 4, "hidden": 16},
}
PAPER = {"size": 120, "in-frames": 10, "out-frames": 10, "batch": 4, "epochs": 30,
         "device": "cuda"}  # fmt: skip
#: the paper's sizes; SimVP at its authors' main.py defaults (N_T = 8, hid_S = 64, hid_T = 256)
PAPER_MODELS = {
    "convlstm": {"layers": 3, "hidden": 64},
    "predrnn": {"layers": 3, "hidden": 64},
    "simvp": {"layers": 8, "hidden": 64},
}
#: the smallest sizes each model accepts, for --smoke (SimVP's translator needs N_T ≥ 2)
SMOKE_MODELS = {"convlstm": {"layers": 1, "hidden": 4}, "predrnn": {"layers": 1, "hidden": 4},
                "simvp": {"layers": 2, "hidden": 4}}  # fmt: skip


# -- folds ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fold:
    """Test, validation and training days of one fold, as ``nowcast train`` date ranges."""

    name: str
    train: str
    valid: str
    test: str


def _ranges(days: list[dt.date], positions: Iterable[int]) -> str:
    """``A:B,C:D`` of the days at `positions`, runs of consecutive positions as one range."""
    pos = sorted(positions)
    out, start = [], None
    for i, p in enumerate(pos):
        if start is None:
            start = p
        if i + 1 == len(pos) or pos[i + 1] != p + 1:
            out.append(f"{days[start].isoformat()}:{days[p].isoformat()}")
            start = None
    return ",".join(out)


def make_folds(days: list[dt.date], k: int = 3) -> list[Fold]:
    """k folds over the store's days (sorted, with data): test blocks rotated over them.

    V = max(1, D // 11) validation days and T = (D − (k − 1)·V) // k test days per fold; the
    test blocks are spread evenly from the first day to the last, each fold validates on the V
    days before its test block (after it, for the first), and trains on every other day. The
    bundled 11 days give test 10–12, 14–16 and 18–20 May, validation 13, 13 and 17 May.
    """
    n = len(days)
    v = max(1, n // 11)
    t = (n - (k - 1) * v) // k
    if k < 2 or t < 1 or n - t - v < 1:
        raise SystemExit(
            f"Error: the store has {n} day(s) with data: too few for {k} folds "
            "(each needs test, validation and training days)"
        )
    folds = []
    for i in range(k):
        first = round(i * (n - t) / (k - 1))
        test = range(first, first + t)
        valid = range(first - v, first) if i > 0 else range(first + t, first + t + v)
        train = [p for p in range(n) if p not in test and p not in valid]
        folds.append(Fold(f"f{i + 1}", _ranges(days, train), _ranges(days, valid),
                          _ranges(days, test)))  # fmt: skip
    return folds


# -- runs ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """One training run: a model trained with one arm's loss on one fold from one seed."""

    model: str
    fold: Fold
    arm: str
    seed: int

    @property
    def folder(self) -> str:
        return f"runs/{self.model}-{self.fold.name}-{self.arm}-s{self.seed}"

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.model, self.fold.name, self.arm, str(self.seed))

    def blocks(self, results: Path, rule: str) -> Path:
        """This run's per-block tables under `rule`, kept with the results (committed)."""
        return results / "blocks" / f"{Path(self.folder).name}-{rule}.npz"


def plan(models: list[str], folds: list[Fold], seeds: Iterable[int]) -> list[Run]:
    """Every run, seed by seed (so that a part ends with whole seeds), model by model."""
    return [Run(m, f, a, s) for m in models for s in seeds for f in folds for a in ARMS]


@dataclass
class Study:
    work: Path
    store: Path
    config: dict[str, Any]
    models: dict[str, dict[str, Any]]
    threads: int
    results: Path
    deadline: float = float("inf")
    lock: threading.Lock = field(default_factory=threading.Lock)

    def nowcast(self, *args: str, folder: Path | None = None) -> None:
        """Run one nowcast command; its CPU and wall time go to ``folder/timing.json``."""
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            env[var] = str(self.threads)
        cmd = [sys.executable, "-m", "nowcast_cli", *args]
        t0 = time.time()
        proc = subprocess.Popen(cmd, cwd=self.work, env=env, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if folder is not None and folder.is_dir():  # an interrupted command's time counts too
            what = args[0] if proc.returncode == 0 else f"{args[0]} (exit {proc.returncode})"
            _add_time(folder, what, usage.ru_utime + usage.ru_stime, time.time() - t0)
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, ["nowcast", *args])

    def options(self, model: str) -> list[str]:
        out = []
        for k, v in {**self.config, **self.models[model]}.items():
            out += [f"--{k}", str(v)]
        return out

    def ingest(self) -> None:
        if (self.work / self.store / "zarr.json").is_file():
            return
        self.nowcast("ingest", "netcdf", str(DATA), "--units", "mm", "--zr", "256,1.42",
                     "--attribution", ATTRIBUTION, "--out", str(self.store),
                     "--size", str(self.config["size"]), "-q")  # fmt: skip

    def do(self, run: Run) -> bool:
        """Train, forecast under both rules, verify and tabulate one run; False if not started."""
        f = self.work / run.folder
        if (f / ".done").is_file():
            return True
        if time.time() > self.deadline:
            return False
        t0 = time.time()
        if not (f / ".trained").is_file():
            if (f / "last.pt").is_file():
                self.nowcast("train", "--resume", "--run", run.folder, "--no-predict", "-q",
                             folder=f)  # fmt: skip
            else:
                if f.exists():  # stopped before its first checkpoint: start again
                    shutil.rmtree(f)
                self.nowcast("train", "--model", run.model, "--loss", ARMS[run.arm],
                             "--seed", str(run.seed), "--run", run.folder,
                             "--store", str(self.store), *self.options(run.model),
                             "--train", run.fold.train, "--valid", run.fold.valid,
                             "--test", run.fold.test, "--no-predict", "-q", folder=f)  # fmt: skip
            (f / ".trained").touch()
        for rule in RULES:
            self.forecast(run, rule, f)
        (f / ".done").touch()
        print(f"  {run.folder}: {(time.time() - t0) / 60:.1f} min", flush=True)
        return True

    def forecast(self, run: Run, rule: str, run_dir: Path) -> None:
        """Forecast the test days with one rule's weights, verify, and keep per-block tables."""
        folder = run.folder
        out = run_dir if rule == RULES[0] else run_dir / rule
        if not (out / ".predicted").is_file():
            extra = [] if rule == RULES[0] else ["--checkpoint", rule, "--out",
                                                 f"{folder}/{rule}/forecasts.zarr"]  # fmt: skip
            self.nowcast("predict", "--run", folder, *extra, "-q", folder=run_dir)
            (out / ".predicted").touch()
        self.verify(out, run_dir)
        blocks = run.blocks(self.results, rule)
        if not blocks.is_file():
            import stats

            t0, c0 = time.time(), resource.getrusage(resource.RUSAGE_THREAD)
            rb = stats.run_blocks(out / "forecasts.zarr", THRESHOLDS, BLOCK_HOURS)
            _check_blocks(rb, out / "scores.csv")
            blocks.parent.mkdir(parents=True, exist_ok=True)
            rb.save(blocks)
            c1 = resource.getrusage(resource.RUSAGE_THREAD)
            cpu = c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime
            _add_time(run_dir, "blocks", cpu, time.time() - t0)

    def verify(self, out: Path, run_dir: Path) -> None:
        if not (out / "scores.csv").is_file():
            self.nowcast("verify", str(out.relative_to(self.work)), "--thresholds",
                         ",".join(f"{t:g}" for t in THRESHOLDS), "--block-hours",
                         str(BLOCK_HOURS), "--bootstrap", "0", "-q", folder=run_dir)  # fmt: skip

    def baselines(self, folds: list[Fold], done: list[Run]) -> None:
        """Persistence and extrapolation on each fold's test issue times (one run each)."""
        import importlib.util

        for fold in folds:
            ref = next((r for r in done if r.fold == fold), None)
            if ref is None:
                continue
            for name in ("persistence", "extrapolation"):
                folder = self.work / "runs" / f"{fold.name}-{name}"
                if (folder / ".done").is_file():
                    continue
                if name == "extrapolation" and importlib.util.find_spec("pysteps") is None:
                    print("  extrapolation skipped: pysteps is not installed "
                          "(pip install 'nowcast[pysteps]')", flush=True)  # fmt: skip
                    continue
                if folder.exists():
                    shutil.rmtree(folder)
                self.nowcast("predict", "--model", name, "--run", ref.folder, "--out",
                             f"runs/{fold.name}-{name}/forecasts.zarr", "-q")  # fmt: skip
                self.verify(folder, folder)
                (folder / ".done").touch()


def _add_time(folder: Path, what: str, cpu: float, wall: float) -> None:
    path = folder / "timing.json"
    entries = json.loads(path.read_text()) if path.is_file() else []
    entries.append({"command": what, "cpu_s": round(cpu, 2), "wall_s": round(wall, 2)})
    path.write_text(json.dumps(entries, indent=1))


def _check_blocks(rb: Any, scores_csv: Path) -> None:
    """The per-block tables must give `nowcast verify`'s own per-lead scores."""
    import math

    import numpy as np
    import stats

    ours = stats.lead_scores(rb)
    with scores_csv.open() as fh:
        for row in csv.DictReader(fh):
            if row["metric"] not in ours or int(row["lead_minutes"]) <= 0:
                continue
            v = ours[row["metric"]][int(row["lead"]) - 1]
            if row["threshold"]:
                v = v[THRESHOLDS.index(float(row["threshold"]))]
            theirs = float(row["value"])
            if not (math.isclose(float(v), theirs, rel_tol=1e-9, abs_tol=1e-12)
                    or (np.isnan(v) and math.isnan(theirs))):  # fmt: skip
                raise SystemExit(
                    f"Error: {scores_csv}: {row['metric']} at lead {row['lead']} is {theirs} "
                    f"in nowcast verify's scores but {float(v)} from the per-block tables"
                )


# -- the tidy CSV --------------------------------------------------------------------------------
def _num(x: Any) -> str:
    v = float(x)
    return "NaN" if v != v else f"{v:.7g}"


def _row(**kw: Any) -> dict[str, str]:
    return {c: str(kw.get(c, "")) for c in COLUMNS}


def run_rows(study: Study, run: Run) -> Iterator[dict[str, str]]:
    """Scores of both rules, training diagnostics and costs of a finished run."""
    f = study.work / run.folder
    base = {"model": run.model, "fold": run.fold.name, "arm": run.arm, "seed": run.seed}
    for rule in RULES:
        out = f if rule == RULES[0] else f / rule
        with (out / "scores.csv").open() as fh:
            for r in csv.DictReader(fh):
                if r["metric"] in KEEP and int(r["lead_minutes"]) > 0:
                    yield _row(**base, rule=rule, lead_min=r["lead_minutes"],
                               threshold=r["threshold"], score=r["metric"],
                               value=_num(r["value"]))  # fmt: skip
    config = tomllib.loads((f / "config.toml").read_text())
    step_min = int(config["data"]["interval_seconds"]) // 60
    m = int(config["in_frames"])
    with (f / "frames.csv").open() as fh:
        frames = list(csv.DictReader(fh))
    for split in ("valid", "train"):
        rows = [r for r in frames if r["split"] == split]
        last = max((int(r["step"]) for r in rows), default=None)
        for r in rows:
            if int(r["step"]) != last:
                continue
            lead = (int(r["frame"]) - (m - 1)) * step_min
            yield _row(**base, rule="train", lead_min=lead, score=f"delta_x_{split}",
                       value=_num(r["delta_x"]))  # fmt: skip
            if r["weight"]:
                yield _row(**base, rule="train", lead_min=lead, score=f"weight_{split}",
                           value=_num(r["weight"]))  # fmt: skip
    with (f / "metrics.csv").open() as fh:
        metrics = list(csv.DictReader(fh))
    valid = [r for r in metrics if r["split"] == "valid"]
    steps = max(int(r["step"]) for r in metrics if r["split"] == "train")
    chosen = min(valid, key=lambda r: float(r["select_score"]))  # first of equal scores
    by_loss = min(valid, key=lambda r: float(r["loss"]))
    timing = json.loads((f / "timing.json").read_text())
    train = [t for t in timing if t["command"].startswith("train")]
    costs = {
        "steps": steps,  # trained (= planned unless --max-steps stopped it)
        "planned_steps": int(config["plan"]["planned_steps"]),
        "threads": study.threads,
        "selected_step": int(chosen["step"]),  # val-bmse+bmae's choice (best.pt)
        "val_loss_step": int(by_loss["step"]),  # the run's own validation loss would choose
        "train_cpu_s": sum(t["cpu_s"] for t in train),
        "train_wall_s": sum(t["wall_s"] for t in train),
        "cpu_s": sum(t["cpu_s"] for t in timing),
        "wall_s": sum(t["wall_s"] for t in timing),
    }
    for k, v in costs.items():
        yield _row(**base, rule="run", score=k, value=v)


def baseline_rows(study: Study, fold: Fold) -> Iterator[dict[str, str]]:
    for name in ("persistence", "extrapolation"):
        path = study.work / "runs" / f"{fold.name}-{name}" / "scores.csv"
        if not path.is_file():
            continue
        with path.open() as fh:
            for r in csv.DictReader(fh):
                if r["metric"] in KEEP and int(r["lead_minutes"]) > 0:
                    yield _row(fold=fold.name, arm=name, lead_min=r["lead_minutes"],
                               threshold=r["threshold"], score=r["metric"],
                               value=_num(r["value"]))  # fmt: skip


def design_rows(study: Study, folds: list[Fold], models: list[str]) -> Iterator[dict[str, str]]:
    """What the runs were: each fold's days and each model's options (string values)."""
    for fold in folds:
        for split in ("train", "valid", "test"):
            yield _row(fold=fold.name, rule="fold", score=split, value=getattr(fold, split))
    for model in models:
        yield _row(model=model, rule="config", score="options",
                   value=" ".join(study.options(model)))  # fmt: skip
    yield _row(rule="config", score="thresholds", value=",".join(f"{t:g}" for t in THRESHOLDS))
    yield _row(rule="config", score="block_hours", value=BLOCK_HOURS)
    yield _row(rule="config", score="bootstrap", value=BOOT)


def bootstrap_rows(study: Study, runs: list[Run], model: str, rule: str,
                   folds: list[Fold]) -> tuple[list[dict[str, str]], int]:  # fmt: skip
    """ff − plain: estimate, block and hierarchical intervals, per fold and pooled.

    Uses the seeds whose runs (both arms, every fold) have per-block tables; returns the rows
    and the number of those seeds (no rows with fewer than two).
    """
    import stats

    have = {r.key: r for r in runs if r.blocks(study.results, rule).is_file()}
    seeds = [s for s in SEEDS
             if all((model, f.name, a, str(s)) in have for f in folds for a in ARMS)]  # fmt: skip
    if len(seeds) < 2:
        return [], len(seeds)

    def load(fold: Fold, arm: str, seed: int) -> Any:
        run = have[(model, fold.name, arm, str(seed))]
        return stats.RunBlocks.load(run.blocks(study.results, rule))

    design = [[(load(f, "ff", s), load(f, "plain", s)) for s in seeds] for f in folds]
    out = []
    for name, part in [(f.name, [d]) for f, d in zip(folds, design, strict=True)] + [
        ("pooled", design)
    ]:
        est = stats.estimate(part)
        block = stats.block_replicates(part, BOOT, seed=0)
        hier = stats.hierarchical_replicates(part, BOOT, seed=1)
        base = {"model": model, "fold": name, "arm": "ff-plain", "rule": rule}
        out.append(_row(**base, score="seeds", stat="n", value=len(seeds)))
        for score, value in est.items():
            lo_b, hi_b = stats.interval(block[score])
            lo_h, hi_h = stats.interval(hier[score])
            values = {"estimate": value, "block_low": lo_b, "block_high": hi_b,
                      "hier_low": lo_h, "hier_high": hi_h}  # fmt: skip
            if score in stats.CATEGORICAL:
                cells = [(f"{t:g}", {k: v[j] for k, v in values.items()})
                         for j, t in enumerate(THRESHOLDS)]  # fmt: skip
            else:
                cells = [("", values)]
            for thr, vals in cells:
                for stat, v in vals.items():
                    out.append(_row(**base, threshold=thr, score=score, stat=stat, value=_num(v)))
    return out, len(seeds)


class LoadSampler(threading.Thread):
    """The machine's 1-minute load average, sampled every minute while the study runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop_event.wait(60):
                return

    def stop(self) -> None:
        self._stop_event.set()

    def mean(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else float("nan")


def part_rows(t0: float, load: float, finished: int) -> list[dict[str, str]]:
    """This invocation: start (UTC), wall-clock and CPU time (itself and its commands), the
    runs it finished and the machine's mean load average while it ran."""
    start = dt.datetime.fromtimestamp(t0, dt.UTC).strftime("%Y-%m-%dT%H:%MZ")
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    values = {
        "wall_s": round(time.time() - t0), "cpu_s": round(cpu), "runs": finished,
        "load": round(load, 2), "cores": os.cpu_count() or 0, "commit": _commit(),
    }  # fmt: skip
    return [_row(fold=start, rule="part", score=k, value=v) for k, v in values.items()]


def _commit() -> str:
    """The code's git commit (``+changes`` when nowcast_cli or the study differ from it)."""
    paths = ["nowcast_cli", "experiments/ffl/run.py", "experiments/ffl/stats.py"]
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, text=True,
                              capture_output=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                *paths], cwd=REPO, text=True, capture_output=True,
                               check=True).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return ""
    return head + ("+changes" if dirty.strip() else "")


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open() as fh:
        return list(csv.DictReader(fh))


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def run_keys(rows: list[dict[str, str]]) -> set[tuple[str, str, str, str]]:
    """Runs whose scores are in the CSV under both rules."""
    by_rule: dict[tuple[str, str, str, str], set[str]] = {}
    for r in rows:
        if r["seed"] and r["rule"] in RULES and not r["stat"]:
            by_rule.setdefault((r["model"], r["fold"], r["arm"], r["seed"]), set()).add(r["rule"])
    return {k for k, v in by_rule.items() if v == set(RULES)}


def _group(row: dict[str, str]) -> tuple[str, ...]:
    """Rows that are written together: a newer group replaces the CSV's rows of that group."""
    if row["stat"]:  # a comparison's bootstrap, every fold
        return ("bootstrap", row["model"], row["rule"])
    if row["seed"]:  # a run
        return ("run", row["model"], row["fold"], row["arm"], row["seed"])
    if row["rule"] in ("fold", "config"):  # what the runs were
        return ("design", row["model"], row["fold"], row["rule"], row["score"])
    if row["rule"] == "part":  # one invocation of this script, by its start time
        return ("part", row["fold"])
    return ("baseline", row["fold"], row["arm"])


def tabulate(study: Study, csv_path: Path, runs: list[Run], folds: list[Fold],
             models: list[str], part: list[dict[str, str]] | None = None) -> None:  # fmt: skip
    """Merge the finished runs into the CSV, and the bootstrap rows that can be recomputed.

    A comparison's bootstrap needs every run's per-block tables (the results' ``blocks/``): it is
    recomputed only when those cover the same seeds as the CSV's scores; otherwise the CSV's
    earlier bootstrap rows stay.
    """
    old = read_csv(csv_path)
    done = [r for r in runs if (study.work / r.folder / ".done").is_file()]
    new = list(design_rows(study, folds, models)) + list(part or [])
    for fold in folds:
        new += list(baseline_rows(study, fold))
    for run in done:
        new += list(run_rows(study, run))
    groups = {_group(r) for r in new}
    merged = [r for r in old if _group(r) not in groups] + new
    in_csv = run_keys(merged)
    for model in models:
        for rule in RULES:
            seeds_csv = [s for s in SEEDS if all((model, f.name, a, str(s)) in in_csv
                                                 for f in folds for a in ARMS)]  # fmt: skip
            boot_rows, n = bootstrap_rows(study, runs, model, rule, folds)
            if boot_rows and n == len(seeds_csv):
                merged = [r for r in merged if _group(r) != ("bootstrap", model, rule)]
                merged += boot_rows
    merged.sort(key=lambda r: tuple(_sort_key(r[c]) for c in COLUMNS))
    write_csv(csv_path, merged)


def _sort_key(x: str) -> tuple[int, float, str]:
    try:
        return (0, float(x), "")
    except ValueError:
        return (1, 0.0, x)


def store_days(store: Path) -> list[dt.date]:
    import numpy as np

    from nowcast_cli.store import Store

    with Store.open(store) as s:
        days = np.unique(np.asarray(s.times, dtype=np.int64) // 86_400)
    return [dt.date(1970, 1, 1) + dt.timedelta(days=int(d)) for d in days]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", type=Path, default=None, help="runs go here (default: work/ "
                   "beside this script; work-paper/ with --paper, work-smoke*/ with --smoke, "
                   "./ffl-work with --store)")  # fmt: skip
    p.add_argument("--results", type=Path, default=None, help="scores.csv, RESULTS.md and "
                   "figures/ (default: beside this script; paper/ there with --paper; "
                   "results/ in the work folder with --smoke; ./ffl-results with --store)",
                   )  # fmt: skip
    p.add_argument("--store", type=Path, default=None, help="an ingested store to study "
                   "instead of the bundled data")  # fmt: skip
    p.add_argument("--paper", action="store_true", help="the paper's configuration (CUDA)")
    p.add_argument("--models", default="convlstm,predrnn,simvp")
    p.add_argument("--seeds", type=int, default=len(SEEDS), help="seeds per arm (≤ 8)")
    p.add_argument("--folds", type=int, default=3, help="folds to run (of 3)")
    p.add_argument("--jobs", type=int, default=2, help="runs trained at once")
    p.add_argument("--hours", type=float, default=None, help="start no run after this long")
    p.add_argument("--report", action="store_true", help="only rewrite RESULTS.md")
    p.add_argument("--smoke", action="store_true", help="5 steps per run (--paper: on CUDA)")
    args = p.parse_args(argv)
    if args.smoke:
        work = HERE / ("work-smoke-paper" if args.paper else "work-smoke")
        results = work / "results"
    elif args.store is not None:
        work, results = Path("ffl-work"), Path("ffl-results")
    elif args.paper:
        work, results = HERE / "work-paper", HERE / "paper"
    else:
        work, results = HERE / "work", HERE
    work, results = args.work or work, args.results or results
    results.mkdir(parents=True, exist_ok=True)
    csv_path = results / "scores.csv"
    from report import write_report  # the analysis, beside this script

    if args.report:
        write_report(csv_path, results)
        return
    work.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 2) // args.jobs)
    config = dict(PAPER if args.paper else CPU)
    model_sizes = PAPER_MODELS if args.paper else CPU_MODELS
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in model_sizes]
    if unknown:
        raise SystemExit(f"Error: --models: no configuration for {', '.join(unknown)} "
                         f"(have {', '.join(model_sizes)})")  # fmt: skip
    if args.smoke:  # on --paper the paper's model on CUDA, else a tiny one
        small = {m: ({} if args.paper else SMOKE_MODELS[m]) for m in models}
        model_sizes = {m: {**model_sizes[m], **small[m]} for m in models}
        # windows every hour instead of every 10 minutes: fewer to forecast and verify
        config = {**config, "max-steps": 5, "valid-every": 5, "valid-samples": 4, "stride": 12}
    store = args.store.resolve() if args.store else Path("nowcast-data/ffl.zarr")
    study = Study(work, store, config, model_sizes, threads, results)
    t0 = time.time()
    load = LoadSampler()
    load.start()
    if args.hours is not None:
        study.deadline = t0 + 3600 * args.hours
    if args.store is None:  # the bundled data, ingested once into the work folder
        study.ingest()
    folds = make_folds(store_days(work / store))[: args.folds]
    runs = plan(models, folds, SEEDS[: args.seeds])
    listed = run_keys(read_csv(csv_path))
    pending = [r for r in runs
               if r.key not in listed and not (work / r.folder / ".done").is_file()]  # fmt: skip
    print(f"{len(pending)} of {len(runs)} runs to train, {args.jobs} at a time, "
          f"{threads} thread(s) each", flush=True)  # fmt: skip
    failed = threading.Event()

    def do(run: Run) -> bool:  # after a failure (or Ctrl-C) start nothing more
        if failed.is_set():
            return False
        try:
            return study.do(run)
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        started = list(pool.map(do, pending))
    if not all(started):
        print(f"  {started.count(False)} run(s) left for the next part (--hours)", flush=True)
    study.baselines(folds, [r for r in runs if (work / r.folder / ".done").is_file()])
    load.stop()
    part = part_rows(t0, load.mean(), sum(1 for ok in started if ok))
    tabulate(study, csv_path, runs, folds, models, part)
    write_report(csv_path, results)
    print(f"done in {(time.time() - t0) / 60:.0f} min: {csv_path}, {results / 'RESULTS.md'}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
