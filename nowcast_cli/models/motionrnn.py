"""MotionRNN (Wu et al. 2021) on MIM blocks: MotionGRU transient/trend motion and a highway."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from nowcast_cli.errors import ConfigError
from nowcast_cli.models._cells import MIMBlock, SpatioTemporalLSTMCell, make_grid, warp
from nowcast_cli.models._registry import MODELS
from nowcast_cli.models._rollout import Nowcaster, check_config


@dataclass(frozen=True)
class MotionRNNConfig:
    """Size of a MotionRNN; the defaults are the paper's configuration (authors' MotionRNN_MIM)."""

    channels: int = 1  # channels per frame (reflectivity only)
    size: int = 120  # frame height = width; even, MotionGRU works at half resolution
    layers: int = 3  # stacked recurrent layers
    hidden: int = 64  # hidden channels of every layer; divisible by 4 (MotionGRU uses hidden/4)
    kernel: int = 3  # spatial kernel of the recurrent convolutions
    motion_kernel: int = 3  # k: MotionGRU predicts k² flows per pixel
    alpha: float = 0.5  # trend step: D' = D + α(F − D)

    def __post_init__(self) -> None:
        check_config(self)
        if self.size % 2 or self.hidden % 4:
            raise ConfigError(
                f"MotionRNN needs an even size and hidden divisible by 4, "
                f"got size={self.size}, hidden={self.hidden}"
            )


class MotionGRU(nn.Module):
    """MotionGRU: learns k² flows per pixel (transient + trend) and warps the state along them."""

    def __init__(self, hidden: int, k: int, alpha: float) -> None:
        super().__init__()
        c4, nf = hidden // 4, 2 * k * k
        self.n_flows, self.alpha = k * k, alpha
        self.enc = nn.Conv2d(hidden, c4, 2, stride=2)  # to half resolution
        self.ur = nn.Conv2d(c4 + nf, 2 * nf, 1)  # update and reset gates over [H_enc, F]
        self.z = nn.Conv2d(c4 + nf, nf, 1)  # candidate over [H_enc, r⊙F]
        self.mask = nn.Conv2d(c4, k * k, 1)  # weight of each warped copy
        self.dec = nn.Conv2d(c4 * k * k, c4, 1)
        self.up = nn.ConvTranspose2d(c4, hidden, 4, stride=2, padding=1)  # back to full size
        self.gate = nn.Conv2d(2 * hidden, hidden, 1)  # mixes warped and unwarped state

    def forward(
        self, h: Tensor, f: Tensor, d: Tensor, grid: Tensor, scale: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Returns the motion-warped state X (B, hid, H, W) and the new F, D (B, 2k², H/2, W/2)."""
        enc = self.enc(h)  # (B, hid/4, H/2, W/2)
        u, r = torch.sigmoid(self.ur(torch.cat([enc, f], 1))).chunk(2, 1)
        z = torch.tanh(self.z(torch.cat([enc, r * f], 1)))
        d_new = d + self.alpha * (f - d)  # trend: moving average of past flows
        f_new = u * z + (1 - u) * f + d_new  # transient + trend
        b, c4, hh, ww = enc.shape
        # flows as (B, k², 2, h, w): sample-major. The authors reshape to (k², B, 2, h, w)
        # without a permute, which mixes samples' flows whenever B > 1.
        warped = warp(enc, f_new.view(b, self.n_flows, 2, hh, ww), grid, scale)  # (B, c4, k², h, w)
        warped = warped * torch.sigmoid(self.mask(enc)).unsqueeze(1)  # mask (B, 1, k², h, w)
        dec = self.up(self.dec(warped.view(b, c4 * self.n_flows, hh, ww)))  # (B, hid, H, W)
        g = torch.sigmoid(self.gate(torch.cat([dec, h], 1)))
        return g * h + (1 - g) * dec, f_new, d_new


@MODELS.register("motionrnn")
class MotionRNN(Nowcaster):
    """MotionRNN: MIM blocks with MotionGRU and a motion highway (Wu et al. 2021).

    The authors' MotionRNN_MIM: layer 0 is an ST-LSTM, the layers above are MIM blocks; every
    layer but the top one passes its hidden state through a MotionGRU and the motion highway
    h' = X + (1 − o)⊙x. The top layer has neither (the authors compute its MotionGRU and
    discard the result; the original MotionRNN builds num_layers − 1 MotionGRUs).
    """

    config_class = MotionRNNConfig
    paper_params = 3.78e6  # the paper's Table II (incl. parameters the authors never use)
    grid: Tensor
    scale: Tensor

    def __init__(self, config: MotionRNNConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or MotionRNNConfig()
        self.embed = nn.Conv2d(cfg.channels, cfg.hidden, 1)
        self.cells = nn.ModuleList(
            SpatioTemporalLSTMCell(cfg.hidden, cfg.kernel)
            if layer == 0
            else MIMBlock(cfg.hidden, cfg.kernel)
            for layer in range(cfg.layers)
        )
        self.motion = nn.ModuleList(
            MotionGRU(cfg.hidden, cfg.motion_kernel, cfg.alpha) for _ in range(cfg.layers - 1)
        )
        self.fc = nn.Conv2d(cfg.hidden, cfg.channels, 1)
        grid, scale = make_grid(cfg.size // 2, cfg.size // 2)
        self.register_buffer("grid", grid, persistent=False)
        self.register_buffer("scale", scale, persistent=False)

    def init_state(self, x: Tensor) -> Any:
        """Zero states and a zero memory M.

        Per layer: (h, c) for layer 0, (h, c, n, s) above, each followed by the MotionGRU's
        (F, D) in every layer but the top one.
        """
        b, _, _, h, w = x.shape
        cfg = self.config
        zero = x.new_zeros(b, cfg.hidden, h, w)
        zero_flow = x.new_zeros(b, 2 * cfg.motion_kernel**2, h // 2, w // 2)
        layers = []
        for layer in range(cfg.layers):
            st = (zero,) * (2 if layer == 0 else 4)
            layers.append((*st, zero_flow, zero_flow) if layer < cfg.layers - 1 else st)
        return layers, zero

    def step(self, frame: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Predict the next frame from `frame` (B, C, H, W)."""
        layers, m = state
        z = self.embed(frame)
        grid, scale = self.grid.to(z.dtype), self.scale.to(z.dtype)
        top = len(self.cells) - 1
        new_layers: list[tuple[Tensor, ...]] = []
        for layer, cell in enumerate(self.cells):
            st = layers[layer]
            if layer == 0:
                h, c, m, o = cell(z, st[0], st[1], m)
                new: tuple[Tensor, ...] = (h, c)
            else:
                # x_{t−1}: the layer below's hidden state (after its highway) one step earlier
                h, c, n, s, m, o = cell(z, layers[layer - 1][0], *st[:4], m)
                new = (h, c, n, s)
            if layer < top:
                x_warp, f, d = self.motion[layer](h, st[-2], st[-1], grid, scale)
                h = x_warp + (1 - o) * z  # motion highway
                new = (h, *new[1:], f, d)
            new_layers.append(new)
            z = h
        return self.fc(z), (new_layers, m)
