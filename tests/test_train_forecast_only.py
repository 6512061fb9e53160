"""RainNet and SimVP through the training engine: every loss, frames.csv, resume, DDP, the CLI.

Forecast-only models return the n forecast frames X̂_m .. X̂_{m+n−1}; the engine scores them
against X_m .. X_{m+n−1} and numbers their frames m .. m + n − 1 in ``frames.csv``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nowcast_cli.checkpoint import load_checkpoint, read_checkpoint
from nowcast_cli.cli import app
from nowcast_cli.config import load_config
from nowcast_cli.errors import ConfigError
from nowcast_cli.losses import LOSSES
from nowcast_cli.samples import make_splits
from nowcast_cli.store import ForecastStore, Store
from nowcast_cli.train import configure, fit
from tests.synthetic_store import make_store, regular_times

runner = CliRunner()
M, N = 4, 3
TINY = {
    "loss": "ff-mse",
    "size": 8,
    "in_frames": M,
    "out_frames": N,
    "batch": 4,
    "stride": 4,
    "epochs": 3,
    "predict": False,
}
SIZES = {"rainnet": {"layers": 1, "hidden": 4}, "simvp": {"layers": 2, "hidden": 4}}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    # 80 frames in one day: three blocks of windows (train, valid, test)
    path = tmp_path_factory.mktemp("train-ff") / "syn.zarr"
    return make_store(path, regular_times("2020-01-01T06:00", 80), size=8)


def _run(store: Path, run: Path, model: str, **kw) -> object:
    opts = {**TINY, **SIZES[model], "model": model, "store": str(store), "run": str(run), **kw}
    return fit(configure(opts))


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run / "last.pt")["model_state"]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


# every loss, each model with plain and focal losses (the engine's code is the same for both)
LOSS_MODEL = [(loss, ("rainnet", "simvp")[i % 2]) for i, loss in enumerate(LOSSES.names())]


@pytest.mark.parametrize(("loss", "model"), LOSS_MODEL)
def test_every_loss_trains(store: Path, tmp_path: Path, loss: str, model: str) -> None:
    result = _run(store, tmp_path / "r", model, loss=loss, max_steps=1)
    assert result.steps == 1
    rows = [r for r in _rows(tmp_path / "r" / "metrics.csv") if r["split"] == "train"]
    assert rows
    assert all(np.isfinite(float(r["loss"])) and float(r["loss"]) > 0 for r in rows)
    _net, meta = load_checkpoint(result.last_checkpoint)
    assert meta["model"] == model
    assert meta["model_config"]["size"] == 8


def test_every_loss_is_covered_for_both_models() -> None:
    focal = {model for loss, model in LOSS_MODEL if loss.startswith("ff-")}
    plain = {model for loss, model in LOSS_MODEL if not loss.startswith("ff-")}
    assert focal == plain == {"rainnet", "simvp"}


def test_frames_csv_matches_an_independent_computation(store: Path, tmp_path: Path) -> None:
    result = _run(store, tmp_path / "f", "rainnet", epochs=1)
    rows = _rows(tmp_path / "f" / "frames.csv")
    valid = [r for r in rows if r["split"] == "valid"]
    assert [int(r["frame"]) for r in valid] == [M, M + 1, M + 2]  # the forecast frames only
    train = [r for r in rows if r["split"] == "train"]
    assert [int(r["frame"]) for r in train] == [M, M + 1, M + 2]
    model, _ = load_checkpoint(result.last_checkpoint)
    splits = make_splits(load_config({**TINY}).data, store)
    with Store.open(store) as s:
        frames, ok = s.read(0, len(s), 8)
    idx = splits.valid.frames  # (W, M + N)
    x = frames[idx].astype(np.float32) / 255
    v = ok[idx][:, M:]
    with torch.inference_mode():
        pred = model(torch.from_numpy(x[:, :M, None]), N).numpy()[:, :, 0]  # (W, N, 8, 8)
    err = np.abs(pred - x[:, M:])
    dx = (err * v).sum((2, 3)) / v.sum((2, 3))
    lo, hi = dx.min(1, keepdims=True), dx.max(1, keepdims=True)
    w = ((dx - lo) / (hi - lo) + 0.01) ** 2
    np.testing.assert_allclose([float(r["delta_x"]) for r in valid], dx.mean(0), rtol=1e-5)
    np.testing.assert_allclose([float(r["weight"]) for r in valid], w.mean(0), rtol=1e-4)


@pytest.mark.parametrize("model", ["rainnet", "simvp"])
def test_exact_resume(store: Path, tmp_path: Path, model: str) -> None:
    # RainNet's dropout draws from torch's generator, whose state the checkpoint keeps
    straight = _run(store, tmp_path / "a", model, max_steps=6)
    _run(store, tmp_path / "b", model, max_steps=3)
    resumed = fit(configure({"resume": True, "run": str(tmp_path / "b"), "max_steps": 6}))
    assert straight.steps == resumed.steps == 6
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    if model == "rainnet":  # the comparison can fail: another seed, other weights
        other = _weights(_run(store, tmp_path / "c", model, max_steps=6, seed=1).run_dir)
        assert not all(torch.equal(a[k], other[k]) for k in a)


def test_loss_frames_forecast_is_all_the_frames_they_make(store: Path, tmp_path: Path) -> None:
    a = _run(store, tmp_path / "all", "simvp", max_steps=3, loss_frames="all")
    b = _run(store, tmp_path / "fc", "simvp", max_steps=3, loss_frames="forecast")
    wa, wb = _weights(a.run_dir), _weights(b.run_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_two_processes_equal_one(store: Path, tmp_path: Path) -> None:
    one = _run(store, tmp_path / "one", "simvp", max_steps=3, epochs=1)
    two = _run(store, tmp_path / "two", "simvp", max_steps=3, epochs=1, devices=2)
    assert two.world_size == 2
    a, b = _weights(one.run_dir), _weights(two.run_dir)
    assert all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a)
    # RainNet under DDP: each process draws its own dropout masks, so it trains (and the
    # processes hold the same weights, DDP's all-reduce) but is not one process's run
    rn = _run(store, tmp_path / "rn", "rainnet", max_steps=2, epochs=1, devices=2)
    assert rn.steps == 2
    assert all(torch.isfinite(t).all() for t in _weights(rn.run_dir).values())


def test_sizes_default_to_the_models_own(store: Path, tmp_path: Path) -> None:
    # no --layers/--hidden/--kernel: the model keeps its published configuration
    opts = {**TINY, "model": "simvp", "store": str(store), "max_steps": 1}
    result = fit(configure({**opts, "run": str(tmp_path / "d")}))
    _net, meta = load_checkpoint(result.last_checkpoint)
    cfg = meta["model_config"]
    assert (cfg["layers"], cfg["hidden"], cfg["kernel"], cfg["in_frames"]) == (8, 64, 3, M)
    # a size the model cannot take fails before the run folder is made
    with pytest.raises(ConfigError, match="layers"):
        fit(configure({**opts, "layers": 1, "run": str(tmp_path / "bad")}))
    assert not (tmp_path / "bad").exists()


def test_cli_train_predict_verify(store: Path, in_tmp: Path) -> None:
    args = ["train", "--store", str(store), "--model", "simvp", "--loss", "ff-logcosh"]
    args += ["--size", "8", "--layers", "2", "--hidden", "4", "--in-frames", str(M)]
    args += ["--out-frames", str(N), "--batch", "4", "--stride", "4", "--max-steps", "2"]
    res = runner.invoke(app, [*args, "--run", "runs/s", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["steps"] == 2
    fc = ForecastStore.open(in_tmp / "runs/s/forecasts.zarr")
    assert fc.lead_minutes.tolist() == [5, 10, 15]  # the forecast leads only
    ver = runner.invoke(app, ["verify", "runs/s", "--thresholds", "0.5,2", "--json"])
    assert ver.exit_code == 0, ver.output
    # RainNet with fewer observed frames than it reads: one line, nothing written
    bad = ["train", "--store", str(store), "--model", "rainnet", "--loss", "mse", "--size", "8"]
    res = runner.invoke(app, [*bad, "--layers", "1", "--in-frames", "3", "--run", "runs/r"])
    assert res.exit_code == 1
    assert res.stderr.strip().splitlines()[-1] == (
        "Error: rainnet reads its last 4 observed frames: needs --in-frames ≥ 4, got 3"
    )
    assert not (in_tmp / "runs/r").exists()
