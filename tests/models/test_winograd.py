"""Winograd 3×3 convolution, checked against torch's direct convolution and the matrices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nowcast_cli.errors import ConfigError
from nowcast_cli.models import _conv as cv
from nowcast_cli.models import _winograd as wg
from nowcast_cli.models import create_model

MODEL_NAMES = ["convlstm", "trajgru", "predrnn", "mim", "motionrnn"]


def test_written_out_transforms_match_the_matrices() -> None:
    rng = np.random.default_rng(0)
    d, m, g = rng.normal(size=6), rng.normal(size=6), rng.normal(size=4)
    np.testing.assert_allclose(wg._bt(*d), wg._BT @ d, rtol=1e-12)
    np.testing.assert_allclose(wg._b(*m), wg._BT.T @ m, rtol=1e-12)
    np.testing.assert_allclose(wg._at(*m), wg._AT @ m, rtol=1e-12)
    np.testing.assert_allclose(wg._a(*g), wg._AT.T @ g, rtol=1e-12)


def test_matrices_compute_a_1d_correlation() -> None:
    """F(4, 3): Aᵀ[(G g) ⊙ (Bᵀ d)] is the 'valid' correlation of 6 samples with 3 taps."""
    rng = np.random.default_rng(1)
    d, g = rng.normal(size=6), rng.normal(size=3)
    expected = np.correlate(d, g, mode="valid")  # 4 outputs
    np.testing.assert_allclose(wg._AT @ ((wg._G @ g) * (wg._BT @ d)), expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("batch", "channels", "out", "height", "width"),
    [(1, 1, 1, 1, 1), (2, 3, 5, 4, 4), (1, 2, 3, 5, 7), (3, 4, 2, 13, 9), (1, 7, 8, 12, 3)],
)
@pytest.mark.parametrize("bias", [True, False])
def test_values_and_gradients_equal_direct_convolution(
    batch: int, channels: int, out: int, height: int, width: int, bias: bool
) -> None:
    torch.manual_seed(height * width + channels)
    kw = {"dtype": torch.float64, "requires_grad": True}
    x = torch.randn(batch, channels, height, width, **kw)
    w = torch.randn(out, channels, 3, 3, **kw)
    b = torch.randn(out, **kw) if bias else None
    inputs = [t for t in (x, w, b) if t is not None]
    ref = F.conv2d(x, w, b, padding=1)
    got = cv.conv_same(x, w, b)
    grad = torch.randn_like(ref)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    for g_got, g_ref in zip(
        torch.autograd.grad(got, inputs, grad),
        torch.autograd.grad(ref, inputs, grad),
        strict=True,
    ):
        torch.testing.assert_close(g_got, g_ref, rtol=1e-10, atol=1e-10)


def test_several_inputs_are_convolved_as_their_concatenation() -> None:
    torch.manual_seed(3)
    kw = {"dtype": torch.float64, "requires_grad": True}
    a, b = torch.randn(2, 3, 9, 10, **kw), torch.randn(2, 5, 9, 10, **kw)
    w = torch.randn(4, 8, 3, 3, **kw)
    ref = F.conv2d(torch.cat([a, b], 1), w, padding=1)
    got = cv.conv_same([a, b], w)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    grad = torch.randn_like(ref)
    for g_got, g_ref in zip(
        torch.autograd.grad(got, (a, b, w), grad),
        torch.autograd.grad(ref, (a, b, w), grad),
        strict=True,
    ):
        torch.testing.assert_close(g_got, g_ref, rtol=1e-10, atol=1e-10)


def test_float32_error_is_small_at_the_paper_width() -> None:
    """F(4, 3) loses about 3 bits against a direct float32 convolution (~1e-5 vs ~1e-6)."""
    torch.manual_seed(4)
    x = torch.randn(1, 128, 24, 24)
    w = torch.randn(256, 128, 3, 3) * (2 / (128 * 9)) ** 0.5
    ref = F.conv2d(x.double(), w.double(), padding=1)
    err = (cv.conv_same(x, w).double() - ref).abs().max() / ref.abs().max()
    direct_err = (F.conv2d(x, w, padding=1).double() - ref).abs().max() / ref.abs().max()
    assert err < 3e-5, f"relative error {err:.2e} (direct float32: {direct_err:.2e})"


def test_interleaved_calls_of_other_shapes_do_not_disturb_the_backward() -> None:
    """The scratch buffers are shared: a later forward must not corrupt an earlier backward."""
    torch.manual_seed(5)
    kw = {"dtype": torch.float64, "requires_grad": True}
    x1, w1 = torch.randn(2, 3, 8, 8, **kw), torch.randn(4, 3, 3, 3, **kw)
    x2, w2 = torch.randn(1, 6, 11, 5, **kw), torch.randn(2, 6, 3, 3, **kw)
    inputs = (x1, w1, x2, w2)
    got = cv.conv_same(x1, w1).square().sum() + cv.conv_same(x2, w2).square().sum()
    ref = F.conv2d(x1, w1, padding=1).square().sum() + F.conv2d(x2, w2, padding=1).square().sum()
    for g_got, g_ref in zip(
        torch.autograd.grad(got, inputs), torch.autograd.grad(ref, inputs), strict=True
    ):
        torch.testing.assert_close(g_got, g_ref, rtol=1e-10, atol=1e-10)


def test_direct_backend_and_other_kernels_call_torch() -> None:
    torch.manual_seed(6)
    x, w3, w5 = torch.randn(1, 2, 6, 6), torch.randn(3, 2, 3, 3), torch.randn(3, 2, 5, 5)
    with cv.conv_backend("direct"):
        assert cv.current_backend() == "direct"
        assert not cv.use_winograd([x], w3)
        assert torch.equal(cv.conv_same(x, w3), F.conv2d(x, w3, padding=1))
    assert cv.current_backend() == "auto"
    assert cv.use_winograd([x], w3)
    assert not cv.use_winograd([x], w5)
    assert torch.equal(cv.conv_same(x, w5), F.conv2d(x, w5, padding=2))
    assert not cv.use_winograd([x.half()], w3.half())
    assert not cv.use_winograd([x.bfloat16()], w3.bfloat16())


def test_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"auto, direct, got 'fast'"), cv.conv_backend("fast"):
        pass
    model = create_model("convlstm", size=8, layers=1, hidden=4)
    with pytest.raises(ConfigError, match="'winograd'"):
        model.set_conv_backend("winograd")


def test_backend_is_per_thread() -> None:
    """One thread's `direct` block does not switch another thread's convolutions."""
    import threading

    seen: dict[str, str] = {}
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        inside.wait()
        seen["other"] = cv.current_backend()
        release.set()

    t = threading.Thread(target=other)
    t.start()
    with cv.conv_backend("direct"):
        inside.set()
        release.wait()
        seen["here"] = cv.current_backend()
    t.join()
    assert seen == {"here": "direct", "other": "auto"}


def test_model_backend_applies_to_its_rollout_only() -> None:
    model = create_model("convlstm", size=8, layers=1, hidden=4)
    calls: list[bool] = []
    real = cv.use_winograd

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(real(*args, **kwargs))
        return calls[-1]

    x = torch.rand(1, 2, 1, 8, 8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cv, "use_winograd", spy)
        model(x, 2)
        assert calls
        assert all(calls)
        calls.clear()
        model.set_conv_backend("direct")
        model(x, 2)
        assert calls
        assert not any(calls)
    assert cv.current_backend() == "auto"


def test_mixed_input_dtypes_are_not_cast_down() -> None:
    """A float64 input beside a float32 one: torch's promotion, not a silent cast to float32."""
    torch.manual_seed(8)
    a = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    b = torch.randn(1, 3, 6, 6, dtype=torch.float32)
    w = torch.randn(4, 5, 3, 3, dtype=torch.float64)
    assert not cv.use_winograd([a, b], w)
    got = cv.conv_same([a, b], w)
    assert got.dtype == torch.float64
    ref = F.conv2d(torch.cat([a, b.double()], 1), w, padding=1)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_filter_cache_transforms_once_per_weight_version() -> None:
    w = torch.randn(4, 2, 3, 3, requires_grad=True)
    assert wg.transform_filter(w) is not wg.transform_filter(w)  # no cache outside the block
    with wg.filter_cache():
        first = wg.transform_filter(w)
        assert wg.transform_filter(w) is first
        assert wg.transform_filter(w[:2]) is not first  # a view of other geometry: own entry
        assert wg.transform_filter(w[:2]) is wg.transform_filter(w[:2])
        with torch.no_grad():
            w.add_(1.0)  # an optimizer step inside the block
        assert wg.transform_filter(w) is not first
        torch.testing.assert_close(wg.transform_filter(w), wg.transform_filter(w.detach().clone()))


