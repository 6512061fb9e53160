"""Validation, and the choice of the checkpoint that makes the test forecasts.

`validate` runs the validation windows through the model as at test time (inference mode,
no scheduled sampling: η = 0) and returns, per window averaged over all of them:

- ``loss``: the training loss; ``plain``: the same without focal weights;
- ``b_mse``, ``b_mae``: B-MSE and B-MAE (per-frame pixel sums on the [0, 1] scale, HKO-7's
  balance weights from the store's Z–R) over the n forecast frames, whatever the loss;
- ``csi``: the CSI of the forecast frames, pooled over windows and leads per threshold
  (forecasts rounded to the store's uint8 encoding, rain ≥ τ ⇔ P ≥ P(τ)), averaged over
  the thresholds of `CSI_THRESHOLDS` that the validation observations reach;
- ``frames``: the per-frame ΔX_t and W_t (`logs.FrameStats`).

`selection_score` turns that into the number a ``--select`` rule minimises. The rule is fixed
per run (``config.toml``) and, by default, does not depend on the training loss: choosing
focal-loss runs by their own focal validation loss and plain runs by the plain loss would
pick the two arms of a comparison by different rules.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from nowcast_cli.models import first_output
from nowcast_cli.samples import WindowDataset
from nowcast_cli.training.distributed import reduce
from nowcast_cli.training.logs import FrameStats

__all__ = ["CSI_THRESHOLDS", "Validation", "better", "selection_score", "validate"]

#: thresholds (mm/h) of the ``val-csi`` rule: the ones ``nowcast verify`` shows by default
CSI_THRESHOLDS = (0.5, 2.0, 5.0, 10.0, 30.0)


@dataclass
class Validation:
    """Scores of one validation pass (means over its windows; see the module docstring)."""

    loss: float
    plain: float
    b_mse: float
    b_mae: float
    csi: float  # NaN when the observations reach none of the thresholds
    windows: int
    samples_per_s: float
    frames: FrameStats


def selection_score(rule: str, v: Validation) -> float | None:
    """What the ``--select`` rule minimises (None: the rule keeps no best checkpoint).

    NaN (``val-csi`` without any observed event) is never better than anything.
    """
    if rule == "val-bmse+bmae":
        return v.b_mse + v.b_mae
    if rule == "val-csi":
        return -v.csi
    if rule == "val-loss":
        return v.loss
    return None


def better(score: float | None, best: float | None) -> bool:
    """Whether `score` beats `best` (lower is better; None and NaN never win)."""
    if score is None or math.isnan(score):
        return False
    return best is None or score < best


@torch.inference_mode()
def validate(
    plan: Any,
    model: nn.Module,
    loss_fn: Any,
    scores: dict[str, Any],
    device: torch.device,
    rank: int,
    world: int,
    autocast: Any,
) -> Validation:
    """One pass over the validation windows (this process's share; sums over processes)."""
    from nowcast_cli.encoding import event_pixels

    cfg, data = plan.cfg, plan.cfg.data
    m, n = data.in_frames, data.out_frames
    start = first_output(model, m)  # the outputs predict X_start .. X_{m+n−1}
    first = 0 if cfg.loss_frames == "all" else m - start
    split = plan.splits.valid
    mine = np.arange(rank, len(split), world)  # this process's share
    dataset = WindowDataset(plan.store, data.size, split.subset(mine))
    # a generator of its own: a loader otherwise draws its seed from torch's global one
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=cfg.batch, shuffle=False, generator=torch.Generator()
    )
    focal = bool(getattr(loss_fn, "focal", False))
    stats = FrameStats(m + n - start, device, start)
    sums = torch.zeros(5, dtype=torch.float64, device=device)  # loss, plain, b_mse, b_mae, count
    events = torch.as_tensor(event_pixels(list(CSI_THRESHOLDS), *plan.zr), device=device)
    counts = torch.zeros(3, len(CSI_THRESHOLDS), dtype=torch.float64, device=device)
    model.eval()
    t0 = time.perf_counter()
    for frames_u8, valid in loader:
        frames_u8, valid = frames_u8.to(device), valid.to(device)
        x = frames_u8.float().div_(255.0)
        target, tvalid = x[:, start:], valid[:, start:]
        with autocast:
            pred = model(x[:, :m], n)
        pred = pred.float()
        b = x.shape[0]
        f = slice(first, None)
        fc = slice(m - start, None)  # the n forecast frames
        sums[0] += float(loss_fn(pred[:, f], target[:, f], tvalid[:, f])) * b
        sums[1] += float(scores["plain"](pred[:, f], target[:, f], tvalid[:, f])) * b
        sums[2] += float(scores["b_mse"](pred[:, fc], target[:, fc], tvalid[:, fc])) * b
        sums[3] += float(scores["b_mae"](pred[:, fc], target[:, fc], tvalid[:, fc])) * b
        sums[4] += b
        counts += contingency(pred[:, fc], frames_u8[:, m:], valid[:, m:], events)
        err = (pred - target).abs()
        w = loss_fn.frame_weights(err[:, f], tvalid[:, f]) if focal else None
        stats.add(err, tvalid, w, first)
    model.train()
    reduce(sums, world)
    reduce(counts, world)
    reduce(stats.t, world)
    count = max(float(sums[4]), 1.0)
    seconds = time.perf_counter() - t0
    loss, plain, b_mse, b_mae = (float(sums[i]) / count for i in range(4))
    return Validation(
        loss=loss,
        plain=plain,
        b_mse=b_mse,
        b_mae=b_mae,
        csi=csi(counts),
        windows=int(sums[4]),
        samples_per_s=float(sums[4]) / max(seconds, 1e-9),
        frames=stats,
    )


def contingency(pred: Tensor, obs_u8: Tensor, valid: Tensor, events: Tensor) -> Tensor:
    """Hits, misses and false alarms per threshold, (3, K) float64.

    pred : (B, n, 1, S, S) forecasts on the [0, 1] scale, rounded here to uint8 pixels as a
    forecast store keeps them; obs_u8 : the observed pixels; valid : their mask;
    events : (K,) smallest pixel value of each event (``encoding.event_pixels``).
    """
    f = torch.floor(pred.clamp(0.0, 1.0) * 255.0 + 0.5).flatten()
    o = obs_u8.flatten().to(f.dtype)
    ok = valid.flatten()
    f, o = f[ok], o[ok]
    e = events.to(f.dtype)[:, None]  # (K, 1)
    fe, oe = f[None, :] >= e, o[None, :] >= e  # (K, pixels)
    hits = (fe & oe).sum(1)
    misses = (~fe & oe).sum(1)
    false = (fe & ~oe).sum(1)
    return torch.stack([hits, misses, false]).double()


def csi(counts: Tensor) -> float:
    """Mean CSI over the thresholds with an observed event; NaN when there is none."""
    hits, misses, false = counts
    observed = (hits + misses) > 0
    if not bool(observed.any()):
        return math.nan
    per = hits[observed] / (hits + misses + false)[observed]
    return float(per.mean())
