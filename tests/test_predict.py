"""`nowcast predict`: forecast stores from a trained run and from the baselines."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nowcast_cli import predict as predict_module
from nowcast_cli import runs
from nowcast_cli.checkpoint import load_checkpoint
from nowcast_cli.cli import app
from nowcast_cli.config import DataConfig
from nowcast_cli.encoding import unit_to_pixel
from nowcast_cli.errors import ConfigError, RunError, StoreError, UnknownNameError
from nowcast_cli.models import create_model
from nowcast_cli.predict import PredictConfig, forecast
from nowcast_cli.samples import make_splits
from nowcast_cli.store import ForecastStore, Store
from nowcast_cli.train import configure, fit
from tests.synthetic_store import make_store, regular_times

runner = CliRunner()
M, N = 3, 3
TINY = {
    "model": "convlstm",
    "loss": "ff-mse",
    "layers": 1,
    "hidden": 4,
    "size": 8,
    "in_frames": M,
    "out_frames": N,
    "batch": 4,
    "stride": 4,
    "epochs": 1,
    "conv": "direct",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A store (full grid 16×16, training copy 8×8) and a run trained on it for a few steps."""
    root = tmp_path_factory.mktemp("predict")
    store = make_store(
        root / "nowcast-data" / "syn.zarr",
        regular_times("2020-01-01T06:00", 80),
        size=16,
        coarse=8,
    )
    fit(configure({**TINY, "store": str(store), "run": str(root / "runs" / "convlstm")}))
    return store, root / "runs" / "convlstm"


