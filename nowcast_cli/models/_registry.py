"""The model registry and the functions that build models from it.

Model files register themselves here (``@MODELS.register("name")``); they import this module,
never the package ``__init__`` that imports them.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import torch
from torch import nn

from nowcast_cli.errors import ConfigError
from nowcast_cli.registry import Registry

__all__ = [
    "MODELS",
    "SIZE_OPTIONS",
    "count_parameters",
    "create_model",
    "list_models",
    "model_config",
]

MODELS: Registry[Any] = Registry("model")

#: size options every model accepts; a model whose Config lacks one ignores it (baselines have
#: none, only SimVP is sized by the observed frames), so ``nowcast train`` passes them uniformly
SIZE_OPTIONS = ("layers", "hidden", "kernel", "in_frames")


def model_config(name: str, **overrides: Any) -> Any:
    """Build the frozen Config of model `name` with `overrides` applied.

    Size options (`SIZE_OPTIONS`) that the model's Config does not have are ignored: a
    parameter-free baseline has no layers, and only a model whose size depends on the number
    of observed frames (SimVP) has ``in_frames``.

    Raises
    ------
    UnknownNameError
        If `name` is not a registered model.
    ConfigError
        If an override is not a field of the model's Config (the message lists the valid
        fields) or has an invalid value, or the model cannot read ``in_frames`` observed
        frames (when given).
    """
    cls = MODELS.get(name)
    config_class = cls.config_class
    fields = [f.name for f in dataclasses.fields(config_class)]
    unknown = sorted(set(overrides) - set(fields) - set(SIZE_OPTIONS))
    if unknown:
        raise ConfigError(
            f"model {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"valid options: {', '.join(fields)}"
        )
    cfg = config_class(**{k: v for k, v in overrides.items() if k in fields})
    if "in_frames" in overrides:  # the data's observed frames: can the model read them?
        cls.check_frames(cfg, overrides["in_frames"])
    return cfg


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
def _paper_config_params(name: str) -> int:
    # the meta device allocates nothing, so counting even MotionRNN takes milliseconds
    with torch.device("meta"):
        return count_parameters(create_model(name))


def list_models() -> list[dict[str, Any]]:
    """Every registered model with its size at its published configuration.

    Returns
    -------
    list of dict
        One ``{"name", "params", "paper_params", "description"}`` per model, sorted by name:
        ``params`` counts our trainable parameters at the default (published) configuration,
        ``paper_params`` the published count: the paper's Table II for its five models, the
        authors' code at their training defaults for RainNet and SimVP (None for baselines);
        ``description`` is the first line of the model's docstring.
    """
    described = MODELS.describe()
    return [
        {
            "name": name,
            "params": _paper_config_params(name),
            "paper_params": MODELS.get(name).paper_params,
            "description": described[name],
        }
        for name in MODELS.names()
    ]