def test_same_conv_needs_an_odd_kernel() -> None:
    with pytest.raises(ValueError, match="odd kernel"):
        cv.SameConv2d(2, 2, 4)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_rollout_and_gradients_equal_the_direct_backend(name: str) -> None:
    """Whole models in float64: the Winograd path (with its filter cache) changes nothing."""
    torch.manual_seed(7)
    model = create_model(name, size=8, layers=2, hidden=4).double()
    x = torch.rand(2, 3, 1, 8, 8, dtype=torch.float64)
    teacher = torch.rand(2, 2, 1, 8, 8, dtype=torch.float64)

    def run(backend: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        model.set_conv_backend(backend)
        gen = torch.Generator().manual_seed(0)
        out = model(x, 3, teacher=teacher, teacher_prob=0.5, generator=gen)
        out.square().mean().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    out, grads = run("auto")
    out_ref, grads_ref = run("direct")
    torch.testing.assert_close(out, out_ref, rtol=1e-9, atol=1e-12)
    assert len(grads) == len(grads_ref)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-8, atol=1e-12)


def _train_step(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    model(x, 2).square().mean().backward()
    return [p.grad for p in model.parameters()]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_inference_mode_rollout_then_training_step(name: str) -> None:
    """Validation under inference_mode first must not break later training on this thread."""
    torch.manual_seed(9)
    model = create_model(name, size=8, layers=2, hidden=4)
    x = torch.rand(2, 2, 1, 8, 8)
    with torch.inference_mode():
        before = model(x, 2)
    grads = _train_step(model, x)
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    with torch.inference_mode():
        torch.testing.assert_close(model(x, 2), before, rtol=0, atol=0)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_no_grad_rollout_then_training_rollout_in_one_filter_cache(name: str) -> None:
    """A filter transformed without gradient must not be reused by a rollout that trains."""
    torch.manual_seed(10)
    model = create_model(name, size=8, layers=2, hidden=4)
    x = torch.rand(2, 2, 1, 8, 8)
    with wg.filter_cache():
        with torch.no_grad():
            model(x, 2)
        grads = _train_step(model, x)
    assert all(g is not None for g in grads)
    convs = [m for m in model.modules() if isinstance(m, cv.SameConv2d) and m.kernel_size == (3, 3)]
    assert convs
    assert all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in convs)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_bf16_autocast_on_cpu_runs_and_trains(name: str) -> None:
    torch.manual_seed(11)
    model = create_model(name, size=8, layers=2, hidden=4)
    x = torch.rand(2, 2, 1, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, 2)
    assert out.dtype == torch.bfloat16
    out.float().square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    # bfloat16 keeps ~3 significant digits: the forecast is the float32 one to that precision
    torch.testing.assert_close(out.float(), model(x, 2).detach(), rtol=0.05, atol=0.02)


