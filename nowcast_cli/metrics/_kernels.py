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
block whose forecast has no value at the lowest event pixel is skipped after one max over the
forecast bytes alone (most of a radar image is dry: the observation and mask are not read),
and the thresholds above a block's largest masked forecast are skipped.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

LANES = 64  # pixels per SIMD block (one AVX-512 register of bytes)
_FLUSH = 255  # blocks per 8-bit counter flush (a lane counts at most 255)


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
    r = 0
    while r < nb:
        e = min(nb, r + _FLUSH)
        for b in range(r, e):
            fb = ff[b * LANES : (b + 1) * LANES]
            top = np.uint8(0)
            for q in range(LANES):  # the forecast alone first: most blocks are dry
                top = max(top, fb[q])
            if top < p0:
                continue
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


@njit(cache=True, parallel=True)
def forecast_counts(
    fcst: np.ndarray, obs: np.ndarray, valid: np.ndarray, index: np.ndarray, pk: np.ndarray
) -> np.ndarray:
    """(S, L, 2K) int64: TP_k then F_k per (sample, lead); zeros where index is −1.

    fcst (S, L, N) uint8, obs (U, N) uint8, valid (U, N) uint8 (0/1), index (S, L) int64,
    pk (K,) uint8 event pixels, sorted.
    """
    s_n, l_n, _ = fcst.shape
    kk = pk.shape[0]
    out = np.zeros((s_n, l_n, 2 * kk), np.int64)
    for j in prange(s_n * l_n):
        s = j // l_n
        ll = j % l_n
        u = index[s, ll]
        if u >= 0:
            _frame_counts(fcst[s, ll], obs[u], valid[u], pk, out[s, ll])
    return out


@njit(cache=True, parallel=True)
def observation_counts(obs: np.ndarray, valid: np.ndarray, pk: np.ndarray) -> np.ndarray:
    """(U, K + 1) int64: O_k (observed events) per threshold, then N (valid pixels)."""
    u_n, n = obs.shape
    kk = pk.shape[0]
    out = np.zeros((u_n, kk + 1), np.int64)
    for u in prange(u_n):
        tmp = np.zeros(2 * kk, np.int64)
        _frame_counts(obs[u], obs[u], valid[u], pk, tmp)
        out[u, :kk] = tmp[:kk]
        nv = 0
        for i in range(n):
            nv += valid[u, i]
        out[u, kk] = nv
    return out


@njit(cache=True, parallel=True)
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
    s_n, l_n, n = fcst.shape
    kk = pf.shape[0]
    out = np.zeros((s_n, l_n, 2 * kk), np.int64)
    for j in prange(s_n * l_n):
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


@njit(cache=True, parallel=True)
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
    for j in prange(s_n * l_n):
        s = j // l_n
        ll = j % l_n
        u = index[s, ll]
        if u < 0:
            continue
        tmp = np.zeros(6, np.int64)
        _frame_sums(fcst[s, ll], obs[u], valid[u], wlut, tmp, scale)
        sq = float(scale) * float(scale)
        out[s, ll, 0] = tmp[0] / sq
        out[s, ll, 1] = tmp[1] / scale
        out[s, ll, 2] = tmp[2] / sq
        out[s, ll, 3] = tmp[3] / scale
        out[s, ll, 4] = tmp[4] / scale
        out[s, ll, 5] = tmp[5]
        if ssim:
            st = np.zeros(2)
            _frame_ssim(fcst[s, ll], obs[u], valid[u], g, c1, c2, st, scale)
            out[s, ll, 6] = st[0]
            out[s, ll, 7] = st[1]
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
