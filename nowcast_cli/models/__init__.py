"""Recurrent nowcasting models (SPEC §5): one registry, one rollout contract.

Every model is registered in `MODELS` under the name users type (``convlstm``, ``trajgru``,
``predrnn``, ``mim``, ``motionrnn``, ``persistence``), built from its frozen ``Config``
dataclass by `create_model`, and listed with its parameter count by `list_models`.

Contract
--------
``model(x, n_out, *, teacher=None, teacher_prob=0.0, generator=None) -> Tensor``

x : Tensor (B, T_in, C, H, W)
    The observed frames X_0 .. X_{m−1} (m = T_in) on the [0, 1] pixel scale (pixel / 255),
    C = ``config.channels``, H = W = ``config.size``.
n_out : int
    Number of future frames n ≥ 1 to forecast.
teacher : Tensor (B, ≥ n − 1, C, H, W), optional
    The true future frames X_m, X_{m+1}, … (the training target's future part; only the first
    n − 1 are read). None at inference.
teacher_prob : float or Tensor
    Scheduled sampling: probability that a future step reads the true frame instead of the
    model's own previous output. One Bernoulli draw per (sample, step), for the whole frame;
    a tensor must broadcast to (B, n − 1). 0 (the default) is the pure autoregressive rollout.
generator : torch.Generator, optional
    Source of the Bernoulli draws, for reproducible training.

Returns X̂_1 .. X̂_{m+n−1}, shaped (B, m + n − 1, C, H, W) (the paper's Fig. 1): step s reads
frame X_s for s < m, then (for s ≥ m) the previous output X̂_s or, under scheduled sampling,
X_s, and predicts X̂_{s+1}. The first m − 1 outputs reconstruct observed frames, the last n are
the forecast ``out[:, m − 1:]``. Outputs are linear (not clipped to [0, 1]), as in the
authors' code. A batch gives the same outputs as its samples one at a time.

The paper's configuration is every Config's default: 3 layers, 64 hidden channels, 3×3
kernels, 1×1 convolutions in and out, 1 channel, 120×120 frames, no patching.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import torch
from torch import nn

from nowcast_cli.errors import ConfigError
from nowcast_cli.registry import Registry

MODELS: Registry[Any] = Registry("model")

# one import per model file: importing registers it
from nowcast_cli.models import convlstm as convlstm  # noqa: E402
from nowcast_cli.models import mim as mim  # noqa: E402
from nowcast_cli.models import motionrnn as motionrnn  # noqa: E402
from nowcast_cli.models import persistence as persistence  # noqa: E402
from nowcast_cli.models import predrnn as predrnn  # noqa: E402
from nowcast_cli.models import trajgru as trajgru  # noqa: E402

__all__ = ["MODELS", "count_parameters", "create_model", "list_models", "model_config"]


def model_config(name: str, **overrides: Any) -> Any:
    """Build the frozen Config of model `name` with `overrides` applied.

    Raises
    ------
    UnknownNameError
        If `name` is not a registered model.
    ConfigError
        If an override is not a field of the model's Config (the message lists the valid
        fields) or has an invalid value.
    """
    cls = MODELS.get(name)
    config_class = cls.config_class
    fields = [f.name for f in dataclasses.fields(config_class)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ConfigError(
            f"model {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"valid options: {', '.join(fields)}"
        )
    return config_class(**overrides)


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build the registered model `name` from its Config, with `overrides` applied.

    Parameters
    ----------
    name : str
        Registry name, case-insensitive (see ``MODELS.names()``).
    **overrides
        Config fields, e.g. ``layers=2, hidden=32, kernel=3, size=64``; the rest keep the
        paper's defaults.

    Returns
    -------
    torch.nn.Module
        The model, with PyTorch's default initialisation (seed with `torch.manual_seed`),
        its Config as ``model.config``.

    Raises
    ------
    UnknownNameError
        If `name` is not registered.
    ConfigError
        If an override is unknown (the message lists the valid fields) or invalid.
    """
    cfg = model_config(name, **overrides)
    model: nn.Module = MODELS.get(name)(cfg)
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@functools.cache
def _paper_params(name: str) -> int:
    # the meta device allocates nothing, so counting even MotionRNN takes milliseconds
    with torch.device("meta"):
        return count_parameters(create_model(name))


def list_models() -> list[dict[str, Any]]:
    """Every registered model with its size at the paper's configuration.

    Returns
    -------
    list of dict
        One ``{"name": str, "params": int, "description": str}`` per model, sorted by name;
        ``params`` counts trainable parameters at the default (paper) configuration and
        ``description`` is the first line of the model's docstring.
    """
    described = MODELS.describe()
    return [
        {"name": name, "params": _paper_params(name), "description": described[name]}
        for name in MODELS.names()
    ]
