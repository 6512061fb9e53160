"""Continuous (image) scores, as the paper reports them: per-frame values, mean over frames.

Per forecast frame F against its observation O, both on the [0, 1] pixel scale (pixel / 255),
over the pixels valid in the observation:

- ``mse`` = Σ (F − O)², ``mae`` = Σ |F − O| (sums over pixels, not means: the paper's and the
  authors' convention, so values scale with the grid: 120×120 in the paper);
- ``b_mse``, ``b_mae``: the same with the balancing weight of the observed pixel's rain rate
  (1 below 2 mm/h, then 2, 5, 10, 30 from 2, 5, 10, 30 mm/h; HKO-7's B-MSE/B-MAE, the
  weights of the B- training losses);
- ``gdl`` = Σ over vertically and horizontally neighbouring pixel pairs (both valid) of
  | |ΔF| − |ΔO| | (gradient difference);
- ``psnr`` = 10·log10(1 / (mean (F − O)² + 1e-5)) dB: the authors' form, whose 1e-5 caps a
  perfect frame at 50 dB instead of +∞ (a dry frame forecast dry would make the mean infinite);
- ``ssim``: mean SSIM (Wang et al. 2004) over the 'valid' 11×11 windows, Gaussian weights
  σ = 1.5, data range 1, K1 = 0.01, K2 = 0.03, population (co)variances — what scikit-image's
  ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=1)`` computes; windows that contain an invalid pixel are left out.

A frame with no valid pixel (or, for SSIM, no fully valid window) has no value and is not
counted. The score of a lead time is the mean over its frames; the pixel sums are exact
integers in pixel units before scaling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nowcast_cli import encoding
from nowcast_cli.metrics import _kernels
from nowcast_cli.metrics._registry import METRICS

#: continuous scores in display order
NAMES = ("mse", "mae", "b_mse", "b_mae", "gdl", "psnr", "ssim")
#: rain-rate boundaries (mm/h) and weights of B-MSE/B-MAE (HKO-7; equal to the B- loss weights,
#: `nowcast_cli.losses.BALANCE_*`, which a test checks; kept here so verification needs no torch)
BALANCE_THRESHOLDS: tuple[float, ...] = (2.0, 5.0, 10.0, 30.0)
BALANCE_WEIGHTS: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0)
PSNR_EPS = 1e-5
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03

# columns of the kernel's per-frame sums (pixel units)
_SE, _AE, _BSE, _BAE, _GDL, _N, _SSIM, _WINDOWS = range(8)


def balance_lut(zr: tuple[float, float]) -> np.ndarray:
    """int64 (256,) B-MSE/B-MAE weight of each observed pixel value (rain ≥ boundary)."""
    w = np.full(256, BALANCE_WEIGHTS[0])
    px = encoding.event_pixels(list(BALANCE_THRESHOLDS), *zr)
    for p, lower, upper in zip(px, BALANCE_WEIGHTS[:-1], BALANCE_WEIGHTS[1:], strict=True):
        w[min(int(p), 256) :] += upper - lower
    return w.astype(np.int64)


def _per_pixel(sums: np.ndarray, col: int, power: int) -> np.ndarray:
    n = sums[..., _N]
    return np.where(n > 0, sums[..., col] / 255.0**power, np.nan)


@METRICS.register("mse")
def mse(sums: np.ndarray) -> np.ndarray:
    """MSE: per-frame sum over valid pixels of (F − O)² on the [0, 1] scale."""
    return _per_pixel(sums, _SE, 2)


@METRICS.register("mae")
def mae(sums: np.ndarray) -> np.ndarray:
    """MAE: per-frame sum over valid pixels of |F − O| on the [0, 1] scale."""
    return _per_pixel(sums, _AE, 1)


@METRICS.register("b_mse")
def b_mse(sums: np.ndarray) -> np.ndarray:
    """B-MSE: MSE with weights 1, 2, 5, 10, 30 by the observed rain rate (HKO-7)."""
    return _per_pixel(sums, _BSE, 2)


@METRICS.register("b_mae")
def b_mae(sums: np.ndarray) -> np.ndarray:
    """B-MAE: MAE with weights 1, 2, 5, 10, 30 by the observed rain rate (HKO-7)."""
    return _per_pixel(sums, _BAE, 1)


@METRICS.register("gdl")
def gdl(sums: np.ndarray) -> np.ndarray:
    """GDL: per-frame sum of | |ΔF| − |ΔO| | over neighbouring pixel pairs, [0, 1] scale."""
    return _per_pixel(sums, _GDL, 1)


@METRICS.register("psnr")
def psnr(sums: np.ndarray) -> np.ndarray:
    """PSNR: 10·log10(1 / (mean (F − O)² + 1e-5)) in dB, [0, 1] scale (authors' form)."""
    n = sums[..., _N]
    with np.errstate(divide="ignore", invalid="ignore"):
        m = sums[..., _SE] / 255.0**2 / n
        out = 10.0 * np.log10(1.0 / (m + PSNR_EPS))
    return np.where(n > 0, out, np.nan)


@METRICS.register("ssim")
def ssim(sums: np.ndarray) -> np.ndarray:
    """SSIM: Gaussian 11×11, σ 1.5, data range 1, mean over 'valid' windows."""
    w = sums[..., _WINDOWS]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(w > 0, sums[..., _SSIM] / w, np.nan)


def frame_scores(sums: np.ndarray) -> np.ndarray:
    """Per-frame scores (..., len(NAMES)) from the kernel's per-frame sums (..., 8)."""
    out: np.ndarray = np.stack([METRICS.get(name)(sums) for name in NAMES], axis=-1)
    return out


def frame_sums(
    fcst: np.ndarray,
    obs: np.ndarray,
    valid: np.ndarray,
    index: np.ndarray,
    weights: np.ndarray,
    with_ssim: bool = True,
) -> np.ndarray:
    """Per-frame pixel sums (S, L, 8) of a chunk (see `Continuous.accumulate` for the inputs).

    Forecasts are uint8 pixels or uint16 fine codes (pixel × `encoding.FINE_SCALE`).
    """
    g = _kernels.gaussian_window(SSIM_WINDOW, SSIM_SIGMA)
    return _kernels.continuous_sums(
        np.ascontiguousarray(fcst),
        np.ascontiguousarray(obs),
        np.ascontiguousarray(valid),
        np.ascontiguousarray(index, dtype=np.int64),
        weights,
        g,
        SSIM_K1**2,
        SSIM_K2**2,
        with_ssim,
        encoding.code_scale(fcst.dtype),
    )


@dataclass
class Continuous:
    """Sums of per-frame scores per issue-time block and lead (init/accumulate/merge/compute).

    Attributes
    ----------
    sums : np.ndarray
        float64 (blocks, leads, len(NAMES)): Σ over frames of each per-frame score.
    frames : np.ndarray
        int64, same shape: frames with a defined score.
    weights : np.ndarray
        int64 (256,) balancing weight of each observed pixel value (`balance_lut`).
    with_ssim : bool
        Compute SSIM (the costliest score).
    """

    sums: np.ndarray
    frames: np.ndarray
    weights: np.ndarray
    with_ssim: bool = True

    @classmethod
    def init(
        cls, blocks: int, leads: int, zr: tuple[float, float], with_ssim: bool = True
    ) -> Continuous:
        """Empty sums for `blocks` issue-time blocks and `leads` leads on a store with `zr`."""
        shape = (blocks, leads, len(NAMES))
        return cls(np.zeros(shape), np.zeros(shape, np.int64), balance_lut(zr), with_ssim)

    def accumulate(
        self,
        fcst: np.ndarray,
        obs: np.ndarray,
        valid: np.ndarray,
        index: np.ndarray,
        block: np.ndarray,
    ) -> None:
        """Add a chunk of forecasts (inputs as in `Contingency.accumulate`)."""
        if len(index) == 0 or obs.shape[0] == 0 or not np.any(np.asarray(index) >= 0):
            return  # nothing observed: no frame has a value
        values = frame_scores(frame_sums(fcst, obs, valid, index, self.weights, self.with_ssim))
        seen = np.isfinite(values) & (np.asarray(index) >= 0)[..., None]
        b = np.asarray(block, dtype=np.int64)
        np.add.at(self.sums, b, np.where(seen, values, 0.0))
        np.add.at(self.frames, b, seen.astype(np.int64))

    def merge(self, other: Continuous) -> Continuous:
        """Sums of both accumulators (same blocks and leads)."""
        if self.sums.shape != other.sums.shape:
            raise ValueError("cannot merge continuous sums of different shapes")
        return Continuous(
            self.sums + other.sums, self.frames + other.frames, self.weights, self.with_ssim
        )

    def compute(self) -> dict[str, np.ndarray]:
        """Mean per-frame score per lead (L,) for each name, over all blocks."""
        return means(self.sums.sum(axis=0), self.frames.sum(axis=0))


def means(sums: np.ndarray, frames: np.ndarray) -> dict[str, np.ndarray]:
    """Mean per-frame scores ``sums / frames`` (NaN without frames), one array per name."""
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.where(frames > 0, sums / np.maximum(frames, 1), np.nan)
    return {name: m[..., i] for i, name in enumerate(NAMES)}
