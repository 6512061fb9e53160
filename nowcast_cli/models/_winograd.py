"""3×3 'same' convolution by the Winograd F(4×4, 3×3) algorithm, for training on CPUs.

Every recurrent cell spends ~90% of a CPU training step in 3×3 convolutions. A direct
convolution costs 9 multiply-adds per input channel, output channel and pixel; Winograd's
minimal filtering (Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural Networks")
computes each 4×4 output tile from a 6×6 input tile with 36 instead of 144 multiply-adds per
channel pair, as 36 independent matrix products over the channels:

    M_k = U_k · V_k,    U = G w Gᵀ (per filter),   V = Bᵀ d B (per 6×6 input tile),
    y = Aᵀ M A (per 4×4 output tile).

The matrix products run in BLAS; the tile transforms are the numba kernels below. Both
transforms are linear maps applied to every tile, and each is written once as a *gather*
(image → tile coefficients) and once as its exact adjoint, a *scatter* (tile coefficients →
image, overlapping tiles summed): the forward pass gathers the input and scatters the output,
the backward pass gathers the output gradient and scatters the input gradient.

The result equals the direct convolution up to float rounding: relative error ~1e-5 in
float32 against ~1e-6 for a direct float32 convolution (the transform points are 0, ±1, ±2,
∞, as in cuDNN's and oneDNN's F(4, 3)), ~1e-13 in float64, which is how the tests check it
against `torch.nn.functional.conv2d`. Which calls come here (CPU, float32/float64, 3×3, no
autocast) is decided in `nowcast_cli.models._conv`; this module holds only the kernels, the
scratch buffers, the filter cache and the autograd function.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from nowcast_cli._numba import numba

__all__ = ["filter_cache", "transform_filter", "winograd_conv3x3"]

TILE = 4  # output tile edge: F(4×4, 3×3)

# Lavin & Gray's F(4, 3) matrices; interpolation points 0, 1, −1, 2, −2, ∞.
_BT = np.array(
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    dtype=np.float64,
)
_G = np.array(
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    dtype=np.float64,
)
_AT = np.array(
    [
        [1, 1, 1, 1, 1, 0],
        [0, 1, -1, 2, -2, 0],
        [0, 1, 1, 4, 4, 0],
        [0, 1, -1, 8, -8, 1],
    ],
    dtype=np.float64,
)
# kron(G, G): the 9 taps of a 3×3 filter → its 36 transformed coefficients, (36, 9).
_GG = np.kron(_G, _G)


# The four 1-D transforms, written out (the matrices are sparse with small integer entries).
# A 2-D tile transform is the 1-D one applied to every column of the tile, then every row.
# The constants are float32 so that float32 data stays float32 (a Python int would promote it).
_2, _4, _5, _8 = (np.float32(v) for v in (2, 4, 5, 8))


@numba.njit(inline="always")
def _bt(d0: Any, d1: Any, d2: Any, d3: Any, d4: Any, d5: Any) -> tuple[Any, ...]:
    """Bᵀ d: 6 input samples → 6 coefficients."""
    return (
        _4 * d0 - _5 * d2 + d4,
        -_4 * (d1 + d2) + d3 + d4,
        _4 * (d1 - d2) - d3 + d4,
        _2 * (d3 - d1) - d2 + d4,
        _2 * (d1 - d3) - d2 + d4,
        _4 * d1 - _5 * d3 + d5,
    )


@numba.njit(inline="always")
def _b(g0: Any, g1: Any, g2: Any, g3: Any, g4: Any, g5: Any) -> tuple[Any, ...]:
    """B g, the adjoint of `_bt`: 6 coefficients → 6 input samples."""
    return (
        _4 * g0,
        _4 * (g2 - g1 + g5) + _2 * (g4 - g3),
        -_5 * g0 - _4 * (g1 + g2) - g3 - g4,
        g1 - g2 + _2 * (g3 - g4) - _5 * g5,
        g0 + g1 + g2 + g3 + g4,
        g5,
    )


@numba.njit(inline="always")
def _at(m0: Any, m1: Any, m2: Any, m3: Any, m4: Any, m5: Any) -> tuple[Any, ...]:
    """Aᵀ m: 6 coefficients → 4 output samples."""
    p, q = m1 + m2, m1 - m2
    r, t = m3 + m4, m3 - m4
    return (m0 + p + r, q + _2 * t, p + _4 * r, q + _8 * t + m5)


@numba.njit(inline="always")
def _a(g0: Any, g1: Any, g2: Any, g3: Any) -> tuple[Any, ...]:
    """A g, the adjoint of `_at`: 4 output samples → 6 coefficients."""
    even, odd = g0 + g2, g1 + g3
    even4, odd2 = g0 + _4 * g2, _2 * g1 + _8 * g3
    return (g0, even + odd, even - odd, even4 + odd2, even4 - odd2, g3)


# Tile coefficients are stored (36, C, T), T = B·th·tw tiles, t = (b·th + ty)·tw + tx: each
# of the 36 products of the algorithm is then one (O × C) @ (C × T) matrix product. All four
# kernels work one (b, c) plane per thread, one strip of tiles (4 output rows) at a time:
# the 1-D transform down the columns of the strip runs over contiguous image rows into
# `rows`, then the transform along each tile runs over those rows.


@numba.njit(parallel=True, cache=True, nogil=True)
def _gather_in(img: Any, th: int, tw: int, out: Any) -> None:
    """V = Bᵀ d B for every 6×6 input window d (stride 4, one pixel of zero padding)."""
    n_b, n_c, height, width = img.shape
    for p in numba.prange(n_b * n_c):
        b, c = p // n_c, p % n_c
        zero = np.zeros(width, dtype=img.dtype)
        rows = np.zeros((6, 4 * tw + 2), dtype=out.dtype)  # column 1 + x holds image column x
        for ty in range(th):
            y0 = 4 * ty - 1
            r0 = img[b, c, y0] if 0 <= y0 < height else zero
            r1 = img[b, c, y0 + 1] if y0 + 1 < height else zero
            r2 = img[b, c, y0 + 2] if y0 + 2 < height else zero
            r3 = img[b, c, y0 + 3] if y0 + 3 < height else zero
            r4 = img[b, c, y0 + 4] if y0 + 4 < height else zero
            r5 = img[b, c, y0 + 5] if y0 + 5 < height else zero
            for x in range(width):
                v = _bt(r0[x], r1[x], r2[x], r3[x], r4[x], r5[x])
                for i in range(6):
                    rows[i, x + 1] = v[i]
            t0 = (b * th + ty) * tw
            for i in range(6):
                ri = rows[i]
                for tx in range(tw):
                    x = 4 * tx
                    v = _bt(ri[x], ri[x + 1], ri[x + 2], ri[x + 3], ri[x + 4], ri[x + 5])
                    for lo in range(6):
                        out[6 * i + lo, c, t0 + tx] = v[lo]


@numba.njit(parallel=True, cache=True, nogil=True)
def _scatter_in(coef: Any, th: int, tw: int, img: Any) -> None:
    """The adjoint of `_gather_in`: img = Σ over windows of B V Bᵀ (overlaps summed)."""
    n_b, n_c, height, width = img.shape
    for p in numba.prange(n_b * n_c):
        b, c = p // n_c, p % n_c
        img[b, c] = 0
        rows = np.empty((6, 4 * tw + 2), dtype=img.dtype)
        for ty in range(th):
            rows[:] = 0
            t0 = (b * th + ty) * tw
            for i in range(6):
                ri = rows[i]
                for tx in range(tw):
                    m = coef[6 * i : 6 * i + 6, c, t0 + tx]  # row i of the tile's 6×6
                    v = _b(m[0], m[1], m[2], m[3], m[4], m[5])
                    for k in range(6):
                        ri[4 * tx + k] += v[k]
            y0 = 4 * ty - 1
            for x in range(width):
                col = rows[:, x + 1]
                v = _b(col[0], col[1], col[2], col[3], col[4], col[5])
                for j in range(6):
                    if 0 <= y0 + j < height:
                        img[b, c, y0 + j, x] += v[j]


@numba.njit(parallel=True, cache=True, nogil=True)
def _scatter_out(coef: Any, th: int, tw: int, bias: Any, img: Any) -> None:
    """y = Aᵀ M A + bias for every 4×4 output tile; tile pixels outside the image dropped."""
    n_b, n_c, height, width = img.shape
    for p in numba.prange(n_b * n_c):
        b, c = p // n_c, p % n_c
        rows = np.empty((6, 4 * tw), dtype=img.dtype)
        for ty in range(th):
            t0 = (b * th + ty) * tw
            for i in range(6):
                ri = rows[i]
                for tx in range(tw):
                    m = coef[6 * i : 6 * i + 6, c, t0 + tx]  # row i of the tile's 6×6
                    v = _at(m[0], m[1], m[2], m[3], m[4], m[5])
                    for k in range(4):
                        ri[4 * tx + k] = v[k]
            y0 = 4 * ty
            for x in range(width):
                v = _at(rows[0, x], rows[1, x], rows[2, x], rows[3, x], rows[4, x], rows[5, x])
                for j in range(4):
                    if y0 + j < height:
                        img[b, c, y0 + j, x] = v[j] + bias[c]


@numba.njit(parallel=True, cache=True, nogil=True)
def _gather_out(img: Any, th: int, tw: int, out: Any) -> None:
    """The adjoint of `_scatter_out` (less the bias): A g Aᵀ for every 4×4 tile g."""
    n_b, n_c, height, width = img.shape
    for p in numba.prange(n_b * n_c):
        b, c = p // n_c, p % n_c
        zero = np.zeros(width, dtype=img.dtype)
        rows = np.zeros((6, 4 * tw), dtype=out.dtype)  # columns ≥ width stay zero
        for ty in range(th):
            y0 = 4 * ty
            g0 = img[b, c, y0]
            g1 = img[b, c, y0 + 1] if y0 + 1 < height else zero
            g2 = img[b, c, y0 + 2] if y0 + 2 < height else zero
            g3 = img[b, c, y0 + 3] if y0 + 3 < height else zero
            for x in range(width):
                v = _a(g0[x], g1[x], g2[x], g3[x])
                for i in range(6):
                    rows[i, x] = v[i]
            t0 = (b * th + ty) * tw
            for i in range(6):
                ri = rows[i]
                for tx in range(tw):
                    x = 4 * tx
                    v = _a(ri[x], ri[x + 1], ri[x + 2], ri[x + 3])
                    for lo in range(6):
                        out[6 * i + lo, c, t0 + tx] = v[lo]


_WORKSPACE = threading.local()


def _workspace(slot: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """A scratch tensor for tile coefficients, kept per thread and reused across calls.

    The coefficient arrays are 2.25× (input side) and 5× (output side) the size of the image
    and live only within one forward or backward call. Allocating them afresh costs more than
    the transforms themselves: the kernel must map and zero the new pages (measured: 42 ms to
    allocate and fill 133 MB, 5.5 ms to refill it).

    The memory is held as a NumPy array and wrapped into a fresh tensor on every call, so no
    tensor outlives the call: one made under `torch.inference_mode` (an inference tensor)
    never reaches a later call outside it, where writing into it would be an error.
    """
    numel = math.prod(shape)
    dtype = torch.empty(0, dtype=like.dtype).numpy().dtype
    key = (slot, dtype.str)
    buf = getattr(_WORKSPACE, "buffers", None)
    if buf is None:
        buf = _WORKSPACE.buffers = {}
    held = buf.get(key)
    if held is None or held.size < numel:
        held = buf[key] = np.empty(numel, dtype=dtype)
    return torch.from_numpy(held[:numel]).view(shape)


def _gather(xs: Sequence[Tensor], th: int, tw: int) -> Tensor:
    """Input tile coefficients (36, ΣC, T) of the channel-wise concatenation of `xs`."""
    b = xs[0].shape[0]
    out = _workspace("in", (36, sum(x.shape[1] for x in xs), b * th * tw), xs[0])
    c0 = 0
    for x in xs:  # each input fills its own channel range: no concatenated copy
        c1 = c0 + x.shape[1]
        _gather_in(x.detach().contiguous().numpy(), th, tw, out[:, c0:c1].numpy())
        c0 = c1
    return out


class _WinogradConv(torch.autograd.Function):
    """conv3x3_same(cat(xs), w) + bias, given the transformed filter U = (36, O, ΣC)."""

    @staticmethod
    def forward(ctx: Any, u: Tensor, bias: Tensor | None, *xs: Tensor) -> Tensor:
        b, _, h, w = xs[0].shape
        th, tw = -(-h // TILE), -(-w // TILE)
        v = _gather(xs, th, tw)  # (36, C, T)
        m = _workspace("out", (36, u.shape[1], v.shape[2]), v)
        torch.bmm(u.detach(), v, out=m)  # (36, O, T): the 36 channel-mixing products
        ctx.save_for_backward(u, *xs)  # V is recomputed: saving it would cost 2.25× the input
        ctx.has_bias = bias is not None
        ctx.tiles = (th, tw)
        y = v.new_empty(b, u.shape[1], h, w)
        const = v.new_zeros(u.shape[1]) if bias is None else bias.detach().contiguous()
        _scatter_out(m.numpy(), th, tw, const.numpy(), y.numpy())
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        u, *xs = ctx.saved_tensors
        th, tw = ctx.tiles
        grad = grad.contiguous()
        grad_m = _workspace("out", (36, u.shape[1], grad.shape[0] * th * tw), grad)
        _gather_out(grad.numpy(), th, tw, grad_m.numpy())  # (36, O, T)
        grad_xs: list[Tensor | None] = [None] * len(xs)
        if any(ctx.needs_input_grad[2:]):
            grad_v = _workspace("in", (36, u.shape[2], grad_m.shape[2]), grad)
            torch.bmm(u.transpose(1, 2), grad_m, out=grad_v)  # (36, C, T)
            c0 = 0
            for k, x in enumerate(xs):
                c1 = c0 + x.shape[1]
                if ctx.needs_input_grad[2 + k]:
                    grad_xs[k] = gx = x.new_empty(x.shape)
                    _scatter_in(grad_v[:, c0:c1].numpy(), th, tw, gx.numpy())
                c0 = c1
        grad_u = grad_b = None
        if ctx.needs_input_grad[0]:
            v = _gather(xs, th, tw)  # grad_v is spent: its buffer is reused
            grad_u = torch.bmm(grad_m, v.transpose(1, 2))  # (36, O, C)
        if ctx.has_bias and ctx.needs_input_grad[1]:
            grad_b = grad.sum((0, 2, 3))
        return grad_u, grad_b, *grad_xs


_FILTERS = threading.local()


@contextlib.contextmanager
def filter_cache() -> Iterator[None]:
    """Within the block, transform each filter once, however many steps use it.

    A rollout applies the same weights at every step; the transformed filter stays in the
    autograd graph, so its gradient sums over the steps and flows back through one transform.
    Entries are keyed by the weight's storage, view geometry, version and the autograd mode:
    an in-place update (an optimizer step) inside the block gets a fresh transform, and a
    transform made without gradient (validation under ``no_grad``/``inference_mode``) is
    never reused by a rollout that trains.
    """
    outer = getattr(_FILTERS, "cache", None)
    _FILTERS.cache = {} if outer is None else outer
    try:
        yield
    finally:
        _FILTERS.cache = outer


def transform_filter(weight: Tensor) -> Tensor:
    """U = G w Gᵀ for every (out, in) filter pair: (O, C, 3, 3) → (36, O, C); differentiable."""
    cache = getattr(_FILTERS, "cache", None)
    key = (
        weight.data_ptr(),
        weight.shape,
        weight.stride(),
        weight._version,
        weight.dtype,
        torch.is_grad_enabled(),
        torch.is_inference_mode_enabled(),
    )
    if cache is not None and key in cache:
        cached: Tensor = cache[key][1]
        return cached
    o, c = weight.shape[:2]
    gg = torch.from_numpy(_GG).to(weight.dtype)
    u = (gg @ weight.reshape(o * c, 9).T).view(36, o, c)
    if cache is not None:
        cache[key] = (weight, u)  # holding `weight` keeps its storage, hence the key, unique
    return u


def winograd_conv3x3(xs: Sequence[Tensor], weight: Tensor, bias: Tensor | None) -> Tensor:
    """conv3x3_same(cat(xs), weight) + bias by Winograd; all operands CPU, one float dtype."""
    y: Tensor = _WinogradConv.apply(transform_filter(weight), bias, *xs)  # type: ignore[no-untyped-call]
    return y
