"""AdamHD: Adam with hypergradient descent on the learning rate (Baydin et al., ICLR 2018).

The paper trains with AdamHD at hypergradient rate β = 1e-8 (the authors used
``hypergrad.AdamHD`` from gbaydin/hypergradient-descent; the PyPI package "hypergrad" is an
unrelated project, hence this in-house version). Per step t, with gradient g_t and Adam's
moments m, v (not bias-corrected) of the previous step:

    h_t   = ⟨g_t, m_{t−1} / (√v_{t−1} + ε)⟩ · √(1 − β₂^{t−1}) / (1 − β₁^{t−1})   (t ≥ 2)
    α_t   = α_{t−1} + β · h_t
    m_t   = β₁ m_{t−1} + (1 − β₁) g_t,     v_t = β₂ v_{t−1} + (1 − β₂) g_t²
    θ_t   = θ_{t−1} − α_t · √(1 − β₂^t) / (1 − β₁^t) · m_t / (√v_t + ε)

h_t is −∂f(θ_{t−1})/∂α: the derivative of the loss with respect to the learning rate of the
previous update, so α grows while successive steps agree and shrinks when they disagree.

One deliberate difference from the reference code: there, α is updated inside the loop over
parameter tensors, once per tensor, so each tensor steps with a learning rate that already
includes the hypergradients of the tensors before it (an order-dependent artefact). Here the
inner product runs over all parameters of the group first, and every tensor steps with the
same α_t, as in the paper's algorithm. The learning rate after the step is the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

__all__ = ["AdamHD"]


class AdamHD(torch.optim.Optimizer):
    """Adam whose learning rate follows its hypergradient (see the module docstring).

    Parameters
    ----------
    params : iterable
        Parameters or parameter groups.
    lr : float
        Initial learning rate α₀.
    betas : (float, float)
        Adam's moment decay rates β₁, β₂.
    eps : float
        Adam's ε (added to √v, as in the reference code).
    hypergrad_lr : float
        Hypergradient rate β (0 = Adam with a fixed learning rate).

    Notes
    -----
    The current learning rate is ``param_groups[i]["lr"]``; it is part of the state dict, so
    a resumed run continues with the adapted rate.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        hypergrad_lr: float = 1e-8,
    ) -> None:
        if not lr > 0 or not eps > 0 or hypergrad_lr < 0:
            raise ValueError(
                f"need lr > 0, eps > 0, hypergrad_lr ≥ 0; got {lr}, {eps}, {hypergrad_lr}"
            )
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        defaults = {"lr": lr, "betas": betas, "eps": eps, "hypergrad_lr": hypergrad_lr}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update; returns the closure's loss if a closure is given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            eps = group["eps"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            # all tensors of a group share one step count
            t = self.state[params[0]].get("step", 0) + 1
            if t > 1:
                h = torch.zeros((), dtype=torch.float64, device=params[0].device)
                for p in params:
                    st = self.state[p]
                    direction = st["exp_avg"] / (st["exp_avg_sq"].sqrt() + eps)
                    h += torch.dot(p.grad.reshape(-1), direction.reshape(-1)).double()
                h *= math.sqrt(1 - beta2 ** (t - 1)) / (1 - beta1 ** (t - 1))
                group["lr"] = group["lr"] + group["hypergrad_lr"] * float(h)
            step_size = group["lr"] * math.sqrt(1 - beta2**t) / (1 - beta1**t)
            for p in params:
                st = self.state[p]
                if not st:
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["step"] = t
                m, v = st["exp_avg"], st["exp_avg_sq"]
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                p.addcdiv_(m, v.sqrt().add_(eps), value=-step_size)
        return loss
