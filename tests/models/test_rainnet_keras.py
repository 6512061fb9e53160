"""RainNet against the authors' own Keras model, built from their unchanged ``rainnet.py``.

Keras 3 runs the authors' file on its torch backend (``KERAS_BACKEND=torch``), so no
TensorFlow is needed. Their model is built once (its 31 million weights take seconds to draw),
on a 48×48 grid: the parameter count does not depend on the grid. Same weights (ours copied
into theirs), same input, both in float64: the outputs agree to rounding.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from nowcast_cli.losses import build_loss
from nowcast_cli.models import count_parameters, create_model

AUTHORS = Path(__file__).parent / "authors" / "rainnet.py"
SIDE = 48  # 3·2⁴: their four pooling levels need no padding


@pytest.fixture(scope="module")
def keras() -> ModuleType:
    """Keras 3 on its torch backend."""
    os.environ["KERAS_BACKEND"] = "torch"  # read once, when keras is first imported
    module = pytest.importorskip("keras")
    if module.backend.backend() != "torch":
        pytest.skip(f"keras was imported with the {module.backend.backend()} backend")
    return module


@pytest.fixture(scope="module")
def reference(keras: ModuleType) -> Iterator[dict[str, Any]]:
    """The authors' rainnet() on a SIDE² grid (float64), its Conv2D layers, initial weights."""
    spec = importlib.util.spec_from_file_location("authors_rainnet", AUTHORS)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    floatx = keras.config.floatx()
    keras.config.set_floatx("float64")
    keras.utils.set_random_seed(0)
    try:
        model = module.rainnet(input_shape=(SIDE, SIDE, 4))  # the notebook's call, on SIDE²
        convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
        initial = [[_numpy(v) for v in layer.weights] for layer in convs]
        yield {"model": model, "convs": convs, "initial": initial}
    finally:
        keras.config.set_floatx(floatx)


def _numpy(variable: Any) -> np.ndarray:
    return variable.value.detach().cpu().numpy()  # torch backend: the value is a tensor


def load_ours(reference: dict[str, Any], ours: torch.nn.Module) -> Any:
    """Copy our weights into the authors' model; return it."""
    mine = [m for m in ours.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(reference["convs"]) == len(mine) == 20
    for layer, m in zip(reference["convs"], mine, strict=True):
        # Keras kernels are (kh, kw, in, out), torch weights (out, in, kh, kw)
        weight = m.weight.detach().double().permute(2, 3, 1, 0).numpy()
        layer.set_weights([weight, m.bias.detach().double().numpy()])
    return reference["model"]


def run(model: Any, x: np.ndarray) -> np.ndarray:
    return model(x, training=False).detach().cpu().numpy()  # (B, H, W, 1)


def test_keras_counts_the_authors_model_as_ours(reference: dict[str, Any]) -> None:
    assert reference["model"].count_params() == 31_380_613
    assert count_parameters(create_model("rainnet")) == reference["model"].count_params()


def test_initialisation_is_the_authors(reference: dict[str, Any]) -> None:
    # he_normal (truncated at ±2σ) for the 3×3 kernels, glorot_uniform for the 1×1 output,
    # zero biases: per layer, our spread and range match what Keras drew for their model
    torch.manual_seed(0)
    ours = create_model("rainnet", size=SIDE)
    mine = [m for m in ours.modules() if isinstance(m, torch.nn.Conv2d)]
    for m, (kernel, bias), layer in zip(
        mine, reference["initial"], reference["convs"], strict=True
    ):
        w = m.weight.detach().numpy()
        assert np.all(m.bias.detach().numpy() == 0)
        assert np.all(bias == 0)
        if w.size < 100:  # the 1×1 output, 2 weights: glorot_uniform's bound √(6 / (2 + 1))
            assert np.abs(w).max() <= np.sqrt(2.0)
            assert np.abs(kernel).max() <= np.sqrt(2.0)
            continue
        assert w.std() == pytest.approx(kernel.std(), rel=0.1), layer.name
        assert np.abs(w).max() <= np.abs(kernel).max() * 1.1 + 1e-12, layer.name


def test_one_step_equals_the_authors_model(reference: dict[str, Any]) -> None:
    torch.manual_seed(0)
    ours = create_model("rainnet", size=SIDE).double().eval()
    ref = load_ours(reference, ours)
    x = np.random.default_rng(0).random((2, SIDE, SIDE, 4))
    want = run(ref, x)
    with torch.no_grad():
        got = ours.step(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    assert np.abs(want).max() > 0.01  # a real signal, not two zero maps
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_padding_is_the_authors_mirror_padding(reference: dict[str, Any]) -> None:
    # the authors mirror-pad 900² → 928² outside the network (np.pad mode="reflect"); ours pads
    # a 40² frame to 48² inside, and must equal their network on their padded frame, cropped
    torch.manual_seed(1)
    ours = create_model("rainnet", size=40).double().eval()
    ref = load_ours(reference, ours)
    x = np.random.default_rng(1).random((1, 40, 40, 4))
    padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)), mode="reflect")
    want = run(ref, padded)[:, 4:44, 4:44, 0]
    # through forward: the 4 channels are the observed frames t−15 … t, in the authors' order
    frames = torch.from_numpy(x).permute(0, 3, 1, 2)[:, :, None]  # (B, 4, 1, 40, 40)
    with torch.no_grad():
        got = ours(frames, 1)[:, 0, 0]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)


def test_logcosh_is_the_loss_the_authors_compile(keras: ModuleType) -> None:
    # the notebook: model.compile(..., loss='log_cosh'), Keras's mean over pixels of
    # ln cosh(pred − true); ours sums over a frame's pixels: the same with scale 1 / pixels
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 1, 1, 8, 8, generator=g, dtype=torch.float64)
    pred = target + 3 * torch.randn(2, 1, 1, 8, 8, generator=g, dtype=torch.float64)
    ours = build_loss("logcosh", zr=None, balanced=False, scale=1 / 64)(pred, target)
    theirs = keras.losses.log_cosh(target.reshape(2, 64), pred.reshape(2, 64)).mean()
    # Keras takes ln 2 in float32 even for float64 errors: agreement to ~1e-8, not 1e-16
    assert float(ours) == pytest.approx(float(theirs), rel=1e-7)
