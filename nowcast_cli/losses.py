"""Training losses (SPEC §6): (B-)MSE, (B-)MAE and the focal frame loss family.

Registry names, as typed on the command line: ``mse``, ``mae``, ``mse+mae``, ``ff-mse``,
``ff-mae``, ``ff-mse+mae``. Build one with `build_loss`; all share the contract

``loss(pred, target, valid=None) -> Tensor`` (a scalar)

pred, target : Tensor (B, T, C, H, W)
    Predicted frames X̂_t and true frames X_t on the [0, 1] pixel scale (pixel / 255), every
    output frame t = 1 .. m + n − 1 as the models return them (the paper's eq. 6).
valid : Tensor, optional
    Same shape as `target` (or broadcastable to it), bool or 0/1: pixels where the radar had
    data. Invalid pixels contribute nothing, to the loss nor to the focal weights; a frame
    without any valid pixel is left out of the min and max of ΔX.

Per sample b and frame t, with e = X̂_t − X_t and w the balancing weight of the TRUE pixel
(1 unbalanced; else by rain rate <2 mm/h → 1, [2, 5) → 2, [5, 10) → 5, [10, 30) → 10,
≥30 → 30, compared in pixel space: X_t ≥ P(τ)/255) times `valid`:

    SE_t = Σ_pixels w·e²        AE_t = Σ_pixels w·|e|

Plain losses average SE_t (``mse``), AE_t (``mae``) or SE_t + AE_t (``mse+mae``) over frames and
batch, times `scale`. Focal frame losses (``ff-*``) first multiply each frame's term by

    W_t = ((ΔX_t − min_t ΔX) / (max_t ΔX − min_t ΔX) + ε)^k,   ΔX_t = Σ_pixels valid·|e|,

computed per sample over the frame axis, from the unweighted absolute error, without
gradient; W_t = 1 for all t when max = min (to within a relative 1e-5, the rounding of the
pixel sums). With k = 0 the focal losses equal the plain ones
exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from nowcast_cli.encoding import threshold_to_pixel
from nowcast_cli.errors import ConfigError
from nowcast_cli.registry import Registry

__all__ = ["BALANCE_THRESHOLDS", "BALANCE_WEIGHTS", "LOSSES", "balance_weights", "build_loss"]

LOSSES: Registry[Any] = Registry("loss")

#: rain-rate boundaries (mm/h) of the B-MSE/B-MAE weights (HKO-7 benchmark)
BALANCE_THRESHOLDS: tuple[float, ...] = (2.0, 5.0, 10.0, 30.0)
#: weight below the first boundary, then from each boundary on
BALANCE_WEIGHTS: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0)

HKO7_ZR = (58.53, 1.56)  # SPEC §3: Z = 58.53·R^1.56
#: ΔX_t within this relative spread of the largest count as all equal (W_t = 1)
FLAT_RTOL = 1e-5


def balance_weights(target: Tensor, zr: tuple[float, float] = HKO7_ZR) -> Tensor:
    """B-MSE/B-MAE weight of each true pixel from its rain rate.

    Parameters
    ----------
    target : Tensor
        True frames on the [0, 1] pixel scale, any shape.
    zr : (a, b)
        Z–R coefficients of the store (Z = a·R^b).

    Returns
    -------
    Tensor
        Same shape and dtype as `target`: 1, 2, 5, 10 or 30; a pixel exactly at a boundary
        gets the upper weight (rain ≥ τ).
    """
    a, b = zr
    g = target.detach()
    w = torch.full_like(g, BALANCE_WEIGHTS[0])
    steps = zip(BALANCE_THRESHOLDS, BALANCE_WEIGHTS[:-1], BALANCE_WEIGHTS[1:], strict=True)
    for tau, lower, upper in steps:
        # ≥: a pixel exactly at a boundary takes the upper weight (rain ≥ τ); the boundary is
        # rounded to the target's dtype once, so it compares like a stored value would
        bound = torch.tensor(threshold_to_pixel(tau, a, b) / 255.0, dtype=g.dtype)
        w = w + (g >= bound.to(g.device)) * (upper - lower)
    return w


class FrameLoss:
    """Base of all losses: per-frame sums over pixels, mean over frames and batch."""

    squared = False  # include SE_t
    absolute = False  # include AE_t
    focal = False  # weight frames by W_t

    def __init__(
        self,
        *,
        balanced: bool = True,
        k: float = 2.0,
        eps: float = 0.01,
        scale: float = 0.001,
        zr: tuple[float, float] = HKO7_ZR,
    ) -> None:
        if k < 0 or eps <= 0 or scale <= 0:
            raise ConfigError(f"need k ≥ 0, eps > 0 and scale > 0; got k={k}, eps={eps}, {scale=}")
        a, b = zr
        if a <= 0 or b <= 0:
            raise ConfigError(f"Z–R coefficients must be positive, got a={a}, b={b}")
        self.balanced, self.k, self.eps, self.scale, self.zr = balanced, k, eps, scale, (a, b)

    def frame_weights(self, abs_err: Tensor, valid: Tensor | None = None) -> Tensor:
        """Focal frame weights W_t (B, T) from |e| (B, T, …); no gradient."""
        with torch.no_grad():
            err = abs_err.detach()
            if valid is not None:
                err = err * valid
            dx = err.flatten(2).sum(2)  # (B, T): ΔX_t per sample
            if valid is None:
                lo, hi = dx.amin(1, keepdim=True), dx.amax(1, keepdim=True)
            else:
                # a frame with no valid pixel (a missing radar frame) has ΔX = 0 by construction,
                # not because it was easy: leave it out of min and max (its loss term is 0)
                seen = valid.expand_as(err).flatten(2).sum(2) > 0  # (B, T)
                lo = torch.where(seen, dx, torch.inf).amin(1, keepdim=True)
                hi = torch.where(seen, dx, -torch.inf).amax(1, keepdim=True)
            span = hi - lo  # (B, 1)
            # "all ΔX_t equal" up to the rounding of the pixel sums: min-max normalisation
            # would otherwise blow rounding noise up to weights from ε^k to (1 + ε)^k
            flat = ~(span > FLAT_RTOL * hi)  # also true when no frame has a valid pixel
            norm = (dx - lo) / torch.where(flat, torch.ones_like(span), span)
            w = (norm.clamp(min=0.0) + self.eps) ** self.k
            return torch.where(flat, torch.ones_like(w), w)

    def __call__(self, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
        """Scalar loss of `pred` against `target` (both (B, T, C, H, W), [0, 1] pixels)."""
        if pred.shape != target.shape or pred.ndim != 5:
            raise ConfigError(
                f"pred and target must both be (B, T, C, H, W); got {tuple(pred.shape)} "
                f"and {tuple(target.shape)}"
            )
        err = pred - target
        abs_err = err.abs()
        v = None if valid is None else valid.to(err.dtype)
        w = balance_weights(target, self.zr) if self.balanced else None
        if v is not None:
            w = v if w is None else w * v
        per_frame = torch.zeros(err.shape[:2], dtype=err.dtype, device=err.device)
        if self.squared:
            se = err * err
            per_frame = per_frame + (se if w is None else w * se).flatten(2).sum(2)  # (B, T)
        if self.absolute:
            per_frame = per_frame + (abs_err if w is None else w * abs_err).flatten(2).sum(2)
        if self.focal:
            per_frame = self.frame_weights(abs_err, v) * per_frame
        return per_frame.mean() * self.scale

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(balanced={self.balanced}, k={self.k}, eps={self.eps}, "
            f"scale={self.scale}, zr={self.zr})"
        )


@LOSSES.register("mse")
class MSELoss(FrameLoss):
    """MSE: per-frame sum of squared errors (B-MSE when balanced), mean over frames."""

    squared = True


@LOSSES.register("mae")
class MAELoss(FrameLoss):
    """MAE: per-frame sum of absolute errors (B-MAE when balanced), mean over frames."""

    absolute = True


@LOSSES.register("mse+mae")
class MSEMAELoss(FrameLoss):
    """MSE + MAE: the paper's B-MSE + B-MAE baseline loss."""

    squared = absolute = True