def test_autocast_takes_the_torch_path() -> None:
    x, w = torch.randn(1, 2, 6, 6), torch.randn(3, 2, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not cv.use_winograd([x], w)
        assert cv.conv_same(x, w).dtype == torch.bfloat16


_KERNEL_HASHES = """
import hashlib, numpy as np
from nowcast_cli.models import _winograd as wg
rng = np.random.default_rng(0)
b, c, h, w, th, tw = 2, 6, 9, 11, 3, 3
img = rng.standard_normal((b, c, h, w)).astype(np.float32)
coef = rng.standard_normal((36, 2 * c, b * th * tw)).astype(np.float32)
bias = rng.standard_normal(c).astype(np.float32)
outs = [np.zeros((36, c, b * th * tw), np.float32), np.zeros((36, c, b * th * tw), np.float32),
        np.zeros((b, c, h, w), np.float32), np.zeros((b, c, h, w), np.float32)]
wg._gather_in(img, th, tw, outs[0])
wg._gather_out(img, th, tw, outs[1])
wg._scatter_in(coef[:, :c], th, tw, outs[2])  # a channel slice, as the backward passes it
wg._scatter_out(coef[:, c:].copy(), th, tw, bias, outs[3])
print(" ".join(hashlib.sha256(o.tobytes()).hexdigest()[:16] for o in outs))
"""


def test_kernels_compute_the_same_bits_when_compiled_and_when_loaded_from_the_cache(
    tmp_path,
) -> None:
    """A process that compiles the kernels and one that loads them from numba's cache agree.

    With ``fastmath`` the parallel loop body is compiled twice, once on its own (what the
    compiling process runs) and once re-optimized inside its caller (what the cache keeps),
    and reassociation made the two differ in the last bits: training in a fresh environment
    gave other weights than every later run. The first subprocess compiles into an empty
    cache, the second loads from it.
    """
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    fresh, cached = (
        subprocess.run(
            [sys.executable, "-c", _KERNEL_HASHES],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for _ in range(2)
    )
    assert any(tmp_path.rglob("*.nbc")), "the first process wrote no cache: nothing compared"
    assert fresh == cached


def test_no_kernel_lets_the_compiler_change_values() -> None:
    """Reassociation or contraction would make the bits depend on how the code was built."""
    kernels = (wg._gather_in, wg._scatter_in, wg._gather_out, wg._scatter_out)
    kernels += (wg._bt, wg._b, wg._at, wg._a)
    assert all(not k.targetoptions.get("fastmath") for k in kernels)
