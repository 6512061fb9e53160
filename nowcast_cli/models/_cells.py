"""Pieces shared by two or more models: ST-LSTM / MIM cells and flow warping."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nowcast_cli.models._conv import SameConv2d


def _axis(n: int) -> Tensor:
    """Normalised coordinates of n pixel centres, float64."""
    if n == 1:
        return torch.full((1,), -1.0, dtype=torch.float64)
    return torch.linspace(-1.0, 1.0, n, dtype=torch.float64)


def make_grid(height: int, width: int) -> tuple[Tensor, Tensor]:
    """Identity sampling grid (H, W, 2) in [-1, 1] and the pixel→grid scale (2,).

    With ``align_corners=True`` the normalised coordinate of pixel j is −1 + 2j/(W − 1), so a
    zero flow is exactly the identity. (The authors normalise by W − 1 but sample with
    ``align_corners=False``, a half-pixel shift; we fix that knowingly.) Computed in float64,
    and cast to the data's dtype where used, so a float64 model warps to float64 precision.
    """
    ys, xs = _axis(height), _axis(width)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (H, W, 2): (x, y)
    scale = torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], dtype=torch.float64)
    return grid, scale


def warp(image: Tensor, flows: Tensor, grid: Tensor, scale: Tensor) -> Tensor:
    """Sample `image` at each pixel + each flow, all flows in one `grid_sample` call.

    Parameters
    ----------
    image : Tensor
        (B, C, H, W).
    flows : Tensor
        (B, L, 2, H, W) displacements in pixels, (x, y) order.
    grid, scale : Tensor
        From `make_grid` for this H, W.

    Returns
    -------
    Tensor
        (B, C, L, H, W): the L warped copies of `image`.
    """
    b, n_flows, _, h, w = flows.shape
    g = flows.permute(0, 1, 3, 4, 2) * scale + grid  # (B, L, H, W, 2)
    # stack the L grids along the output height: one bilinear pass produces all L warps
    g = g.reshape(b, n_flows * h, w, 2)  # (B, L·H, W, 2)
    out = F.grid_sample(image, g, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.view(b, image.shape[1], n_flows, h, w)  # (B, C, L, H, W)


class SpatioTemporalLSTMCell(nn.Module):
    """ST-LSTM (PredRNN): a ConvLSTM cell plus a spatiotemporal memory M.

    Each gate group is one convolution over the concatenated input and state, e.g.
    ``[i, g, o, f] = W * [x, h]``; the authors sum two convolutions (W_x * x + W_h * h), which
    has one more bias vector and the same function.
    """

    n_gates = 4  # i, g, o, f from [x, h]

    def __init__(self, hidden: int, kernel: int) -> None:
        super().__init__()
        self.hidden = hid = hidden
        self.conv_xh = SameConv2d(2 * hid, self.n_gates * hid, kernel)  # i, g, o (, f)
        self.conv_xm = SameConv2d(2 * hid, 3 * hid, kernel)  # i', f', g'
        self.conv_o = SameConv2d(2 * hid, hid, kernel)  # W_co*c' + W_mo*m'
        self.conv_last = nn.Conv2d(2 * hid, hid, 1)  # 1×1 over [c', m']

    def memory(self, x: Tensor, m: Tensor) -> Tensor:
        """Spatiotemporal memory update M' = f'⊙M + i'⊙g'."""
        hid = self.hidden
        if_m, g_m = self.conv_xm([x, m]).split([2 * hid, hid], 1)
        i_m, f_m = torch.sigmoid(if_m).chunk(2, 1)
        return torch.addcmul(f_m * m, i_m, torch.tanh(g_m))

    def output(self, o_x: Tensor, c: Tensor, m: Tensor) -> tuple[Tensor, Tensor]:
        """Hidden state h' = o⊙tanh(1×1[c', m']) and the output gate o."""
        cm = torch.cat([c, m], 1)  # (B, 2·hid, H, W)
        o = torch.sigmoid(o_x + self.conv_o(cm))
        return o * torch.tanh(self.conv_last(cm)), o

    def forward(
        self, x: Tensor, h: Tensor, c: Tensor, m: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One step; returns (h', c', m', o) with o the output gate."""
        # split, not slicing: its backward is one cat instead of zeros + copy per slice
        i, g, o_x, f = self.conv_xh([x, h]).chunk(4, 1)  # 4 × (B, hid, H, W)
        c_new = torch.addcmul(torch.sigmoid(f) * c, torch.sigmoid(i), torch.tanh(g))
        m_new = self.memory(x, m)
        h_new, o = self.output(o_x, c_new, m_new)
        return h_new, c_new, m_new, o


class MIMBlock(SpatioTemporalLSTMCell):
    """MIM block: an ST-LSTM whose forget path is replaced by the MIM-N and MIM-S memories.

    MIM-N models the non-stationary part from the difference δ = x_t − x_{t−1} of the layer's
    input (the hidden state of the layer below, now and one step earlier); MIM-S turns its
    output D and the previous cell state into T, and c' = T + i⊙g (Wang et al. 2019). The
    first layer of a MIM stack is a plain ST-LSTM, as in the original MIM and the authors'
    code. There is no forget gate f on the main path: the authors' code computes it and never
    uses it, so it is not built.
    """

    n_gates = 3  # i, g, o from [x, h]

    def __init__(self, hidden: int, kernel: int) -> None:
        super().__init__(hidden, kernel)
        hid = hidden
        self.conv_n = SameConv2d(2 * hid, 3 * hid, kernel)  # MIM-N i, f, g on [δ, n]
        self.conv_no = SameConv2d(2 * hid, hid, kernel)  # MIM-N output gate on [δ, n']
        self.conv_s = SameConv2d(2 * hid, 4 * hid, kernel)  # MIM-S i, f, g, o on [D, c]
        self.conv_so = SameConv2d(hid, hid, kernel)  # MIM-S output gate on s'

    def forward(  # type: ignore[override]
        self,
        x: Tensor,
        x_prev: Tensor,
        h: Tensor,
        c: Tensor,
        n: Tensor,
        s: Tensor,
        m: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """One step; returns (h', c', n', s', m', o) with o the output gate."""
        hid = self.hidden
        delta = x - x_prev
        if_n, g_n = self.conv_n([delta, n]).split([2 * hid, hid], 1)
        i_n, f_n = torch.sigmoid(if_n).chunk(2, 1)
        n_new = torch.addcmul(f_n * n, i_n, torch.tanh(g_n))
        o_n = torch.sigmoid(self.conv_no([delta, n_new]))
        d = o_n * torch.tanh(n_new)  # MIM-N output D

        if_s, g_s, o_s = self.conv_s([d, c]).split([2 * hid, hid, hid], 1)
        i_s, f_s = torch.sigmoid(if_s).chunk(2, 1)
        s_new = torch.addcmul(f_s * s, i_s, torch.tanh(g_s))
        t = torch.sigmoid(o_s + self.conv_so(s_new)) * torch.tanh(s_new)  # MIM-S output T

        i, g, o_x = self.conv_xh([x, h]).chunk(3, 1)  # 3 × (B, hid, H, W)
        c_new = torch.addcmul(t, torch.sigmoid(i), torch.tanh(g))
        m_new = self.memory(x, m)
        h_new, o = self.output(o_x, c_new, m_new)
        return h_new, c_new, n_new, s_new, m_new, o
