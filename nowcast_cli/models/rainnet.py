"""RainNet (Ayzel, Scheffer, Heistermann 2020): a U-Net from 4 radar frames to the next one.

Written from the authors' Keras code (``hydrogo/rainnet``, ``rainnet.py``, built by their
training notebook as ``rainnet()``: ``input_shape=(928, 928, 4)``, ``mode="regression"``):

- encoder: at each of 4 levels two 3×3 convolutions (ReLU) with 64, 128, 256, 512 filters,
  then 2×2 max pooling; a bottleneck of two 3×3 convolutions with 1024 filters. Dropout 0.5
  on the last level's output before it is pooled (``drop4``; the skip connection reads it
  undropped, ``conv4s``) and on the bottleneck's output (``drop5``);
- decoder: per level, nearest 2× upsampling, concatenation [upsampled, skip], two 3×3
  convolutions (ReLU); then a 3×3 convolution to 2 channels (ReLU) and a linear 1×1
  convolution to the output frame.

That is 20 convolutions and 31,380,613 parameters (the authors' README: "almost 31.4
million"), counted layer by layer in ``tests/models/test_param_counts.py`` and by Keras itself
from the authors' file (``tests/models/test_rainnet_keras.py``, which also checks that this
module computes what their model computes). ``hidden`` (the first level's filters, doubled at
each level) and ``layers`` (pooling levels) shrink it for a CPU; the defaults are the authors'.

Initialisation is the authors' Keras one: ``he_normal`` (a normal truncated at ±2σ, its σ
scaled so the variance is 2 / fan_in) for every 3×3 convolution, Keras's default
``glorot_uniform`` for the 1×1 output, zero biases.

What is ours, not the authors':

- the frames: the authors feed ln(R + 0.01) of RY rain depths; here, as for every model, the
  store's pixels on [0, 1], which are linear in dBZ, hence also logarithmic in rain rate;
- the grid: U-Nets need sides divisible by 2^layers; the authors mirror-pad 900² to 928² before
  the network, here the network reflect-pads its input to the next multiple itself and crops
  the output back (a 120² frame is padded to 128² at 4 levels);
- lead times: the authors train one 5-minute step and apply the network recursively for longer
  leads. Here the recursion is the model (``forward(x, n)``: step s reads the last ``window``
  frames of the sequence, observed frames first, then its own outputs), so training
  back-propagates through all n steps. Scheduled sampling decides per (sample, step) whether a
  fed-back frame is the true one: at probability 1 every step reads true frames only, which is
  the authors' one-step training applied to each lead; as it decays to 0 (``nowcast train``'s
  default schedule) training approaches the recursion that forecasts use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nowcast_cli.errors import ConfigError
from nowcast_cli.models._registry import MODELS
from nowcast_cli.models._rollout import NowcastModel, check_config, check_input, teacher_draws

#: channels of the authors' last 3×3 convolution, before the 1×1 output
HEAD_CHANNELS = 2
#: standard deviation of the unit normal truncated at ±2 (Keras divides σ by it)
TRUNCATED_STD = 0.87962566103423978


@dataclass(frozen=True)
class RainNetConfig:
    """Size of a RainNet; the defaults are the authors' (``rainnet()`` in ``hydrogo/rainnet``)."""

    channels: int = 1  # channels per frame (rain only)
    size: int = 120  # frame height = width at training resolution (the authors': 928)
    window: int = 4  # observed frames stacked as input channels (the authors': t−15 … t)
    layers: int = 4  # pooling levels of the U-Net (the authors' 4)
    hidden: int = 64  # filters at full resolution, doubled per level (the authors' 64 … 1024)
    kernel: int = 3  # spatial kernel of every convolution but the 1×1 output (the authors' 3)
    dropout: float = 0.5  # dropout rate of the two deepest outputs (the authors' 0.5)

    def __post_init__(self) -> None:
        check_config(self, zero_ok=("dropout",))
        if self.kernel % 2 == 0:
            raise ConfigError(f"kernel must be odd, got {self.kernel}")
        if not self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        grid = padded_size(self.size, self.layers)
        if (grid - self.size + 1) // 2 >= self.size:  # reflect padding must be < the side
            raise ConfigError(
                f"size {self.size} is too small for {self.layers} pooling levels (the frame "
                f"would be padded to {grid}); lower --layers or raise --size"
            )


def padded_size(size: int, layers: int) -> int:
    """Smallest multiple of 2^layers that is ≥ `size` (the grid the U-Net runs on)."""
    step = 1 << layers
    return -(-size // step) * step


def _double_conv(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    """Two 'same' convolutions with ReLU (the authors' ``conv*f``, ``conv*s`` pairs)."""
    pad = kernel // 2
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=pad),
        nn.ReLU(),
        nn.Conv2d(c_out, c_out, kernel, padding=pad),
        nn.ReLU(),
    )


