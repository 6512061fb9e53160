"""Run folders: ``runs/<model>-<loss>-<UTC time>/`` in the working directory.

A run folder holds what one training run made and what later commands add::

    config.toml      the resolved options, plus [data], [split] and [plan] (what was used)
    metrics.csv      one row per training step and per validation (loss, lr, samples/s, …)
    frames.csv       per epoch and split: ΔX_t and W_t for every output frame t
    last.pt          the latest checkpoint (weights, optimizer, step, …; atomic writes)
    best.pt          the checkpoint with the lowest validation loss so far
    forecasts.zarr   written by ``nowcast predict``
    scores.csv/json  written by ``nowcast verify``
    figures/         written by ``nowcast plot``

This module names, finds and summarizes run folders; it does not import torch.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import tomllib
from pathlib import Path
from typing import Any

from nowcast_cli.errors import RunError

__all__ = [
    "DEFAULT_DIR",
    "best_checkpoint",
    "is_baseline",
    "list_runs",
    "new_run_dir",
    "resolve_run",
    "run_summary",
]

DEFAULT_DIR = "runs"
_STAMP = "%Y%m%d-%H%M%S"


def default_runs_dir() -> Path:
    """``./runs`` in the working directory."""
    return Path.cwd() / DEFAULT_DIR


def new_run_dir(
    model: str, loss: str | None, root: Path | None = None, now: dt.datetime | None = None
) -> Path:
    """Create and return ``<root>/<model>-<loss>-<UTC YYYYmmdd-HHMMSS>`` (``-2``… if taken).

    A baseline, which has no loss, gets ``<root>/<model>-<UTC YYYYmmdd-HHMMSS>``.
    """
    root = root or default_runs_dir()
    stamp = (now or dt.datetime.now(dt.UTC)).strftime(_STAMP)
    base = f"{model}-{loss}-{stamp}" if loss else f"{model}-{stamp}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        for k in range(1, 1000):
            path = root / (base if k == 1 else f"{base}-{k}")
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
    except OSError as exc:
        raise RunError(f"{root}: cannot create a run folder ({exc.strerror or exc})") from None
    raise RunError(f"{root}: too many runs named {base}")


def is_run(path: Path) -> bool:
    """Whether `path` is a run folder (it has a config.toml)."""
    return (path / "config.toml").is_file()


def list_runs(root: Path | None = None) -> list[Path]:
    """Run folders under `root` (default ./runs), oldest first (by their config's time)."""
    d = root or default_runs_dir()
    if not d.is_dir():
        return []
    runs = [p for p in d.iterdir() if p.is_dir() and is_run(p)]
    return sorted(runs, key=lambda p: ((p / "config.toml").stat().st_mtime, p.name))


def is_baseline(path: Path) -> bool:
    """Whether run folder `path` holds a baseline's forecasts, not a training run.

    `nowcast predict --model persistence` (or extrapolation) writes such a folder, whose
    config.toml alone has ``like_run``.
    """
    try:
        return "like_run" in read_config(path)
    except RunError:
        return False


def resolve_run(path: str | Path | None, what: str = "run") -> Path:
    """The training run a command should use: the given folder, else the latest in ./runs.

    A baseline's folder (`is_baseline`) is never one: given, it is refused; by default,
    the latest run that trained is taken.

    Raises
    ------
    RunError
        If the given folder is not a training run, or none exists.
    """
    if path is not None:
        check_local(path)
        p = Path(path)
        if not p.is_dir():
            raise RunError(f"{p}: no such run folder")
        if not is_run(p):
            raise RunError(f"{p}: not a run folder (no config.toml)")
        if is_baseline(p):
            model = read_config(p).get("model", "a baseline")
            raise RunError(
                f"{p}: holds {model} forecasts (a baseline), not a trained model; the {what} "
                "must be one made by `nowcast train`"
            )
        return p
    found = list_runs()
    trained = [r for r in found if not is_baseline(r)]
    if not trained:
        only = f" (only baselines' forecasts: {len(found)})" if found else ""
        raise RunError(
            f"no {what} given and none in ./{DEFAULT_DIR}{only}; "
            "train one first: nowcast train --model NAME --loss NAME"
        )
    return trained[-1]


def check_local(path: str | Path) -> None:
    """Raise unless `path` is a local folder: run folders are never URLs.

    A run is written by appends (``metrics.csv``), atomic renames (checkpoints, config,
    scores) and a resume reads back what it wrote; object storage has neither appends nor
    renames, and a run folder is small enough to copy (``aws s3 sync``). Stores, which are
    large and written chunk by chunk, may be URLs.
    """
    if isinstance(path, str) and "://" in path and not path.startswith("file://"):
        raise RunError(
            f"{path}: run folders are local folders, not URLs (only stores may be URLs); "
            "copy the run folder here (e.g. aws s3 sync URL ./runs/NAME) and pass that"
        )


def best_checkpoint(run: Path) -> Path:
    """``best.pt`` of a run, or ``last.pt`` when it has no validation (hence no best.pt)."""
    for name in ("best.pt", "last.pt"):
        if (run / name).is_file():
            return run / name
    raise RunError(f"{run}: no checkpoint (best.pt or last.pt); was the run interrupted early?")


def read_config(run: Path) -> dict[str, Any]:
    """The run's config.toml as a dict (options and the [data]/[split]/[plan] tables)."""
    try:
        return tomllib.loads((run / "config.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RunError(f"{run / 'config.toml'}: cannot read ({exc})") from None


def run_summary(run: Path) -> dict[str, Any]:
    """What ``nowcast list runs`` and ``nowcast info RUN`` show about a run.

    Returns
    -------
    dict
        path, model, loss, store, steps (done), planned steps, epochs, the ``--select``
        rule with the score and step of the checkpoint it chose (``best.pt``; the score as
        the rule minimises it, so ``val-csi`` shows −CSI), last training loss, checkpoints
        present, split summary; ``baseline`` is True for the folder of a baseline's
        forecasts (`nowcast predict --model persistence`), which has no training: its
        steps, planned steps and rule are None and its split says what was forecast.
    """
    cfg = read_config(run)
    head = {
        "path": str(run),
        "name": run.name,
        "model": cfg.get("model"),
        "loss": cfg.get("loss"),
        "store": cfg.get("store"),
    }
    if "like_run" in cfg:  # a baseline's folder (`is_baseline`)
        split = cfg.get("split")
        like = cfg.get("like_run") or ""
        note = f"forecasts of the {split} split" + (f", issue times as {like}" if like else "")
        untrained = ("steps", "planned_steps", "epochs", "batch", "select", "best_score",
                     "best_step", "last_train_loss", "conv")  # fmt: skip
        return {
            **head,
            "baseline": True,
            **dict.fromkeys(untrained),
            "checkpoints": [],
            "split": {"note": note},
        }
    select = cfg.get("select", "val-loss")  # runs before --select chose by validation loss
    steps = 0
    last_loss: float | None = None
    best: float | None = None
    best_step: int | None = None
    metrics = run / "metrics.csv"
    if metrics.is_file():
        with metrics.open(newline="") as fh:
            for row in csv.DictReader(fh):
                try:
                    step, loss = int(row["step"]), float(row["loss"])
                    score = float(row.get("select_score") or row["loss"])
                except (KeyError, ValueError):
                    continue
                if row.get("split") == "train":
                    steps, last_loss = max(steps, step), loss
                elif (
                    row.get("split") == "valid"
                    and math.isfinite(score)
                    and (best is None or score < best)
                ):
                    best, best_step = score, step
    info = cfg.get("plan", {})
    return {
        **head,
        "baseline": False,
        "steps": steps,
        "planned_steps": info.get("planned_steps"),
        "epochs": cfg.get("epochs"),
        "batch": cfg.get("batch"),
        "select": select,
        "best_score": best if select != "last" else None,
        "best_step": best_step if select != "last" else None,
        "last_train_loss": last_loss,
        "checkpoints": [n for n in ("last.pt", "best.pt") if (run / n).is_file()],
        "split": cfg.get("split", {}),
        "conv": cfg.get("conv"),
    }
