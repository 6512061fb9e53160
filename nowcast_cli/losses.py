"""Training losses (SPEC §6): (B-)MSE, (B-)MAE, log-cosh and the focal frame loss family.

Registry names, as typed on the command line: ``mse``, ``mae``, ``mse+mae``, ``logcosh``,
``ff-mse``, ``ff-mae``, ``ff-mse+mae``, ``ff-logcosh``. Build one with `build_loss`; all share
the contract

``loss(pred, target, valid=None) -> Tensor`` (a scalar)

pred, target : Tensor (B, T, C, H, W)
    Predicted frames X̂_t and true frames X_t on the [0, 1] pixel scale (pixel / 255), every
    output frame as the models return them: t = 1 .. m + n − 1 for the recurrent models (the
    paper's eq. 6), the n forecast frames for RainNet and SimVP.
valid : Tensor, optional
    Same shape as `target` (or broadcastable to it), bool or 0/1: pixels where the radar had
    data. Invalid pixels contribute nothing, to the loss nor to the focal weights; a frame
    without any valid pixel is left out of the min and max of ΔX.

Per sample b and frame t, with e = X̂_t − X_t and w the balancing weight of the TRUE pixel
(1 unbalanced; else by rain rate <2 mm/h → 1, [2, 5) → 2, [5, 10) → 5, [10, 30) → 10,
≥30 → 30, compared in pixel space: X_t ≥ P(τ)/255) times `valid`:

    SE_t = Σ_pixels w·e²        AE_t = Σ_pixels w·|e|        LC_t = Σ_pixels w·ln cosh e

Plain losses average SE_t (``mse``), AE_t (``mae``), SE_t + AE_t (``mse+mae``) or LC_t
(``logcosh``, RainNet's loss: Keras's ``log_cosh``, quadratic for small errors, linear for
large ones) over frames and batch, times `scale`. Focal frame losses (``ff-*``) first multiply
each frame's term by

    W_t = ((ΔX_t − min_t ΔX) / (max_t ΔX − min_t ΔX) + ε)^k,   ΔX_t = mean over valid pixels of |e|,

computed per sample over the frame axis, from the unweighted absolute error, without
gradient; W_t = 1 for all t when max = min (to within a relative 1e-5, the rounding of the
pixel means). The paper defines ΔX_t as the sum of |e| over the frame's pixels: with every
pixel valid the mean is that sum over a constant, which the min–max normalisation removes;
with masks that differ between frames only the mean measures how hard a frame was (a sum
would call a half-masked frame easy). With k = 0 the focal losses equal the plain ones
exactly.

The B- weights depend on the rain rate, hence on the Z–R relation of the data: every loss is
built with the store's ``zr`` (there is no default; an unbalanced loss may pass None).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from nowcast_cli.encoding import threshold_to_pixel
from nowcast_cli.errors import ConfigError
from nowcast_cli.registry import Registry

__all__ = [
    "BALANCE_THRESHOLDS",
    "BALANCE_WEIGHTS",
    "LOSSES",
    "balance_weights",
    "build_loss",
    "log_cosh",
]

LOSSES: Registry[Any] = Registry("loss", plural="losses")

#: rain-rate boundaries (mm/h) of the B-MSE/B-MAE weights (HKO-7 benchmark)
BALANCE_THRESHOLDS: tuple[float, ...] = (2.0, 5.0, 10.0, 30.0)
#: weight below the first boundary, then from each boundary on
BALANCE_WEIGHTS: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0)

#: ΔX_t within this relative spread of the largest count as all equal (W_t = 1)
FLAT_RTOL = 1e-5


def balance_weights(target: Tensor, zr: tuple[float, float]) -> Tensor:
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


def log_cosh(e: Tensor) -> Tensor:
    """The log-cosh of errors `e`: |e| + ln(1 + exp(−2|e|)) − ln 2, which never overflows."""
    a = e.abs()
    return a + torch.nn.functional.softplus(-2.0 * a) - math.log(2.0)


class FrameLoss:
    """Base of all losses: per-frame sums over pixels, mean over frames and batch."""

    squared = False  # include SE_t
    absolute = False  # include AE_t
    logcosh = False  # include LC_t
    focal = False  # weight frames by W_t

    def __init__(
        self,
        *,
        zr: tuple[float, float] | None,
        balanced: bool = True,
        k: float = 2.0,
        eps: float = 0.01,
        scale: float = 0.001,
    ) -> None:
        if k < 0 or eps <= 0 or scale <= 0:
            raise ConfigError(f"need k ≥ 0, eps > 0 and scale > 0; got k={k}, eps={eps}, {scale=}")
        if zr is None:
            if balanced:
                raise ConfigError(
                    "the balanced (B-) loss weights need the Z–R relation of the data: "
                    "pass zr=(a, b) from the store, or balanced=False"
                )
        else:
            a, b = float(zr[0]), float(zr[1])
            if not (a > 0 and b > 0):
                raise ConfigError(f"Z–R coefficients must be positive, got a={a}, b={b}")
            zr = (a, b)
        self.balanced, self.k, self.eps, self.scale, self.zr = balanced, k, eps, scale, zr

    def frame_weights(self, abs_err: Tensor, valid: Tensor | None = None) -> Tensor:
        """Focal frame weights W_t (B, T) from |e| (B, T, …) and `valid`; no gradient."""
        with torch.no_grad():
            err = abs_err.detach().flatten(2)  # (B, T, pixels)
            if valid is None:
                dx = err.mean(2)  # (B, T): ΔX_t per sample
                lo, hi = dx.amin(1, keepdim=True), dx.amax(1, keepdim=True)
            else:
                v = valid.to(err.dtype).expand_as(abs_err).flatten(2)
                count = v.sum(2)  # (B, T) valid pixels per frame
                dx = (err * v).sum(2) / count.clamp(min=1)
                # a frame with no valid pixel (a missing radar frame) says nothing about how
                # hard it was: leave it out of min and max (its loss term is 0 anyway)
                seen = count > 0
                lo = torch.where(seen, dx, torch.inf).amin(1, keepdim=True)
                hi = torch.where(seen, dx, -torch.inf).amax(1, keepdim=True)
            span = hi - lo  # (B, 1)
            # "all ΔX_t equal" up to the rounding of the pixel means: min-max normalisation
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
        w = balance_weights(target, self.zr) if self.zr is not None and self.balanced else None
        if v is not None:
            w = v if w is None else w * v
        per_frame = torch.zeros(err.shape[:2], dtype=err.dtype, device=err.device)
        if self.squared:
            se = err * err
            per_frame = per_frame + (se if w is None else w * se).flatten(2).sum(2)  # (B, T)
        if self.absolute:
            per_frame = per_frame + (abs_err if w is None else w * abs_err).flatten(2).sum(2)
        if self.logcosh:
            lc = log_cosh(err)
            per_frame = per_frame + (lc if w is None else w * lc).flatten(2).sum(2)
        if self.focal:
            per_frame = self.frame_weights(abs_err, v) * per_frame
        return per_frame.mean() * self.scale

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(zr={self.zr}, balanced={self.balanced}, k={self.k}, "
            f"eps={self.eps}, scale={self.scale})"
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


@LOSSES.register("logcosh")
class LogCoshLoss(FrameLoss):
    """Log-cosh: per-frame sum of ln cosh(error) (RainNet's loss; B- weighted when balanced)."""

    logcosh = True


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


@LOSSES.register("ff-logcosh")
class FFLogCoshLoss(FrameLoss):
    """FF-log-cosh: focal frame weights W_t on the per-frame log-cosh sums."""

    logcosh = focal = True


def build_loss(
    name: str,
    *,
    zr: tuple[float, float] | None,
    balanced: bool = True,
    k: float = 2.0,
    eps: float = 0.01,
    scale: float = 0.001,
) -> Callable[..., Tensor]:
    """Build the registered loss `name`.

    Parameters
    ----------
    name : str
        ``mse``, ``mae``, ``mse+mae``, ``logcosh``, or one of them with the focal prefix
        ``ff-``.
    zr : (a, b) or None
        Z–R coefficients of the data (the store's ``zr``), for the rain-rate boundaries of
        the B- weights. Required: a DWD store and an HKO-7 store put the same boundary at
        different pixels. None only with ``balanced=False``.
    balanced : bool
        Apply the B- weights from the true pixel's rain rate (``--balanced``).
    k, eps : float
        Focal frame exponent (k ≥ 0) and bias (ε > 0); ignored by the plain losses.
    scale : float
        Factor on the loss (the paper's 0.001).

    Returns
    -------
    callable
        ``loss(pred, target, valid=None) -> Tensor`` (see the module docstring).

    Raises
    ------
    UnknownNameError
        If `name` is not a registered loss.
    ConfigError
        If k < 0, eps ≤ 0, scale ≤ 0, a Z–R coefficient is not positive, or `zr` is None
        for a balanced loss.
    """
    loss: FrameLoss = LOSSES.get(name)(zr=zr, balanced=balanced, k=k, eps=eps, scale=scale)
    return loss