@LOSSES.register("ff-mse")
class FFMSELoss(FrameLoss):
    """FF-MSE: focal frame MSE, hard frames weighted up by W_t (paper eq. 8)."""

    squared = focal = True


@LOSSES.register("ff-mae")
class FFMAELoss(FrameLoss):
    """FF-MAE: focal frame MAE, hard frames weighted up by W_t (paper eq. 8)."""

    absolute = focal = True


@LOSSES.register("ff-mse+mae")
class FFMSEMAELoss(FrameLoss):
    """FF-MSE + FF-MAE: focal frame weights on B-MSE + B-MAE (the paper's FFL runs)."""

    squared = absolute = focal = True


def build_loss(
    name: str,
    *,
    balanced: bool = True,
    k: float = 2.0,
    eps: float = 0.01,
    scale: float = 0.001,
    zr: tuple[float, float] = HKO7_ZR,
) -> Callable[..., Tensor]:
    """Build the registered loss `name`.

    Parameters
    ----------
    name : str
        ``mse``, ``mae``, ``mse+mae``, ``ff-mse``, ``ff-mae`` or ``ff-mse+mae``.
    balanced : bool
        Apply the B- weights from the true pixel's rain rate (``--balanced``).
    k, eps : float
        Focal frame exponent (k ≥ 0) and bias (ε > 0); ignored by the plain losses.
    scale : float
        Factor on the loss (the paper's 0.001).
    zr : (a, b)
        Z–R coefficients of the store, for the rain-rate boundaries of the B- weights.

    Returns
    -------
    callable
        ``loss(pred, target, valid=None) -> Tensor`` (see the module docstring).

    Raises
    ------
    UnknownNameError
        If `name` is not a registered loss.
    ConfigError
        If k < 0, eps ≤ 0, scale ≤ 0 or a Z–R coefficient is not positive.
    """
    loss: FrameLoss = LOSSES.get(name)(balanced=balanced, k=k, eps=eps, scale=scale, zr=zr)
    return loss
