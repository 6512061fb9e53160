"""MIM, Memory In Memory (Wang et al. 2019): ST-LSTM with non-stationary memories."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from torch import Tensor, nn

from nowcast_cli.models import MODELS
from nowcast_cli.models._cells import MIMCell
from nowcast_cli.models._rollout import Nowcaster, check_config


@dataclass(frozen=True)
class MIMConfig:
    """Size of a MIM; the defaults are the paper's configuration."""

    channels: int = 1  # channels per frame (reflectivity only)
    size: int = 120  # frame height = width at training resolution
    layers: int = 3  # stacked recurrent layers
    hidden: int = 64  # hidden channels of every layer
    kernel: int = 3  # spatial kernel of the recurrent convolutions

    def __post_init__(self) -> None:
        check_config(self)


@MODELS.register("mim")
class MIM(Nowcaster):
    """MIM: Memory In Memory blocks modelling non-stationary dynamics by differencing."""

    config_class = MIMConfig

    def __init__(self, config: MIMConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or MIMConfig()
        self.embed = nn.Conv2d(cfg.channels, cfg.hidden, 1)
        self.cells = nn.ModuleList(MIMCell(cfg.hidden, cfg.kernel) for _ in range(cfg.layers))
        self.fc = nn.Conv2d(cfg.hidden, cfg.channels, 1)

    def init_state(self, x: Tensor) -> Any:
        """Zero (h, c, n, s, previous input) per layer and a zero memory M."""
        b, _, _, h, w = x.shape
        zero = x.new_zeros(b, self.config.hidden, h, w)
        return [(zero,) * 5 for _ in self.cells], zero

    def step(self, frame: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Predict the next frame from `frame` (B, C, H, W)."""
        layers, m = state
        z = self.embed(frame)
        new_layers = []
        for cell, (h, c, n, s, z_prev) in zip(cast(list[MIMCell], self.cells), layers, strict=True):
            h, c, n, s, m, _ = cell.forward_mim(z, z_prev, h, c, n, s, m)
            new_layers.append((h, c, n, s, z))  # this step's input is next step's x_{t−1}
            z = h
        return self.fc(z), (new_layers, m)
