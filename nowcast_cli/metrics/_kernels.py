"""numba kernels of the verification scores: one pass over uint8 frames per (sample, lead).

Every kernel has a plain NumPy reference in the tests. Frames are flattened to (…, pixels) for
the contingency kernel and kept 2-D for the neighbourhood scores (GDL, SSIM). The observation
frames a chunk needs are passed once, as (U, …) plus an index (S, L) → u (−1: no observation),
because consecutive issue times share most of their observed frames.

Contingency counts
------------------
Per frame and threshold k (event pixel p_k ≥ 1, rain ≥ τ_k ⇔ P ≥ p_k) the kernel counts, over
valid pixels only, TP_k = #(min(F, O) ≥ p_k) and F_k = #(F ≥ p_k); the observed events O_k and
the valid pixels N depend on the observation alone and are counted once per observed frame.
FN = O − TP, FP = F − TP, TN = N − TP − FN − FP follow. Invalid pixels are zeroed (P = 0 is
below every p_k), so they count nowhere.

Speed: blocks of ``LANES`` pixels are compared against one threshold at a time with 8-bit
per-lane counters (flushed every 255 blocks), a form LLVM vectorizes to full SIMD width; a
block whose forecast has no value at the lowest event pixel p0 is skipped after a test of the
forecast bytes alone, 8 at a time (most of a radar image is dry: the observation and mask are
not read): for p0 ≤ 128, ((x + 0x01…01·(128 − p0)) | x) & 0x80…80 is nonzero exactly when a
byte of x is ≥ p0 (a byte ≥ 128 carries into the next but is itself ≥ p0, so "any" stays
exact); for p0 > 128 the test is x & 0x80…80, a superset. The thresholds above a block's
largest masked forecast are skipped.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from nowcast_cli._numba import njit, prange


def threads() -> int:
    """Threads the kernels use: ``NUMBA_NUM_THREADS`` if set, else the cores."""
    return max(1, int(os.environ.get("NUMBA_NUM_THREADS") or os.cpu_count() or 1))


_POOL: ThreadPoolExecutor | None = None


def fan_out(kernel: Callable[..., None], n: int, *args: Any) -> None:
    """Run ``kernel(*args, j0, j1)`` over ``range(n)`` in ranges on `threads` threads.

    The kernels are serial and release the GIL (``nogil``): Python threads run them in
    parallel without numba's parallel runtime, whose start-up (about 0.9 s per process here,
    for the first ``parallel=True`` function loaded from the cache) would be most of a short
    command's time. Ranges are a few per thread, so dry and wet frames even out.
    """
    global _POOL
    t = min(threads(), n)
    if t <= 1:
        kernel(*args, 0, n)
        return
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=threads(), thread_name_prefix="nowcast-kernel")
    pieces = min(n, 4 * t)
    bounds = [n * i // pieces for i in range(pieces + 1)]
    futures = [
        _POOL.submit(kernel, *args, lo, hi) for lo, hi in itertools.pairwise(bounds) if hi > lo
    ]
    for f in futures:
        f.result()


LANES = 64  # pixels per SIMD block (one AVX-512 register of bytes)
_FLUSH = 255  # blocks per 8-bit counter flush (a lane counts at most 255)
_WORDS = LANES // 8  # 64-bit words per block
_ONES = np.uint64(0x0101010101010101)
_HIGH = np.uint64(0x8080808080808080)


@njit(cache=True, fastmath=True)
def _frame_counts(
    ff: np.ndarray, oo: np.ndarray, vv: np.ndarray, pk: np.ndarray, res: np.ndarray
) -> None:
    """TP_k (res[k]) and F_k (res[K + k]) of one frame over valid pixels (added to res)."""
    n = ff.shape[0]
    kk = pk.shape[0]
    nb = n // LANES
    acc = np.zeros((2 * kk, LANES), np.uint8)
    fm = np.empty(LANES, np.uint8)
    mm = np.empty(LANES, np.uint8)
    p0 = pk[0]
    # the forecast alone first, 8 bytes at a time: most blocks are dry
    add = _ONES * np.uint64(128 - p0) if p0 <= 128 else np.uint64(0)
    words = ff[: nb * LANES].view(np.uint64)
    r = 0
    while r < nb:
        e = min(nb, r + _FLUSH)
        for b in range(r, e):
            hit = np.uint64(0)
            for q in range(_WORDS):
                x = words[b * _WORDS + q]
                hit |= ((x + add) | x) & _HIGH
            if hit == 0:
                continue
            fb = ff[b * LANES : (b + 1) * LANES]
            ob = oo[b * LANES : (b + 1) * LANES]
            vb = vv[b * LANES : (b + 1) * LANES]
            top = np.uint8(0)
            for q in range(LANES):
                m = np.uint8(np.uint8(0) - vb[q])  # 0xFF where valid, else 0
                a = np.uint8(fb[q] & m)
                fm[q] = a
                mm[q] = min(a, ob[q])
                top = max(top, a)
            if top < p0:  # no forecast event in this block: TP and F are 0 at every threshold
                continue
            for k in range(kk):
                p = pk[k]
                if p > top:  # thresholds are sorted: no event here, nor at any above
                    break
                a0 = acc[k]
                a1 = acc[kk + k]
                for q in range(LANES):
                    a0[q] = np.uint8(a0[q] + np.uint8(mm[q] >= p))
                    a1[q] = np.uint8(a1[q] + np.uint8(fm[q] >= p))
        for j in range(2 * kk):
            t = 0
            for q in range(LANES):
                t += acc[j, q]
                acc[j, q] = 0
            res[j] += t
        r = e
    for i in range(nb * LANES, n):
        if vv[i]:
            for k in range(kk):
                res[k] += min(ff[i], oo[i]) >= pk[k]
                res[kk + k] += ff[i] >= pk[k]


@njit(cache=True, nogil=True)
def _forecast_counts_range(
    fcst: np.ndarray,
    obs: np.ndarray,
    valid: np.ndarray,
    index: np.ndarray,
    pk: np.ndarray,
    out: np.ndarray,
    j0: int,
    j1: int,
) -> None:
    l_n = fcst.shape[1]
    for j in range(j0, j1):
        s = j // l_n
        ll = j % l_n
        u = index[s, ll]
        if u >= 0:
            _frame_counts(fcst[s, ll], obs[u], valid[u], pk, out[s, ll])


def forecast_counts(
    fcst: np.ndarray, obs: np.ndarray, valid: np.ndarray, index: np.ndarray, pk: np.ndarray
) -> np.ndarray:
    """(S, L, 2K) int64: TP_k then F_k per (sample, lead); zeros where index is −1.

    fcst (S, L, N) uint8, obs (U, N) uint8, valid (U, N) uint8 (0/1), index (S, L) int64,
    pk (K,) uint8 event pixels, sorted.
    """
    s_n, l_n, _ = fcst.shape
    out = np.zeros((s_n, l_n, 2 * pk.shape[0]), np.int64)
    fan_out(_forecast_counts_range, s_n * l_n, fcst, obs, valid, index, pk, out)
    return out


@njit(cache=True, nogil=True)
def _observation_counts_range(
    obs: np.ndarray, valid: np.ndarray, pk: np.ndarray, out: np.ndarray, u0: int, u1: int
) -> None:
    kk = pk.shape[0]
    tmp = np.zeros(2 * kk, np.int64)
    for u in range(u0, u1):
        tmp[:] = 0
        _frame_counts(obs[u], obs[u], valid[u], pk, tmp)
        out[u, :kk] = tmp[:kk]


def observation_counts(obs: np.ndarray, valid: np.ndarray, pk: np.ndarray) -> np.ndarray:
    """(U, K + 1) int64: O_k (observed events) per threshold, then N (valid pixels)."""
    out = np.zeros((obs.shape[0], pk.shape[0] + 1), np.int64)
    fan_out(_observation_counts_range, obs.shape[0], obs, valid, pk, out)
    for u in range(obs.shape[0]):  # per row: NumPy's fast path (with an axis it is not)
        out[u, -1] = np.count_nonzero(valid[u])
    return out


@njit(cache=True, nogil=True)
def _forecast_counts_fine_range(
    fcst: np.ndarray,
    obs: np.ndarray,
    valid: np.ndarray,
    index: np.ndarray,
    pf: np.ndarray,
    po: np.ndarray,
    out: np.ndarray,
    j0: int,
    j1: int,
) -> None:
    l_n, n = fcst.shape[1], fcst.shape[2]
    kk = pf.shape[0]
    for j in range(j0, j1):
        s = j // l_n
        ll = j % l_n
        u = index[s, ll]
        if u < 0:
            continue
        ff = fcst[s, ll]
        oo = obs[u]
        vv = valid[u]
        for i in range(n):
            if vv[i]:
                f = ff[i]
                o = oo[i]
                for k in range(kk):
                    if f < pf[k]:  # sorted: no event at this threshold nor any above
                        break
                    out[s, ll, kk + k] += 1
                    if o >= po[k]:
                        out[s, ll, k] += 1


def forecast_counts_fine(
    fcst: np.ndarray,
    obs: np.ndarray,
    valid: np.ndarray,
    index: np.ndarray,
    pf: np.ndarray,
    po: np.ndarray,
) -> np.ndarray:
    """(S, L, 2K) int64: TP_k then F_k per (sample, lead) for fine forecast codes.

    fcst (S, L, N) uint16 codes (pixel × 256), obs (U, N) uint8 pixels, valid (U, N) uint8,
    index (S, L) int64, pf (K,) event codes of the forecast and po (K,) event pixels of the
    observation, both sorted: TP_k = #(F ≥ pf_k and O ≥ po_k), F_k = #(F ≥ pf_k), valid only.
    A plain loop: fine codes come from trained models on their training copy (small frames).
    """
    s_n, l_n, _ = fcst.shape
    out = np.zeros((s_n, l_n, 2 * pf.shape[0]), np.int64)
    fan_out(_forecast_counts_fine_range, s_n * l_n, fcst, obs, valid, index, pf, po, out)
    return out


@njit(cache=True)
def _frame_sums(
    f: np.ndarray, o: np.ndarray, v: np.ndarray, wlut: np.ndarray, res: np.ndarray, scale: int
) -> None:
    """Integer sums of one (H, W) frame over valid pixels (and valid pairs for GDL).

    res: Σd², Σ|d|, Σw·d², Σw·|d|, GDL, N with d = F − scale·O in units of 1/scale pixel
    (F: forecast codes, pixel × scale; O: observed pixels), w = wlut[O].
    """
    h, w = f.shape
    se = np.int64(0)
    ae = np.int64(0)
    bse = np.int64(0)
    bae = np.int64(0)
    gdl = np.int64(0)
    nv = np.int64(0)
    for i in range(h):
        for j in range(w):
            if v[i, j]:
                d = np.int64(f[i, j]) - scale * np.int64(o[i, j])
                wt = wlut[o[i, j]]
                se += d * d
                ae += abs(d)
                bse += wt * d * d
                bae += wt * abs(d)
                nv += 1
                if i + 1 < h and v[i + 1, j]:
                    dp = abs(np.int64(f[i + 1, j]) - np.int64(f[i, j]))
                    dg = scale * abs(np.int64(o[i + 1, j]) - np.int64(o[i, j]))
                    gdl += abs(dp - dg)
                if j + 1 < w and v[i, j + 1]:
                    dp = abs(np.int64(f[i, j + 1]) - np.int64(f[i, j]))
                    dg = scale * abs(np.int64(o[i, j + 1]) - np.int64(o[i, j]))
                    gdl += abs(dp - dg)
    res[0] = se
    res[1] = ae
    res[2] = bse
    res[3] = bae
    res[4] = gdl
    res[5] = nv


@njit(cache=True)
def _frame_ssim(
    f: np.ndarray,
    o: np.ndarray,
    v: np.ndarray,
    g: np.ndarray,
    c1: float,
    c2: float,
    out: np.ndarray,
    scale: int,
) -> None:
    """Σ SSIM over the 'valid' windows whose pixels are all valid, and their number.

    Gaussian weights g (odd length), images on [0, 1] (forecast code / (255·scale), observed
    pixel / 255), population (co)variances.
    Separable filtering, rows first, then columns; both passes run along contiguous rows so
    that LLVM vectorizes them.
    """
    h, w = f.shape
    r = g.shape[0]
    h2 = h - r + 1
    w2 = w - r + 1
    out[0] = 0.0
    out[1] = 0.0
    if h2 <= 0 or w2 <= 0:
        return
    x = np.empty((h, w))
    y = np.empty((h, w))
    bad = np.empty((h, w))
    for i in range(h):
        for j in range(w):
            x[i, j] = f[i, j] / (255.0 * scale)
            y[i, j] = o[i, j] / 255.0
            bad[i, j] = 0.0 if v[i, j] else 1.0
    tx = np.zeros((h, w2))
    ty = np.zeros((h, w2))
    txx = np.zeros((h, w2))
    tyy = np.zeros((h, w2))
    txy = np.zeros((h, w2))
    tb = np.zeros((h, w2))
    for i in range(h):
        for k in range(r):
            gk = g[k]
            for j in range(w2):
                a = x[i, j + k]
                b = y[i, j + k]
                tx[i, j] += gk * a
                ty[i, j] += gk * b
                txx[i, j] += gk * a * a
                tyy[i, j] += gk * b * b
                txy[i, j] += gk * a * b
                tb[i, j] += bad[i, j + k]
    mx = np.empty(w2)
    my = np.empty(w2)
    mxx = np.empty(w2)
    myy = np.empty(w2)
    mxy = np.empty(w2)
    nb = np.empty(w2)
    total = 0.0
    count = 0.0
    for i in range(h2):
        mx[:] = 0.0
        my[:] = 0.0
        mxx[:] = 0.0
        myy[:] = 0.0
        mxy[:] = 0.0
        nb[:] = 0.0
        for k in range(r):
            gk = g[k]
            for j in range(w2):
                mx[j] += gk * tx[i + k, j]
                my[j] += gk * ty[i + k, j]
                mxx[j] += gk * txx[i + k, j]
                myy[j] += gk * tyy[i + k, j]
                mxy[j] += gk * txy[i + k, j]
                nb[j] += tb[i + k, j]
        for j in range(w2):
            if nb[j] > 0:
                continue
            vx = mxx[j] - mx[j] * mx[j]
            vy = myy[j] - my[j] * my[j]
            cxy = mxy[j] - mx[j] * my[j]
            num = (2.0 * mx[j] * my[j] + c1) * (2.0 * cxy + c2)
            den = (mx[j] * mx[j] + my[j] * my[j] + c1) * (vx + vy + c2)
            total += num / den
            count += 1.0
    out[0] = total
    out[1] = count


@njit(cache=True, nogil=True)
def _continuous_sums_range(
    fcst: np.ndarray,
    obs: np.ndarray,
    valid: np.ndarray,
    index: np.ndarray,
    wlut: np.ndarray,
    g: np.ndarray,
    c1: float,
    c2: float,
    ssim: bool,
    scale: int,
    out: np.ndarray,
    j0: int,
    j1: int,
) -> None:
    l_n = index.shape[1]
    tmp = np.zeros(6, np.int64)
    st = np.zeros(2)
    sq = float(scale) * float(scale)
    for j in range(j0, j1):
        s = j // l_n
        ll = j % l_n
        u = index[s, ll]
        if u < 0:
            continue
        tmp[:] = 0
        _frame_sums(fcst[s, ll], obs[u], valid[u], wlut, tmp, scale)
        out[s, ll, 0] = tmp[0] / sq
        out[s, ll, 1] = tmp[1] / scale
        out[s, ll, 2] = tmp[2] / sq
        out[s, ll, 3] = tmp[3] / scale
        out[s, ll, 4] = tmp[4] / scale
        out[s, ll, 5] = tmp[5]
        if ssim:
            _frame_ssim(fcst[s, ll], obs[u], valid[u], g, c1, c2, st, scale)
            out[s, ll, 6] = st[0]
            out[s, ll, 7] = st[1]


def continuous_sums(
    fcst: np.ndarray,
    obs: np.ndarray,
    valid: np.ndarray,
    index: np.ndarray,
    wlut: np.ndarray,
    g: np.ndarray,
    c1: float,
    c2: float,
    ssim: bool,
    scale: int,
) -> np.ndarray:
    """(S, L, 8) float64 per (sample, lead): Σd², Σ|d|, Σw·d², Σw·|d|, GDL, N (pixel units),
    Σ SSIM and the number of SSIM windows; zeros where index is −1.

    fcst (S, L, H, W) codes: uint8 pixels (scale 1) or uint16 fine codes, pixel × scale;
    obs (U, H, W) uint8, valid (U, H, W) bool, index (S, L) int64, wlut (256,) int64
    balancing weight per observed pixel, g Gaussian window; `ssim` False skips SSIM. Sums are
    exact integers in 1/scale pixel units, returned in pixel units.
    """
    s_n, l_n = index.shape
    out = np.zeros((s_n, l_n, 8))
    args = (fcst, obs, valid, index, wlut, g, c1, c2, ssim, scale, out)
    fan_out(_continuous_sums_range, s_n * l_n, *args)
    return out


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Normalised 1-D Gaussian weights (the separable factor of the SSIM window)."""
    x = np.arange(size) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    out: np.ndarray = g / g.sum()
    return out


@njit(cache=True, parallel=True)
def byte_pass(
    fcst: np.ndarray, obs: np.ndarray, valid: np.ndarray, index: np.ndarray
) -> np.ndarray:
    """Reference for the benchmarks: one parallel pass summing the same bytes the contingency
    kernel reads (the memory-bound floor of any per-pixel kernel)."""
    s_n, l_n, n = fcst.shape
    out = np.zeros((s_n, l_n), np.int64)
    for j in prange(s_n * l_n):
        s = j // l_n
        ll = j % l_n
        u = index[s, ll]
        if u < 0:
            continue
        ff = fcst[s, ll]
        oo = obs[u]
        vv = valid[u]
        acc = 0
        for i in range(n):
            acc += ff[i] + oo[i] + vv[i]
        out[s, ll] = acc
    return out


__all__ = [
    "LANES",
    "byte_pass",
    "continuous_sums",
    "forecast_counts",
    "forecast_counts_fine",
    "gaussian_window",
    "observation_counts",
]
