"""SimVP (Gao, Tan, Wu, Li, CVPR 2022): CNN encoder, Inception translator, decoder, no recurrence.

Written from the authors' code of the CVPR paper (``gaozhangyang/SimVP-Simpler-yet-Better-
Video-Prediction``: ``model.py``, ``modules.py``; the model its ``exp.py`` builds from
``main.py``'s defaults):

- encoder: N_S = 4 ConvSC layers (3×3 convolution, GroupNorm(2), LeakyReLU 0.2) with strides
  1, 2, 1, 2, applied to every frame on its own (1 → hid_S = 64 channels, H/4 × W/4);
- translator (``Mid_Xnet``): the T = 10 frames' features stacked as T·hid_S channels, then a
  U-shaped stack of 2·N_T = 16 Inception blocks (1×1 convolution to hid_T/2, then the sum of
  four grouped convolutions, kernels 3, 5, 7, 11, 8 groups, each with GroupNorm(8) and
  LeakyReLU 0.2), hid_T = 256; each decoder block but the first reads [z, encoder skip];
- decoder: N_S ConvSC layers, transposed with stride 2 where the encoder strode, the last
  reading [features, first encoder layer's output]; a 1×1 readout to the frame's channels.

All T output frames come at once. ``main.py``'s help offers ``--groups 4``, but ``exp.py``
never passes it to the model, which keeps its default of 8 groups: the model the authors
train has 15,778,433 parameters (30,401,153 with 4 groups). That count is derived layer by
layer in ``tests/models/test_param_counts.py`` and equals what the authors' own classes
build (run from their source, recorded there). Their ``Inception`` falls back to 1 group when
the channels do not divide, as here.

The maintained form in OpenSTL (``chengtan9907/OpenSTL``, ``SimVP_Model`` with
``model_type='incepu'``) changes the decoder (pixel-shuffle upsampling instead of transposed
convolutions, SiLU, the skip added instead of concatenated); this module follows the CVPR
code. From OpenSTL it takes how to forecast n ≠ T frames: n < T keeps the first n outputs,
n > T applies the model again to its own T outputs until n frames are made. No output is fed
back for n ≤ T, so there is nothing for teacher forcing (scheduled sampling) to choose:
`forward` accepts the teacher arguments of the common contract and ignores them.

Sizes for a CPU: ``hidden`` (hid_S), ``translator_ratio`` (hid_T = ratio × hid_S; the
authors' 256 = 4 × 64), ``layers`` (N_T), ``spatial_layers`` (N_S), ``kernel`` (the ConvSC
kernel). ``in_frames`` (T) must equal the observed frames m, as in the authors' code (the
translator's input is T·hid_S channels); ``nowcast train`` sets it from the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nowcast_cli.errors import ConfigError
from nowcast_cli.models._registry import MODELS
from nowcast_cli.models._rollout import NowcastModel, check_config, check_input

#: kernels of the Inception branches (the authors' incep_ker)
INCEPTION_KERNELS = (3, 5, 7, 11)
#: groups of ConvSC's GroupNorm (the authors' nn.GroupNorm(2, C))
SPATIAL_GROUPS = 2
#: negative slope of every LeakyReLU (the authors' 0.2)
SLOPE = 0.2


@dataclass(frozen=True)
class SimVPConfig:
    """Size of a SimVP; the defaults are the model the authors' training script builds."""

    channels: int = 1  # channels per frame (the authors' Moving MNIST: 1)
    size: int = 120  # frame height = width at training resolution (the authors': 64)
    in_frames: int = 10  # T: observed frames, and frames made per application (the authors' 10)
    hidden: int = 64  # hid_S, channels of the spatial encoder/decoder (main.py: 64)
    translator_ratio: int = 4  # hid_T = ratio × hid_S (main.py: 256 = 4 × 64)
    layers: int = 8  # N_T, Inception blocks in each half of the translator (main.py: 8)
    spatial_layers: int = 4  # N_S, encoder and decoder layers, strides 1, 2, 1, 2 (main.py: 4)
    groups: int = 8  # groups of the Inception convolutions (the model's default, see above)
    kernel: int = 3  # spatial kernel of the encoder and decoder (the authors' 3)

    def __post_init__(self) -> None:
        check_config(self)
        if self.kernel % 2 == 0:
            raise ConfigError(f"kernel must be odd, got {self.kernel}")
        if self.layers < 2:
            raise ConfigError(f"simvp needs layers (N_T) ≥ 2, got {self.layers}")
        if self.hidden % SPATIAL_GROUPS:
            raise ConfigError(f"simvp's hidden must be even (GroupNorm(2)), got {self.hidden}")
        down = 2 ** (self.spatial_layers // 2)
        if self.size % down:
            raise ConfigError(
                f"simvp with {self.spatial_layers} spatial layers downsamples by {down}: "
                f"size must be a multiple of {down}, got {self.size}"
            )
        hid_t = self.hidden * self.translator_ratio
        for c_out in (hid_t, self.in_frames * self.hidden):
            if c_out % _groups(hid_t // 2, self.groups):
                raise ConfigError(
                    f"simvp's translator: {c_out} output channels do not split into "
                    f"{self.groups} groups; change groups, hidden or translator_ratio"
                )


def _groups(c_in: int, groups: int) -> int:
    """The authors' fallback: one group when the input channels do not divide."""
    return groups if c_in % groups == 0 else 1


class ConvSC(nn.Module):
    """Convolution (transposed when it upsamples), GroupNorm(2), LeakyReLU: the authors' ConvSC."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, transpose: bool) -> None:
        super().__init__()
        pad = kernel // 2
        self.conv: nn.Module
        if transpose and stride > 1:
            self.conv = nn.ConvTranspose2d(
                c_in, c_out, kernel, stride=stride, padding=pad, output_padding=stride // 2
            )
        else:
            self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=pad)
        self.norm = nn.GroupNorm(SPATIAL_GROUPS, c_out)

    def forward(self, x: Tensor) -> Tensor:
        """(B, c_in, H, W) → (B, c_out, H·s^±1, W·s^±1)."""
        return F.leaky_relu(self.norm(self.conv(x)), SLOPE)


class GroupConv(nn.Module):
    """Grouped convolution, GroupNorm(groups), LeakyReLU: one Inception branch."""

    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int) -> None:
        super().__init__()
        g = _groups(c_in, groups)
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=g)
        self.norm = nn.GroupNorm(g, c_out)

    def forward(self, x: Tensor) -> Tensor:
        """(B, c_in, H, W) → (B, c_out, H, W)."""
        return F.leaky_relu(self.norm(self.conv(x)), SLOPE)


class Inception(nn.Module):
    """1×1 convolution to c_hid, then the sum of the grouped branches (the authors' Inception)."""

    def __init__(self, c_in: int, c_hid: int, c_out: int, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_hid, 1)
        self.branches = nn.ModuleList(GroupConv(c_hid, c_out, k, groups) for k in INCEPTION_KERNELS)

    def forward(self, x: Tensor) -> Tensor:
        """(B, c_in, H, W) → (B, c_out, H, W)."""
        x = self.conv1(x)
        return torch.stack([branch(x) for branch in self.branches]).sum(0)


class Translator(nn.Module):
    """The authors' Mid_Xnet: N_T Inception blocks down, N_T up with skips, over T·C channels."""

    def __init__(self, c_in: int, c_hid: int, n_t: int, groups: int) -> None:
        super().__init__()
        half = c_hid // 2

        def block(a: int, b: int) -> Inception:
            return Inception(a, half, b, groups)

        self.enc = nn.ModuleList([block(c_in, c_hid)])
        self.enc.extend(block(c_hid, c_hid) for _ in range(n_t - 1))
        self.dec = nn.ModuleList([block(c_hid, c_hid)])
        self.dec.extend(block(2 * c_hid, c_hid) for _ in range(n_t - 2))
        self.dec.append(block(2 * c_hid, c_in))

    def forward(self, z: Tensor) -> Tensor:
        """(B, T·C, h, w) → (B, T·C, h, w)."""
        skips = []
        for i, block in enumerate(self.enc):
            z = block(z)
            if i < len(self.enc) - 1:
                skips.append(z)
        z = self.dec[0](z)
        for block, skip in zip(self.dec[1:], reversed(skips), strict=True):
            z = block(torch.cat([z, skip], 1))
        return z


@MODELS.register("simvp")
class SimVP(NowcastModel):
    """SimVP: CNN encoder, Inception translator, decoder; all frames at once (Gao et al. 2022)."""

    config_class = SimVPConfig
    paper_params = 15_778_433  # the authors' exp.py: SimVP((10, 1, 64, 64), 64, 256, 4, 8)
    reconstructs = False

    def __init__(self, config: SimVPConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or SimVPConfig()
        hid, k = cfg.hidden, cfg.kernel
        strides = [1 + i % 2 for i in range(cfg.spatial_layers)]  # 1, 2, 1, 2, …
        self.enc = nn.ModuleList(
            ConvSC(cfg.channels if i == 0 else hid, hid, k, s, transpose=False)
            for i, s in enumerate(strides)
        )
        hid_t = hid * cfg.translator_ratio
        self.hid = Translator(cfg.in_frames * hid, hid_t, cfg.layers, cfg.groups)
        up = strides[::-1]
        self.dec = nn.ModuleList(ConvSC(hid, hid, k, s, transpose=True) for s in up[:-1])
        self.dec.append(ConvSC(2 * hid, hid, k, up[-1], transpose=True))
        self.readout = nn.Conv2d(hid, cfg.channels, 1)

    @classmethod
    def check_frames(cls, config: SimVPConfig, in_frames: int) -> None:
        """Raise ConfigError unless `in_frames` is the T the model was built for."""
        if in_frames != config.in_frames:
            raise ConfigError(
                f"this simvp was built for {config.in_frames} observed frames, got {in_frames}"
            )

    def translate(self, x: Tensor) -> Tensor:
        """The authors' forward: T frames (B, T, C, H, W) → the next T frames, same shape."""
        b, t, c, h, w = x.shape
        z = x.reshape(b * t, c, h, w)
        z = skip = self.enc[0](z)
        for layer in self.enc[1:]:
            z = layer(z)
        _, c_, h_, w_ = z.shape  # (B·T, hid_S, H/4, W/4) with N_S = 4
        z = self.hid(z.reshape(b, t * c_, h_, w_)).reshape(b * t, c_, h_, w_)
        for layer in self.dec[:-1]:
            z = layer(z)
        y: Tensor = self.readout(self.dec[-1](torch.cat([z, skip], 1)))
        return y.reshape(b, t, c, h, w)

    def forward(
        self,
        x: Tensor,
        n_out: int,
        *,
        teacher: Tensor | None = None,
        teacher_prob: float | Tensor = 0.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Forecast X̂_m .. X̂_{m+n−1} (B, n, C, H, W) from x (B, m = in_frames, C, H, W).

        The teacher arguments are accepted for the common contract and ignored (see the
        module docstring).
        """
        check_input(self, x, n_out, teacher)
        t = self.config.in_frames
        self.check_frames(self.config, x.shape[1])
        outputs = [self.translate(x)]
        while len(outputs) * t < n_out:  # OpenSTL: apply again to its own outputs
            outputs.append(self.translate(outputs[-1]))
        return torch.cat(outputs, 1)[:, :n_out]  # (B, n, C, H, W)
