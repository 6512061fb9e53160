"""The CUDA path: training in fp32 against the CPU, bf16 and compiled cells, checkpoints that
load on a CPU, prediction. Skipped without CUDA (CI has none); run on a GPU machine with
``pytest -m gpu``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from nowcast_cli.checkpoint import load_checkpoint
from nowcast_cli.predict import PredictConfig, forecast
from nowcast_cli.store import ForecastStore
from nowcast_cli.train import configure, fit
from tests.synthetic_store import make_store, regular_times

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]
TINY = {
    "model": "convlstm",
    "loss": "ff-mse+mae",
    "layers": 2,
    "hidden": 8,
    "size": 16,
    "in_frames": 3,
    "out_frames": 3,
    "batch": 4,
    "stride": 4,
    "epochs": 1,
    "valid_samples": 4,
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gpu") / "nowcast-data" / "syn.zarr"
    return make_store(path, regular_times("2020-01-01T06:00", 80), size=16)


def _run(store: Path, run: Path, **kw: object) -> list[dict[str, str]]:
    fit(configure({**TINY, "store": str(store), "run": str(run), **kw}))
    with (run / "metrics.csv").open(newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["split"] == "train"]


@pytest.mark.parametrize("model", ["convlstm", "trajgru", "predrnn", "mim", "motionrnn"])
def test_cuda_steps_match_the_cpu(store: Path, tmp_path: Path, model: str) -> None:
    # same seed, same initial weights (built on the CPU, then moved), same batches: the loss of
    # the first step is the same rollout on two devices; the next ones follow AdamHD's updates
    cpu = _run(store, tmp_path / "cpu", model=model, device="cpu", max_steps=3, conv="direct")
    gpu = _run(store, tmp_path / "gpu", model=model, device="cuda", max_steps=3)
    assert len(cpu) == len(gpu) == 3
    # TF32 convolutions on Ampere and newer: ~1e-3 relative
    np.testing.assert_allclose(float(gpu[0]["loss"]), float(cpu[0]["loss"]), rtol=2e-3)
    np.testing.assert_allclose(float(gpu[0]["grad_norm"]), float(cpu[0]["grad_norm"]), rtol=2e-2)
    np.testing.assert_allclose(float(gpu[2]["loss"]), float(cpu[2]["loss"]), rtol=2e-2)
    config = (tmp_path / "gpu" / "config.toml").read_text()
    assert 'device = "cuda"' in config


@pytest.mark.parametrize(
    ("precision", "compiled"), [("bf16", False), ("fp32", True), ("bf16", True)]
)
# torch.compile's first use imports TorchScript modules that warn about their own deprecation
@pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.*")
def test_bf16_and_compiled_training(
    store: Path, tmp_path: Path, precision: str, compiled: bool
) -> None:
    ref = _run(store, tmp_path / "fp32", device="cuda", max_steps=3)
    rows = _run(
        store, tmp_path / "run", device="cuda", precision=precision, compile=compiled, max_steps=3
    )
    losses = [float(r["loss"]) for r in rows]
    assert all(np.isfinite(losses))
    rtol = 5e-2 if precision == "bf16" else 2e-3
    np.testing.assert_allclose(losses[0], float(ref[0]["loss"]), rtol=rtol)
    # the checkpoint is device-free: it loads and rolls out on a CPU
    raw = torch.load(tmp_path / "run" / "last.pt", weights_only=True)  # no map_location
    assert all(t.device.type == "cpu" for t in raw["model_state"].values())
    model, _ = load_checkpoint(tmp_path / "run" / "last.pt")
    x = torch.rand(1, 3, 1, 16, 16)
    assert torch.isfinite(model(x, 3)).all()


def test_predict_on_cuda_equals_the_cpu(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "convlstm"
    _run(store, run, device="cuda", max_steps=2)
    got = {}
    for device in ("cuda", "cpu"):
        out = tmp_path / f"{device}.zarr"
        forecast(PredictConfig(run=str(run), device=device, out=str(out), batch=2))
        with ForecastStore.open(out) as fs:
            got[device] = fs.read(0, len(fs)).astype(np.int16)
    assert got["cuda"].shape == got["cpu"].shape
    # uint8 pixels: TF32 may move a value across a rounding boundary, never by more than one
    assert np.abs(got["cuda"] - got["cpu"]).max() <= 1
    assert (got["cuda"] != got["cpu"]).mean() < 0.01
