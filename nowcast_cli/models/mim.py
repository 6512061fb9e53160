"""MIM, Memory In Memory (Wang et al. 2019): ST-LSTM with non-stationary memories."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from nowcast_cli.models._cells import MIMBlock, SpatioTemporalLSTMCell
from nowcast_cli.models._registry import MODELS
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
    """MIM: Memory In Memory blocks modelling non-stationary dynamics by differencing.

    Layer 0 is an ST-LSTM; every layer above is a `MIMBlock` whose MIM-N differences the
    hidden state of the layer below between consecutive steps (Wang et al. 2019, and the
    authors' ``models/mim.py``). The spatiotemporal memory M zig-zags as in PredRNN.
    """

    config_class = MIMConfig
    paper_params = 3.68e6  # the paper's Table II (incl. parameters the authors never use)

    def __init__(self, config: MIMConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or MIMConfig()
        self.embed = nn.Conv2d(cfg.channels, cfg.hidden, 1)
        self.cells = nn.ModuleList(
            SpatioTemporalLSTMCell(cfg.hidden, cfg.kernel)
            if layer == 0
            else MIMBlock(cfg.hidden, cfg.kernel)
            for layer in range(cfg.layers)
        )
        self.fc = nn.Conv2d(cfg.hidden, cfg.channels, 1)

    def init_state(self, x: Tensor) -> Any:
        """Zero (h, c) for layer 0, (h, c, n, s) above, and a zero memory M."""
        b, _, _, h, w = x.shape
        zero = x.new_zeros(b, self.config.hidden, h, w)
        return [(zero,) * (2 if layer == 0 else 4) for layer in range(len(self.cells))], zero

    def step(self, frame: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Predict the next frame from `frame` (B, C, H, W)."""
        layers, m = state
        z = self.embed(frame)
        new_layers: list[tuple[Tensor, ...]] = []
        for layer, cell in enumerate(self.cells):
            if layer == 0:
                h, c = layers[0]
                h, c, m, _ = cell(z, h, c, m)
                new_layers.append((h, c))
            else:
                h, c, n, s = layers[layer]
                # x_{t−1}: the layer below's hidden state at the previous step
                h, c, n, s, m, _ = cell(z, layers[layer - 1][0], h, c, n, s, m)
                new_layers.append((h, c, n, s))
            z = h
        return self.fc(z), (new_layers, m)
