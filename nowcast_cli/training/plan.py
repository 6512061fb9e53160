"""Before the first step: the options checked against the store, the split, the run folder.

`make_plan` resolves everything a run needs before it trains (device, store, Z–R, split,
steps per epoch, the planned and the capped number of steps, the run folder) into a
picklable `Plan` that spawned processes receive whole; `write_config` records it as the run's
``config.toml``. `RunResult` is what a run reports when it ends.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nowcast_cli import runs
from nowcast_cli.config import SELECT_RULES, TrainConfig, config_dict
from nowcast_cli.errors import ConfigError, DataError, RunError
from nowcast_cli.samples import Splits, make_splits, window_blocks
from nowcast_cli.store import Location, Store, resolve_store, resolved

__all__ = [
    "Plan",
    "RunResult",
    "atomic_text",
    "check_device",
    "clean",
    "make_plan",
    "model_options",
    "write_config",
]


@dataclass
class RunResult:
    """What a training run did."""

    run_dir: Path
    status: str  # "finished", "max-steps" or "interrupted"
    steps: int
    planned_steps: int
    epochs_done: float
    seconds: float
    train_loss: float | None
    best_score: float | None  # the --select score of best.pt (None: no best.pt)
    best_step: int | None
    last_checkpoint: Path
    best_checkpoint: Path | None
    windows: dict[str, int]
    split_note: str
    device: str
    world_size: int
    rank: int = 0
    forecasts: Path | None = None  # the test split's forecasts (``predict``)
    select: str = "val-bmse+bmae"  # the rule that chose best_checkpoint (``--select``)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in vars(self).items()}


@dataclass
class Plan:
    """Everything resolved before training starts; picklable for spawned processes."""

    cfg: TrainConfig
    run_dir: Path
    store: Location
    zr: tuple[float, float]
    splits: Splits
    steps_per_epoch: int
    total_steps: int
    stop_step: int
    device: str  # "cpu" or "cuda"
    resume: bool
    blocks: np.ndarray  # time chunk of each training window (chunk-local shuffling)
    extra: dict[str, Any] = field(default_factory=dict)

    def validates_at(self, step: int) -> bool:
        """Whether the schedule validates after `step` (never depends on where a run stops).

        Every ``valid_every`` steps, or at every epoch end when it is 0, and always at the
        end of the planned run, so that a finished run's last weights are a candidate.
        """
        every = self.cfg.valid_every or self.steps_per_epoch
        return step > 0 and (step % every == 0 or step == self.total_steps)


def check_device(cfg: TrainConfig) -> str:
    """``cpu`` or ``cuda``, after checking that the options suit it."""
    cuda = torch.cuda.is_available()
    device = ("cuda" if cuda else "cpu") if cfg.device == "auto" else cfg.device
    if device == "cuda" and not cuda:
        raise ConfigError("--device cuda: no CUDA device is available (use --device cpu)")
    if device == "cpu" and cfg.precision == "bf16":
        raise ConfigError(
            "--precision bf16 needs CUDA: bf16 autocast on this CPU is ~30× slower than fp32 "
            "(train in fp32 on CPU)"
        )
    if device == "cpu" and cfg.compile:
        raise ConfigError("--compile needs CUDA (on CPU the cells already use Winograd kernels)")
    if device == "cuda" and cfg.devices > torch.cuda.device_count():
        raise ConfigError(
            f"--devices {cfg.devices}: only {torch.cuda.device_count()} CUDA device(s) here"
        )
    return device


def model_options(cfg: TrainConfig) -> dict[str, Any]:
    """The `create_model` options of a run: its frames, and the sizes given (None: default)."""
    sizes = {"layers": cfg.layers, "hidden": cfg.hidden, "kernel": cfg.kernel}
    return {
        "size": cfg.data.size,
        "in_frames": cfg.data.in_frames,  # sizes SimVP, bounds RainNet; the others ignore it
        **{k: v for k, v in sizes.items() if v is not None},
    }


def check_names(cfg: TrainConfig) -> tuple[str, str]:
    """The model and loss names of `cfg` (lower case), checked before anything reads a store.

    Raises
    ------
    ConfigError
        A model or loss missing or unknown (the message lists the valid ones), or a model
        option its model refuses.
    """
    from nowcast_cli.losses import LOSSES
    from nowcast_cli.models import MODELS, model_config

    if cfg.model is None:
        raise ConfigError(f"no model: choose one with --model ({', '.join(MODELS.names())})")
    MODELS.get(cfg.model)  # unknown names: the valid ones and the closest
    if cfg.loss is None:
        raise ConfigError(f"no loss: choose one with --loss ({', '.join(LOSSES.names())})")
    LOSSES.get(cfg.loss)
    model_config(cfg.model, **model_options(cfg))  # a bad size fails before the run folder
    return cfg.model.lower(), cfg.loss.lower()


def make_plan(cfg: TrainConfig) -> Plan:
    """Check the options against the store, split it, make (or find) the run folder.

    Raises
    ------
    ConfigError, DataError, StoreError, RunError
        Unknown names, a device that is not here, a store without one batch of training
        windows, a run folder that is already a run (or, to resume, is not one).
    """
    model_name, loss_name = check_names(cfg)
    if cfg.run:
        runs.check_local(cfg.run)
    device = check_device(cfg)
    store_path = resolved(resolve_store(cfg.data.store))
    splits = make_splits(cfg.data, store_path)  # checks the training copy exists
    with Store.open(store_path) as store:
        zr = store.zr
        blocks = window_blocks(splits.train, store.time_chunk(cfg.data.size))
    n_train = len(splits.train)
    spe = n_train // cfg.batch  # full batches only: see samples.batch_order
    if spe == 0:
        raise DataError(
            f"{store_path}: {n_train} training window(s), fewer than one batch of {cfg.batch} "
            "(lower --batch, --stride or the window length)"
        )
    total = cfg.epochs * spe
    stop = min(total, cfg.max_steps) if cfg.max_steps else total
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, store=str(store_path)))
    if cfg.resume:
        run_dir = Path(cfg.run or "")
        if not (run_dir / "last.pt").is_file():
            raise RunError(f"{run_dir}: nothing to resume (no last.pt)")
    else:
        run_dir = Path(cfg.run) if cfg.run else runs.new_run_dir(model_name, loss_name)
        if cfg.run:
            if runs.is_run(run_dir):
                raise RunError(f"{run_dir}: already a run (add --resume to continue it)")
            run_dir.mkdir(parents=True, exist_ok=True)
    return Plan(cfg, run_dir, store_path, zr, splits, spe, total, stop, device, cfg.resume, blocks)


def write_config(plan: Plan) -> None:
    """The run's ``config.toml``: every option, the store, the split and the plan."""
    import tomli_w

    cfg = plan.cfg
    # the folder is the run: `run` and `resume` describe an invocation, not the run
    options = {k: v for k, v in config_dict(cfg).items() if k not in ("resume", "run")}
    with Store.open(plan.store) as store:
        a = store.attrs
        data = {
            "path": str(plan.store),
            "source": a.get("source", ""),
            "product": a.get("product", ""),
            "zr_a": plan.zr[0],
            "zr_b": plan.zr[1],
            "interval_seconds": store.interval_s,
            "size": cfg.data.size,
            "frames": len(store),
        }
    split = clean(plan.splits.describe())
    n_train = len(plan.splits.train)
    every = cfg.valid_every or plan.steps_per_epoch
    plan_info = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "steps_per_epoch": plan.steps_per_epoch,
        "planned_steps": plan.total_steps,
        "windows_per_epoch": plan.steps_per_epoch * cfg.batch,
        "windows_left_out_per_epoch": n_train - plan.steps_per_epoch * cfg.batch,
        "device": plan.device,
        "world_size": cfg.devices,
        "scheduled_sampling": "eta = 1 - step / planned_steps" if cfg.scheduled_sampling else "off",
        "gradient_clipping": f"clip_grad_value_({cfg.clip_value}) before the step"
        if cfg.clip_value
        else "off",
        "validation": f"every {every} steps and after the last planned step",
        "selection": SELECT_RULES[cfg.select],
    }
    text = tomli_w.dumps({**options, "data": data, "split": split, "plan": plan_info})
    atomic_text(plan.run_dir / "config.toml", text)


def clean(obj: Any) -> Any:
    """`obj` without None values in its dicts (TOML has no null)."""
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items() if v is not None}
    return obj


def atomic_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
