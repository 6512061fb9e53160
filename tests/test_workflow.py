"""SPEC §1: the three lines users type first, in a fresh directory, on real DWD frames.

``nowcast ingest dwd ./raw`` runs verbatim; ``nowcast train --model motionrnn --loss ff-mse``
gets size options so that it trains for seconds on the 13 bundled frames instead of days
(the paper's recipe needs 20-frame windows and a GPU); ``nowcast verify --thresholds
0.5,2,5,10,30`` runs verbatim on the forecasts training ends with.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from typer.testing import CliRunner

from nowcast_cli.cli import app

runner = CliRunner()


def test_ingest_train_verify_in_a_fresh_directory(in_tmp: Path, ry_dir: Path) -> None:
    shutil.copytree(ry_dir, in_tmp / "raw")
    result = runner.invoke(app, ["ingest", "dwd", "./raw"])
    assert result.exit_code == 0, result.output
    assert (in_tmp / "nowcast-data" / "dwd.zarr" / "zarr.json").is_file()

    small = ["--in-frames", "2", "--out-frames", "2", "--stride", "1", "--layers", "1"]
    small += ["--hidden", "4", "--batch", "2", "--epochs", "1", "--max-steps", "2"]
    result = runner.invoke(app, ["train", "--model", "motionrnn", "--loss", "ff-mse", *small])
    assert result.exit_code == 0, result.output
    (run,) = (in_tmp / "runs").iterdir()
    assert run.name.startswith("motionrnn-ff-mse-")
    assert (run / "forecasts.zarr" / "zarr.json").is_file()  # training ends with the test split

    result = runner.invoke(app, ["verify", "--thresholds", "0.5,2,5,10,30"])
    assert result.exit_code == 0, result.output
    with (run / "scores.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["threshold"] for r in rows if r["metric"] == "csi"} == {"0.5", "2", "5", "10", "30"}
    assert {r["lead_minutes"] for r in rows} == {"5", "10"}
