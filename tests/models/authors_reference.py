"""Independent float64 references of the five recurrent models, written from the authors' code.

Source: mazhf/MS-RNN at the FFL paper's time (Feb 2022): ``models/convlstm.py``,
``models/trajgru.py``, ``models/predrnn.py``, ``models/mim.py``, ``models/motionrnn_mim.py`` and
``model.py`` (the rollout), which follow the original papers (Shi et al. 2015, 2017; Wang et al.
2017, 2019; Wu et al. 2021). Nothing here imports nowcast's cells: every step is spelled out
with ``torch.nn.functional`` as the authors write it — two convolutions W_x * x + W_h * h per
gate group, their gate order, their per-flow warp loop, their layer and state bookkeeping,
including everything the authors compute and never use.

Weights come from one of our models through `authors_weights`, which splits each of our merged
convolutions back into the authors' pair (the bias goes to the x part, the h part gets zero) and
reorders gates into the authors' chunk order. Parameters that the authors build but never use
(and that we therefore do not build) are filled with NaN by default: if a reference computation
used them, its output would be NaN.

Three deliberate fixes of the authors' code are applied by default and can be switched off:

- ``align_corners``: the authors normalise warp coordinates by (W − 1) but sample with
  ``align_corners=False`` (a half-pixel shift, so a zero flow is not the identity);
- ``flow_batch_fix``: MotionRNN's ``Warp`` reshapes (B, 2k², h, w) flows to (k², B, 2, h, w)
  without a permute, mixing the samples' flows whenever B > 1;
- ``decoder_layout_fix``: MotionRNN reshapes the warped (B, C/4, h, w, k²) tensor straight to
  (B, C/4·k², h, w), scrambling pixels across the image before the decoder; we permute first.

``deviations`` switch on, for tests, the two departures from the authors' code that an earlier
version of nowcast had (MIM's first layer as a full MIM block; MotionGRU and highway in
MotionRNN's top layer), so a test can show the comparison would catch them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

W = dict[str, Any]


# -- the authors' building blocks --------------------------------------------------------------
def conv(x: Tensor, wb: tuple[Tensor, Tensor]) -> Tensor:
    """nn.Conv2d(stride 1, padding k // 2) as every cell of the authors uses it."""
    w, b = wb
    return F.conv2d(x, w, b, padding=w.shape[-1] // 2)


def warp(inp: Tensor, flow: Tensor, align_corners: bool) -> Tensor:
    """The authors' ``warp`` (models/trajgru.py): sample `inp` at pixel + flow (B, 2, H, W)."""
    b, _, h, w = inp.shape
    xx = torch.arange(0, w, dtype=inp.dtype).view(1, -1).repeat(h, 1)
    yy = torch.arange(0, h, dtype=inp.dtype).view(-1, 1).repeat(1, w)
    grid = torch.stack([xx, yy]).unsqueeze(0).repeat(b, 1, 1, 1)
    vgrid = grid + flow
    vx = 2.0 * vgrid[:, 0] / max(w - 1, 1) - 1.0
    vy = 2.0 * vgrid[:, 1] / max(h - 1, 1) - 1.0
    return F.grid_sample(inp, torch.stack([vx, vy], -1), align_corners=align_corners)


def zeros_like_state(x: Tensor, channels: int, scale: int = 1) -> Tensor:
    b, _, h, w = x.shape
    return torch.zeros(b, channels, h // scale, w // scale, dtype=x.dtype)


# -- weights: ours → the authors' layout --------------------------------------------------------
def _wb(module: Any) -> tuple[Tensor, Tensor]:
    return module.weight.detach().clone(), module.bias.detach().clone()


def _pair(module: Any, n_first: int) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Our conv over [a, b] → the authors' conv_a(a) + conv_b(b); the bias stays with conv_a."""
    w, b = _wb(module)
    return (w[:, :n_first], b), (w[:, n_first:], torch.zeros_like(b))


def _blocks(wb: tuple[Tensor, Tensor], order: list[int | None], hid: int) -> tuple[Tensor, Tensor]:
    """Reorder gate blocks of `hid` rows; None inserts an unused block of NaN."""
    w, b = wb
    ws, bs = [], []
    for k in order:
        if k is None:
            ws.append(torch.full_like(w[:hid], torch.nan))
            bs.append(torch.full_like(b[:hid], torch.nan))
        else:
            ws.append(w[k * hid : (k + 1) * hid])
            bs.append(b[k * hid : (k + 1) * hid])
    return torch.cat(ws), torch.cat(bs)


def _unused(shape_w: tuple[int, ...], fill: str, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Weights the authors build but never use: NaN, or random for the deviation tests."""
    if fill == "nan":
        return torch.full(shape_w, torch.nan, dtype=torch.float64), torch.full(
            shape_w[:1], torch.nan, dtype=torch.float64
        )
    return (
        0.1 * torch.randn(shape_w, generator=gen, dtype=torch.float64),
        0.1 * torch.randn(shape_w[:1], generator=gen, dtype=torch.float64),
    )


def _st_lstm(cell: Any, hid: int) -> W:
    """An ST-LSTM (PredRNN cell / MIM layer 0): ours conv_xh rows are [i, g, o, f]."""
    x2h, h2h = _pair(cell.conv_xh, hid)
    x2h_m, m2h_m = _pair(cell.conv_xm, hid)
    c2o, m2o = _pair(cell.conv_o, hid)
    return {
        "x2h": _blocks(x2h, [0, 3, 1, 2], hid),  # authors chunk i, f, g, o
        "h2h": _blocks(h2h, [0, 3, 1, 2], hid),
        "x2h_m": x2h_m,
        "m2h_m": m2h_m,
        "c2o": c2o,
        "m2o": m2o,
        "c_m": _wb(cell.conv_last),
    }


def _mim_n_s(cell: Any | None, hid: int, k: int, fill: str, gen: torch.Generator) -> W:
    """MIM-N / MIM-S convolutions: ours for MIM blocks, unused (NaN) ones for layer 0."""
    if cell is None:
        return {
            "x2h_n": _unused((3 * hid, hid, k, k), fill, gen),
            "n2h_n": _unused((3 * hid, hid, k, k), fill, gen),
            "diff2o": _unused((hid, hid, k, k), fill, gen),
            "n2o": _unused((hid, hid, k, k), fill, gen),
            "x2h_s": _unused((4 * hid, hid, k, k), fill, gen),
            "c2h_s": _unused((4 * hid, hid, k, k), fill, gen),
            "s2o": _unused((hid, hid, k, k), fill, gen),
        }
    x2h_n, n2h_n = _pair(cell.conv_n, hid)
    diff2o, n2o = _pair(cell.conv_no, hid)
    x2h_s, c2h_s = _pair(cell.conv_s, hid)
    return {
        "x2h_n": x2h_n,
        "n2h_n": n2h_n,
        "diff2o": diff2o,
        "n2o": n2o,
        "x2h_s": x2h_s,
        "c2h_s": c2h_s,
        "s2o": _wb(cell.conv_so),
    }


def _mim_block(cell: Any, hid: int) -> W:
    """A MIM block (layers ≥ 1): ours conv_xh rows are [i, g, o] — no forget gate."""
    x2h, h2h = _pair(cell.conv_xh, hid)
    x2h_m, m2h_m = _pair(cell.conv_xm, hid)
    c2o, m2o = _pair(cell.conv_o, hid)
    return {
        "x2h": _blocks(x2h, [0, None, 1, 2], hid),  # f computed by the authors, never used
        "h2h": _blocks(h2h, [0, None, 1, 2], hid),
        "x2h_m": x2h_m,
        "m2h_m": m2h_m,
        "c2o": c2o,
        "m2o": m2o,
        "c_m": _wb(cell.conv_last),
    }


def _motion_gru(motion: Any | None, hid: int, k: int, fill: str, gen: torch.Generator) -> W:
    c4, nf = hid // 4, 2 * k * k
    if motion is None:  # the top layer: built and run by the authors, output discarded
        return {
            "enc": _unused((c4, hid, 2, 2), fill, gen),
            "u": _unused((nf, c4 + nf, 1, 1), fill, gen),
            "r": _unused((nf, c4 + nf, 1, 1), fill, gen),
            "z": _unused((nf, c4 + nf, 1, 1), fill, gen),
            "hm": _unused((k * k, c4, 1, 1), fill, gen),
            "dec": _unused((c4, c4 * k * k, 1, 1), fill, gen),
            "deconv": (_unused((c4, hid, 4, 4), fill, gen)[0], _unused((hid,), fill, gen)[0]),
            "g": _unused((hid, 2 * hid, 1, 1), fill, gen),
        }
    ur_w, ur_b = _wb(motion.ur)
    return {
        "enc": _wb(motion.enc),
        "u": (ur_w[:nf], ur_b[:nf]),
        "r": (ur_w[nf:], ur_b[nf:]),
        "z": _wb(motion.z),
        "hm": _wb(motion.mask),
        "dec": _wb(motion.dec),
        "deconv": _wb(motion.up),
        "g": _wb(motion.gate),
    }


def authors_weights(name: str, model: Any, unused: str = "nan", seed: int = 0) -> W:
    """Our model's weights in the authors' layout (see the module docstring)."""
    cfg = model.config
    hid, k = cfg.hidden, cfg.kernel
    gen = torch.Generator().manual_seed(seed)
    weights: W = {"embed": _wb(model.embed), "fc": _wb(model.fc), "layers": []}
    for layer, cell in enumerate(model.cells):
        if name == "convlstm":
            x2h, h2h = _pair(cell.conv, hid)
            # ours: rows [i, f, o, g]; the authors chunk i, f, g, o
            lw: W = {"x2h": _blocks(x2h, [0, 1, 3, 2], hid), "h2h": _blocks(h2h, [0, 1, 3, 2], hid)}
        elif name == "trajgru":
            i2f, h2f = _pair(cell.flow_in, hid)
            ret_w, ret_b = _wb(cell.h2h)
            n_links = cell.links
            # ours: warped copies stacked channel-major (c·L + j); the authors cat flow by flow
            ret_w = ret_w.view(3 * hid, hid, n_links).permute(0, 2, 1).reshape(3 * hid, -1, 1, 1)
            lw = {
                "i2h": _wb(cell.i2h),
                "i2f": i2f,
                "h2f": h2f,
                "flows": _wb(cell.flow_out),
                "ret": (ret_w, ret_b),
                "links": n_links,
            }
        elif name == "predrnn":
            lw = _st_lstm(cell, hid)
        elif name in ("mim", "motionrnn"):
            if layer == 0:
                lw = {**_st_lstm(cell, hid), **_mim_n_s(None, hid, k, unused, gen)}
            else:
                lw = {**_mim_block(cell, hid), **_mim_n_s(cell, hid, k, unused, gen)}
            if name == "motionrnn":
                motion = model.motion[layer] if layer < len(model.motion) else None
                lw["motion"] = _motion_gru(motion, hid, cfg.motion_kernel, unused, gen)
        else:
            raise ValueError(name)
        weights["layers"].append(lw)
    if name in ("mim", "motionrnn"):
        for lw in weights["layers"][1:]:  # the forget rows exist only in the authors' layout
            if unused != "nan":
                for key in ("x2h", "h2h"):
                    w, b = lw[key]
                    w, b = w.clone(), b.clone()
                    w[hid : 2 * hid] = 0.1 * torch.randn(w[hid : 2 * hid].shape, generator=gen)
                    b[hid : 2 * hid] = 0.1 * torch.randn(b[hid : 2 * hid].shape, generator=gen)
                    lw[key] = (w, b)
    return weights


# -- the authors' cells -------------------------------------------------------------------------
def convlstm_cell(lw: W, x: Tensor, state: list[Tensor] | None) -> tuple[Tensor, list[Tensor]]:
    h, c = state if state is not None else (zeros_like_state(x, x.shape[1]),) * 2
    i, f, g, o = torch.chunk(conv(x, lw["x2h"]) + conv(h, lw["h2h"]), 4, dim=1)
    next_c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    next_h = torch.sigmoid(o) * torch.tanh(next_c)
    return next_h, [next_h, next_c]


def trajgru_cell(
    lw: W, x: Tensor, prev_h: Tensor | None, align_corners: bool
) -> tuple[Tensor, Tensor]:
    hid = x.shape[1]
    if prev_h is None:
        prev_h = zeros_like_state(x, hid)
    i2h = torch.split(conv(x, lw["i2h"]), hid, dim=1)
    f1 = F.leaky_relu(conv(x, lw["i2f"]) + conv(prev_h, lw["h2f"]), 0.2)
    flows = torch.split(conv(f1, lw["flows"]), 2, dim=1)
    warped = torch.cat([warp(prev_h, -flow, align_corners) for flow in flows], dim=1)
    h2h = torch.split(conv(warped, lw["ret"]), hid, dim=1)
    reset = torch.sigmoid(i2h[0] + h2h[0])
    update = torch.sigmoid(i2h[1] + h2h[1])
    new_mem = F.leaky_relu(i2h[2] + reset * h2h[2], 0.2)
    next_h = update * prev_h + (1 - update) * new_mem
    return next_h, next_h


def predrnn_cell(
    lw: W, x: Tensor, m: Tensor | None, state: list[Tensor] | None
) -> tuple[Tensor, Tensor, list[Tensor]]:
    hid = x.shape[1]
    h, c = state if state is not None else (zeros_like_state(x, hid),) * 2
    if m is None:
        m = zeros_like_state(x, hid)
    i, f, g, o = torch.chunk(conv(x, lw["x2h"]) + conv(h, lw["h2h"]), 4, dim=1)
    next_c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    i_m, f_m, g_m = torch.chunk(conv(x, lw["x2h_m"]) + conv(m, lw["m2h_m"]), 3, dim=1)
    next_m = torch.sigmoid(f_m) * m + torch.sigmoid(i_m) * torch.tanh(g_m)
    o = torch.sigmoid(o + conv(next_c, lw["c2o"]) + conv(next_m, lw["m2o"]))
    next_h = o * torch.tanh(conv(torch.cat([next_c, next_m], 1), lw["c_m"]))
    return next_h, next_m, [next_h, next_c]


def mim_cell(
    lw: W,
    x: Tensor,
    xt_1: Tensor | None,
    m: Tensor | None,
    state: list[Tensor] | None,
    layer: int,
    full_mim_first_layer: bool = False,
) -> tuple[Tensor, Tensor, list[Tensor], Tensor]:
    """The authors' MIM_cell.forward; also returns the output gate o (for MotionRNN)."""
    hid = x.shape[1]
    if state is None:
        h = c = n = s = zeros_like_state(x, hid)
    else:
        h, c, n, s = state
    if xt_1 is None:
        xt_1 = zeros_like_state(x, hid)
    if m is None:
        m = zeros_like_state(x, hid)
    # layer 0: n and s, D and T are computed and carried in time, but never used
    i_n, f_n, g_n = torch.chunk(conv(x - xt_1, lw["x2h_n"]) + conv(n, lw["n2h_n"]), 3, dim=1)
    next_n = torch.sigmoid(f_n) * n + torch.sigmoid(i_n) * torch.tanh(g_n)
    o_n = torch.sigmoid(conv(x - xt_1, lw["diff2o"]) + conv(next_n, lw["n2o"]))
    d = o_n * torch.tanh(next_n)
    i_s, f_s, g_s, o_s = torch.chunk(conv(d, lw["x2h_s"]) + conv(c, lw["c2h_s"]), 4, dim=1)
    next_s = torch.sigmoid(f_s) * s + torch.sigmoid(i_s) * torch.tanh(g_s)
    t = torch.sigmoid(o_s + conv(next_s, lw["s2o"])) * torch.tanh(next_s)
    i, f, g, o = torch.chunk(conv(x, lw["x2h"]) + conv(h, lw["h2h"]), 4, dim=1)
    if layer == 0 and not full_mim_first_layer:
        next_c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    else:
        next_c = t + torch.sigmoid(i) * torch.tanh(g)
    i_m, f_m, g_m = torch.chunk(conv(x, lw["x2h_m"]) + conv(m, lw["m2h_m"]), 3, dim=1)
    next_m = torch.sigmoid(f_m) * m + torch.sigmoid(i_m) * torch.tanh(g_m)
    o = torch.sigmoid(o + conv(next_c, lw["c2o"]) + conv(next_m, lw["m2o"]))
    next_h = o * torch.tanh(conv(torch.cat([next_c, next_m], 1), lw["c_m"]))
    return next_h, next_m, [next_h, next_c, next_n, next_s], o


def motion_gru(
    mw: W, h: Tensor, f: Tensor, d: Tensor, k: int, fixes: dict[str, bool]
) -> tuple[Tensor, Tensor, Tensor]:
    """The authors' MotionRNN_cell.MotionGRU with their ``Warp``."""
    h_enc = F.conv2d(h, *mw["enc"], stride=2)
    u = torch.sigmoid(conv(torch.cat([h_enc, f], 1), mw["u"]))
    r = torch.sigmoid(conv(torch.cat([h_enc, f], 1), mw["r"]))
    z = torch.tanh(conv(torch.cat([h_enc, r * f], 1), mw["z"]))
    f_trans = u * z + (1 - u) * f
    next_d = d + 0.5 * (f - d)
    next_f = f_trans + next_d
    mask = torch.sigmoid(conv(h_enc, mw["hm"])).permute(0, 2, 3, 1).unsqueeze(1)
    b, c2, hh, ww = next_f.shape
    if fixes["flow_batch_fix"]:
        flow = next_f.reshape(b, c2 // 2, 2, hh, ww).transpose(0, 1)  # (k², B, 2, h, w)
    else:
        flow = next_f.reshape(c2 // 2, b, 2, hh, ww)  # the authors' reshape
    warped = torch.stack([warp(h_enc, flow[i], fixes["align_corners"]) for i in range(c2 // 2)])
    h_warp = mask * warped.permute(1, 2, 3, 4, 0)  # (B, C/4, h, w, k²)
    if fixes["decoder_layout_fix"]:
        h_warp = h_warp.permute(0, 1, 4, 2, 3)  # (B, C/4, k², h, w): pixels stay in place
    h_warp = h_warp.reshape(b, -1, hh, ww)
    h_dec = F.conv_transpose2d(conv(h_warp, mw["dec"]), *mw["deconv"], stride=2, padding=1)
    g = torch.sigmoid(conv(torch.cat([h_dec, h], 1), mw["g"]))
    return g * h + (1 - g) * h_dec, next_f, next_d


# -- the authors' rollout (model.py, without scheduled sampling) --------------------------------
def rollout(
    name: str,
    weights: W,
    frames: Tensor,
    n_out: int,
    *,
    align_corners: bool = True,
    flow_batch_fix: bool = True,
    decoder_layout_fix: bool = True,
    full_mim_first_layer: bool = False,
    motion_in_top_layer: bool = False,
    motion_kernel: int = 3,
) -> Tensor:
    """X̂_1 .. X̂_{m+n−1} from frames X_0 .. X_{m−1} (B, m, C, H, W): inputs, then own outputs."""
    fixes = {
        "align_corners": align_corners,
        "flow_batch_fix": flow_batch_fix,
        "decoder_layout_fix": decoder_layout_fix,
    }
    n_layers = len(weights["layers"])
    m_in = frames.shape[1]
    outputs: list[Tensor] = []
    layer_hiddens: list[Any] | None = None
    m: Tensor | None = None
    for t in range(m_in + n_out - 1):
        inp = frames[:, t] if t < m_in else outputs[-1]
        x = conv(inp, weights["embed"])
        next_hiddens: list[Any] = []
        for layer, lw in enumerate(weights["layers"]):
            hiddens = layer_hiddens[layer] if layer_hiddens is not None else None
            if name == "convlstm":
                x, nh = convlstm_cell(lw, x, hiddens)
            elif name == "trajgru":
                x, nh = trajgru_cell(lw, x, hiddens, align_corners)
            elif name == "predrnn":
                x, m, nh = predrnn_cell(lw, x, m, hiddens)
            else:
                xt_1 = (
                    layer_hiddens[layer - 1][0]
                    if layer_hiddens is not None and layer != 0
                    else None
                )
                mim_state = hiddens[:4] if hiddens is not None else None
                x_in = x
                x, m, nh, o = mim_cell(
                    lw, x, xt_1, m, mim_state, layer, full_mim_first_layer=full_mim_first_layer
                )
                if name == "motionrnn":
                    if hiddens is None:
                        flow_ch = 2 * motion_kernel**2
                        f = d = zeros_like_state(x, flow_ch, scale=2)
                    else:
                        f, d = hiddens[4], hiddens[5]
                    x_warp, f, d = motion_gru(lw["motion"], x, f, d, motion_kernel, fixes)
                    if layer != n_layers - 1 or motion_in_top_layer:  # motion highway
                        x = x_warp + (1 - o) * x_in
                        nh[0] = x
                    nh = [*nh, f, d]
            next_hiddens.append(nh)
        layer_hiddens = next_hiddens
        outputs.append(conv(x, weights["fc"]))
    return torch.stack(outputs, dim=1)
