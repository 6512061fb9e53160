"""Loss registry contract, hand-computed values and the focal frame weights (SPEC §6)."""

from __future__ import annotations

import math

import pytest
import torch

from nowcast_cli.encoding import threshold_to_pixel
from nowcast_cli.errors import ConfigError, UnknownNameError
from nowcast_cli.losses import LOSSES, balance_weights, build_loss, log_cosh

NAMES = LOSSES.names()
FOCAL = [n for n in NAMES if n.startswith("ff-")]
HKO7, DWD = (58.53, 1.56), (256.0, 1.42)


def pair(seed: int = 0, shape: tuple[int, ...] = (2, 5, 1, 6, 6)) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=torch.float64), torch.rand(
        shape, generator=g, dtype=torch.float64
    )


def test_registry_names() -> None:
    assert NAMES == [
        "ff-logcosh", "ff-mae", "ff-mse", "ff-mse+mae", "logcosh", "mae", "mse", "mse+mae",
    ]  # fmt: skip
    assert all(LOSSES.describe().values())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("balanced", [True, False])
def test_zero_on_perfect_prediction(name: str, balanced: bool) -> None:
    _, target = pair()
    assert build_loss(name, zr=HKO7, balanced=balanced)(target.clone(), target).item() == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_scalar_nonnegative_finite_gradient(name: str) -> None:
    pred, target = pair()
    pred.requires_grad_(True)
    loss = build_loss(name, zr=HKO7)(pred, target)
    assert loss.ndim == 0
    assert loss.item() > 0
    loss.backward()
    assert pred.grad is not None
    assert torch.isfinite(pred.grad).all()
    assert pred.grad.abs().sum() > 0


# Two frames of 1×2 pixels, truth all 0 (no rain: weight 1), scale 1:
#   frame 1: pred (0.1, 0.1): ΔX = 0.2, SE = 0.02;  frame 2: pred (0.3, 0.1): ΔX = 0.4, SE = 0.10
#   W = ((ΔX − 0.2)/(0.4 − 0.2) + 0.01)² = (0.0001, 1.0201)
#   log-cosh: LC = 2·ln cosh 0.1 and ln cosh 0.3 + ln cosh 0.1 (math.cosh, the definition)
LC1 = 2 * math.log(math.cosh(0.1))
LC2 = math.log(math.cosh(0.3)) + math.log(math.cosh(0.1))
HAND = {
    "mse": (0.02 + 0.10) / 2,
    "mae": (0.2 + 0.4) / 2,
    "mse+mae": (0.22 + 0.50) / 2,
    "logcosh": (LC1 + LC2) / 2,
    "ff-mse": (0.0001 * 0.02 + 1.0201 * 0.10) / 2,
    "ff-mae": (0.0001 * 0.2 + 1.0201 * 0.4) / 2,
    "ff-mse+mae": (0.0001 * 0.22 + 1.0201 * 0.50) / 2,
    "ff-logcosh": (0.0001 * LC1 + 1.0201 * LC2) / 2,
}


def two_frames() -> tuple[torch.Tensor, torch.Tensor]:
    pred = torch.tensor([[0.1, 0.1], [0.3, 0.1]], dtype=torch.float64).view(1, 2, 1, 1, 2)
    return pred, torch.zeros_like(pred)


@pytest.mark.parametrize("name", NAMES)
def test_hand_computed_two_frames(name: str) -> None:
    pred, target = two_frames()
    for balanced in (True, False):  # truth 0 mm/h: weight 1 either way
        got = build_loss(name, zr=HKO7, balanced=balanced, scale=1.0)(pred, target).item()
        assert got == pytest.approx(HAND[name], rel=1e-12)
    got = build_loss(name, zr=HKO7)(pred, target).item()
    assert got == pytest.approx(HAND[name] * 1e-3, rel=1e-12)


def test_log_cosh_is_the_definition_and_never_overflows() -> None:
    e = torch.tensor([-3.0, -0.5, 0.0, 1e-4, 0.7, 2.0], dtype=torch.float64)
    want = torch.tensor([math.log(math.cosh(v)) for v in e.tolist()], dtype=torch.float64)
    torch.testing.assert_close(log_cosh(e), want, rtol=1e-12, atol=1e-15)
    # cosh(100) overflows float32 (the naive log(cosh(e)) is inf); ln cosh 100 = 100 − ln 2
    big = log_cosh(torch.tensor([100.0, -100.0]))
    torch.testing.assert_close(big, torch.full((2,), 100.0 - math.log(2.0)))


