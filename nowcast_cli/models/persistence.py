"""Persistence: the forecast is the last observed frame (the baseline of every table)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from nowcast_cli.models._registry import MODELS
from nowcast_cli.models._rollout import Nowcaster, check_config


@dataclass(frozen=True)
class PersistenceConfig:
    """Frame shape of a persistence forecast; it has nothing else to configure."""

    channels: int = 1  # channels per frame
    size: int = 120  # frame height = width

    def __post_init__(self) -> None:
        check_config(self)


@MODELS.register("persistence")
class Persistence(Nowcaster):
    """Persistence: repeat the last observed frame (no parameters)."""

    config_class = PersistenceConfig

    def __init__(self, config: PersistenceConfig | None = None) -> None:
        super().__init__()
        self.config = config or PersistenceConfig()
        # an empty, non-persistent buffer so the module has a device (`next(m.buffers())`)
        self.register_buffer("anchor", torch.zeros(0), persistent=False)

    def init_state(self, x: Tensor) -> Any:
        """No state."""
        return None

    def step(self, frame: Tensor, state: Any) -> tuple[Tensor, Any]:
        """The next frame is this frame; fed back, the last observation repeats."""
        return frame, state
