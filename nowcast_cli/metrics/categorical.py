"""Categorical scores from contingency tables (TP, FN, FP, TN), pooled per lead time.

A pixel is an event at threshold τ (mm/h) when its rain rate is ≥ τ, i.e. its pixel value
P ≥ P(τ) through the store's Z–R (`nowcast_cli.encoding.event_pixels`); pixels that are not
valid in the observations count nowhere. Tables are summed over all samples (and, for the
bootstrap, over resampled blocks of issue times) before any score is computed, as HKO-7 and
pysteps do. Undefined scores (a zero denominator, e.g. POD without observed events) are NaN,
never 0 or 1.

Scores (standard definitions; pysteps ``det_cat_fct`` uses the same formulas):

- POD = TP / (TP + FN), FAR = FP / (TP + FP), CSI = TP / (TP + FN + FP),
- BIAS = (TP + FP) / (TP + FN),
- HSS = 2 (TP·TN − FN·FP) / ((TP + FN)(FN + TN) + (TP + FP)(FP + TN)): the standard Heidke
  skill score; the paper's eq. (11) prints it without the factor 2, but its tables (and the
  authors' code) use this form,
- ETS = (TP − R) / (TP + FN + FP − R) with R = (TP + FN)(TP + FP) / N, the hits expected by
  chance (Gilbert skill score).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nowcast_cli.metrics import _kernels
from nowcast_cli.metrics._registry import METRICS

#: order of the last axis of every contingency array
TP, FN, FP, TN = 0, 1, 2, 3
#: categorical scores in display order
NAMES = ("csi", "pod", "far", "hss", "ets", "bias")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


@METRICS.register("csi")
def csi(tp: np.ndarray, fn: np.ndarray, fp: np.ndarray, tn: np.ndarray) -> np.ndarray:
    """CSI, critical success index (threat score): TP / (TP + FN + FP)."""
    return _ratio(tp, tp + fn + fp)


@METRICS.register("pod")
def pod(tp: np.ndarray, fn: np.ndarray, fp: np.ndarray, tn: np.ndarray) -> np.ndarray:
    """POD, probability of detection (hit rate): TP / (TP + FN)."""
    return _ratio(tp, tp + fn)


@METRICS.register("far")
def far(tp: np.ndarray, fn: np.ndarray, fp: np.ndarray, tn: np.ndarray) -> np.ndarray:
    """FAR, false alarm ratio: FP / (TP + FP)."""
    return _ratio(fp, tp + fp)


@METRICS.register("hss")
def hss(tp: np.ndarray, fn: np.ndarray, fp: np.ndarray, tn: np.ndarray) -> np.ndarray:
    """HSS, Heidke skill score (standard form, with the factor 2 the paper's eq. 11 drops)."""
    a, c, b, d = (np.asarray(x, dtype=np.float64) for x in (tp, fn, fp, tn))
    return _ratio(2.0 * (a * d - c * b), (a + c) * (c + d) + (a + b) * (b + d))


@METRICS.register("ets")
def ets(tp: np.ndarray, fn: np.ndarray, fp: np.ndarray, tn: np.ndarray) -> np.ndarray:
    """ETS, equitable threat score (Gilbert skill score): hits corrected for chance."""
    a, c, b, d = (np.asarray(x, dtype=np.float64) for x in (tp, fn, fp, tn))
    chance = _ratio((a + c) * (a + b), a + b + c + d)
    return _ratio(a - chance, a + c + b - chance)


@METRICS.register("bias")
def bias(tp: np.ndarray, fn: np.ndarray, fp: np.ndarray, tn: np.ndarray) -> np.ndarray:
    """BIAS, frequency bias: (TP + FP) / (TP + FN); 1 is unbiased."""
    return _ratio(tp + fp, tp + fn)


def scores(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Every categorical score of contingency tables ``counts`` (..., 4) (TP, FN, FP, TN)."""
    c = np.asarray(counts)
    parts = (c[..., TP], c[..., FN], c[..., FP], c[..., TN])
    return {name: METRICS.get(name)(*parts) for name in NAMES}


@dataclass
class Contingency:
    """Contingency tables per issue-time block, lead and threshold (init/accumulate/merge).

    Attributes
    ----------
    counts : np.ndarray
        int64 (blocks, leads, thresholds, 4): TP, FN, FP, TN.
    pixels : np.ndarray
        int64 (thresholds,) event pixel of each threshold (`encoding.event_pixels`).
    """

    counts: np.ndarray
    pixels: np.ndarray
    fine: np.ndarray | None = None

    @classmethod
    def init(
        cls, blocks: int, leads: int, pixels: np.ndarray, fine: np.ndarray | None = None
    ) -> Contingency:
        """Empty tables for `blocks` issue-time blocks, `leads` lead times, event `pixels`.

        `fine`: the event codes of the same thresholds for uint16 fine forecasts
        (`encoding.event_codes` with scale 256), needed to accumulate such forecasts.
        """
        px = np.asarray(pixels, dtype=np.int64).reshape(-1)
        if len(px) and (np.any(np.diff(px) < 0) or px[0] < 1):
            raise ValueError(f"event pixels must be sorted and ≥ 1, got {px.tolist()}")
        fc = None if fine is None else np.asarray(fine, dtype=np.int64).reshape(-1)
        if fc is not None and (len(fc) != len(px) or np.any(np.diff(fc) < 0)):
            raise ValueError(f"fine event codes must be sorted, one per threshold: {fc.tolist()}")
        return cls(np.zeros((blocks, leads, len(px), 4), np.int64), px, fc)

    def accumulate(
        self,
        fcst: np.ndarray,
        obs: np.ndarray,
        valid: np.ndarray,
        index: np.ndarray,
        block: np.ndarray,
        obs_counts: np.ndarray | None = None,
    ) -> None:
        """Add the tables of a chunk of forecasts.

        Parameters
        ----------
        fcst : np.ndarray
            (S, L, H, W) forecasts of S samples at the L leads of this accumulator: uint8
            pixels, or uint16 fine codes (then `fine` must have been given to `init`).
        obs, valid : np.ndarray
            uint8 and bool (U, H, W): the observed frames the chunk needs.
        index : np.ndarray
            int (S, L): the observed frame of each forecast frame, −1 where there is none
            (that frame is not counted).
        block : np.ndarray
            int (S,): the issue-time block of each sample.
        obs_counts : np.ndarray, optional
            `observe` of these observed frames, if already counted (a reader of overlapping
            chunks counts each observed frame once).
        """
        s_n, l_n = index.shape
        if s_n == 0 or obs.shape[0] == 0 or not np.any(np.asarray(index) >= 0):
            return  # nothing observed: no pixel counts anywhere
        k_all = len(self.pixels)
        live = self.pixels <= 255  # thresholds above the largest pixel never have events
        k = int(live.sum())
        u_n = obs.shape[0]
        o = np.ascontiguousarray(obs.reshape(u_n, -1))
        v = np.ascontiguousarray(valid.reshape(u_n, -1)).view(np.uint8)
        pk = self.pixels[live].astype(np.uint8)
        idx = np.ascontiguousarray(index, dtype=np.int64)
        n_obs = self.observe(obs, valid) if obs_counts is None else obs_counts
        per = np.zeros((s_n, l_n, k_all, 4), np.int64)
        if k:
            f = np.ascontiguousarray(fcst.reshape(s_n, l_n, -1))
            if f.dtype == np.uint16:
                if self.fine is None:
                    raise ValueError("fine (uint16) forecasts need the fine event codes")
                pf = np.minimum(self.fine[live], 65535).astype(np.uint16)
                fc = _kernels.forecast_counts_fine(f, o, v, idx, pf, pk)
            else:
                fc = _kernels.forecast_counts(f, o, v, idx, pk)  # (S, L, 2k)
            tp, nf = fc[..., :k], fc[..., k:]
            per[..., :k, TP] = tp
            per[..., :k, FP] = nf - tp
        seen = idx >= 0
        u = np.where(seen, idx, 0)
        no = np.where(seen[..., None], n_obs[u, :k_all], 0)  # (S, L, K)
        nv = np.where(seen, n_obs[u, k_all], 0)[..., None]
        per[..., FN] = no - per[..., TP]
        per[..., TN] = nv - per[..., TP] - per[..., FN] - per[..., FP]
        np.add.at(self.counts, np.asarray(block, dtype=np.int64), per)

    def observe(self, obs: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Observed events and valid pixels of observed frames (U, H, W).

        Returns int64 (U, K + 1): O_k of each threshold, then N: what `accumulate` needs of
        each observed frame, counted once per frame.
        """
        u_n = obs.shape[0]
        k_all = len(self.pixels)
        live = self.pixels <= 255
        k = int(live.sum())
        o = np.ascontiguousarray(obs.reshape(u_n, -1))
        v = np.ascontiguousarray(valid.reshape(u_n, -1)).view(np.uint8)
        out = np.zeros((u_n, k_all + 1), np.int64)
        if k:
            c = _kernels.observation_counts(o, v, self.pixels[live].astype(np.uint8))
            out[:, :k] = c[:, :k]
            out[:, k_all] = c[:, k]
        else:
            out[:, k_all] = v.sum(axis=1, dtype=np.int64)
        return out

    def merge(self, other: Contingency) -> Contingency:
        """Tables of both accumulators (same blocks, leads and thresholds)."""
        if self.counts.shape != other.counts.shape or not np.array_equal(self.pixels, other.pixels):
            raise ValueError("cannot merge contingency tables of different shapes or thresholds")
        return Contingency(self.counts + other.counts, self.pixels.copy(), self.fine)

    def compute(self) -> dict[str, np.ndarray]:
        """Scores per lead and threshold (L, K) from the tables pooled over all blocks."""
        return scores(self.counts.sum(axis=0))
