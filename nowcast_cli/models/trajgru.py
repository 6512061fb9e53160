"""TrajGRU (Shi et al. 2017): a ConvGRU whose state-to-state connections follow learned flows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nowcast_cli.errors import ConfigError
from nowcast_cli.models._cells import make_grid, warp
from nowcast_cli.models._conv import SameConv2d
from nowcast_cli.models._registry import MODELS
from nowcast_cli.models._rollout import Nowcaster, check_config


@dataclass(frozen=True)
class TrajGRUConfig:
    """Size of a TrajGRU; the defaults are the paper's configuration (authors' Feb-2022 cell)."""

    channels: int = 1  # channels per frame (reflectivity only)
    size: int = 120  # frame height = width at training resolution
    layers: int = 3  # stacked recurrent layers
    hidden: int = 64  # hidden channels of every layer
    kernel: int = 3  # spatial kernel of the input-to-state convolution
    links: int = 10  # L, flows per step (the authors' TrajGRU_link_num)
    flow_hidden: int = 32  # channels of the flow-generating subnetwork
    flow_kernel: int = 5  # spatial kernel of the flow-generating convolutions

    def __post_init__(self) -> None:
        check_config(self)
        if self.flow_kernel % 2 == 0:
            raise ConfigError(f"flow_kernel must be odd, got {self.flow_kernel}")


class TrajGRUCell(nn.Module):
    """One TrajGRU layer: the state is warped along L flows, then mixed by a 1×1 convolution."""

    def __init__(self, cfg: TrajGRUConfig) -> None:
        super().__init__()
        hid, fk = cfg.hidden, cfg.flow_kernel
        self.hidden, self.links = hid, cfg.links
        self.i2h = SameConv2d(hid, 3 * hid, cfg.kernel)  # r, u, h̃ from x
        # flow subnetwork: one conv over [x, h] (the authors sum an x- and an h-conv)
        self.flow_in = SameConv2d(2 * hid, cfg.flow_hidden, fk)
        self.flow_out = SameConv2d(cfg.flow_hidden, 2 * cfg.links, fk)
        self.h2h = nn.Conv2d(hid * cfg.links, 3 * hid, 1)  # r, u, h̃ from the L warped states

    def forward(self, x: Tensor, h: Tensor, grid: Tensor, scale: Tensor) -> Tensor:
        """One step; returns h'."""
        b, hid, height, width = h.shape
        xr = self.i2h(x)  # (B, 3·hid, H, W)
        f = F.leaky_relu(self.flow_in([x, h]), 0.2)
        flows = self.flow_out(f).view(b, self.links, 2, height, width)  # (B, L, 2, H, W)
        # the state at each pixel is gathered from pixel − flow (the authors' warp(h, −flow))
        warped = warp(h, -flows, grid, scale)  # (B, hid, L, H, W)
        hh = self.h2h(warped.view(b, hid * self.links, height, width))  # (B, 3·hid, H, W)
        ru_x, new_x = xr.split([2 * hid, hid], 1)
        ru_h, new_h = hh.split([2 * hid, hid], 1)
        r, u = torch.sigmoid(ru_x + ru_h).chunk(2, 1)
        new = F.leaky_relu(torch.addcmul(new_x, r, new_h), 0.2)
        return new + u * (h - new)  # u⊙h + (1 − u)⊙h̃ (lerp would need one dtype under autocast)


@MODELS.register("trajgru")
class TrajGRU(Nowcaster):
    """TrajGRU: ConvGRU with learned, location-variant recurrent connections (Shi et al. 2017)."""

    config_class = TrajGRUConfig
    paper_params = 1.06e6  # the paper's Table II
    grid: Tensor
    scale: Tensor

    def __init__(self, config: TrajGRUConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or TrajGRUConfig()
        self.embed = nn.Conv2d(cfg.channels, cfg.hidden, 1)
        self.cells = nn.ModuleList(TrajGRUCell(cfg) for _ in range(cfg.layers))
        self.fc = nn.Conv2d(cfg.hidden, cfg.channels, 1)
        grid, scale = make_grid(cfg.size, cfg.size)
        # derived from the config, so not saved in the state_dict; moves with .to(device)
        self.register_buffer("grid", grid, persistent=False)
        self.register_buffer("scale", scale, persistent=False)

    def init_state(self, x: Tensor) -> Any:
        """Zero h per layer."""
        b, _, _, h, w = x.shape
        return [x.new_zeros(b, self.config.hidden, h, w)] * len(self.cells)

    def step(self, frame: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Predict the next frame from `frame` (B, C, H, W)."""
        z = self.embed(frame)
        grid, scale = self.grid.to(z.dtype), self.scale.to(z.dtype)
        new_state = []
        for cell, h in zip(self.cells, state, strict=True):
            z = cell(z, h, grid, scale)
            new_state.append(z)
        return self.fc(z), new_state
