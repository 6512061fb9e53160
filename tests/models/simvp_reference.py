"""SimVP's forward pass as the authors' code computes it, spelled out with torch.nn.functional.

Source: ``gaozhangyang/SimVP-Simpler-yet-Better-Video-Prediction`` (commit 5fd5f60), ``model.py``
(``stride_generator``, ``Encoder``, ``Decoder``, ``Mid_Xnet``, ``SimVP``) and ``modules.py``
(``BasicConv2d``, ``ConvSC``, ``GroupConv2d``, ``Inception``). The repository has no licence
file, so its code is not copied; every line below says which of theirs it follows. Nothing
here imports nowcast's model: weights come in as a flat list, in the order the authors' module
tree registers its parameters (which our state dict also follows: checked against their
classes when the model was written).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

KERNELS = (3, 5, 7, 11)  # Mid_Xnet(incep_ker=[3, 5, 7, 11])


def stride_generator(n: int, reverse: bool = False) -> list[int]:
    strides = [1, 2] * 10  # model.py: stride_generator
    return list(reversed(strides[:n])) if reverse else strides[:n]


def conv_sc(w: Iterator[Tensor], x: Tensor, stride: int, transpose: bool) -> Tensor:
    """ConvSC → BasicConv2d(kernel 3, padding 1, act_norm=True): conv, GroupNorm(2), LeakyReLU."""
    weight, bias, gn_w, gn_b = next(w), next(w), next(w), next(w)
    if stride == 1:
        transpose = False  # ConvSC: "if stride == 1: transpose = False"
    pad = weight.shape[-1] // 2
    if transpose:  # nn.ConvTranspose2d(..., output_padding=stride // 2)
        y = F.conv_transpose2d(x, weight, bias, stride, pad, output_padding=stride // 2)
    else:
        y = F.conv2d(x, weight, bias, stride, pad)
    return F.leaky_relu(F.group_norm(y, 2, gn_w, gn_b), 0.2)


def inception(w: Iterator[Tensor], x: Tensor, groups: int) -> Tensor:
    """Inception: conv1 (1×1), then y = Σ GroupConv2d(C_hid → C_out, ker, groups) over kernels."""
    x = F.conv2d(x, next(w), next(w))
    c_hid = x.shape[1]
    g = groups if c_hid % groups == 0 else 1  # GroupConv2d: "if in_channels % groups != 0"
    y: Tensor | int = 0
    for k in KERNELS:
        weight, bias, gn_w, gn_b = next(w), next(w), next(w), next(w)
        z = F.conv2d(x, weight, bias, padding=k // 2, groups=g)
        y = y + F.leaky_relu(F.group_norm(z, g, gn_w, gn_b), 0.2)
    assert isinstance(y, Tensor)
    return y


def simvp(weights: list[Tensor], x: Tensor, n_s: int, n_t: int, groups: int = 8) -> Tensor:
    """SimVP.forward: (B, T, C, H, W) → (B, T, C, H, W).

    `weights` in registration order: Encoder (N_S ConvSC), Mid_Xnet (enc then dec Inception
    blocks), Decoder (N_S ConvSC, readout).
    """
    b, t, c, h, w_ = x.shape
    enc_w = iter(weights[: 4 * n_s])
    per_block = 2 + 4 * len(KERNELS)
    mid_w = iter(weights[4 * n_s : 4 * n_s + 2 * n_t * per_block])
    dec_w = iter(weights[4 * n_s + 2 * n_t * per_block :])

    # Encoder.forward: enc1 = enc[0](x), latent through the rest
    z = x.reshape(b * t, c, h, w_)
    enc1 = latent = conv_sc(enc_w, z, stride_generator(n_s)[0], transpose=False)
    for s in stride_generator(n_s)[1:]:
        latent = conv_sc(enc_w, latent, s, transpose=False)
    _, c_, h_, w2 = latent.shape

    # Mid_Xnet.forward: encoder blocks keep skips (all but the last), decoder reads [z, skip]
    z = latent.reshape(b, t * c_, h_, w2)
    skips = []
    for i in range(n_t):
        z = inception(mid_w, z, groups)
        if i < n_t - 1:
            skips.append(z)
    z = inception(mid_w, z, groups)
    for i in range(1, n_t):
        z = inception(mid_w, torch.cat([z, skips[-i]], dim=1), groups)
    hid = z.reshape(b * t, c_, h_, w2)

    # Decoder.forward: all but the last ConvSC, then the last on [hid, enc1], then readout
    strides = stride_generator(n_s, reverse=True)
    for s in strides[:-1]:
        hid = conv_sc(dec_w, hid, s, transpose=True)
    y = conv_sc(dec_w, torch.cat([hid, enc1], dim=1), strides[-1], transpose=True)
    y = F.conv2d(y, next(dec_w), next(dec_w))  # readout, 1×1
    return y.reshape(b, t, c, h, w_)
