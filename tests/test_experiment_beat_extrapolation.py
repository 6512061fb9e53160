"""experiments/beat_extrapolation/run.py end to end in its 3-step smoke mode, and its report."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HERE = REPO / "experiments" / "beat_extrapolation"
SCRIPT = HERE / "run.py"


@pytest.mark.slow
def test_smoke_runs_every_step_resumes_and_reports(tmp_path: Path) -> None:
    pytest.importorskip("pysteps")  # the extrapolation baseline
    work, scores, results = tmp_path / "work", tmp_path / "scores.csv", tmp_path / "RESULTS.md"
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--seeds", "1", "--configs", "simvp",
           "--work", str(work), "--scores", str(scores), "--results", str(results)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    committed = [(p, p.stat().st_mtime_ns) for p in (HERE / "scores.csv", HERE / "RESULTS.md")
                 if p.exists()]  # fmt: skip
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "1 of 1 runs to train" in first.stdout
    with scores.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    sections = {r["section"] for r in rows}
    assert {
        "setup",
        "config",
        "run",
        "score",
        "vs-extrapolation",
        "vs-extrapolation-seed",
    } <= sections
    goal = [r for r in rows if r["section"] == "vs-extrapolation" and r["lead_minutes"] == "mean"
            and r["metric"] == "csi"]  # fmt: skip
    assert sorted(r["threshold"] for r in goal) == ["0.5", "2", "5"]
    assert all(float(r["low"]) <= float(r["value"]) <= float(r["high"]) for r in goal)
    text = results.read_text()
    assert "- `simvp` (1 seeds): **" in text
    assert "| `simvp` | CSI ≥ 2 |" in text
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 of 1 runs to train" in again.stdout
    # the committed files beside the script are not touched by a run elsewhere
    assert [(p, p.stat().st_mtime_ns) for p, _ in committed] == committed


def test_report_is_built_from_the_csv_alone(tmp_path: Path) -> None:
    sys.path.insert(0, str(HERE))
    try:
        from report import verdict, write_report
    finally:
        sys.path.remove(str(HERE))
    cols = "section,config,seed,lead_minutes,threshold,metric,value,low,high"
    rows = [
        "setup,,,,,size,32,,", "setup,,,,,budget_s,3600,,", "config,m,,,,model,simvp,,",
        "run,m,1,,,train_seconds,1800,,", "run,m,1,,,steps,100,,",
        "score,m,1,5,0.5,csi,0.6,,", "score,m,1,10,0.5,csi,0.4,,",
        "score,extrapolation,,5,0.5,csi,0.5,,", "score,extrapolation,,10,0.5,csi,0.3,,",
        "vs-extrapolation,m,all,mean,0.5,csi,0.1,0.02,0.2",
        "vs-extrapolation,m,all,mean,2,csi,0.05,-0.01,0.1",
    ]  # fmt: skip
    path = tmp_path / "scores.csv"
    path.write_text("\n".join([cols, *rows]) + "\n")
    text = write_report(path, tmp_path / "R.md")
    assert "`m` (1 seeds): **not met**" in text  # 2 mm/h: the interval reaches below 0
    assert "| extrapolation | 0.400 |" in text  # the mean over the two leads
    assert "| `m` seed 1 | 0.500 |" in text
    assert "30–30 min, within the budget of 60 min" in text
    path.write_text(path.read_text().replace("0.05,-0.01,0.1", "0.05,0.01,0.1"))
    assert verdict(__import__("report").Scores(path), "m")[0]
