"""experiments/ffl/run.py end to end in its smoke mode (5 steps per run, one fold, two seeds),
its folds, and report.py from the CSV alone."""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "ffl" / "run.py"


def _run_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("ffl_run", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ffl_run"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("table", ["CPU_MODELS", "PAPER_MODELS", "SMOKE_MODELS"])
def test_every_study_size_is_a_valid_model(table: str) -> None:
    """Each model size the study can pass to ``nowcast train`` builds (SimVP's translator, for
    one, needs N_T ≥ 2), at the frame size and frame counts of its configuration."""
    from nowcast_cli.models import model_config

    run = _run_module()
    base = run.PAPER if table == "PAPER_MODELS" else run.CPU
    sizes = getattr(run, table)
    assert set(sizes) == set(run.CPU_MODELS)
    for name, size in sizes.items():
        model_config(name, **size, in_frames=base["in-frames"])


def test_folds_rotate_the_test_days_with_training_on_both_sides() -> None:
    run = _run_module()
    days = [dt.date(2018, 5, 10) + dt.timedelta(days=i) for i in range(11)]
    folds = run.make_folds(days)
    assert [(f.test, f.valid) for f in folds] == [
        ("2018-05-10:2018-05-12", "2018-05-13:2018-05-13"),
        ("2018-05-14:2018-05-16", "2018-05-13:2018-05-13"),
        ("2018-05-18:2018-05-20", "2018-05-17:2018-05-17"),
    ]
    assert folds[1].train == "2018-05-10:2018-05-12,2018-05-17:2018-05-20"
    for f in folds:  # every day in exactly one split
        spans = [r.split(":") for part in (f.train, f.valid, f.test) for r in part.split(",")]
        covered = sorted(
            dt.date.fromisoformat(a) + dt.timedelta(days=k)
            for a, b in spans
            for k in range((dt.date.fromisoformat(b) - dt.date.fromisoformat(a)).days + 1)
        )
        assert covered == days
    # days without data are skipped, not used as a split's day
    gappy = [d for d in days if d.day != 15]  # 10 days: 2 test days per fold
    assert [f.test for f in run.make_folds(gappy)] == [
        "2018-05-10:2018-05-11", "2018-05-14:2018-05-16", "2018-05-19:2018-05-20",
    ]  # fmt: skip
    with pytest.raises(SystemExit, match="too few for 3 folds"):
        run.make_folds(days[:4])


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_study_smoke_runs_every_step_resumes_and_reports_from_the_csv(tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--seeds", "2", "--folds", "1",
           "--models", "convlstm", "--work", str(work), "--results", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    committed = [SCRIPT.parent / n for n in ("RESULTS.md", "scores.csv")]
    before = [p.stat().st_mtime_ns if p.exists() else None for p in committed]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "4 of 4 runs to train" in first.stdout

    rows = _rows(out / "scores.csv")
    runs = {(r["arm"], r["seed"]) for r in rows if r["seed"]}
    assert runs == {(a, s) for a in ("plain", "ff") for s in ("2021", "2022")}
    for arm, seed in runs:  # both selection rules, every lead and threshold of CSI
        for rule in ("val-bmse+bmae", "last"):
            csi = [r for r in rows if (r["arm"], r["seed"], r["rule"], r["score"])
                   == (arm, seed, rule, "csi")]  # fmt: skip
            assert len(csi) == 10 * 4, (arm, seed, rule)
    boot = [r for r in rows if r["stat"]]
    assert {(r["fold"], r["rule"]) for r in boot} == {
        (f, rule) for f in ("f1", "pooled") for rule in ("val-bmse+bmae", "last")
    }
    assert {r["stat"] for r in boot} >= {"estimate", "block_low", "hier_high"}
    assert {r["arm"] for r in rows if not r["seed"] and r["lead_min"]} == {
        "persistence",
        "extrapolation",
    }
    assert [r["score"] for r in rows if r["rule"] == "part"] == [
        "commit", "cores", "cpu_s", "load", "runs", "wall_s",
    ]  # fmt: skip
    results = (out / "RESULTS.md").read_text()
    for heading in ("## The answer", "### ConvLSTM: 2 seeds × 1 fold per arm",
                    "## Could this study detect", "## How it was run"):  # fmt: skip
        assert heading in results
    for name in ("leads-csi.png", "seeds-csi.png", "fig2-frames.png"):
        assert (out / "figures" / name).stat().st_size > 1000
    # every run's per-block tables are kept with the results, so later parts can bootstrap them
    assert sorted(p.name for p in (out / "blocks").iterdir()) == sorted(
        f"convlstm-f1-{arm}-s{seed}-{rule}.npz"
        for arm, seed in runs
        for rule in ("val-bmse+bmae", "last")
    )

    # a rerun trains nothing, even for a run whose folder is gone (its scores are in the CSV)
    shutil.rmtree(work / "runs" / "convlstm-f1-ff-s2022")
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 of 4 runs to train" in again.stdout
    kept = _rows(out / "scores.csv")
    assert [r for r in kept if r["seed"] == "2022" and r["arm"] == "ff"] == [
        r for r in rows if r["seed"] == "2022" and r["arm"] == "ff"
    ]
    assert len([r for r in kept if r["rule"] == "part"]) == 2 * 6  # one set per invocation

    # RESULTS.md from the CSV alone: no work folder at all
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(out / "scores.csv", alone / "scores.csv")
    shutil.rmtree(work)
    report = subprocess.run([sys.executable, str(SCRIPT.parent / "report.py"), "--csv",
                             str(alone / "scores.csv")], capture_output=True, text=True,
                            env=env, timeout=300)  # fmt: skip
    assert report.returncode == 0, report.stderr[-3000:]

    def body(text: str) -> list[str]:  # all but the line with the time of writing
        return [line for line in text.splitlines() if not line.startswith("Written by")]

    assert body((alone / "RESULTS.md").read_text()) == body((out / "RESULTS.md").read_text())
    # the committed files beside the script are not touched by a study elsewhere
    assert [p.stat().st_mtime_ns if p.exists() else None for p in committed] == before
