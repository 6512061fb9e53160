"""`nowcast demo`: the whole chain on the bundled 11 days of real DWD rain, in one directory.

1. ingest the RADKLIM YW sequence (CF-netCDF, 3168 five-minute frames, 10–20 May 2018) with
   DWD's Z–R relation into ``nowcast-data/netcdf.zarr`` with a 32×32 training copy;
2. train a small ConvLSTM twice, with ``ff-mse`` and with ``mse``: same seed, same data, same
   number of steps (10–16 May for training, 17 May for validation);
3. forecast the test days (18–20 May) with both (training ends with it), and with the
   persistence and (when pysteps is installed) extrapolation baselines;
4. verify every run with block-bootstrap intervals (6-hour blocks) and compare the two losses
   on the issue times they share;
5. draw the figures: a sample of every run's forecasts, CSI/HSS against lead time, the
   per-frame errors and focal weights, the training curves, an animation, the mean rain.

The configuration is scaled to finish in a few minutes on a laptop CPU: 32×32 frames (6 km
cells), 6 observed and 6 forecast frames (30-minute nowcasts), 2 layers × 16 channels, batch
8, Adam at lr 2e-3 for 300 steps. That is not the paper's recipe (120×120, 3 × 64, AdamHD at
5e-4, 30 epochs: days on a CPU) and its scores say nothing about the paper's claims; it shows
every step of the chain on real rain. ``experiments/ffl`` runs the real comparison.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nowcast_cli.errors import ConfigError, DataError

__all__ = ["DemoConfig", "DemoResult", "default_data", "run_demo"]

DATA = Path("sample_data/netcdf/radklim_yw_20180510_seq3168/example_areal_reference_data.nc")
ATTRIBUTION = (
    "Source: Deutscher Wetterdienst (RADKLIM YW), spatially transformed and cut out; "
    "via pycomlink example data"
)
SIZE = 32  # training copy: 190 km square → 6 km cells, cheap enough for a CPU
TRAIN: dict[str, Any] = {
    "model": "convlstm",
    "layers": 2,  # the paper: 3
    "hidden": 16,  # the paper: 64
    "in_frames": 6,  # the paper: 10
    "out_frames": 6,  # the paper: 10
    "size": SIZE,
    "batch": 8,  # the paper: 4
    "stride": 2,  # a window every 10 minutes
    "optimizer": "adam",  # AdamHD at 5e-4 (the paper) learns too little in 300 steps
    "lr": 2e-3,
    "epochs": 3,
    "max_steps": 300,
    "valid_samples": 64,
    "seed": 2021,
    "train": "2018-05-10:2018-05-16",
    "valid": "2018-05-17:2018-05-17",
    "test": "2018-05-18:2018-05-20",
}
LOSSES = ("ff-mse", "mse")
THRESHOLDS = (0.5, 2.0, 5.0, 10.0)
BLOCK_HOURS = 6.0  # the three test days give 12 bootstrap blocks
Progress = Callable[[dict[str, Any]], None]


def default_data() -> Path:
    """The bundled netCDF file beside the package (a clone of the repository has it)."""
    return Path(__file__).resolve().parents[1] / DATA


@dataclass(frozen=True)
class DemoConfig:
    """Options of `nowcast demo`.

    Attributes
    ----------
    directory : str
        Where everything is written; must be empty or new.
    quick : bool
        A few training steps and hourly windows (for tests: under a minute).
    data : str or None
        The RADKLIM netCDF file (default: the bundled one).
    steps : int or None
        Training steps per model (default 300; quick: 3).
    """

    directory: str = "nowcast-demo"
    quick: bool = False
    data: str | None = None
    steps: int | None = None

    def __post_init__(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps must be ≥ 1, got {self.steps}")


@dataclass
class DemoResult:
    """What the demo did and wrote."""

    directory: Path
    runs: dict[str, Path]  # label → run folder
    scores: list[dict[str, Any]]  # one row per run: its mean scores
    comparison: dict[str, Any]  # ff-mse − mse: differences with intervals
    files: list[Path] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)  # stage → seconds
    skipped: list[str] = field(default_factory=list)  # stages skipped, with the reason
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return {
            "directory": str(self.directory),
            "runs": {k: str(v) for k, v in self.runs.items()},
            "scores": self.scores,
            "comparison": self.comparison,
            "files": [str(p) for p in self.files],
            "stages": self.stages,
            "skipped": self.skipped,
            "seconds": self.seconds,
        }


class _Stages:
    """Times each stage and reports it."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress or (lambda event: None)
        self.seconds: dict[str, float] = {}

    def run(self, name: str, detail: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        self.progress({"event": "stage", "stage": name, "detail": detail})
        t0 = time.perf_counter()
        out = fn(*args, **kw)
        self.seconds[name] = time.perf_counter() - t0
        self.progress({"event": "done", "stage": name, "seconds": self.seconds[name]})
        return out


def run_demo(cfg: DemoConfig, progress: Progress | None = None) -> DemoResult:
    """Run the whole chain (see the module docstring) in ``cfg.directory``.

    Parameters
    ----------
    cfg : DemoConfig
        Where, and how much.
    progress : callable, optional
        Receives ``{"event": "stage"|"done", "stage", …}`` around every stage and, while a
        model trains, the training engine's events (``{"event": "step", …}``).

    Raises
    ------
    ConfigError
        If the directory exists and is not empty.
    DataError
        If the netCDF file is missing.
    """
    from nowcast_cli import verify
    from nowcast_cli.figures import PlotConfig, make_figure
    from nowcast_cli.ingest import ingest
    from nowcast_cli.predict import PredictConfig, forecast
    from nowcast_cli.train import configure, fit

    t0 = time.perf_counter()
    root = Path(cfg.directory).resolve()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigError(f"{root} exists and is not empty: the demo needs a fresh --dir")
    data = Path(cfg.data) if cfg.data is not None else default_data()
    if not data.is_file():
        raise DataError(
            f"{data}: the bundled RADKLIM sequence is not there (it comes with a clone of the "
            "repository); pass the file with --data"
        )
    root.mkdir(parents=True, exist_ok=True)
    stages = _Stages(progress)
    cwd = Path.cwd()
    os.chdir(root)  # every default (./nowcast-data, ./runs) resolves inside the demo folder
    try:
        report = stages.run(
            "ingest",
            f"{data.name} → nowcast-data/netcdf.zarr",
            ingest,
            "netcdf",
            [data],
            sizes=(SIZE,),
            # DWD's Z = 256 R^1.42, and the credit line the data's licence asks for
            reader_options={"units": "mm", "zr": (256.0, 1.42), "attribution": ATTRIBUTION},
        )
        store = Path(report.store)
        steps = cfg.steps or (3 if cfg.quick else int(TRAIN["max_steps"]))
        # validate thrice (at 100, 200 and 300 steps) or at the end: the last weights are
        # always a candidate for best.pt, which the test forecasts use
        every = steps // 3 if steps >= 30 and steps % 3 == 0 else steps
        opts = {**TRAIN, "store": str(store), "max_steps": steps, "valid_every": every}
        if cfg.quick:
            opts["stride"] = 12  # hourly windows: fewer test forecasts to make and score
        runs: dict[str, Path] = {}
        for loss in LOSSES:
            run = Path("runs") / f"convlstm-{loss}"
            train_cfg = configure({**opts, "loss": loss, "run": str(run)})
            stages.run(
                f"train {loss}",
                f"ConvLSTM 2×16 on {SIZE}×{SIZE}, {steps} steps",
                fit,
                train_cfg,
                progress=progress,
            )
            runs[f"convlstm {loss}"] = run
        first = runs[f"convlstm {LOSSES[0]}"]
        for run in list(runs.values()):
            stages.run(
                f"predict {run.name}", "the test days", forecast, PredictConfig(run=str(run))
            )
        baselines = ["persistence", "extrapolation"]
        skipped: list[str] = []
        if not _has_pysteps():
            baselines.remove("extrapolation")
            skipped.append(
                "extrapolation: pysteps is not installed (pip install 'nowcast[pysteps]')"
            )
        for name in baselines:
            out = Path("runs") / name / "forecasts.zarr"
            stages.run(
                f"predict {name}",
                "the same issue times",
                lambda n=name, o=out: forecast(PredictConfig(model=n, run=str(first), out=str(o))),
            )
            runs[name] = out.parent
        boot = 20 if cfg.quick else 200
        rows = []
        for label, run in runs.items():
            result = stages.run(
                f"verify {run.name}",
                f"{boot} bootstrap replicates, {BLOCK_HOURS:g}-hour blocks",
                verify.evaluate,
                run,
                thresholds=THRESHOLDS,
                bootstrap=boot,
                block_hours=BLOCK_HOURS,
            )
            verify.write_scores(result)
            rows.append(_score_row(label, result))
        comparison = stages.run(
            "compare",
            f"{LOSSES[0]} − {LOSSES[1]}, paired",
            verify.compare,
            runs[f"convlstm {LOSSES[0]}"],
            runs[f"convlstm {LOSSES[1]}"],
            thresholds=THRESHOLDS,
            bootstrap=boot,
            block_hours=BLOCK_HOURS,
        )
        order = [str(r) for r in runs.values()]
        figures: list[Path] = []

        def draw() -> None:
            figures.extend(make_figure(PlotConfig("sample", runs=tuple(order))))
            figures.extend(make_figure(PlotConfig("scores", runs=tuple(order))))
            figures.extend(make_figure(PlotConfig("frames", runs=(str(first),))))
            for run in order[:2]:
                figures.extend(make_figure(PlotConfig("training", runs=(run,))))
            figures.extend(make_figure(PlotConfig("animate", runs=tuple(order))))
            figures.extend(make_figure(PlotConfig("store", mean=True)))

        stages.run("plot", "sample, scores, frames, training, animation, store", draw)
        files = sorted(_written(root))
    finally:
        os.chdir(cwd)
    return DemoResult(
        directory=root,
        runs={k: root / v for k, v in runs.items()},
        scores=rows,
        comparison=_comparison(comparison),
        files=files,
        stages=stages.seconds,
        skipped=skipped,
        seconds=time.perf_counter() - t0,
    )


def _has_pysteps() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("pysteps", "cv2"))


