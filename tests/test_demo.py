"""`nowcast demo --quick`: the whole chain on the bundled 11 days of real rain."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from nowcast_cli.cli import app
from nowcast_cli.demo import default_data

runner = CliRunner()


def test_quick_demo_writes_every_stage(tmp_path: Path) -> None:
    assert default_data().is_file()
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--dir", str(out), "--quick", "--json"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert set(r["runs"]) >= {"convlstm ff-mse", "convlstm mse", "persistence"}
    files = {Path(p).relative_to(out).as_posix() for p in r["files"]}
    assert "nowcast-data/netcdf.zarr" in files
    for run in ("convlstm-ff-mse", "convlstm-mse"):
        for name in ("config.toml", "metrics.csv", "frames.csv", "last.pt", "forecasts.zarr",
                     "scores.csv", "scores.json"):  # fmt: skip
            assert f"runs/{run}/{name}" in files
    figures = [f for f in files if "/figures/" in f or f.startswith("figures/")]
    kinds = {Path(f).name.split("-")[0].split(".")[0] for f in figures}
    assert kinds >= {"sample", "scores", "frames", "training", "animate", "netcdf"}
    assert all((out / f).stat().st_size > 1000 for f in figures)
    # the store carries the credit line the data's licence asks for
    from nowcast_cli.demo import ATTRIBUTION
    from nowcast_cli.store import Store

    with Store.open(out / "nowcast-data" / "netcdf.zarr") as store:
        assert store.attrs["attribution"] == ATTRIBUTION
    # the summary: every run scored, and the paired ff-mse − mse difference with an interval
    assert {row["run"] for row in r["scores"]} == set(r["runs"])
    low, high = r["comparison"]["csi@0.5"][1:]
    assert low <= r["comparison"]["csi@0.5"][0] <= high
    # one run per loss: the comparison says its intervals do not cover training randomness
    assert r["comparison"]["cautions"][0].startswith("one run on each side")


def test_demo_refuses_a_used_directory(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("mine")
    result = runner.invoke(app, ["demo", "--dir", str(tmp_path), "--quick"])
    assert result.exit_code == 1
    assert "needs a fresh --dir" in result.output
    assert (tmp_path / "old.txt").read_text() == "mine"


def test_attribution_is_a_netcdf_option(tmp_path: Path, ry_dir: Path) -> None:
    result = runner.invoke(
        app, ["ingest", "dwd", str(ry_dir), "--out", str(tmp_path / "s.zarr"), "--attribution", "x"]
    )
    assert result.exit_code == 1
    assert "attribution" in result.output
