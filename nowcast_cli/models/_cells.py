"""Pieces shared by two or more models: ST-LSTM / MIM cells and flow warping."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nowcast_cli.models._winograd import SameConv2d, conv_same


def make_grid(height: int, width: int) -> tuple[Tensor, Tensor]:
    """Identity sampling grid (H, W, 2) in [-1, 1] and the pixel→grid scale (2,).

    With ``align_corners=True`` the normalised coordinate of pixel j is −1 + 2j/(W − 1), so a
    zero flow is exactly the identity. (The authors normalise by W − 1 but sample with
    ``align_corners=False``, a half-pixel shift; we fix that knowingly.)
    """
    ys = torch.linspace(-1.0, 1.0, height) if height > 1 else torch.full((1,), -1.0)
    xs = torch.linspace(-1.0, 1.0, width) if width > 1 else torch.full((1,), -1.0)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (H, W, 2): (x, y)
    scale = torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)])
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
    ``[i, f, g, o] = W * [x, h]``; the authors sum two convolutions (W_x * x + W_h * h), which
    has one more bias vector and the same function.
    """

    def __init__(self, hidden: int, kernel: int) -> None:
        super().__init__()
        self.hidden = hidden
        hid = hidden
        self.conv_xh = SameConv2d(2 * hid, 4 * hid, kernel)  # i, g, o, f
        self.conv_xm = SameConv2d(2 * hid, 3 * hid, kernel)  # i', f', g'
        self.conv_o = SameConv2d(2 * hid, hid, kernel)  # W_co*c' + W_mo*m'
        self.conv_last = nn.Conv2d(2 * hid, hid, 1)  # 1×1 over [c', m']

    def main_gates(self, x: Tensor, h: Tensor, n_gates: int = 4) -> Tensor:
        """The first `n_gates` gate groups [i, g, o, f] of W * [x, h], pre-activation."""
        rows = n_gates * self.hidden
        bias = self.conv_xh.bias
        assert bias is not None  # built with bias=True
        # slicing the weight's leading rows is a view: no copy, and unused gates are not computed
        return conv_same([x, h], self.conv_xh.weight[:rows], bias[:rows])  # W * [x, h]

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

    def forward(self, x: Tensor, h: Tensor, c: Tensor, m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One step; returns (h', c', m')."""
        # split, not slicing: its backward is one cat instead of zeros + copy per slice
        i, g, o_x, f = self.main_gates(x, h).chunk(4, 1)  # 4 × (B, hid, H, W)
        c_new = torch.addcmul(torch.sigmoid(f) * c, torch.sigmoid(i), torch.tanh(g))
        m_new = self.memory(x, m)
        h_new, _ = self.output(o_x, c_new, m_new)
        return h_new, c_new, m_new


class MIMCell(SpatioTemporalLSTMCell):
    """MIM block: ST-LSTM whose forget path is replaced by the MIM-N and MIM-S memories.

    MIM-N models the non-stationary part from the input difference δ = x_t − x_{t−1}; MIM-S
    turns its output D and the previous cell state into T, and c' = T + i⊙g (Wang et al. 2019).
    Every layer is a MIM block, the first one differencing the embedded frames. (The authors'
    first layer computes MIM-N/MIM-S but uses c' = f⊙c + i⊙g, leaving those weights without
    gradient; their parameter count, which the paper reports, includes them.)

    The forget-gate rows of ``conv_xh`` exist only so that the parameter count matches the
    paper's Table II: the authors' MIM computes f and never uses it. Here they are not
    computed either, and receive a zero gradient.
    """

    def __init__(self, hidden: int, kernel: int) -> None:
        super().__init__(hidden, kernel)
        hid = hidden
        self.conv_n = SameConv2d(2 * hid, 3 * hid, kernel)  # MIM-N i, f, g on [δ, n]
        self.conv_no = SameConv2d(2 * hid, hid, kernel)  # MIM-N output gate on [δ, n']
        self.conv_s = SameConv2d(2 * hid, 4 * hid, kernel)  # MIM-S i, f, g, o on [D, c]
        self.conv_so = SameConv2d(hid, hid, kernel)  # MIM-S output gate on s'

    def forward_mim(
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
        d = o_n * torch.tanh(n_new)

        if_s, g_s, o_s = self.conv_s([d, c]).split([2 * hid, hid, hid], 1)
        i_s, f_s = torch.sigmoid(if_s).chunk(2, 1)
        s_new = torch.addcmul(f_s * s, i_s, torch.tanh(g_s))
        t = torch.sigmoid(o_s + self.conv_so(s_new)) * torch.tanh(s_new)

        i, g, o_x = self.main_gates(x, h, n_gates=3).chunk(3, 1)  # 3 × (B, hid, H, W)
        c_new = torch.addcmul(t, torch.sigmoid(i), torch.tanh(g))
        m_new = self.memory(x, m)
        h_new, o = self.output(o_x, c_new, m_new)
        return h_new, c_new, n_new, s_new, m_new, o