def _score_row(label: str, result: Any) -> dict[str, Any]:
    """Mean-over-leads CSI/HSS per threshold, MSE and SSIM, with their 95% intervals."""
    row: dict[str, Any] = {"run": label, "samples": result.samples}
    for metric in ("csi", "hss"):
        for k, thr in enumerate(result.thresholds):
            lo, hi = result.mean_interval[metric]
            row[f"{metric}@{thr:g}"] = (float(result.mean[metric][k]), float(lo[k]), float(hi[k]))
    for metric in ("mse", "ssim"):
        lo, hi = result.mean_interval[metric]
        row[metric] = (float(result.mean[metric]), float(lo), float(hi))
    return row


def _comparison(c: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "a": c.a,
        "b": c.b,
        "shared": c.shared,
        "blocks": c.blocks,
        "cautions": c.cautions,
    }
    for metric in ("csi", "hss"):
        lo, hi = c.diff_interval[metric]
        for k, thr in enumerate(c.thresholds):
            out[f"{metric}@{thr:g}"] = (float(c.diff[metric][k]), float(lo[k]), float(hi[k]))
    for metric in ("mse", "ssim"):
        lo, hi = c.diff_interval[metric]
        out[metric] = (float(c.diff[metric]), float(lo), float(hi))
    return out


def _written(root: Path) -> list[Path]:
    """Every file written, with a Zarr store (a folder of chunks) listed as one entry."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for d in list(dirnames):
            if d.endswith(".zarr"):
                out.append(here / d)
                dirnames.remove(d)
        out.extend(here / f for f in filenames if not f.startswith("."))
    return out
