"""PredRNN (Wang et al. 2017): stacked ST-LSTM cells with a zig-zag spatiotemporal memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from nowcast_cli.models._cells import SpatioTemporalLSTMCell
from nowcast_cli.models._registry import MODELS
from nowcast_cli.models._rollout import Nowcaster, check_config


@dataclass(frozen=True)
class PredRNNConfig:
    """Size of a PredRNN; the defaults are the paper's configuration."""

    channels: int = 1  # channels per frame (reflectivity only)
    size: int = 120  # frame height = width at training resolution
    layers: int = 3  # stacked recurrent layers
    hidden: int = 64  # hidden channels of every layer
    kernel: int = 3  # spatial kernel of the recurrent convolutions

    def __post_init__(self) -> None:
        check_config(self)


@MODELS.register("predrnn")
class PredRNN(Nowcaster):
    """PredRNN: ST-LSTM layers whose memory M zig-zags up the stack and on in time."""

    config_class = PredRNNConfig
    paper_params = 1.80e6  # the paper's Table II

    def __init__(self, config: PredRNNConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or PredRNNConfig()
        self.embed = nn.Conv2d(cfg.channels, cfg.hidden, 1)
        self.cells = nn.ModuleList(
            SpatioTemporalLSTMCell(cfg.hidden, cfg.kernel) for _ in range(cfg.layers)
        )
        self.fc = nn.Conv2d(cfg.hidden, cfg.channels, 1)

    def init_state(self, x: Tensor) -> Any:
        """Zero (h, c) per layer and a zero memory M."""
        b, _, _, h, w = x.shape
        zero = x.new_zeros(b, self.config.hidden, h, w)
        return [(zero, zero) for _ in self.cells], zero

    def step(self, frame: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Predict the next frame from `frame` (B, C, H, W)."""
        layers, m = state
        z = self.embed(frame)
        new_layers = []
        for cell, (h, c) in zip(self.cells, layers, strict=True):
            z, c, m, _ = cell(z, h, c, m)  # M from the layer below (or the top layer at t − 1)
            new_layers.append((z, c))
        return self.fc(z), (new_layers, m)