@pytest.fixture
def project(trained: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.chdir(trained[0].parent.parent)
    return trained


def _inputs(store: Path, size: int | None, issue: np.ndarray) -> np.ndarray:
    """The m observed frames before each issue time, read plainly from the store."""
    with Store.open(store) as s:
        frames, _ = s.read(0, len(s), size)
        pos = np.searchsorted(s.times, issue)
    return np.stack([frames[p - M + 1 : p + 1] for p in pos])


def test_trained_run_forecasts_its_test_split(project: tuple[Path, Path]) -> None:
    store, run = project
    result = forecast(PredictConfig(run=str(run), batch=1))
    assert result.forecasts == run / "forecasts.zarr"
    test = make_splits(DataConfig(store=str(store), size=8, in_frames=M, out_frames=N, stride=4),
                       store).test  # fmt: skip
    with ForecastStore.open(result.forecasts) as fs:
        assert fs.issue_times.tolist() == test.issue_time.tolist()
        assert fs.lead_minutes.tolist() == [-5, 0, 5, 10, 15]  # X̂_1 … X̂_{m+n−1}
        assert fs.shape == (8, 8)
        assert fs.attrs["model"] == "convlstm"
        assert fs.attrs["loss"] == "ff-mse"
        got = fs.read(0, len(fs))
        got_fine = fs.read(0, len(fs), fine=True)
    # the same forecasts from the checkpoint, rolled out here on the frames read plainly
    model, _ = load_checkpoint(run / "best.pt")
    x = torch.from_numpy(_inputs(store, 8, test.issue_time)).unsqueeze(2).float() / 255
    with torch.no_grad():
        y = model(x, N).squeeze(2).numpy()
    np.testing.assert_array_equal(got, unit_to_pixel(y))
    # and the unrounded output, to 1/512 pixel, which verify scores
    err = got_fine / 256.0 - np.clip(y.astype(np.float64), 0, 1) * 255
    assert np.abs(err).max() <= 1 / 512 + 1e-9


def test_persistence_baseline_equals_the_registry_model(project: tuple[Path, Path]) -> None:
    store, run = project
    result = forecast(PredictConfig(model="persistence", run=str(run)))
    assert result.run.name.startswith("persistence-")
    assert (result.run / "config.toml").is_file()  # a run folder `nowcast list runs` shows
    with ForecastStore.open(result.forecasts) as fs:
        issue = fs.issue_times
        got = fs.read(0, len(fs))
        assert fs.attrs["run"] == str(result.run.resolve())
    with ForecastStore.open(run / "forecasts.zarr") as trained_fs:
        assert issue.tolist() == trained_fs.issue_times.tolist()  # the run's test split
    x = torch.from_numpy(_inputs(store, 8, issue)).unsqueeze(2).float() / 255
    want = unit_to_pixel(create_model("persistence", size=8)(x, N).squeeze(2).numpy())
    np.testing.assert_array_equal(got, want)
    # and, spelled out: every forecast lead repeats the last observed frame
    last = _inputs(store, 8, issue)[:, -1]
    for lead in range(M - 1, M + N - 1):
        np.testing.assert_array_equal(got[:, lead], last)


def test_native_baseline_latest_and_ranges(project: tuple[Path, Path]) -> None:
    store, _ = project
    with Store.open(store) as s:
        times = s.times
    latest_cfg = PredictConfig(
        model="persistence", latest=True, native=True, in_frames=M, out_frames=N,
        out="latest/forecasts.zarr",
    )  # fmt: skip
    latest = forecast(latest_cfg)
    with ForecastStore.open(latest.forecasts) as fs:
        assert fs.issue_times.tolist() == [int(times[-1])]
        assert fs.shape == (16, 16)
        got = fs.read(0, 1)
    np.testing.assert_array_equal(got[0, -1], _full(store)[-1])
    span = forecast(PredictConfig(model="persistence", start="2020-01-01T07:00",
                                  end="2020-01-01T07:30", in_frames=M, out_frames=N,
                                  out="span/forecasts.zarr"))  # fmt: skip
    with ForecastStore.open(span.forecasts) as fs:
        first, last = fs.issue_times[0], fs.issue_times[-1]
        assert len(fs) == 7  # every 5 minutes from 07:00 to 07:30
    assert (first - times[0]) == 3600
    assert (last - first) == 1800


def _full(store: Path) -> np.ndarray:
    with Store.open(store) as s:
        return s.read(0, len(s))[0]


def test_an_interrupted_prediction_resumes(
    project: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, run = project
    cfg = PredictConfig(model="persistence", run=str(run), batch=1, out="resume/forecasts.zarr")
    whole = forecast(PredictConfig(model="persistence", run=str(run), out="whole/forecasts.zarr"))

    def stop(phase: str, done: int, total: int) -> None:
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        forecast(cfg, progress=stop)
    with ForecastStore.open("resume/forecasts.zarr") as fs:
        assert len(fs) == 1
    again = forecast(cfg)
    assert again.skipped == 1
    assert again.written == whole.samples - 1
    with ForecastStore.open("resume/forecasts.zarr") as a, ForecastStore.open(whole.forecasts) as b:
        np.testing.assert_array_equal(a.read(0, len(a)), b.read(0, len(b)))
    other = PredictConfig(model="persistence", run=str(run), split="valid",
                          out="resume/forecasts.zarr")  # fmt: skip
    with pytest.raises(StoreError, match="another configuration"):
        forecast(other)
    (Path("resume") / "scores.csv").write_text("stale")
    replaced = forecast(dataclasses.replace(other, overwrite=True))
    assert replaced.skipped == 0
    assert not (Path("resume") / "scores.csv").exists()  # it scored the forecasts replaced
    with ForecastStore.open("resume/forecasts.zarr") as fs:
        assert fs.attrs["config"]["split"] == "valid"


def test_extrapolation_forecasts_leads_only(project: tuple[Path, Path]) -> None:
    pytest.importorskip("pysteps")
    pytest.importorskip("cv2")
    from nowcast_cli.baselines import extrapolate

    store, run = project
    result = forecast(PredictConfig(model="extrapolation", run=str(run)))
    with ForecastStore.open(result.forecasts) as fs:
        assert fs.lead_minutes.tolist() == [5, 10, 15]
        issue, got = fs.issue_times, fs.read(0, len(fs))
    frames = _inputs(store, 8, issue)
    for k in range(len(issue)):
        np.testing.assert_array_equal(got[k], extrapolate(frames[k], N))


def test_extrapolation_without_pysteps_says_how_to_install(
    project: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_pysteps(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name.startswith("pysteps"):
            raise ImportError("No module named 'pysteps'", name="pysteps")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pysteps)
    result = runner.invoke(app, ["predict", "--model", "extrapolation", "--in-frames", "3"])
    assert result.exit_code == 1
    assert "pip install 'nowcast[pysteps]'" in result.output
    assert "Traceback" not in result.output


def test_options_that_do_not_fit_are_errors(project: tuple[Path, Path]) -> None:
    _, run = project
    with pytest.raises(ConfigError, match="--native applies to the baselines"):
        PredictConfig(native=True)
    with pytest.raises(UnknownNameError, match="persistence"):
        PredictConfig(model="persistance")
    with pytest.raises(ConfigError, match="exclude each other"):
        PredictConfig(model="persistence", latest=True, start="2020-01-01")
    with pytest.raises(ConfigError, match="trained with 3"):
        forecast(PredictConfig(run=str(run), in_frames=5))
    with pytest.raises(ConfigError, match="not a date"):
        forecast(PredictConfig(model="persistence", start="yesterday", out="x/forecasts.zarr"))
    with pytest.raises(ConfigError, match="--end 2018-05-20T09:00 is before --start"):
        PredictConfig(model="persistence", start="2018-05-20T10:00", end="2018-05-20T09:00")
    PredictConfig(model="persistence", start="2018-05-20T10:00", end="2018-05-20T10:00")
    with pytest.raises(RunError, match="no such checkpoint"):
        forecast(PredictConfig(run=str(run), checkpoint="nope.pt"))


def test_cli_happy_path_and_one_line_errors(project: tuple[Path, Path]) -> None:
    _, run = project
    ok = runner.invoke(app, ["predict", "--model", "persistence", "--run", str(run), "--json"])
    assert ok.exit_code == 0, ok.output
    assert '"model": "persistence"' in ok.stdout
    # the baseline's folder is a run to `info` and `list runs`: forecasts, no training
    folder = json.loads(ok.stdout)["run"]
    shown = runner.invoke(app, ["info", folder])
    assert shown.exit_code == 0, shown.output
    assert "a baseline: forecasts only" in shown.output
    summary = json.loads(runner.invoke(app, ["info", folder, "--json"]).stdout)
    assert (summary["baseline"], summary["steps"], summary["select"]) == (True, None, None)
    assert summary["split"]["note"] == f"forecasts of the test split, issue times as {run}"
    listed = json.loads(runner.invoke(app, ["list", "runs", "--json"]).stdout)
    mine = [r for r in listed if Path(r["path"]).resolve() == Path(folder).resolve()]
    assert [r["baseline"] for r in mine] == [True]
    assert [r["baseline"] for r in listed if r["model"] == "convlstm"] == [False]
    table = runner.invoke(app, ["list", "runs"])
    assert table.exit_code == 0, table.output
    # its forecast store is described too (it said "not a nowcast observation store")
    about = json.loads(runner.invoke(app, ["info", f"{folder}/forecasts.zarr", "--json"]).stdout)
    assert (about["kind"], about["model"], about["loss"]) == ("forecasts", "persistence", None)
    with ForecastStore.open(Path(folder) / "forecasts.zarr") as fs:
        assert about["samples"] == len(fs) > 0
        assert about["lead_minutes"] == fs.lead_minutes.tolist()
    shown = runner.invoke(app, ["info", f"{folder}/forecasts.zarr"])
    assert shown.exit_code == 0, shown.output
    assert "persistence (a baseline)" in shown.output
    # ... and never a run to forecast with or resume: by default the newest trained run is
    # taken, though the baseline's folder is newer; given, it is refused in one line
    assert runs.resolve_run(None) == run
    for args in (["predict", "--run", folder], ["train", "--resume", "--run", folder]):
        refused = runner.invoke(app, args)
        assert refused.exit_code == 1
        assert refused.output.startswith(f"Error: {folder}: holds persistence forecasts (a ")
    bad = runner.invoke(app, ["predict", "--model", "persistence", "--split", "nope"])
    assert bad.exit_code == 1
    assert bad.output.strip().splitlines() == [
        "Error: split must be train, valid or test, got 'nope'"
    ]


def test_no_run_and_no_baseline(in_tmp: Path) -> None:
    result = runner.invoke(app, ["predict"])
    assert result.exit_code == 1
    assert "nowcast train" in result.output
    assert predict_module.BASELINES == ("persistence", "extrapolation")