def _truncated_normal_(w: Tensor, std: float) -> None:
    """Fill `w` from N(0, std²) truncated at ±2·std, by redrawing the values outside.

    The same law as ``nn.init.trunc_normal_`` (which is slow on 31 million weights): 4.6% of
    the draws fall outside, so a few rounds leave none.
    """
    if w.is_meta:  # counting parameters (`list_models`): nothing to draw
        return
    flat = w.view(-1)
    flat.normal_(0.0, std)
    idx = (flat.abs() > 2 * std).nonzero().squeeze(1)  # positions still to draw
    while idx.numel():
        flat[idx] = torch.randn(idx.numel(), dtype=w.dtype, device=w.device) * std
        idx = idx[flat[idx].abs() > 2 * std]


@MODELS.register("rainnet")
class RainNet(NowcastModel):
    """RainNet: U-Net, 4 frames in → the next frame, applied recursively (Ayzel et al. 2020)."""

    config_class = RainNetConfig
    paper_params = 31_380_613  # the authors' rainnet() (Keras count_params; README "31.4M")
    reconstructs = False

    def __init__(self, config: RainNetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or RainNetConfig()
        widths = [cfg.hidden * 2**i for i in range(cfg.layers + 1)]  # 64, 128, …, 1024
        c_in = [cfg.window * cfg.channels, *widths[:-1]]
        # down[i]: the authors' conv{i+1}f, conv{i+1}s; down[layers] is the bottleneck (conv5)
        self.down = nn.ModuleList(
            _double_conv(a, b, cfg.kernel) for a, b in zip(c_in, widths, strict=True)
        )
        # up[j]: conv6 … conv9, from the deepest level up; input [upsampled, skip]
        self.up = nn.ModuleList(
            _double_conv(widths[i + 1] + widths[i], widths[i], cfg.kernel)
            for i in reversed(range(cfg.layers))
        )
        self.head = nn.Conv2d(cfg.hidden, HEAD_CHANNELS, cfg.kernel, padding=cfg.kernel // 2)
        self.out = nn.Conv2d(HEAD_CHANNELS, cfg.channels, 1)  # linear ("regression" mode)
        self.drop = nn.Dropout(cfg.dropout)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The authors' initialisers: Keras ``he_normal``, ``glorot_uniform`` at the output."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                if m is self.out:  # Keras's default kernel initializer
                    nn.init.xavier_uniform_(m.weight)
                else:  # VarianceScaling(2.0, "fan_in", "truncated_normal")
                    _truncated_normal_(m.weight, math.sqrt(2.0 / fan_in) / TRUNCATED_STD)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @classmethod
    def check_frames(cls, config: RainNetConfig, in_frames: int) -> None:
        """Raise ConfigError unless there are at least ``window`` observed frames."""
        if in_frames < config.window:
            raise ConfigError(
                f"rainnet reads its last {config.window} observed frames: needs --in-frames "
                f"≥ {config.window}, got {in_frames}"
            )

    def step(self, window: Tensor) -> Tensor:
        """The next frame (B, C, H, W) from `window` frames stacked as channels (B, w·C, H, W)."""
        cfg = self.config
        size = window.shape[-1]
        total = padded_size(size, cfg.layers) - size
        lo = total // 2
        z = F.pad(window, (lo, total - lo, lo, total - lo), mode="reflect") if total else window
        skips = []
        for i in range(cfg.layers):
            z = self.down[i](z)
            skips.append(z)  # the skip reads the undropped output (the authors' conv4s)
            if i == cfg.layers - 1:
                z = self.drop(z)  # drop4
            z = F.max_pool2d(z, 2)
        z = self.drop(self.down[cfg.layers](z))  # drop5
        for block, skip in zip(self.up, reversed(skips), strict=True):
            z = block(torch.cat([F.interpolate(z, scale_factor=2.0, mode="nearest"), skip], 1))
        out: Tensor = self.out(F.relu(self.head(z)))
        return out[..., lo : lo + size, lo : lo + size] if total else out

    def forward(
        self,
        x: Tensor,
        n_out: int,
        *,
        teacher: Tensor | None = None,
        teacher_prob: float | Tensor = 0.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Forecast X̂_m .. X̂_{m+n−1} (B, n, C, H, W) from x (B, m ≥ window, C, H, W).

        Step s reads the last ``window`` frames of X_0 .. X_{m−1}, F_m .. F_{m+s−1}, where the
        fed-back frame F_t is the output X̂_t or, under scheduled sampling (one Bernoulli draw
        per sample and step), the true X_t = ``teacher[:, t − m]``.
        """
        check_input(self, x, n_out, teacher)
        w = self.config.window
        self.check_frames(self.config, x.shape[1])
        b = x.shape[0]
        mask = teacher_draws(x, n_out, teacher, teacher_prob, generator)
        frames = list(x[:, -w:].unbind(1))  # w × (B, C, H, W)
        outputs: list[Tensor] = []
        for s in range(n_out):
            if s > 0:
                fed = outputs[-1].to(x.dtype)
                if mask is not None and teacher is not None:
                    use_true = mask[:, s - 1].view(b, 1, 1, 1)  # (B, 1, 1, 1): over C, H, W
                    fed = torch.where(use_true, teacher[:, s - 1], fed)
                frames = [*frames[1:], fed]
            outputs.append(self.step(torch.cat(frames, 1)))  # (B, w·C, H, W) → (B, C, H, W)
        return torch.stack(outputs, 1)  # (B, n, C, H, W)
