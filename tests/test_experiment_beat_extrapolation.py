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


def _report() -> object:
    sys.path.insert(0, str(HERE))
    try:
        import report
    finally:
        sys.path.remove(str(HERE))
    return report


def test_report_is_built_from_the_csv_alone(tmp_path: Path) -> None:
    report = _report()
    cols = "section,config,seed,lead_minutes,threshold,metric,value,low,high"
    rows = [
        "setup,,,,,size,32,,", "setup,,,,,budget_s,3600,,", "config,m,,,,model,simvp,,",
        "score,m,1,5,0.5,csi,0.6,,", "score,m,1,10,0.5,csi,0.4,,",
        "score,extrapolation,,5,0.5,csi,0.5,,", "score,extrapolation,,10,0.5,csi,0.3,,",
        "vs-extrapolation,m,all,mean,0.5,csi,0.1,0.02,0.2",
        "vs-extrapolation,m,all,mean,2,csi,0.05,0.01,0.1",
    ]  # fmt: skip
    # three seeds: at 0.5 mm/h differences 0.1, 0.2, 0.3 (mean 0.2, sd 0.1), at 2 mm/h 0.10,
    # 0.11, 0.12 (mean 0.11, sd 0.01)
    for seed, d05, d2 in ((1, 0.1, 0.10), (2, 0.2, 0.11), (3, 0.3, 0.12)):
        rows += [f"run,m,{seed},,,train_seconds,1800,,", f"run,m,{seed},,,steps,100,,",
                 f"vs-extrapolation-seed,m,{seed},mean,0.5,csi,{d05},0,1",
                 f"vs-extrapolation-seed,m,{seed},mean,2,csi,{d2},0,1"]  # fmt: skip
    path = tmp_path / "scores.csv"
    path.write_text("\n".join([cols, *rows]) + "\n")
    text = report.write_report(path, tmp_path / "R.md")  # type: ignore[attr-defined]
    # t(0.975, 2) = 4.302653 (Student's table): 0.2 ± 4.302653 · 0.1 / √3 = [−0.048, +0.448]
    assert "over seeds +0.200 [-0.048, +0.448], 3 of 3 seeds above 0" in text
    assert "over seeds +0.110 [+0.085, +0.135] *" in text  # 0.11 ± 4.302653 · 0.01 / √3
    # the bootstrap intervals both exclude 0, but the seed-level one at 0.5 mm/h does not
    assert "`m` (3 seeds): **not met**" in text
    assert "| extrapolation | 0.400 |" in text  # the mean over the two leads
    assert "| `m` seed 1 | 0.500 |" in text
    assert "30–30 min, within the budget of 60 min" in text
    scores = report.Scores  # type: ignore[attr-defined]
    assert not report.verdict(scores(path), "m")[0]  # type: ignore[attr-defined]
    path.write_text(path.read_text().replace("mean,0.5,csi,0.1,0,1", "mean,0.5,csi,0.19,0,1"))
    path.write_text(path.read_text().replace("mean,0.5,csi,0.3,0,1", "mean,0.5,csi,0.21,0,1"))
    assert report.verdict(scores(path), "m")[0]  # type: ignore[attr-defined]
    # two seeds are not enough, however narrow their interval
    two = [
        r for r in path.read_text().splitlines() if not r.startswith("vs-extrapolation-seed,m,3")
    ]
    path.write_text("\n".join(two) + "\n")
    assert not report.verdict(scores(path), "m")[0]  # type: ignore[attr-defined]
