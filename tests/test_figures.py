"""`nowcast plot`: every kind renders from a real (small) train → predict → verify chain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from nowcast_cli import encoding
from nowcast_cli.cli import app
from nowcast_cli.predict import PredictConfig, forecast
from nowcast_cli.store import ForecastStore, Store
from nowcast_cli.train import configure, fit
from tests.synthetic_store import make_store, regular_times

runner = CliRunner()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("figures")
    store = make_store(
        root / "nowcast-data" / "syn.zarr", regular_times("2020-01-01T06:00", 80), size=16
    )
    run = root / "runs" / "convlstm"
    fit(
        configure(
            {
                "store": str(store), "run": str(run), "model": "convlstm", "loss": "ff-mse",
                "layers": 1, "hidden": 4, "size": 16, "in_frames": 3, "out_frames": 3,
                "batch": 4, "stride": 2, "epochs": 2, "conv": "direct",
            }
        )
    )  # fmt: skip
    forecast(PredictConfig(run=str(run)))
    forecast(PredictConfig(model="persistence", run=str(run), out=str(root / "runs" / "persistence" / "forecasts.zarr")))  # fmt: skip  # noqa: E501
    return root


@pytest.fixture
def in_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(project)
    return project


class Picture:
    """What the tests check of an image file: format, size, frames, and that it is not blank."""

    def __init__(self, path: Path) -> None:
        with Image.open(path) as img:
            self.format, self.size = img.format, img.size
            self.n_frames = getattr(img, "n_frames", 1)
            self.std = float(np.asarray(img.convert("L"), dtype=float).std())


def image(path: Path) -> Picture:
    return Picture(path)


def not_blank(img: Picture) -> bool:
    return img.std > 5


def plot(*args: str) -> list[Path]:
    result = runner.invoke(app, ["plot", *args, "--json"])
    assert result.exit_code == 0, result.output
    return [Path(p) for p in json.loads(result.stdout)]


def test_sample_defaults_to_the_rainiest_shared_issue_time(in_project: Path) -> None:
    (path,) = plot("sample", "runs/convlstm", "runs/persistence")
    assert path.resolve().parent == in_project / "runs" / "convlstm" / "figures"
    img = image(path)
    assert img.format == "PNG"
    assert img.size[0] > img.size[1] > 400  # 3 lead columns and a colour bar by 3 rows
    assert not_blank(img)
    with ForecastStore.open("runs/persistence/forecasts.zarr") as fs:
        issue, leads = fs.issue_times, [m for m in fs.lead_minutes if m > 0]
    with Store.open("nowcast-data/syn.zarr") as obs:
        frames, valid = obs.read(0, len(obs), 16)
        times, zr = obs.times, obs.zr
    table = encoding.rate_table(*zr)
    at = {int(t): k for k, t in enumerate(times)}
    rain = [sum(table[frames[at[t + 60 * m]]][valid[at[t + 60 * m]]].sum() for m in leads)
            for t in issue]  # fmt: skip
    best = int(issue[int(np.argmax(rain))])
    stamp = np.datetime64(best, "s").astype(object).strftime("%Y%m%d-%H%M")
    assert path.name == f"sample-{stamp}.png"


def test_scores_frames_training_animate_store(in_project: Path) -> None:
    for run in ("runs/convlstm", "runs/persistence"):
        ok = runner.invoke(app, ["verify", run, "--bootstrap", "20", "--block-hours", "0.5", "-q"])
        assert ok.exit_code == 0, ok.output
    paths = plot("scores", "runs/convlstm", "runs/persistence", "--metric", "csi,mse")
    assert [p.name for p in paths] == ["scores-csi.png", "scores-mse.png"]
    assert all(not_blank(image(p)) for p in paths)
    (frames,) = plot("frames", "runs/convlstm")
    (training,) = plot("training", "runs/convlstm")
    assert not_blank(image(frames))
    assert not_blank(image(training))
    (gif,) = plot("animate", "runs/convlstm", "runs/persistence")
    anim = image(gif)
    assert anim.format == "GIF"
    assert anim.n_frames == 3  # one per lead time
    (frame,) = plot("store", "--time", "2020-01-01T07:00")
    assert frame.resolve().parent == in_project / "figures"
    assert frame.name == "syn-20200101-0700.png"
    assert not_blank(image(frame))
    (mean,) = plot("store", "--mean", "--format", "pdf", "--out", "mean.pdf")
    assert mean.read_bytes().startswith(b"%PDF")
    (svg,) = plot("sample", "runs/persistence", "--format", "svg", "--out", "figs")
    assert svg.suffix == ".svg"
    assert b"<svg" in svg.read_bytes()[:500]


def test_training_and_frames_draw_every_run_given(in_project: Path) -> None:
    """Two runs give two figures (the second was dropped without a word); a run without the
    log fails before anything is drawn."""
    import shutil

    shutil.copytree("runs/convlstm", "runs/again")
    both = plot("training", "runs/convlstm", "runs/again")
    assert [p.resolve() for p in both] == [
        in_project / "runs" / name / "figures" / "training.png" for name in ("convlstm", "again")
    ]
    named = plot("frames", "runs/convlstm", "runs/again", "--out", "figs")
    assert [p.name for p in named] == ["frames-convlstm.png", "frames-again.png"]
    assert all(not_blank(image(p)) for p in named)
    bad = runner.invoke(app, ["plot", "frames", "runs/again", "runs/persistence", "--out", "f2"])
    assert bad.exit_code == 1
    assert "runs/persistence: no frames.csv" in bad.output
    assert not Path("f2").exists()


def test_plot_errors_are_one_line(in_project: Path) -> None:
    cases = [
        (["plot", "sampel"], "Did you mean 'sample'?"),
        (["plot", "store", "--time", "2020-01-02T00:00"], "no frame at 2020-01-02 00:00"),
        (["plot", "sample", "runs/persistence", "--time", "2020-01-01T06:02"], "nearest is"),
        (["plot", "scores", "runs/convlstm", "--metric", "csii"], "unknown score 'csii'"),
        (["plot", "sample", "--format", "jpg"], "format must be one of png, svg, pdf"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        assert message in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_a_run_without_forecasts_names_the_command(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["plot", "sample"])
    assert result.exit_code == 1
    assert "nowcast predict" in result.output
