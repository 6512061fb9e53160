"""Self-describing checkpoints (SPEC §7): written atomically, read with ``weights_only=True``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (so that
``torch.load(path, weights_only=True)`` reads it without running any pickled code)::

    format, version, nowcast_version      what wrote it
    model, model_config, conv_backend     rebuilds the model (`load_checkpoint`)
    model_state                           the unwrapped module's state dict
    loss                                  name, balanced, k, eps, scale, frames, zr
    data                                  store path, source, size, in/out frames, max_missing,
                                          stride and the split
    options                               every training option (config.toml's keys)
    step, epoch, steps_per_epoch, total_steps, best, elapsed_s
    optimizer, optimizer_name, rng, accumulators   what an exact resume needs
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nowcast_cli import __version__
from nowcast_cli.errors import NowcastError, RunError

__all__ = ["FORMAT", "VERSION", "load_checkpoint", "read_checkpoint", "save_checkpoint"]

FORMAT = "nowcast-checkpoint"
VERSION = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` (plus format and version) to `path` atomically.

    The file is written beside its destination, flushed to disk and renamed over it, so a
    crash leaves either the old checkpoint or the new one, never a torn file.
    """
    data = {"format": FORMAT, "version": VERSION, "nowcast_version": __version__, **payload}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at `path` (tensors on the CPU), checked for format and version.

    Raises
    ------
    RunError
        If the file is missing, not a nowcast checkpoint, or written by a newer format.
    """
    p = Path(path)
    if not p.is_file():
        raise RunError(f"{p}: no such checkpoint")
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(f"{p}: not a readable nowcast checkpoint ({first})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RunError(f"{p}: not a nowcast checkpoint")
    if int(data.get("version", 0)) != VERSION:
        raise RunError(
            f"{p}: checkpoint format {data.get('version')} (nowcast "
            f"{data.get('nowcast_version')}); this nowcast {__version__} reads format {VERSION}"
        )
    return data


def load_checkpoint(path: str | Path, model: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the trained model from a checkpoint alone.

    Parameters
    ----------
    path : path
        A ``last.pt`` or ``best.pt``.
    model : str, optional
        The model the caller expects; another one is an error.

    Returns
    -------
    model : torch.nn.Module
        The model on the CPU in eval mode, with its convolution backend set.
    meta : dict
        The checkpoint without ``model_state`` and ``optimizer`` (see the module docstring).

    Raises
    ------
    RunError
        If the file is not a checkpoint of this format, holds another model than `model`,
        or its weights do not fit the model this version of nowcast builds.
    """
    from nowcast_cli.models import create_model

    data = read_checkpoint(path)
    name = data.get("model")
    if model is not None and name != model:
        raise RunError(f"{path}: a checkpoint of model {name!r}, not {model!r}")
    try:
        net = create_model(str(name), **data["model_config"])
    except NowcastError as exc:
        raise RunError(f"{path}: cannot rebuild model {name!r} ({exc})") from None
    try:
        result = net.load_state_dict(data["model_state"], strict=False)
    except RuntimeError as exc:  # a tensor of another shape
        raise RunError(
            f"{path}: its weights do not fit the {name} model of nowcast {__version__} "
            f"({str(exc).strip().splitlines()[-1].strip()})"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        missing = ", ".join(result.missing_keys[:3]) or "none"
        extra = ", ".join(result.unexpected_keys[:3]) or "none"
        raise RunError(
            f"{path}: its weights do not fit the {name} model of nowcast {__version__} "
            f"(written by {data.get('nowcast_version')}; missing {missing}; unexpected {extra})"
        )
    backend = data.get("conv_backend", "auto")
    set_backend = getattr(net, "set_conv_backend", None)
    if callable(set_backend):
        set_backend(backend)
    net.eval()
    meta = {k: v for k, v in data.items() if k not in ("model_state", "optimizer")}
    return net, meta
