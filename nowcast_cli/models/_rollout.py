"""The base every model shares, the recurrent rollout (SPEC §5, the paper's Fig. 1), checks."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from nowcast_cli.errors import ConfigError
from nowcast_cli.models._conv import check_backend, conv_backend
from nowcast_cli.models._winograd import filter_cache


def check_config(cfg: Any, *, zero_ok: tuple[str, ...] = ()) -> None:
    """Raise ConfigError unless every field of a model config is a positive number.

    Fields annotated ``int`` must be ints; ``float`` fields accept ints too. Fields named in
    `zero_ok` may also be 0 (a dropout rate, say).
    """
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        kind = int if field.type in ("int", int) else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ConfigError(f"{field.name} must be {field.type}, got {value!r}")
        if value < 0 or (value == 0 and field.name not in zero_ok):
            raise ConfigError(f"{field.name} must be positive, got {value!r}")
    kernel = getattr(cfg, "kernel", 1)
    if kernel % 2 == 0:
        # 'same' padding (kernel // 2) keeps the frame size only for odd kernels
        raise ConfigError(f"kernel must be odd, got {kernel}")


class NowcastModel(nn.Module):
    """Base of every registered model: its Config, its published size, the frames it returns.

    Subclasses set ``config_class`` and ``self.config`` (with ``channels`` and ``size``) and
    implement ``forward(x, n_out, *, teacher=None, teacher_prob=0.0, generator=None)`` (the
    `nowcast_cli.models` contract).
    """

    config: Any
    config_class: ClassVar[type]
    #: published size (parameters): the paper's Table II for its five models, the authors'
    #: code at their training defaults for the others; None for parameter-free baselines
    paper_params: ClassVar[float | None] = None
    #: True: the output starts with the m − 1 reconstructions X̂_1 .. X̂_{m−1} of the observed
    #: frames (the recurrent rollout); False: it holds the n forecast frames X̂_m .. only
    reconstructs: ClassVar[bool] = True

    @classmethod
    def check_frames(cls, config: Any, in_frames: int) -> None:
        """Raise ConfigError if a model of `config` cannot read `in_frames` observed frames."""
        if in_frames < 1:
            raise ConfigError(f"need at least one observed frame, got {in_frames}")


def first_output(model: nn.Module | type[nn.Module], m: int) -> int:
    """Index t of the frame X_t that a model's first output predicts, for m observed frames.

    1 for models that reconstruct the observed frames (outputs X̂_1 .. X̂_{m+n−1}), m for
    forecast-only models (X̂_m .. X̂_{m+n−1}): output j predicts frame ``first_output + j``,
    and the forecast is ``out[:, m − first_output:]``. A module that is no `NowcastModel`
    counts as reconstructing (the recurrent contract).
    """
    return 1 if getattr(model, "reconstructs", True) else m


class Nowcaster(NowcastModel, ABC):
    """Base class of the recurrent models: one step per frame, `forward` rolls it out.

    Subclasses set ``self.config`` (with ``channels`` and ``size``) and implement
    `init_state` and `step`; `forward` is the shared rollout with scheduled sampling.
    ``conv_backend`` (``auto`` or ``direct``, see `nowcast_cli.models._conv`) says how the
    rollout computes 3×3 convolutions; set it with `set_conv_backend`.
    """

    conv_backend: str = "auto"

    def set_conv_backend(self, name: str) -> None:
        """Compute 3×3 convolutions with backend `name` (``auto`` or ``direct``) from now on."""
        self.conv_backend = check_backend(name)

    @abstractmethod
    def init_state(self, x: Tensor) -> Any:
        """Zero state for a batch shaped like `x` (B, T, C, H, W)."""

    @abstractmethod
    def step(self, frame: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Map the frame at t (B, C, H, W) and the state to the frame at t + 1 and new state."""

    def forward(
        self,
        x: Tensor,
        n_out: int,
        *,
        teacher: Tensor | None = None,
        teacher_prob: float | Tensor = 0.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Roll the model out; see the `nowcast_cli.models` docstring for the contract."""
        return rollout(
            self, x, n_out, teacher=teacher, teacher_prob=teacher_prob, generator=generator
        )


def check_input(model: NowcastModel, x: Tensor, n_out: int, teacher: Tensor | None) -> None:
    """Raise ConfigError unless `x` and `teacher` have the shapes the contract asks for."""
    cfg = model.config
    if x.ndim != 5:
        raise ConfigError(f"input must be shaped (B, T, C, H, W), got {tuple(x.shape)}")
    b, t_in, c, h, w = x.shape
    if t_in < 1 or n_out < 1:
        raise ConfigError(f"need at least one input and one output frame, got {t_in}, {n_out}")
    if c != cfg.channels or (h, w) != (cfg.size, cfg.size):
        raise ConfigError(
            f"input frames are {c}×{h}×{w} but the model was built for "
            f"{cfg.channels}×{cfg.size}×{cfg.size} (channels×size×size)"
        )
    if teacher is not None and (
        teacher.shape[0] != b or teacher.shape[1] < n_out - 1 or teacher.shape[2:] != x.shape[2:]
    ):
        raise ConfigError(
            f"teacher must be shaped (B, ≥{n_out - 1}, C, H, W) like the input, "
            f"got {tuple(teacher.shape)}"
        )


def teacher_draws(
    x: Tensor,
    n_out: int,
    teacher: Tensor | None,
    teacher_prob: float | Tensor,
    generator: torch.Generator | None,
) -> Tensor | None:
    """Scheduled-sampling draws (B, n − 1), True = the future step reads the true frame.

    None when no step can read a true frame (no teacher, n = 1, or probability 0): the
    teacher is then never read. One Bernoulli draw per (sample, step), for the whole frame.
    """
    n_future = n_out - 1
    if teacher is None or n_future < 1:
        return None
    p = torch.as_tensor(teacher_prob, dtype=torch.float32)
    if not bool((p > 0).any()):
        return None
    draw_device = generator.device if generator is not None else x.device
    u = torch.rand((x.shape[0], n_future), generator=generator, device=draw_device)
    return (u < p.to(draw_device)).to(x.device)


def rollout(
    model: Nowcaster,
    x: Tensor,
    n_out: int,
    *,
    teacher: Tensor | None = None,
    teacher_prob: float | Tensor = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Run `model.step` over observed frames, then over its own outputs.

    Step s = 0 .. m + n − 2 reads input frame I_s and predicts X̂_{s+1}: I_s = X_s for s < m;
    for s ≥ m, I_s = X_s (``teacher[:, s − m]``) with probability `teacher_prob` per sample
    and step (one Bernoulli draw per whole frame), else the previous output X̂_s.

    Returns
    -------
    Tensor
        X̂_1 .. X̂_{m+n−1}, shaped (B, m + n − 1, C, H, W).
    """
    check_input(model, x, n_out, teacher)
    b, t_in = x.shape[:2]
    n_future = n_out - 1  # steps whose input is a predicted (or teacher) frame
    mask = teacher_draws(x, n_out, teacher, teacher_prob, generator)
    state = model.init_state(x)
    outputs: list[Tensor] = []
    frame = x[:, 0]
    # every step reuses the same weights: the filter cache transforms them once per rollout
    with conv_backend(model.conv_backend), filter_cache():
        for s in range(t_in + n_future):
            if s < t_in:
                frame = x[:, s]
            elif mask is not None and teacher is not None:
                use_true = mask[:, s - t_in].view(b, 1, 1, 1)  # (B, 1, 1, 1): over C, H, W
                frame = torch.where(use_true, teacher[:, s - t_in], outputs[-1])
            else:
                # the input's dtype (under autocast the outputs are bf16): one input dtype,
                # one compiled graph per cell (the convolution casts to bf16 again anyway)
                frame = outputs[-1].to(x.dtype)
            pred, state = model.step(frame, state)
            outputs.append(pred)
    return torch.stack(outputs, dim=1)  # (B, m + n − 1, C, H, W)