def test_balanced_logcosh_weights_each_pixel() -> None:
    # the B- weights multiply ln cosh e per pixel: one pixel at 10 mm/h truth weighs 10
    g = threshold_to_pixel(10.0, *HKO7) / 255.0
    target = torch.tensor([g, 0.0], dtype=torch.float64).view(1, 1, 1, 1, 2)
    pred = target + torch.tensor([0.2, 0.3], dtype=torch.float64).view(1, 1, 1, 1, 2)
    got = build_loss("logcosh", zr=HKO7, scale=1.0)(pred, target).item()
    assert got == pytest.approx(10 * math.log(math.cosh(0.2)) + math.log(math.cosh(0.3)))


def test_hand_computed_balanced_and_batched() -> None:
    # sample 2: same errors as the hand case, but its first pixel's truth is exactly at 10 mm/h
    # (weight 10; |e| stays 0.1 and 0.3). The frame weights use unweighted |e|, so they are
    # the same as in the hand case, only SE changes: frame 1 0.1²·10 + 0.1² = 0.11,
    # frame 2 0.3²·10 + 0.1² = 0.91.
    pred1, target1 = two_frames()
    g = threshold_to_pixel(10.0, *HKO7) / 255.0
    target2 = target1.clone()
    target2[..., 0] = g
    pred2 = pred1.clone()
    pred2[..., 0] = g + pred1[..., 0]
    pred, target = torch.cat([pred1, pred2]), torch.cat([target1, target2])
    loss = build_loss("ff-mse", zr=HKO7, scale=1.0)(pred, target).item()
    sample2 = (0.0001 * 0.11 + 1.0201 * 0.91) / 2
    assert loss == pytest.approx((HAND["ff-mse"] + sample2) / 2, rel=1e-9)


@pytest.mark.parametrize("name", FOCAL)
@pytest.mark.parametrize("balanced", [True, False])
@pytest.mark.parametrize("masked", [True, False])
def test_k_zero_is_the_plain_loss_exactly(name: str, balanced: bool, masked: bool) -> None:
    pred, target = pair(3)
    valid = (
        (torch.rand(target.shape, generator=torch.Generator().manual_seed(4)) > 0.3)
        if masked
        else None
    )
    plain = build_loss(name.removeprefix("ff-"), zr=HKO7, balanced=balanced)(pred, target, valid)
    focal = build_loss(name, zr=HKO7, balanced=balanced, k=0.0)(pred, target, valid)
    assert torch.equal(focal, plain)


@pytest.mark.parametrize("name", FOCAL)
def test_equal_frame_errors_give_weight_one(name: str) -> None:
    # every frame has the same set of errors, permuted: ΔX_t equal for all t → W_t = 1
    _, target = pair(5, (1, 4, 1, 3, 3))
    base = torch.linspace(-0.2, 0.2, 9, dtype=torch.float64)
    err = torch.stack(
        [base[torch.randperm(9, generator=torch.Generator().manual_seed(t))] for t in range(4)]
    )
    pred = target + err.view(1, 4, 1, 3, 3)
    loss = build_loss(name, zr=HKO7, balanced=False)
    weights = loss.frame_weights((pred - target).abs())  # type: ignore[attr-defined]
    assert torch.equal(weights, torch.ones(1, 4, dtype=torch.float64))
    plain = build_loss(name.removeprefix("ff-"), zr=HKO7, balanced=False)(pred, target)
    torch.testing.assert_close(loss(pred, target), plain, rtol=1e-15, atol=0)


def test_weights_are_per_sample_over_frames() -> None:
    pred, target = pair(6)
    loss = build_loss("ff-mse+mae", zr=HKO7)
    both = loss(pred, target)
    single = (loss(pred[:1], target[:1]) + loss(pred[1:], target[1:])) / 2
    torch.testing.assert_close(both, single, rtol=1e-12, atol=0)
    w = loss.frame_weights((pred - target).abs())  # type: ignore[attr-defined]
    assert w.shape == (2, 5)
    for b in range(2):  # min frame gets ε^k, max frame (1 + ε)^k in every sample
        assert w[b].min().item() == pytest.approx(0.01**2)
        assert w[b].max().item() == pytest.approx(1.01**2)


