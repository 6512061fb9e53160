"""Nowcasting models (SPEC §5): one registry, one calling contract.

Every model is registered in `MODELS` under the name users type (``convlstm``, ``trajgru``,
``predrnn``, ``mim``, ``motionrnn``, ``persistence``, ``rainnet``, ``simvp``), built from its
frozen ``Config`` dataclass by `create_model`, and listed with its parameter count (and the
published one) by `list_models`. Every model is a `NowcastModel`.

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
    A model that feeds nothing back (SimVP) accepts and ignores it.
generator : torch.Generator, optional
    Source of the Bernoulli draws, for reproducible training.

Which frames come back is a class attribute, ``reconstructs``:

- True (the recurrent models and persistence): X̂_1 .. X̂_{m+n−1}, shaped
  (B, m + n − 1, C, H, W) (the paper's Fig. 1): step s reads frame X_s for s < m, then (for
  s ≥ m) the previous output X̂_s or, under scheduled sampling, X_s, and predicts X̂_{s+1}.
  The first m − 1 outputs reconstruct observed frames, the last n are the forecast
  ``out[:, m − 1:]``.
- False (``rainnet``, ``simvp``): the forecast X̂_m .. X̂_{m+n−1} only, shaped (B, n, C, H, W).

`first_output` (1 or m) says which true frame the first output predicts, so callers align
targets as ``x[:, first_output(model, m):]`` and forecasts as ``out[:, m − first_output:]``
without knowing the model. Outputs are linear (not clipped to [0, 1]), as in the authors'
code. A batch gives the same outputs as its samples one at a time (in eval mode: RainNet has
dropout).

Every Config's defaults are the published configuration: the FFL paper's for its five models
(3 layers, 64 hidden channels, 3×3 kernels, 1×1 convolutions in and out, 1 channel, 120×120,
no patching), the authors' training code for RainNet and SimVP.
"""

from __future__ import annotations

# one import per model file: importing registers it in MODELS
from nowcast_cli.models import convlstm as convlstm
from nowcast_cli.models import mim as mim
from nowcast_cli.models import motionrnn as motionrnn
from nowcast_cli.models import persistence as persistence
from nowcast_cli.models import predrnn as predrnn
from nowcast_cli.models import rainnet as rainnet
from nowcast_cli.models import simvp as simvp
from nowcast_cli.models import trajgru as trajgru
from nowcast_cli.models._registry import (
    MODELS,
    count_parameters,
    create_model,
    list_models,
    model_config,
)
from nowcast_cli.models._rollout import NowcastModel, first_output

__all__ = [
    "MODELS",
    "NowcastModel",
    "count_parameters",
    "create_model",
    "first_output",
    "list_models",
    "model_config",
]
