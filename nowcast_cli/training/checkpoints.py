"""What a training checkpoint holds, and how a run resumes from one exactly.

``last.pt`` is the latest state (written at epoch ends, every ``checkpoint_every`` steps, and
when a run stops); ``best.pt`` the weights the ``--select`` rule chose. Both are the full
state, so either can be resumed from or forecast with (`nowcast_cli.checkpoint`).

Exact resume: everything random derives from (seed, epoch, step) (data order, scheduled
sampling draws), nothing in the loop draws from torch's global generator, and a checkpoint
holds the model, the optimizer (AdamHD's learning rate included), the step, the selection
state, the global generator's state and the running per-frame sums of the epoch so far
(summed over processes). So "N steps" and "k steps, stop, resume to N" write bitwise the same
``last.pt`` and ``best.pt`` (model, optimizer, generator, step) on a CPU.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nowcast_cli.checkpoint import read_checkpoint
from nowcast_cli.config import config_dict
from nowcast_cli.errors import RunError
from nowcast_cli.training.plan import clean

if TYPE_CHECKING:
    from nowcast_cli.training.plan import Plan

__all__ = ["Restored", "payload", "restore"]


@dataclasses.dataclass
class Restored:
    """The loop state a checkpoint gives back (the model and optimizer are loaded in place)."""

    step: int
    elapsed_s: float
    best_score: float | None
    best_step: int | None
    train_frames: torch.Tensor  # (4, frames) global sums of the epoch so far


def payload(
    plan: Plan,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    step: int,
    best_score: float | None,
    best_step: int | None,
    train_frames: torch.Tensor,
    elapsed: float,
) -> dict[str, Any]:
    """The checkpoint dict of the current state (see `nowcast_cli.checkpoint`)."""
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
            "split": clean(plan.splits.describe()),
        },
        "options": config_dict(cfg),
        "step": step,
        "epoch": step / plan.steps_per_epoch,
        "steps_per_epoch": plan.steps_per_epoch,
        "total_steps": plan.total_steps,
        "best": {"rule": cfg.select, "score": best_score, "step": best_step},
        "optimizer_name": cfg.optimizer,
        "optimizer": opt.state_dict(),
        "rng": {"torch": torch.get_rng_state()},
        "accumulators": {"train_frames": train_frames.detach().cpu()},
        "elapsed_s": elapsed,
    }


def restore(plan: Plan, model: nn.Module, opt: torch.optim.Optimizer, rank: int) -> Restored:
    """Load ``last.pt`` into `model` and `opt`, set torch's generator; the loop state.

    Raises
    ------
    RunError
        If ``last.pt`` holds another model, or was chosen by another ``--select`` rule.
    """
    path = plan.run_dir / "last.pt"
    ck = read_checkpoint(path)
    if ck.get("model") != plan.cfg.model:
        raise RunError(f"{path}: a checkpoint of {ck.get('model')!r}")
    best = ck.get("best", {})
    rule = best.get("rule", "val-loss")  # before --select, best.pt was the lowest valid loss
    if rule != plan.cfg.select:
        raise RunError(
            f"{path}: its best.pt was chosen by --select {rule}; resume with --select {rule}"
        )
    model.load_state_dict(ck["model_state"])
    opt.load_state_dict(ck["optimizer"])
    torch.set_rng_state(ck["rng"]["torch"])
    score = best.get("score", best.get("loss"))
    frames = ck["accumulators"]["train_frames"]
    return Restored(
        step=int(ck["step"]),
        elapsed_s=float(ck.get("elapsed_s", 0.0)),
        best_score=None if score is None or math.isinf(score) else float(score),
        best_step=best.get("step"),
        # the sums over all processes: one process carries them on, the others start at 0
        train_frames=frames if rank == 0 else torch.zeros_like(frames),
    )
