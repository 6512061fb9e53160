"""AdamHD against a two-step example computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from nowcast_cli.optim import AdamHD


def test_two_steps_by_hand() -> None:
    # one parameter vector, gradients given; a large hypergradient rate so that α moves
    lr, beta, b1, b2, eps = 0.1, 0.01, 0.9, 0.999, 1e-8
    theta0 = [1.0, -2.0]
    g1, g2 = [0.5, -1.0], [0.25, 2.0]

    # step 1 (no hypergradient yet): m = 0.1 g, v = 0.001 g², α·√(1−β2)/(1−β1)
    m1 = [(1 - b1) * g for g in g1]
    v1 = [(1 - b2) * g * g for g in g1]
    s1 = lr * math.sqrt(1 - b2) / (1 - b1)
    theta1 = [t - s1 * m / (math.sqrt(v) + eps) for t, m, v in zip(theta0, m1, v1, strict=True)]
    # step 2: h = <g2, m1/(√v1+ε)> √(1−β2)/(1−β1); α2 = α + β h
    h = sum(g * m / (math.sqrt(v) + eps) for g, m, v in zip(g2, m1, v1, strict=True))
    h *= math.sqrt(1 - b2) / (1 - b1)
    lr2 = lr + beta * h
    m2 = [b1 * m + (1 - b1) * g for m, g in zip(m1, g2, strict=True)]
    v2 = [b2 * v + (1 - b2) * g * g for v, g in zip(v1, g2, strict=True)]
    s2 = lr2 * math.sqrt(1 - b2**2) / (1 - b1**2)
    theta2 = [t - s2 * m / (math.sqrt(v) + eps) for t, m, v in zip(theta1, m2, v2, strict=True)]
    # the numbers, worked out: m1/(√v1+ε) = (√0.001)⁻¹·0.1·sign(g1) = ±3.1623, h = (0.25·3.1623
    # − 2·3.1623)·0.31623 = −1.75, α2 = 0.1 − 0.0175
    assert h == pytest.approx(-1.75, rel=1e-6)
    assert lr2 == pytest.approx(0.0825, rel=1e-6)

    p = torch.nn.Parameter(torch.tensor(theta0, dtype=torch.float64))
    opt = AdamHD([p], lr=lr, betas=(b1, b2), eps=eps, hypergrad_lr=beta)
    for g, want in ((g1, theta1), (g2, theta2)):
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        assert p.detach().tolist() == pytest.approx(want, rel=1e-12, abs=1e-12)
    assert opt.param_groups[0]["lr"] == pytest.approx(lr2, rel=1e-12)


def test_hypergradient_sums_over_all_tensors_and_state_round_trips() -> None:
    a = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.ones(2))
    opt = AdamHD([a, b], lr=0.01, hypergrad_lr=1e-3)
    for _ in range(2):
        a.grad, b.grad = torch.full((3,), 0.5), torch.full((2,), 0.5)
        opt.step()
    # every element steps in the same direction twice: α grows by β·Σ over all 5 elements
    direction = 0.1 * 0.5 / (math.sqrt(0.001 * 0.25) + 1e-8)
    expected = 0.01 + 1e-3 * 5 * 0.5 * direction * math.sqrt(0.001) / 0.1
    assert opt.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-5)
    clone = AdamHD([a, b], lr=0.5)
    clone.load_state_dict(opt.state_dict())
    assert clone.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_zero_hypergradient_rate_is_adam_with_the_reference_epsilon() -> None:
    torch.manual_seed(0)
    w0 = torch.randn(10, dtype=torch.float64)
    p1, p2 = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.clone())
    ours = AdamHD([p1], lr=1e-2, hypergrad_lr=0.0, eps=1e-12)
    ref = torch.optim.Adam([p2], lr=1e-2, eps=1e-12)
    for _ in range(5):
        g = torch.randn(10, dtype=torch.float64)
        p1.grad, p2.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    # with ε negligible the two ε placements agree
    assert torch.allclose(p1, p2, rtol=1e-9, atol=1e-12)
