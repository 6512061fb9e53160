"""The training engine (SPEC §7): ``fit(cfg) -> RunResult``.

One step: a batch of windows (uint8 from the store, /255 on the device), the rollout
X̂_1..X̂_{m+n−1} with scheduled sampling, the loss against X_1..X_{m+n−1} (or the n forecast
frames, ``loss_frames="forecast"``), backward, gradient clipping, the optimizer step.

Decisions, where the paper and the authors' code leave room:

- Scheduled sampling: η = 1 − s/S at step s of S = epochs × steps per epoch (the authors'
  linear decay over the whole run); ``max_steps`` stops early without changing the schedule,
  so a capped run is the start of the full one. Each sample and future step draws one
  Bernoulli(η) (the rollout's contract), from a generator seeded by (seed, step) over the
  whole global batch, so the draws do not depend on how many processes share the batch.
- Gradient clipping: the authors call ``clip_grad_value_(5)`` after ``optimizer.step()``,
  which clips gradients that are never used again (a no-op). We clip each gradient element
  to ±``clip_value`` (default 5) *before* the step, which is what the call evidently meant;
  ``clip_value = 0`` reproduces the authors' effective behaviour (no clipping).
- Validation every epoch (the authors: every third), under ``torch.inference_mode`` with
  η = 0 (pure autoregressive): the training loss and, as plain scores, B-MSE and B-MAE
  (per-frame pixel sums on the [0, 1] scale over the n forecast frames, the store's Z–R).
  ``best.pt`` keeps the weights with the lowest validation loss; ``last.pt`` the latest.
- Per-frame diagnostics (the paper's Fig. 2 over training): for every output frame t the
  mean over samples of ΔX_t (mean |e| over the frame's valid pixels) and, for focal losses,
  of W_t, per epoch for training (as trained: scheduled sampling on) and validation.
- Data order: a permutation of the training windows per epoch from (seed, epoch); global
  batches are cut from it before they are shared among processes.
- Exact resume: everything random derives from (seed, epoch, step), and the checkpoint holds
  the optimizer, the step and the running statistics, so "8 steps" and "4 steps, stop,
  resume to 8" give bitwise-identical weights on a CPU.
- Ctrl-C finishes the current step, writes ``last.pt`` and returns (status "interrupted"); a
  second Ctrl-C aborts at once. A NaN or infinite loss or gradient stops before the step,
  writes the last good state as ``last.pt`` and raises `TrainingError` naming step and batch.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from nowcast_cli import runs
from nowcast_cli.checkpoint import read_checkpoint, save_checkpoint
from nowcast_cli.config import (
    TrainConfig,
    config_dict,
    diff_configs,
    from_dict,
    read_toml,
)
from nowcast_cli.errors import ConfigError, DataError, RunError, TrainingError
from nowcast_cli.samples import (
    BatchSampler,
    Splits,
    WindowDataset,
    make_splits,
    window_blocks,
)
from nowcast_cli.store import Store, iso, resolve_store

__all__ = ["RunResult", "configure", "fit"]

METRICS_COLUMNS = [
    "step", "epoch", "split", "loss", "plain_loss", "b_mse", "b_mae",
    "lr", "teacher_prob", "grad_norm", "samples_per_s", "elapsed_s",
]  # fmt: skip
FRAMES_COLUMNS = ["epoch", "step", "split", "frame", "delta_x", "weight"]
Progress = Callable[[dict[str, Any]], None]


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
    best_valid_loss: float | None
    best_step: int | None
    last_checkpoint: Path
    best_checkpoint: Path | None
    windows: dict[str, int]
    split_note: str
    device: str
    world_size: int
    rank: int = 0
    forecasts: Path | None = None  # the test split's forecasts (``predict``)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in vars(self).items()}


@dataclass
class Plan:
    """Everything resolved before training starts; picklable for spawned processes."""

    cfg: TrainConfig
    run_dir: Path
    store: Path
    zr: tuple[float, float]
    splits: Splits
    steps_per_epoch: int
    total_steps: int
    stop_step: int
    device: str  # "cpu" or "cuda"
    resume: bool
    blocks: np.ndarray  # time chunk of each training window (chunk-local shuffling)
    extra: dict[str, Any] = field(default_factory=dict)


# -- configuration -----------------------------------------------------------------------------
def configure(options: dict[str, Any], config_file: str | Path | None = None) -> TrainConfig:
    """The TrainConfig of a new run, or of a resumed one checked against its run.

    Parameters
    ----------
    options : dict
        Options given on the command line (None = not given).
    config_file : path, optional
        TOML with more options (the command line wins).

    Raises
    ------
    ConfigError
        For invalid options, or (``resume``) options that differ from the run's; the
        message lists each difference.
    """
    given = read_toml(config_file) if config_file is not None else {}
    given.update({k.replace("-", "_"): v for k, v in options.items() if v is not None})
    if not given.get("resume"):
        return from_dict(given)
    run = runs.resolve_run(given.get("run"), what="run to resume")
    base = {k: v for k, v in read_toml(run / "config.toml").items()}
    diffs = diff_configs(base, {**base, **given})
    if diffs:
        raise ConfigError(
            f"--resume {run}: options differ from the run's: {'; '.join(diffs)} "
            "(resume with the run's options, or start a new run)"
        )
    return from_dict({**base, **given, "run": str(run), "resume": True})


def _device(cfg: TrainConfig) -> str:
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


def _allow_recompiles(limit: int = 64) -> None:
    """Let each compiled cell keep a graph per variant it meets instead of falling back to eager.

    The cells of all layers share one code object, and a rollout meets several variants: layer 0
    reads frames while the layers above read bf16 states under autocast, the first step reads
    fresh zero states (no grad, aliased), validation runs without grad. Beyond torch's default
    of 8 graphs, a cell silently runs eagerly.
    """
    import torch._dynamo.config as dynamo_config

    for name in ("recompile_limit", "cache_size_limit"):  # the name before torch 2.6
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(getattr(dynamo_config, name), limit))
            break


def _plan(cfg: TrainConfig) -> Plan:
    """Check the options against the store, split it, make (or find) the run folder."""
    from nowcast_cli.losses import LOSSES
    from nowcast_cli.models import MODELS

    if cfg.model is None:
        raise ConfigError(f"no model: choose one with --model ({', '.join(MODELS.names())})")
    if cfg.loss is None:
        raise ConfigError(f"no loss: choose one with --loss ({', '.join(LOSSES.names())})")
    MODELS.get(cfg.model)  # unknown names: the valid ones and the closest
    LOSSES.get(cfg.loss)
    model_name, loss_name = cfg.model.lower(), cfg.loss.lower()
    device = _device(cfg)
    store_path = resolve_store(cfg.data.store).resolve()
    splits = make_splits(cfg.data, store_path)  # checks the training copy exists
    with Store.open(store_path) as store:
        zr = store.zr
        blocks = window_blocks(splits.train, store.time_chunk(cfg.data.size))
    n_train = len(splits.train)
    spe = n_train // cfg.batch
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


def _write_config(plan: Plan) -> None:
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
    split = _clean(plan.splits.describe())
    plan_info = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "steps_per_epoch": plan.steps_per_epoch,
        "planned_steps": plan.total_steps,
        "device": plan.device,
        "world_size": cfg.devices,
        "scheduled_sampling": "eta = 1 - step / planned_steps" if cfg.scheduled_sampling else "off",
        "gradient_clipping": f"clip_grad_value_({cfg.clip_value}) before the step"
        if cfg.clip_value
        else "off",
    }
    text = tomli_w.dumps({**options, "data": data, "split": split, "plan": plan_info})
    _atomic_text(plan.run_dir / "config.toml", text)


def _clean(obj: Any) -> Any:
    """Drop None values (TOML has no null)."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if v is not None}
    return obj


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# -- entry point -------------------------------------------------------------------------------
def fit(cfg: TrainConfig, progress: Progress | None = None) -> RunResult:
    """Train a model as `cfg` says; see the module docstring.

    Parameters
    ----------
    cfg : TrainConfig
        From `configure` (or `nowcast_cli.config.load_config`).
    progress : callable, optional
        Called with event dicts: ``{"event": "start", …}``, ``"step"``, ``"valid"``,
        ``"end"`` (rank 0 only).

    Returns
    -------
    RunResult

    Raises
    ------
    NowcastError
        Bad options or data (`ConfigError`, `DataError`, `StoreError`, `RunError`), or a
        non-finite loss (`TrainingError`).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched by torchrun
        return _fit_torchrun(cfg, progress)
    plan = _plan(cfg)
    if not plan.resume:
        _write_config(plan)
    result = _spawn(plan, progress) if cfg.devices > 1 else _train(plan, 0, 1, progress)
    return _forecast_test(cfg, result, progress)


def _forecast_test(cfg: TrainConfig, result: RunResult, progress: Progress | None) -> RunResult:
    """The authors' test after training: forecasts of the test split, into the run folder."""
    if not cfg.predict or result.rank != 0 or result.status == "interrupted":
        return result
    if result.windows.get("test", 0) == 0:
        return result
    from nowcast_cli.predict import PredictConfig, forecast

    if progress is not None:
        progress({"event": "predict", "run": str(result.run_dir)})
    # a resumed run replaces the forecasts of its earlier checkpoint
    out = forecast(PredictConfig(run=str(result.run_dir), device=cfg.device, overwrite=True))
    result.forecasts = out.forecasts
    return result


