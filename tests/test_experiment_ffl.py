"""experiments/ffl/run.py end to end, in its 5-step smoke mode, with one seed of the main pair."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "ffl" / "run.py"


@pytest.mark.slow
def test_study_smoke_runs_every_step_and_resumes(tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--seeds", "1", "--only", "main",
           "--work", str(work), "--results", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    committed = SCRIPT.parent / "RESULTS.md"
    before = committed.stat().st_mtime_ns if committed.exists() else None
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "2 of 2 runs to train" in first.stdout
    for run in ("plain-s2021", "ff-s2021", "persistence", "extrapolation"):
        scores = json.loads((work / "runs" / run / "scores.json").read_text())
        assert scores["thresholds_mm_h"] == [0.5, 2.0, 5.0, 10.0]
        assert "bootstrap" in scores
    plain = (work / "runs/plain-s2021/config.toml").read_text()
    focal = (work / "runs/ff-s2021/config.toml").read_text()
    assert 'loss = "mse+mae"' in plain
    assert 'loss = "ff-mse+mae"' in focal

    results = (out / "RESULTS.md").read_text()
    assert "## Main comparison: ff-mse+mae against mse+mae, 1 seed each" in results
    assert "**persistence**" in results
    assert "**extrapolation**" in results
    for name in ("main-csi.png", "fig2-frames.png", "fig2-weights.png", "sample.png"):
        assert (out / "figures" / name).stat().st_size > 1000
    cmp = json.loads((out / "figures" / "compare-main.json").read_text())
    assert cmp["pairs"] == 1
    assert "ff-s2021" in cmp["a"]
    assert "plain-s2021" in cmp["b"]

    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 of 2 runs to train" in again.stdout
    # the committed RESULTS.md beside the script is not touched by a run elsewhere
    assert (committed.stat().st_mtime_ns if committed.exists() else None) == before