def test_no_gradient_through_the_weights() -> None:
    """d(FF-MSE)/dX̂ = scale·W_t·2·w·e / (B·T), with W_t a constant."""
    pred, target = pair(7)
    pred.requires_grad_(True)
    loss = build_loss("ff-mse", zr=HKO7, scale=0.5)
    loss(pred, target).backward()
    err = (pred - target).detach()
    w_t = loss.frame_weights(err.abs())  # type: ignore[attr-defined]
    assert not w_t.requires_grad
    b, t = err.shape[:2]
    expected = 0.5 * w_t.view(b, t, 1, 1, 1) * 2 * balance_weights(target, HKO7) * err / (b * t)
    assert pred.grad is not None
    torch.testing.assert_close(pred.grad, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_mask_is_respected(name: str) -> None:
    pred, target = pair(8)
    valid = torch.ones_like(target, dtype=torch.bool)
    valid[:, :, :, :2] = False
    loss = build_loss(name, zr=HKO7)
    ref = loss(pred, target, valid)
    garbage = pred.clone()
    garbage[~valid] = 1e3  # anything at invalid pixels, even huge, changes nothing
    assert torch.equal(loss(garbage, target, valid), ref)
    assert torch.equal(loss(garbage, target, valid.double()), ref)  # 0/1 works like bool
    assert loss(pred, target, torch.zeros_like(valid)).item() == 0.0
    assert not torch.equal(loss(pred, target), ref)


BOUNDARIES = [(2.0, 1.0, 2.0), (5.0, 2.0, 5.0), (10.0, 5.0, 10.0), (30.0, 10.0, 30.0)]


@pytest.mark.parametrize("zr", [HKO7, DWD], ids=["hko7", "dwd"])
@pytest.mark.parametrize(("rate", "below", "above"), BOUNDARIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_balance_weight_at_each_rain_rate_boundary(
    zr: tuple[float, float], rate: float, below: float, above: float, dtype: torch.dtype
) -> None:
    at = torch.tensor(threshold_to_pixel(rate, *zr) / 255.0, dtype=dtype)
    just_below = torch.nextafter(at, torch.tensor(-math.inf, dtype=dtype))
    w = balance_weights(torch.stack([just_below, at]), zr)
    assert w.tolist() == [below, above]
    assert w.dtype == dtype


def test_balance_weights_extremes_and_from_truth_only() -> None:
    assert balance_weights(torch.tensor([0.0, 1.0]), HKO7).tolist() == [1.0, 30.0]
    pred, target = torch.zeros(1, 1, 1, 1, 1), torch.full((1, 1, 1, 1, 1), 0.9)
    loss = build_loss("mse", zr=HKO7, scale=1.0)
    # truth 0.9 (≥ 30 mm/h) weighs 30; swapped, truth 0 weighs 1
    assert loss(pred, target).item() == pytest.approx(30 * 0.81)
    assert loss(target, pred).item() == pytest.approx(0.81)


def test_bad_options_and_names() -> None:
    with pytest.raises(UnknownNameError, match="ff-mse"):
        build_loss("ff-mes", zr=HKO7)
    for bad in ({"k": -1.0}, {"eps": 0.0}, {"scale": 0.0}, {"zr": (0.0, 1.5)}):
        with pytest.raises(ConfigError):
            build_loss("ff-mse", **{"zr": HKO7, **bad})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="B, T, C, H, W"):
        build_loss("mse", zr=HKO7)(torch.zeros(2, 3), torch.zeros(2, 3))


def test_frame_without_valid_pixels_is_left_out_of_min_max() -> None:
    pred, target = pair(9, (1, 4, 1, 3, 3))
    valid = torch.ones_like(target, dtype=torch.bool)
    valid[:, 2] = False  # a missing radar frame: zero-filled and masked
    loss = build_loss("ff-mse", zr=HKO7)
    err = (pred - target).abs()
    w = loss.frame_weights(err, valid.double())  # type: ignore[attr-defined]
    keep = [0, 1, 3]
    w_without = loss.frame_weights(err[:, keep])  # type: ignore[attr-defined]
    torch.testing.assert_close(w[:, keep], w_without, rtol=1e-12, atol=0)
    assert torch.isfinite(loss(pred, target, valid))
    assert torch.equal(
        loss(pred, target, torch.zeros_like(valid)), torch.zeros((), dtype=pred.dtype)
    )


def constant_error_frames(errors: list[float], pixels: int = 10) -> tuple[torch.Tensor, ...]:
    """One sample whose frame t has |e| = errors[t] at every pixel, truth 0 (no rain)."""
    target = torch.zeros(1, len(errors), 1, 1, pixels, dtype=torch.float64)
    pred = target + torch.tensor(errors, dtype=torch.float64).view(1, -1, 1, 1, 1)
    return pred, target


def test_partly_masked_frame_keeps_its_weight() -> None:
    """ΔX_t is a mean over valid pixels: masking 40% of a frame does not make it 'easy'."""
    pred, target = constant_error_frames([0.1, 0.2, 0.3])
    valid = torch.ones_like(target, dtype=torch.bool)
    valid[0, 1, 0, 0, :4] = False  # 40% of frame 2 has no radar data
    loss = build_loss("ff-mse", zr=HKO7)
    w = loss.frame_weights((pred - target).abs(), valid)  # type: ignore[attr-defined]
    # by hand: W = ((ΔX − 0.1)/(0.3 − 0.1) + 0.01)² = (0.01², 0.51², 1.01²)
    expected = torch.tensor([[0.0001, 0.2601, 1.0201]], dtype=torch.float64)
    torch.testing.assert_close(w, expected, rtol=1e-12, atol=0)
    # and the loss: SE_t = Σ valid e² = (10·0.01, 6·0.04, 10·0.09), mean over 3 frames, ×0.001
    got = loss(pred, target, valid).item()
    assert got == pytest.approx((0.0001 * 0.1 + 0.2601 * 0.24 + 1.0201 * 0.9) / 3 * 1e-3)


@pytest.mark.parametrize(
    ("k", "eps", "expected"),
    [
        # ΔX = (0.1, 0.2, 0.4): normalised (0, 1/3, 1)
        (3.0, 0.1, [0.1**3, (1 / 3 + 0.1) ** 3, 1.1**3]),
        (0.5, 0.05, [0.05**0.5, (1 / 3 + 0.05) ** 0.5, 1.05**0.5]),
        (1.0, 0.2, [0.2, 1 / 3 + 0.2, 1.2]),
    ],
)
def test_focal_weights_for_other_k_and_eps(k: float, eps: float, expected: list[float]) -> None:
    pred, target = constant_error_frames([0.1, 0.2, 0.4])
    loss = build_loss("ff-mae", zr=HKO7, k=k, eps=eps, scale=1.0)
    w = loss.frame_weights((pred - target).abs())  # type: ignore[attr-defined]
    torch.testing.assert_close(w, torch.tensor([expected], dtype=torch.float64), rtol=1e-12, atol=0)
    # FF-MAE = mean_t W_t · Σ_pixels |e| = mean_t W_t · 10·ΔX_t
    want = sum(wt * 10 * dx for wt, dx in zip(expected, [0.1, 0.2, 0.4], strict=True)) / 3
    assert loss(pred, target).item() == pytest.approx(want, rel=1e-12)


def test_zr_is_required_for_balanced_losses() -> None:
    with pytest.raises(TypeError):
        build_loss("mse")  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="Z–R"):
        build_loss("ff-mse", zr=None)
    pred, target = pair(10)
    plain = build_loss("mse", zr=None, balanced=False)(pred, target)
    assert plain.item() == pytest.approx(((pred - target) ** 2).sum().item() / 10 * 1e-3)


def test_dwd_and_hko7_put_the_boundaries_at_different_pixels() -> None:
    """The same true pixel weighs differently under the two Z–R relations."""
    g = torch.tensor([threshold_to_pixel(5.0, *HKO7) / 255.0], dtype=torch.float64)
    assert balance_weights(g, HKO7).item() == 5.0
    # 28.58 dBZ is 5 mm/h under Z = 58.53 R^1.56 but 10^((28.58 − 24.08)/14.2) = 2.07 mm/h
    # under Z = 256 R^1.42: weight 2, not 5
    assert balance_weights(g, DWD).item() == 2.0