def _fit_torchrun(cfg: TrainConfig, progress: Progress | None) -> RunResult:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    cuda = cfg.device != "cpu" and torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend, timeout=dt.timedelta(minutes=30))
    cfg = dataclasses.replace(cfg, devices=world)
    box: list[Any] = [None]
    if rank == 0:
        try:
            plan = _plan(cfg)
            if not plan.resume:
                _write_config(plan)
            box[0] = plan
        except Exception as exc:
            box[0] = exc
    dist.broadcast_object_list(box, src=0)
    if isinstance(box[0], Exception):
        dist.destroy_process_group()
        raise box[0]
    result = _train(box[0], rank, world, progress if rank == 0 else None, distributed_ready=True)
    return _forecast_test(cfg, result, progress if rank == 0 else None)


def _spawn(plan: Plan, progress: Progress | None) -> RunResult:
    """Run `plan` in `cfg.devices` spawned processes; this one relays progress."""
    import torch.multiprocessing as mp

    world = plan.cfg.devices
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    threads = max(1, (os.cpu_count() or 1) // world)
    env = {"OMP_NUM_THREADS": str(threads), "NUMBA_NUM_THREADS": str(threads)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # spawned children read these when they import torch and numba
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the children handle Ctrl-C
    try:
        procs = mp.start_processes(  # type: ignore[attr-defined,no-untyped-call]
            _spawned, args=(world, port, plan, queue), nprocs=world, join=False,
            start_method="spawn",
        )  # fmt: skip
        result: RunResult | None = None
        error: str | None = None
        while True:
            while not queue.empty():
                kind, payload = queue.get()
                if kind == "progress" and progress is not None:
                    progress(payload)
                elif kind == "result":
                    result = payload
                elif kind == "error":
                    error = payload
            if procs.join(timeout=0.2):
                break
        while not queue.empty():
            kind, payload = queue.get()
            if kind == "progress" and progress is not None:
                progress(payload)
            elif kind == "result":
                result = payload
            elif kind == "error":
                error = payload
    finally:
        signal.signal(signal.SIGINT, previous)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if error is not None:
        raise TrainingError(error) if error.startswith("loss ") else RunError(error)
    if result is None:
        raise RunError("the training processes ended without a result")
    return result


def _spawned(rank: int, world: int, port: int, plan: Plan, queue: Any) -> None:
    def relay(event: dict[str, Any]) -> None:
        queue.put(("progress", event))

    from nowcast_cli.errors import NowcastError

    try:
        result = _train(plan, rank, world, relay if rank == 0 else None, port=port)
        if rank == 0:
            queue.put(("result", result))
    except NowcastError as exc:
        if rank == 0:
            queue.put(("error", str(exc)))


# -- the loop ----------------------------------------------------------------------------------
class _Stop:
    """Ctrl-C asks the loop to stop after the current step; a second one aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _Stop:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _train(
    plan: Plan,
    rank: int,
    world: int,
    progress: Progress | None,
    port: int | None = None,
    distributed_ready: bool = False,
) -> RunResult:
    device = torch.device(plan.device if plan.device == "cpu" else f"cuda:{rank}")
    if world > 1 and not distributed_ready:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend,
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=world,
            timeout=dt.timedelta(minutes=30),
        )
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        return _loop(plan, rank, world, device, progress)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _build(
    plan: Plan, device: torch.device
) -> tuple[nn.Module, Any, dict[str, Any], torch.optim.Optimizer]:
    """Model (seeded), the training loss, the plain losses, and the optimizer."""
    from nowcast_cli.losses import build_loss
    from nowcast_cli.models import count_parameters, create_model
    from nowcast_cli.optim import AdamHD

    cfg = plan.cfg
    torch.manual_seed(cfg.seed)
    sizes = {"size": cfg.data.size, "layers": cfg.layers, "hidden": cfg.hidden}
    model = create_model(cfg.model or "", kernel=cfg.kernel, **sizes)
    if count_parameters(model) == 0:
        raise ConfigError(
            f"model {cfg.model!r} has no parameters to train; use it directly with "
            f"`nowcast predict --model {cfg.model}`"
        )
    set_backend = getattr(model, "set_conv_backend", None)
    if callable(set_backend):
        set_backend(cfg.conv)
    model.to(device)
    loss_args: dict[str, Any] = {
        "zr": plan.zr, "balanced": cfg.balanced, "k": cfg.ff_k, "eps": cfg.ff_eps,
        "scale": cfg.loss_scale,
    }  # fmt: skip
    loss_fn = build_loss(cfg.loss or "", **loss_args)
    plain_name = (cfg.loss or "").removeprefix("ff-")
    scores = {
        "plain": build_loss(plain_name, **loss_args),
        "b_mse": build_loss("mse", zr=plan.zr, scale=1.0),
        "b_mae": build_loss("mae", zr=plan.zr, scale=1.0),
    }
    opt: torch.optim.Optimizer
    if cfg.optimizer == "adamhd":
        opt = AdamHD(model.parameters(), lr=cfg.lr, hypergrad_lr=cfg.hypergrad_lr)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    return model, loss_fn, scores, opt


class _FrameStats:
    """Running sums of ΔX_t and W_t over samples (the paper's Fig. 2)."""

    def __init__(self, frames: int, device: torch.device) -> None:
        self.t = torch.zeros(4, frames, dtype=torch.float64, device=device)  # dx, n, w, n_w

    def add(self, abs_err: Tensor, valid: Tensor, weights: Tensor | None, first: int) -> None:
        v = valid.to(abs_err.dtype).flatten(2)  # (B, T, pixels)
        count = v.sum(2)
        dx = (abs_err.flatten(2) * v).sum(2) / count.clamp(min=1)  # (B, T)
        seen = (count > 0).to(torch.float64)
        self.t[0] += (dx.double() * seen).sum(0)
        self.t[1] += seen.sum(0)
        if weights is not None:
            self.t[2, first:] += weights.double().sum(0)
            self.t[3, first:] += weights.shape[0]

    def rows(self, epoch: int, step: int, split: str, focal: bool) -> list[dict[str, Any]]:
        """frames.csv rows: mean ΔX_t and (focal losses) mean W_t per output frame t."""
        dx = (self.t[0] / self.t[1].clamp(min=1)).tolist()
        w = (self.t[2] / self.t[3].clamp(min=1)).tolist()
        n, nw = self.t[1].tolist(), self.t[3].tolist()
        return [
            {
                "epoch": epoch,
                "step": step,
                "split": split,
                "frame": i + 1,
                "delta_x": dx[i] if n[i] else "",
                "weight": w[i] if focal and nw[i] else "",
            }
            for i in range(len(dx))
        ]


def _num(x: float) -> str:
    return f"{x:.8g}"


def _reduce(t: Tensor, world: int, op: Any = None) -> Tensor:
    if world > 1:
        dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t


def _loop(
    plan: Plan, rank: int, world: int, device: torch.device, progress: Progress | None
) -> RunResult:
    if device.type == "cpu" and world > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    return _Trainer(plan, rank, world, device, progress).run()


class _Trainer:
    """One process's share of a run: the loop, validation, logs and checkpoints."""

    def __init__(
        self, plan: Plan, rank: int, world: int, device: torch.device, progress: Progress | None
    ) -> None:
        cfg, data = plan.cfg, plan.cfg.data
        self.plan, self.cfg, self.rank, self.world, self.device = plan, cfg, rank, world, device
        self.progress = progress
        self.main = rank == 0
        self.m, self.n = data.in_frames, data.out_frames
        self.first = 0 if cfg.loss_frames == "all" else self.m - 1  # first output in the loss
        self.model, self.loss_fn, self.scores, self.opt = _build(plan, device)
        self.focal = bool(getattr(self.loss_fn, "focal", False))
        self.step, self.best, self.elapsed0 = 0, math.inf, 0.0
        self.best_step: int | None = None
        self.stats = _FrameStats(self.m + self.n - 1, device)
        if plan.resume:
            self._restore()
        self.net: nn.Module = self.model
        if world > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            _allow_recompiles()
            for cell in getattr(self.model, "cells", []):
                cell.compile()
        self.autocast: Any = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if cfg.precision == "bf16"
            else contextlib.nullcontext()
        )
        self.logs = (
            {
                "metrics": _CsvLog(plan.run_dir / "metrics.csv", METRICS_COLUMNS),
                "frames": _CsvLog(plan.run_dir / "frames.csv", FRAMES_COLUMNS),
            }
            if self.main
            else {}
        )
        self.saved = self.step if plan.resume else -1  # the step last.pt holds
        self.t_start = time.perf_counter()

    def _restore(self) -> None:
        plan = self.plan
        ck = read_checkpoint(plan.run_dir / "last.pt")
        if ck.get("model") != self.cfg.model:
            raise RunError(f"{plan.run_dir / 'last.pt'}: a checkpoint of {ck.get('model')!r}")
        self.model.load_state_dict(ck["model_state"])
        self.opt.load_state_dict(ck["optimizer"])
        self.step, self.elapsed0 = int(ck["step"]), float(ck.get("elapsed_s", 0.0))
        best = ck.get("best", {})
        self.best = math.inf if best.get("loss") is None else float(best["loss"])
        self.best_step = best.get("step")
        self.stats.t.copy_(ck["accumulators"]["train_frames"].to(self.device))
        torch.set_rng_state(ck["rng"]["torch"])
        if self.main:
            _truncate_logs(plan.run_dir, self.step)

    def elapsed(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t_start

    def loader(self) -> torch.utils.data.DataLoader[Any]:
        plan, cfg = self.plan, self.cfg
        dataset = WindowDataset(plan.store, cfg.data.size, plan.splits.train)
        cuda = self.device.type == "cuda"
        workers = cfg.workers if cfg.workers is not None else (2 if cuda else 0)
        sampler = BatchSampler(
            len(dataset), cfg.batch, cfg.seed, plan.steps_per_epoch, self.step,
            plan.stop_step, self.rank, self.world, plan.blocks,
        )  # fmt: skip
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=workers,
            # the numba kernels run on OpenMP threads, which do not survive fork()
            multiprocessing_context="spawn" if workers else None,
            pin_memory=cuda,
        )

    def run(self) -> RunResult:
        try:
            return self._run()
        finally:
            for log in self.logs.values():
                log.close()

    def _run(self) -> RunResult:
        plan, cfg = self.plan, self.cfg
        status = "finished" if plan.stop_step == plan.total_steps else "max-steps"
        last_loss = None
        if self.progress:
            self.progress(_start_event(plan, self.step))
        with _Stop() as stop:
            t_last = time.perf_counter()
            for frames_u8, valid in _batches(self.loader(), self.device):
                row = self.train_step(frames_u8, valid)
                now = time.perf_counter()
                row["samples_per_s"] = cfg.batch / max(now - t_last, 1e-9)
                row["elapsed_s"] = self.elapsed()
                t_last, last_loss = now, row["loss"]
                self.log("metrics", row)
                if self.progress:
                    self.progress({"event": "step", "total": plan.stop_step, **row})
                epoch_end = self.step % plan.steps_per_epoch == 0
                if epoch_end:
                    self.end_epoch(row["epoch"])
                every = cfg.checkpoint_every
                if epoch_end or (every and self.step % every == 0):
                    self.checkpoint("last.pt")
                if self.agree(stop.requested):  # every process stops after the same step
                    status = "interrupted"
                    break
            else:  # a --max-steps cap inside an epoch: validate the final weights too
                if self.step % plan.steps_per_epoch:
                    self.validate()
        if self.saved != self.step:
            self.checkpoint("last.pt")
        result = self.result(status, last_loss)
        if self.progress:
            self.progress({"event": "end", **result.as_dict()})
        return result

    def agree(self, flag: bool) -> bool:
        """Whether any process raised `flag`."""
        if self.world == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        return bool(_reduce(t, self.world, dist.ReduceOp.MAX).item())

    def train_step(self, frames_u8: Tensor, valid: Tensor) -> dict[str, Any]:
        """One optimizer step on this process's share of a global batch."""
        plan, cfg, m, n, f = self.plan, self.cfg, self.m, self.n, self.first
        epoch = self.step // plan.steps_per_epoch + 1
        x = frames_u8.float().div_(255.0)  # (b, m + n, 1, S, S) on [0, 1]
        target, tvalid = x[:, 1:], valid[:, 1:]  # X_1 .. X_{m+n−1}
        eta = max(0.0, 1.0 - self.step / plan.total_steps) if cfg.scheduled_sampling else 0.0
        b = cfg.batch // self.world
        tp = _teacher_mask(cfg.seed, self.step, cfg.batch, n - 1, eta)  # (B, n − 1) global
        tp = tp[self.rank * b : (self.rank + 1) * b].to(self.device)
        self.net.train()
        with self.autocast:
            pred = self.net(x[:, :m], n, teacher=x[:, m:], teacher_prob=tp)
        pred = pred.float()  # (b, m + n − 1, 1, S, S)
        loss = self.loss_fn(pred[:, f:], target[:, f:], tvalid[:, f:])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        if cfg.clip_value:
            nn.utils.clip_grad_value_(params, cfg.clip_value)
        with torch.no_grad():
            norms = [p.grad.norm() for p in params if p.grad is not None]
            grad_norm = torch.linalg.vector_norm(torch.stack(norms))
            plain = self.scores["plain"](pred[:, f:], target[:, f:], tvalid[:, f:])
            flags = torch.stack([loss.detach() / self.world, plain / self.world, grad_norm])
            loss_v, plain_v, gnorm_v = _reduce(flags.double(), self.world).tolist()
        if not (math.isfinite(loss_v) and math.isfinite(gnorm_v)):
            self.fail(loss_v, gnorm_v, epoch)
        self.opt.step()
        with torch.no_grad():
            err = (pred - target).abs()
            w = self.loss_fn.frame_weights(err[:, f:], tvalid[:, f:]) if self.focal else None
            self.stats.add(err, tvalid, w, f)
        self.step += 1
        return {
            "step": self.step,
            "epoch": epoch,
            "split": "train",
            "loss": loss_v,
            "plain_loss": plain_v,
            "lr": float(self.opt.param_groups[0]["lr"]),
            "teacher_prob": eta,
            "grad_norm": gnorm_v,
        }

    def fail(self, loss: float, grad_norm: float, epoch: int) -> None:
        """Stop on a non-finite loss or gradient, before the update, keeping the last state."""
        plan = self.plan
        if self.main:
            self.checkpoint("last.pt")
        what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {grad_norm}"
        starts = ", ".join(iso(int(t)) for t in _batch_starts(plan, self.step))
        batch = self.step % plan.steps_per_epoch + 1
        raise TrainingError(
            f"loss is not finite ({what}) at step {self.step + 1} (epoch {epoch}, batch "
            f"{batch}: windows starting {starts}); stopped before the update, the last good "
            f"state is {plan.run_dir / 'last.pt'}"
        )

    def end_epoch(self, epoch: int) -> None:
        _reduce(self.stats.t, self.world)
        self.log_frames(self.stats.rows(epoch, self.step, "train", self.focal))
        self.stats = _FrameStats(self.m + self.n - 1, self.device)
        self.validate()

    def validate(self) -> None:
        plan = self.plan
        if not len(plan.splits.valid):
            return
        res, vstats = _validate(
            plan, self.model, self.loss_fn, self.scores, self.device, self.rank, self.world,
            self.autocast,
        )  # fmt: skip
        epoch = math.ceil(self.step / plan.steps_per_epoch)
        row = {
            "step": self.step,
            "epoch": epoch,
            "split": "valid",
            "loss": res["loss"],
            "plain_loss": res["plain"],
            "b_mse": res["b_mse"],
            "b_mae": res["b_mae"],
            "samples_per_s": res["samples_per_s"],
            "elapsed_s": self.elapsed(),
        }
        self.log("metrics", row)
        self.log_frames(vstats.rows(epoch, self.step, "valid", self.focal))
        if res["loss"] < self.best:
            self.best, self.best_step = res["loss"], self.step
            self.checkpoint("best.pt")
        if self.progress:
            self.progress({"event": "valid", **row, "best": self.best})

    def log(self, name: str, row: dict[str, Any]) -> None:
        if name in self.logs:
            self.logs[name].write(row)

    def log_frames(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.log("frames", row)

    def checkpoint(self, name: str) -> None:
        if not self.main:
            return
        if name == "last.pt":
            self.saved = self.step
        payload = _payload(
            self.plan, self.model, self.opt, self.step, self.best, self.best_step, self.stats,
            self.elapsed(),
        )  # fmt: skip
        save_checkpoint(self.plan.run_dir / name, payload)

    def result(self, status: str, last_loss: float | None) -> RunResult:
        plan = self.plan
        best_pt = plan.run_dir / "best.pt"
        return RunResult(
            run_dir=plan.run_dir,
            status=status,
            steps=self.step,
            planned_steps=plan.total_steps,
            epochs_done=self.step / plan.steps_per_epoch,
            seconds=self.elapsed(),
            train_loss=last_loss,
            best_valid_loss=None if math.isinf(self.best) else self.best,
            best_step=self.best_step,
            last_checkpoint=plan.run_dir / "last.pt",
            best_checkpoint=best_pt if best_pt.is_file() else None,
            windows={k: len(plan.splits[k]) for k in ("train", "valid", "test")},
            split_note=plan.splits.note,
            device=str(self.device),
            world_size=self.world,
            rank=self.rank,
        )


def _batches(loader: Any, device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
    for frames, valid in loader:
        yield frames.to(device, non_blocking=True), valid.to(device, non_blocking=True)


def _teacher_mask(seed: int, step: int, batch: int, n_future: int, eta: float) -> Tensor:
    """Scheduled-sampling draws of one global batch: 1.0 = feed the true frame (B, n − 1)."""
    g = torch.Generator().manual_seed(
        int(np.random.SeedSequence([seed, step]).generate_state(1)[0])
    )
    u = torch.rand((batch, max(n_future, 0)), generator=g)
    return (u < eta).to(torch.float32)


def _batch_starts(plan: Plan, step: int) -> np.ndarray:
    from nowcast_cli.samples import batch_order

    epoch, offset = divmod(step, plan.steps_per_epoch)
    n, cfg = len(plan.splits.train), plan.cfg
    order = batch_order(n, cfg.batch, cfg.seed, epoch, blocks=plan.blocks)
    return plan.splits.train.start[order[offset]]


@torch.inference_mode()
def _validate(
    plan: Plan,
    model: nn.Module,
    loss_fn: Any,
    scores: dict[str, Any],
    device: torch.device,
    rank: int,
    world: int,
    autocast: Any,
) -> tuple[dict[str, float], _FrameStats]:
    """Loss, plain loss, B-MSE and B-MAE over the validation windows (η = 0)."""
    cfg, data = plan.cfg, plan.cfg.data
    m, n = data.in_frames, data.out_frames
    first = 0 if cfg.loss_frames == "all" else m - 1
    split = plan.splits.valid
    mine = np.arange(rank, len(split), world)  # this process's share
    dataset = WindowDataset(plan.store, data.size, split.subset(mine))
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch, shuffle=False)
    focal = bool(getattr(loss_fn, "focal", False))
    stats = _FrameStats(m + n - 1, device)
    sums = torch.zeros(5, dtype=torch.float64, device=device)  # loss, plain, b_mse, b_mae, count
    model.eval()
    t0 = time.perf_counter()
    for frames_u8, valid in _batches(loader, device):
        x = frames_u8.float().div_(255.0)
        target, tvalid = x[:, 1:], valid[:, 1:]
        with autocast:
            pred = model(x[:, :m], n)
        pred = pred.float()
        b = x.shape[0]
        f = slice(first, None)
        fc = slice(m - 1, None)  # the n forecast frames
        sums[0] += float(loss_fn(pred[:, f], target[:, f], tvalid[:, f])) * b
        sums[1] += float(scores["plain"](pred[:, f], target[:, f], tvalid[:, f])) * b
        sums[2] += float(scores["b_mse"](pred[:, fc], target[:, fc], tvalid[:, fc])) * b
        sums[3] += float(scores["b_mae"](pred[:, fc], target[:, fc], tvalid[:, fc])) * b
        sums[4] += b
        err = (pred - target).abs()
        w = loss_fn.frame_weights(err[:, f], tvalid[:, f]) if focal else None
        stats.add(err, tvalid, w, first)
    model.train()
    _reduce(sums, world)
    _reduce(stats.t, world)
    count = max(float(sums[4]), 1.0)
    seconds = time.perf_counter() - t0
    res = {k: float(sums[i]) / count for i, k in enumerate(("loss", "plain", "b_mse", "b_mae"))}
    res["samples_per_s"] = float(sums[4]) / max(seconds, 1e-9) / 1.0
    res["windows"] = float(sums[4])
    return res, stats


def _payload(
    plan: Plan,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    step: int,
    best: float,
    best_step: int | None,
    stats: _FrameStats,
    elapsed: float,
) -> dict[str, Any]:
    cfg, data = plan.cfg, plan.cfg.data
    return {
        "model": cfg.model,
        "model_config": dataclasses.asdict(model.config),  # type: ignore[call-overload]
        "conv_backend": cfg.conv,
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "loss": {
            "name": cfg.loss,
            "balanced": cfg.balanced,
            "k": cfg.ff_k,
            "eps": cfg.ff_eps,
            "scale": cfg.loss_scale,
            "frames": cfg.loss_frames,
            "zr": list(plan.zr),
        },
        "data": {
            "store": str(plan.store),
            "size": data.size,
            "in_frames": data.in_frames,
            "out_frames": data.out_frames,
            "max_missing": data.max_missing,
            "stride": data.window_stride,
            "split": _clean(plan.splits.describe()),
        },
        "options": config_dict(cfg),
        "step": step,
        "epoch": step / plan.steps_per_epoch,
        "steps_per_epoch": plan.steps_per_epoch,
        "total_steps": plan.total_steps,
        "best": {"loss": None if math.isinf(best) else best, "step": best_step},
        "optimizer_name": cfg.optimizer,
        "optimizer": opt.state_dict(),
        "rng": {"torch": torch.get_rng_state()},
        "accumulators": {"train_frames": stats.t.detach().cpu()},
        "elapsed_s": elapsed,
    }


class _CsvLog:
    """Appends rows to a CSV file (header once), flushed per row so a crash loses nothing."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        new = not path.is_file() or path.stat().st_size == 0
        self.fh = path.open("a", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.fh, columns, extrasaction="ignore")
        if new:
            self.writer.writeheader()
            self.fh.flush()

    def write(self, row: dict[str, Any]) -> None:
        self.writer.writerow({k: _num(v) if isinstance(v, float) else v for k, v in row.items()})
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def _truncate_logs(run: Path, step: int) -> None:
    """Drop log rows written after the checkpoint a run resumes from (they will be redone)."""
    for name in ("metrics.csv", "frames.csv"):
        path = run / name
        if not path.is_file():
            continue
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        if not rows:
            continue
        col = rows[0].index("step")
        keep = [rows[0]] + [r for r in rows[1:] if r and int(r[col]) <= step]
        tmp = path.with_name(f".{name}.tmp")
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(keep)
        os.replace(tmp, path)


def _start_event(plan: Plan, step: int) -> dict[str, Any]:
    return {
        "event": "start",
        "run": str(plan.run_dir),
        "store": str(plan.store),
        "step": step,
        "total": plan.stop_step,
        "planned": plan.total_steps,
        "steps_per_epoch": plan.steps_per_epoch,
        "epochs": plan.cfg.epochs,
        "windows": {k: len(plan.splits[k]) for k in ("train", "valid", "test")},
        "split_note": plan.splits.note,
        "device": plan.device,
        "devices": plan.cfg.devices,
        "resumed": plan.resume,
    }
