"""'Same' 3×3 convolutions of the recurrent cells, and the choice of how to compute them.

The backend is an explicit setting, ``auto`` or ``direct``:

- ``auto``: on CPU, float32/float64 3×3 convolutions run as Winograd F(4×4, 3×3)
  (`nowcast_cli.models._winograd`, ~2× faster training); everything else goes to torch.
- ``direct``: always `torch.nn.functional.conv2d`.

A model carries its backend (``model.conv_backend``); its rollout applies it through
`conv_backend`, a context variable, so threads (and asyncio tasks) never see each other's
setting. A run records the backend in its config and checkpoint.

Winograd is used only where it computes exactly what torch would: under autocast, for
other dtypes, for inputs of mixed dtypes or devices, and on CUDA the call falls back to torch
(which autocasts, promotes and dispatches as usual).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nowcast_cli.errors import ConfigError
from nowcast_cli.models._winograd import winograd_conv3x3

__all__ = [
    "BACKENDS",
    "SameConv2d",
    "check_backend",
    "conv_backend",
    "conv_same",
    "current_backend",
    "use_winograd",
]

BACKENDS = ("auto", "direct")
_BACKEND: contextvars.ContextVar[str] = contextvars.ContextVar("nowcast_conv", default="auto")
_WINOGRAD_DTYPES = (torch.float32, torch.float64)


def check_backend(name: str) -> str:
    """Return `name` if it is a convolution backend, else raise ConfigError listing them."""
    if name not in BACKENDS:
        raise ConfigError(f"convolution backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    return name


@contextlib.contextmanager
def conv_backend(name: str) -> Iterator[None]:
    """Within the block (in this thread or task only), 3×3 convolutions use backend `name`."""
    token = _BACKEND.set(check_backend(name))
    try:
        yield
    finally:
        _BACKEND.reset(token)


def current_backend() -> str:
    """The backend in effect here (``auto`` unless inside `conv_backend`)."""
    return _BACKEND.get()


def use_winograd(xs: Sequence[Tensor], weight: Tensor, bias: Tensor | None = None) -> bool:
    """Whether `conv_same` computes these operands by Winograd."""
    if torch.compiler.is_compiling():  # torch.compile (CUDA) traces torch's convolution
        return False
    operands = [*xs, weight] if bias is None else [*xs, weight, bias]
    dtype = weight.dtype
    return (
        _BACKEND.get() == "auto"
        and weight.dim() == 4
        and weight.shape[-2:] == (3, 3)
        and dtype in _WINOGRAD_DTYPES
        and all(t.device.type == "cpu" and t.dtype == dtype for t in operands)
        and all(x.dim() == 4 for x in xs)
        # under autocast torch would compute in lower precision: let it
        and not torch.is_autocast_enabled("cpu")
    )


def conv_same(x: Tensor | Sequence[Tensor], weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Stride-1 convolution with 'same' zero padding (odd kernel), Winograd where it pays.

    `x` may be a sequence of tensors, convolved as their concatenation along the channels
    (the Winograd path reads them in place instead of concatenating).
    """
    xs = [x] if isinstance(x, Tensor) else list(x)
    if use_winograd(xs, weight, bias):
        return winograd_conv3x3(xs, weight, bias)
    x = xs[0] if len(xs) == 1 else torch.cat(xs, 1)  # cat promotes mixed dtypes
    return F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2)


class SameConv2d(nn.Conv2d):
    """`nn.Conv2d` with stride 1 and 'same' padding whose forward is `conv_same`.

    Same parameters and state-dict keys as ``nn.Conv2d(cin, cout, k, padding=k // 2)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int) -> None:
        if kernel % 2 != 1:
            raise ValueError(f"'same' convolution needs an odd kernel, got {kernel}")
        super().__init__(in_channels, out_channels, kernel, padding=kernel // 2)

    def forward(self, x: Tensor | Sequence[Tensor]) -> Tensor:
        """Convolve `x`, or the channel-wise concatenation of the tensors in it."""
        return conv_same(x, self.weight, self.bias)
