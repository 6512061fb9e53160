"""The command line: help everywhere, one-line errors, the happy paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import nowcast_cli
from nowcast_cli import __version__
from nowcast_cli.cli import app

runner = CliRunner()
ROOT = Path(nowcast_cli.__file__).resolve().parents[1]


def _command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(cmd, prefix: list[str]) -> None:  # typer vendors its own click: duck-type groups
        paths.append(prefix)
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, [*prefix, name])

    walk(root, [])
    return paths


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "nowcast")
def test_every_command_has_help(path: list[str]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"nowcast {__version__}"


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys; from nowcast_cli.cli import app; "
        "heavy = ('numpy', 'torch', 'zarr', 'numba', 'matplotlib'); "
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    return lines[0]


def test_unknown_source_lists_choices(in_tmp: Path, ry_dir: Path) -> None:
    line = _error_line(runner.invoke(app, ["ingest", "dwdd", str(ry_dir)]))
    assert line.startswith("Error: unknown source 'dwdd'. Did you mean 'dwd'?")
    assert "Valid sources:" in line


def test_missing_path(in_tmp: Path) -> None:
    line = _error_line(runner.invoke(app, ["ingest", "dwd", "raw"]))
    assert line == "Error: raw: no such file or directory"


def test_unwritable_output(in_tmp: Path, ry_dir: Path) -> None:
    line = _error_line(
        runner.invoke(app, ["ingest", "dwd", str(ry_dir), "--out", "/proc/nowcast/x.zarr"])
    )
    assert line.startswith("Error: /proc/nowcast/x.zarr: cannot create")


def test_info_without_store(in_tmp: Path) -> None:
    line = _error_line(runner.invoke(app, ["info"]))
    assert "none in ./nowcast-data" in line


def test_ingest_then_info_with_defaults(in_tmp: Path, ry_dir: Path) -> None:
    result = runner.invoke(app, ["ingest", "dwd", str(ry_dir)])
    assert result.exit_code == 0, result.output
    assert "written" in result.stdout
    assert (in_tmp / "nowcast-data" / "dwd.zarr" / "zarr.json").is_file()
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    for text in (
        "RY",
        "13 × 900×900",
        "2020-01-01 15:00 → 2020-01-01 16:00",
        "5 min",
        "Z = 256.0 R^1.42",
    ):
        assert text in result.stdout
    result = runner.invoke(app, ["info", "--json"])
    info = json.loads(result.stdout)
    assert info["frames"] == 13
    assert info["gaps"] == 0
    again = runner.invoke(app, ["ingest", "dwd", str(ry_dir), "--json"])
    assert json.loads(again.stdout)["already_present"] == 13


def test_strict_exit_code(in_tmp: Path, ry_dir: Path) -> None:
    raw = in_tmp / "raw"
    raw.mkdir()
    (raw / "junk.bin").write_bytes(b"junk")
    (raw / "a.gz").write_bytes(sorted(ry_dir.iterdir())[0].read_bytes())
    ok = runner.invoke(app, ["ingest", "dwd", str(raw), "--quiet"])
    assert ok.exit_code == 0
    strict = runner.invoke(app, ["ingest", "dwd", str(raw), "--strict", "--out", "s2.zarr"])
    line = _error_line(strict)
    assert "junk.bin" in line


def test_list_sources_json() -> None:
    result = runner.invoke(app, ["list", "sources", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    dwd = next(r for r in rows if r["name"] == "dwd")
    assert dwd["zr"] == [256.0, 1.42]
    assert "RADOLAN" in dwd["description"]


def test_python_m_entry_point(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nowcast_cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"nowcast {__version__}"


@pytest.mark.parametrize(
    ("argv", "code", "stdout", "stderr"),
    [
        (["--version"], 0, f"nowcast {__version__}", ""),
        (["info", "no-such.zarr"], 1, "", "Error: no-such.zarr: no such store"),
        (["list", "nothing"], 2, "", "No such command 'nothing'"),
    ],
)
def test_the_executable_exits_with_the_commands_code_after_its_exit_handlers(
    tmp_path: Path, argv: list[str], code: int, stdout: str, stderr: str
) -> None:
    """`python -m nowcast_cli` and the `nowcast` script end through `cli.run`, which skips the
    interpreter's teardown: the exit status, the output and the exit handlers must survive it."""
    marker = tmp_path / "atexit-ran"
    script = (
        "import atexit, os; "
        "atexit.register(lambda: open(os.environ['MARKER'], 'w').write('ran')); "
        "from nowcast_cli.cli import run; run()"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        # the nowcast_cli this test imported (a copy of the tree too, not the installed one)
        env={**os.environ, "MARKER": str(marker), "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == code, out.stderr
    assert out.stdout.strip() == stdout
    assert stderr in out.stderr
    assert marker.read_text() == "ran"


def test_list_models_json_has_paper_counts() -> None:
    result = runner.invoke(app, ["list", "models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) >= {"convlstm", "trajgru", "predrnn", "mim", "motionrnn", "persistence"}
    assert isinstance(rows["convlstm"]["params"], int)
    assert rows["persistence"]["params"] == 0
    # Table II of the paper side by side with ours; equal within 1% where the authors' code
    # uses every parameter it builds (see tests/models/test_param_counts.py for MIM/MotionRNN)
    table_ii = {"convlstm": 0.89, "trajgru": 1.06, "predrnn": 1.80, "mim": 3.68, "motionrnn": 3.78}
    for name, m in table_ii.items():
        assert rows[name]["paper_params"] == m * 1e6, name
    for name in ("convlstm", "trajgru", "predrnn"):
        assert abs(rows[name]["params"] / 1e6 - table_ii[name]) <= 0.01 * table_ii[name], name
    assert rows["mim"]["params"] == 2_902_913
    assert rows["motionrnn"]["params"] == 2_969_271
    assert rows["persistence"]["paper_params"] is None
    # the authors' code at their training defaults, counted layer by layer in
    # tests/models/test_param_counts.py: exactly ours
    assert rows["rainnet"]["params"] == rows["rainnet"]["paper_params"] == 31_380_613
    assert rows["simvp"]["params"] == rows["simvp"]["paper_params"] == 15_778_433


def test_list_models_table_shows_both_counts() -> None:
    result = runner.invoke(app, ["list", "models"])
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.stdout.splitlines() if ln.strip("│ ").startswith("mim"))
    assert "2.90M" in line
    assert "3.68M" in line
    table = runner.invoke(app, ["list", "models"])
    assert "0.89M" in table.stdout


def test_list_losses() -> None:
    result = runner.invoke(app, ["list", "losses", "--json"])
    names = [r["name"] for r in json.loads(result.stdout)]
    plain = ["mse", "mae", "mse+mae", "logcosh"]
    assert names == sorted(plain + [f"ff-{n}" for n in plain])


def test_ingest_that_writes_nothing_fails_and_leaves_nothing(in_tmp: Path, ry_dir: Path) -> None:
    """DWD files given as KNMI: every file fails, exit 1, no empty store or folder left."""
    one = sorted(ry_dir.iterdir())[0]
    result = runner.invoke(app, ["ingest", "knmi", str(one)])
    line = _error_line(result)
    assert line.startswith(f"Error: nothing written: {one}: unreadable HDF5")
    assert "no store was left at nowcast-data/knmi.zarr" in line
    assert "failed" in result.stdout  # the summary still names the file and the reason
    assert list(in_tmp.iterdir()) == []
    # an existing store is kept as it was
    assert runner.invoke(app, ["ingest", "dwd", str(ry_dir), "-q"]).exit_code == 0
    junk = in_tmp / "junk.bin"
    junk.write_bytes(b"junk")
    line = _error_line(runner.invoke(app, ["ingest", "dwd", str(junk), "-q"]))
    assert "nowcast-data/dwd.zarr is unchanged" in line
    info = json.loads(runner.invoke(app, ["info", "--json"]).stdout)
    assert info["frames"] == 13


def test_list_stores_and_runs_with_none_say_how_to_make_one(in_tmp: Path) -> None:
    stores = runner.invoke(app, ["list", "stores"])
    assert stores.exit_code == 0
    assert stores.stdout.startswith("no stores in ./nowcast-data: make one with `nowcast ingest")
    runs = runner.invoke(app, ["list", "runs"])
    assert runs.exit_code == 0
    assert runs.stdout.startswith("no runs in ./runs: train one with `nowcast train")
    assert json.loads(runner.invoke(app, ["list", "stores", "--json"]).stdout) == []


def test_train_at_a_size_the_store_lacks_makes_the_copy(in_tmp: Path, ry_dir: Path) -> None:
    """`nowcast train --size 32` on a store ingested at the default 120: the 32×32 copy is made
    from the store's full grid (no re-ingest), then training runs on it."""
    assert runner.invoke(app, ["ingest", "dwd", str(ry_dir), "-q"]).exit_code == 0
    args = ["train", "--model", "convlstm", "--loss", "mse", "--size", "32", "--layers", "1"]
    args += ["--hidden", "4", "--in-frames", "2", "--out-frames", "2", "--batch", "1"]
    result = runner.invoke(app, [*args, "--max-steps", "1", "--no-predict", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["steps"] == 1
    info = json.loads(runner.invoke(app, ["info", "--json"]).stdout)
    assert info["coarse_sizes"] == [120, 32]
