"""One process's share of a run: the step loop.

A step: a global batch of windows (uint8 from the store, /255 on the device; this process
takes its slice), the rollout X̂_1 … X̂_{m+n−1} with scheduled sampling, the loss against
X_1 … X_{m+n−1} (or the n forecast frames), backward, then:

1. the gradient norm (before any clipping) and the loss, averaged over processes;
2. a non-finite loss or gradient stops the run before the update: the last good state is
   written as ``last.pt`` and `TrainingError` names the step and the batch's windows;
3. clipping of each gradient element to ±``clip_value`` (the authors' ``clip_grad_value_``);
4. the optimizer step, and the per-frame statistics of the batch.

After a step: the epoch's ``frames.csv`` rows at its end, validation and selection when the
schedule says (`Plan.validates_at`), ``last.pt`` at epoch ends and every
``checkpoint_every`` steps. Ctrl-C finishes the current step, writes ``last.pt`` and returns
(status "interrupted"); a second Ctrl-C aborts at once.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from nowcast_cli.checkpoint import save_checkpoint
from nowcast_cli.config import TrainConfig
from nowcast_cli.errors import ConfigError, TrainingError
from nowcast_cli.models import first_output
from nowcast_cli.samples import BatchSampler, WindowDataset
from nowcast_cli.store import iso
from nowcast_cli.training import checkpoints, distributed, validation
from nowcast_cli.training.logs import (
    FRAMES_COLUMNS,
    METRICS_COLUMNS,
    CsvLog,
    FrameStats,
    truncate_logs,
)
from nowcast_cli.training.plan import Plan, RunResult, model_options

__all__ = ["LookAhead", "Trainer", "run_process", "teacher_mask"]

T = TypeVar("T")


class LookAhead(Generic[T]):
    """Iterates `source` in a background thread, up to `depth` items ahead of the consumer.

    The items and their order are the source's; an exception raised by the source is
    raised by the consumer's next step. Leaving the loop early (break, an error, Ctrl-C's
    stop) stops the thread after the item it is producing.
    """

    def __init__(self, source: Iterable[T], depth: int = 2) -> None:
        self.source = source
        self.depth = max(1, depth)

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[T]:
        items: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=self.depth)
        stop = threading.Event()

        def put(entry: tuple[str, Any]) -> bool:
            while not stop.is_set():
                try:
                    items.put(entry, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for item in self.source:
                    if not put(("item", item)):
                        return
                put(("end", None))
            except BaseException as exc:  # handed to the consumer, raised there
                put(("error", exc))

        thread = threading.Thread(target=produce, name="nowcast-lookahead", daemon=True)
        thread.start()
        try:
            while True:
                kind, value = items.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise value
                yield value
        finally:
            stop.set()
            thread.join()


def run_process(
    plan: Plan,
    rank: int,
    world: int,
    progress: distributed.Progress | None,
    port: int | None = None,
) -> RunResult:
    """Train `plan` as process `rank` of `world` (joining the group on `port` if given)."""
    device = torch.device(plan.device if plan.device == "cpu" else f"cuda:{rank}")
    if world > 1 and port is not None:
        distributed.init_group(device, rank, world, port)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if device.type == "cpu" and world > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    try:
        return Trainer(plan, rank, world, device, progress).run()
    finally:
        if world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def build(
    plan: Plan, device: torch.device
) -> tuple[nn.Module, Any, dict[str, Any], torch.optim.Optimizer]:
    """Model (seeded), the training loss, the plain losses, and the optimizer."""
    from nowcast_cli.losses import build_loss
    from nowcast_cli.models import count_parameters, create_model
    from nowcast_cli.optim import AdamHD

    cfg = plan.cfg
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model or "", **model_options(cfg))
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


@contextlib.contextmanager
def step_rng(seed: int, step: int, rank: int, device: torch.device) -> Iterator[None]:
    """Draws inside (RainNet's dropout) come from a generator seeded by (seed, step, rank).

    So they do not depend on what drew from torch's generator before, and a resumed run draws
    what an uninterrupted one does. The generator's state outside is left as it was.
    """
    state = np.random.SeedSequence([seed, step, rank, 1]).generate_state(1)[0]
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(state))
        yield


def teacher_mask(seed: int, step: int, batch: int, n_future: int, eta: float) -> Tensor:
    """Scheduled-sampling draws of one global batch: 1.0 = feed the true frame (B, n − 1)."""
    g = torch.Generator().manual_seed(
        int(np.random.SeedSequence([seed, step]).generate_state(1)[0])
    )
    u = torch.rand((batch, max(n_future, 0)), generator=g)
    return (u < eta).to(torch.float32)


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


class Trainer:
    """One process's share of a run: the loop, its logs and checkpoints."""

    def __init__(
        self,
        plan: Plan,
        rank: int,
        world: int,
        device: torch.device,
        progress: distributed.Progress | None,
    ) -> None:
        cfg, data = plan.cfg, plan.cfg.data
        self.plan, self.cfg, self.rank, self.world, self.device = plan, cfg, rank, world, device
        self.progress = progress
        self.main = rank == 0
        self.m, self.n = data.in_frames, data.out_frames
        self.model, self.loss_fn, self.scores, self.opt = build(plan, device)
        # the model's outputs predict X_start .. X_{m+n−1}: start 1 for the recurrent rollout,
        # m for forecast-only models (`nowcast_cli.models.first_output`)
        self.start = first_output(self.model, self.m)
        self.first = 0 if cfg.loss_frames == "all" else self.m - self.start  # first in the loss
        self.focal = bool(getattr(self.loss_fn, "focal", False))
        # a model that draws random numbers in training (RainNet's dropout) draws them from a
        # generator seeded per step (`step_rng`), so that a resumed run draws the same
        self.random = any(isinstance(m, nn.Dropout) for m in self.model.modules())
        self.step, self.elapsed0 = 0, 0.0
        self.best: float | None = None  # the selection score of best.pt
        self.best_step: int | None = None
        self.stats = self.frame_stats()
        if plan.resume:
            got = checkpoints.restore(plan, self.model, self.opt, rank)
            self.step, self.elapsed0 = got.step, got.elapsed_s
            self.best, self.best_step = got.best_score, got.best_step
            self.stats.t.copy_(got.train_frames.to(device))
            if self.main:
                truncate_logs(plan.run_dir, self.step)
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
                "metrics": CsvLog(plan.run_dir / "metrics.csv", METRICS_COLUMNS),
                "frames": CsvLog(plan.run_dir / "frames.csv", FRAMES_COLUMNS),
            }
            if self.main
            else {}
        )
        self.saved = self.step if plan.resume else -1  # the step last.pt holds
        self.t_start = time.perf_counter()

    def frame_stats(self) -> FrameStats:
        """Empty sums for frames.csv, one per frame the model returns."""
        return FrameStats(self.m + self.n - self.start, self.device, self.start)

    def elapsed(self) -> float:
        """Training seconds of the run, over all its invocations."""
        return self.elapsed0 + time.perf_counter() - self.t_start

    def loader(self) -> torch.utils.data.DataLoader[Any] | LookAhead[Any]:
        """The batches of this process, from the current step to the stop step.

        From a local store: `cfg.workers` worker processes (default 0 on CPU, 2 on CUDA).
        From a URL, by default, no worker process but a look-ahead thread (`LookAhead`): each
        worker process would fetch every chunk its batches touch, so two workers fetch most
        chunks twice (twice the requests, which object storage bills), while one reader
        fetches each once and the thread hides the round trips behind the steps.
        """
        plan, cfg = self.plan, self.cfg
        dataset = WindowDataset(plan.store, cfg.data.size, plan.splits.train)
        cuda = self.device.type == "cuda"
        remote = not isinstance(dataset.store_path, Path)
        workers = cfg.workers if cfg.workers is not None else (2 if cuda and not remote else 0)
        sampler = BatchSampler(
            len(dataset), cfg.batch, cfg.seed, plan.steps_per_epoch, self.step,
            plan.stop_step, self.rank, self.world, plan.blocks,
        )  # fmt: skip
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=workers,
            # the numba kernels run on OpenMP threads, which do not survive fork()
            multiprocessing_context="spawn" if workers else None,
            pin_memory=cuda,
            # the loader's own seed; from torch's global generator it would shift that
            # generator by one draw per loader, which differs between a run and its resume
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        return LookAhead(loader) if remote and not workers else loader

    def run(self) -> RunResult:
        """Train from the current step to the plan's stop step; the run's result."""
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
            for frames_u8, valid in self.loader():
                frames_u8 = frames_u8.to(self.device, non_blocking=True)
                valid = valid.to(self.device, non_blocking=True)
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
                if plan.validates_at(self.step):
                    self.validate()
                every = cfg.checkpoint_every
                if epoch_end or (every and self.step % every == 0):
                    self.checkpoint("last.pt")
                if distributed.agree(stop.requested, self.world, self.device):
                    status = "interrupted"  # every process stops after the same step
                    break
        if self.saved != self.step:
            self.checkpoint("last.pt")
        result = self.result(status, last_loss)
        if self.progress:
            self.progress({"event": "end", **result.as_dict()})
        return result

    def train_step(self, frames_u8: Tensor, valid: Tensor) -> dict[str, Any]:
        """One optimizer step on this process's share of a global batch."""
        plan, cfg, m, n, f = self.plan, self.cfg, self.m, self.n, self.first
        epoch = self.step // plan.steps_per_epoch + 1
        x = frames_u8.float().div_(255.0)  # (b, m + n, 1, S, S) on [0, 1]
        target, tvalid = x[:, self.start :], valid[:, self.start :]  # X_start .. X_{m+n−1}
        eta = max(0.0, 1.0 - self.step / plan.total_steps) if cfg.scheduled_sampling else 0.0
        b = cfg.batch // self.world
        tp = teacher_mask(cfg.seed, self.step, cfg.batch, n - 1, eta)  # (B, n − 1) global
        tp = tp[self.rank * b : (self.rank + 1) * b].to(self.device)
        self.net.train()
        draws = step_rng(cfg.seed, self.step, self.rank, self.device) if self.random else None
        with self.autocast, draws or contextlib.nullcontext():
            pred = self.net(x[:, :m], n, teacher=x[:, m:], teacher_prob=tp)
        pred = pred.float()  # (b, m + n − start, 1, S, S)
        loss = self.loss_fn(pred[:, f:], target[:, f:], tvalid[:, f:])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        grads = [p.grad for p in params if p.grad is not None]
        with torch.no_grad():
            # the norm of the gradient as computed (before clipping), which after DDP's
            # averaging is the same in every process: averaged, not summed, over processes
            grad_norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
            plain = self.scores["plain"](pred[:, f:], target[:, f:], tvalid[:, f:])
            flags = torch.stack([loss.detach(), plain, grad_norm]).double() / self.world
            loss_v, plain_v, gnorm_v = distributed.reduce(flags, self.world).tolist()
        if not (math.isfinite(loss_v) and math.isfinite(gnorm_v)):
            self.fail(loss_v, gnorm_v, epoch)  # before clipping: inf would clip to ±clip
        if cfg.clip_value:
            nn.utils.clip_grad_value_(params, cfg.clip_value)
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
        """The epoch's training rows of frames.csv; the sums start again."""
        distributed.reduce(self.stats.t, self.world)
        self.log_frames(self.stats.rows(epoch, self.step, "train", self.focal))
        self.stats = self.frame_stats()

    def validate(self) -> None:
        """Validate the current weights; keep them as best.pt if the rule prefers them."""
        plan = self.plan
        if not len(plan.splits.valid):
            return
        v = validation.validate(
            plan, self.model, self.loss_fn, self.scores, self.device, self.rank, self.world,
            self.autocast,
        )  # fmt: skip
        score = validation.selection_score(self.cfg.select, v)
        epoch = math.ceil(self.step / plan.steps_per_epoch)
        row = {
            "step": self.step,
            "epoch": epoch,
            "split": "valid",
            "loss": v.loss,
            "plain_loss": v.plain,
            "b_mse": v.b_mse,
            "b_mae": v.b_mae,
            "csi": v.csi,
            "select_score": "" if score is None else score,
            "samples_per_s": v.samples_per_s,
            "elapsed_s": self.elapsed(),
        }
        self.log("metrics", row)
        self.log_frames(v.frames.rows(epoch, self.step, "valid", self.focal))
        if validation.better(score, self.best):
            self.best, self.best_step = score, self.step
            self.checkpoint("best.pt")
        if self.progress:
            best = math.inf if self.best is None else self.best
            self.progress({"event": "valid", **row, "best": best, "select": self.cfg.select})

    def log(self, name: str, row: dict[str, Any]) -> None:
        """Append a row to a log (rank 0 only)."""
        if name in self.logs:
            self.logs[name].write(row)

    def log_frames(self, rows: list[dict[str, Any]]) -> None:
        """Append frames.csv rows (rank 0 only)."""
        for row in rows:
            self.log("frames", row)

    def checkpoint(self, name: str) -> None:
        """Write `name` (rank 0); collective, since it sums the frame statistics."""
        frames = distributed.reduced_copy(self.stats.t, self.world)
        if name == "last.pt":
            self.saved = self.step
        if not self.main:
            return
        state = checkpoints.payload(
            self.plan, self.model, self.opt, self.step, self.best, self.best_step, frames,
            self.elapsed(),
        )  # fmt: skip
        save_checkpoint(self.plan.run_dir / name, state)

    def result(self, status: str, last_loss: float | None) -> RunResult:
        """What this run did."""
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
            best_score=self.best,
            best_step=self.best_step,
            last_checkpoint=plan.run_dir / "last.pt",
            best_checkpoint=best_pt if best_pt.is_file() else None,
            windows={k: len(plan.splits[k]) for k in ("train", "valid", "test")},
            split_note=plan.splits.note,
            device=str(self.device),
            world_size=self.world,
            rank=self.rank,
            select=self.cfg.select,
        )


def _batch_starts(plan: Plan, step: int) -> np.ndarray:
    from nowcast_cli.samples import batch_order

    epoch, offset = divmod(step, plan.steps_per_epoch)
    n, cfg = len(plan.splits.train), plan.cfg
    order = batch_order(n, cfg.batch, cfg.seed, epoch, blocks=plan.blocks)
    return plan.splits.train.start[order[offset]]


def _start_event(plan: Plan, step: int) -> dict[str, Any]:
    cfg: TrainConfig = plan.cfg
    return {
        "event": "start",
        "run": str(plan.run_dir),
        "store": str(plan.store),
        "step": step,
        "total": plan.stop_step,
        "planned": plan.total_steps,
        "steps_per_epoch": plan.steps_per_epoch,
        "epochs": cfg.epochs,
        "windows": {k: len(plan.splits[k]) for k in ("train", "valid", "test")},
        "split_note": plan.splits.note,
        "device": plan.device,
        "devices": cfg.devices,
        "resumed": plan.resume,
        "select": cfg.select,
    }
