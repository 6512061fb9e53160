"""ConvLSTM (Shi et al. 2015) as used in the Focal Frame Loss paper."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from nowcast_cli.models._conv import SameConv2d
from nowcast_cli.models._registry import MODELS
from nowcast_cli.models._rollout import Nowcaster, check_config


@dataclass(frozen=True)
class ConvLSTMConfig:
    """Size of a ConvLSTM; the defaults are the paper's configuration."""

    channels: int = 1  # channels per frame (reflectivity only)
    size: int = 120  # frame height = width at training resolution
    layers: int = 3  # stacked recurrent layers
    hidden: int = 64  # hidden channels of every layer
    kernel: int = 3  # spatial kernel of the state-to-state convolutions

    def __post_init__(self) -> None:
        check_config(self)


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer: all four gates from one convolution over [x, h]."""

    def __init__(self, hidden: int, kernel: int) -> None:
        super().__init__()
        self.hidden = hidden
        # one conv for all gates; the authors' W_x*x + W_h*h has one more bias, same function
        self.conv = SameConv2d(2 * hidden, 4 * hidden, kernel)

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """One step; returns (h', c')."""
        hid = self.hidden
        # split (not slicing): its backward is one cat, slicing's is zeros + copy per slice
        ifo, g = self.conv([x, h]).split([3 * hid, hid], 1)  # (B, 3·hid | hid, …)
        i, f, o = torch.sigmoid(ifo).chunk(3, 1)
        c_new = torch.addcmul(f * c, i, torch.tanh(g))  # f⊙c + i⊙g in one pass
        return o * torch.tanh(c_new), c_new


@MODELS.register("convlstm")
class ConvLSTM(Nowcaster):
    """ConvLSTM: stacked convolutional LSTM layers (Shi et al. 2015)."""

    config_class = ConvLSTMConfig
    paper_params = 0.89e6  # the paper's Table II

    def __init__(self, config: ConvLSTMConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or ConvLSTMConfig()
        self.embed = nn.Conv2d(cfg.channels, cfg.hidden, 1)
        self.cells = nn.ModuleList(ConvLSTMCell(cfg.hidden, cfg.kernel) for _ in range(cfg.layers))
        self.fc = nn.Conv2d(cfg.hidden, cfg.channels, 1)  # linear output, as the authors

    def init_state(self, x: Tensor) -> Any:
        """Zero (h, c) per layer."""
        b, _, _, h, w = x.shape
        zero = x.new_zeros(b, self.config.hidden, h, w)  # shared: states are never written in place
        return [(zero, zero) for _ in self.cells]

    def step(self, frame: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Predict the next frame from `frame` (B, C, H, W)."""
        z = self.embed(frame)
        new_state = []
        for cell, (h, c) in zip(self.cells, state, strict=True):
            z, c = cell(z, h, c)
            new_state.append((z, c))
        return self.fc(z), new_state
