"""A run's logs: ``metrics.csv`` (per step and validation) and ``frames.csv`` (per frame).

``frames.csv`` holds, per epoch and split, for every output frame t = 1 … m + n − 1 (m … m + n − 1
for the forecast-only models, RainNet and SimVP) the mean
over the epoch's samples of ΔX_t (mean |e| over the frame's valid pixels; the paper's Fig. 2)
and, for focal losses, of the weight W_t; ``samples`` says how many samples each mean is over
(for training: the windows of the epoch's full batches, see `nowcast_cli.samples.batch_order`).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["FRAMES_COLUMNS", "METRICS_COLUMNS", "CsvLog", "FrameStats", "truncate_logs"]

METRICS_COLUMNS = [
    "step", "epoch", "split", "loss", "plain_loss", "b_mse", "b_mae", "csi", "select_score",
    "lr", "teacher_prob", "grad_norm", "samples_per_s", "elapsed_s",
]  # fmt: skip
FRAMES_COLUMNS = ["epoch", "step", "split", "frame", "samples", "delta_x", "weight"]


class FrameStats:
    """Running sums of ΔX_t and W_t over samples (the paper's Fig. 2).

    ``t`` is (4, frames) float64: Σ ΔX_t, samples with a valid pixel in frame t, Σ W_t,
    samples weighted. Sums, so that processes' shares add up (`distributed.reduce`).
    """

    def __init__(self, frames: int, device: torch.device, start: int = 1) -> None:
        self.t = torch.zeros(4, frames, dtype=torch.float64, device=device)
        self.start = start  # frame index t of the first output (1, or m: forecast only)

    def add(self, abs_err: Tensor, valid: Tensor, weights: Tensor | None, first: int) -> None:
        """Add a batch: |e| and masks (B, T, …), focal weights (B, T − first) or None."""
        v = valid.to(abs_err.dtype).flatten(2)  # (B, T, pixels)
        count = v.sum(2)
        dx = (abs_err.flatten(2) * v).sum(2) / count.clamp(min=1)  # (B, T)
        seen = (count > 0).to(torch.float64)
        self.t[0] += (dx.double() * seen).sum(0)
        self.t[1] += seen.sum(0)
        if weights is not None:
            self.t[2, first:] += weights.double().sum(0)
            self.t[3, first:] += weights.shape[0]

    def rows(self, epoch: int, step: int, split: str, focal: bool) -> list[dict[str, Any]]:
        """frames.csv rows: mean ΔX_t and (focal losses) mean W_t per output frame t."""
        dx = (self.t[0] / self.t[1].clamp(min=1)).tolist()
        w = (self.t[2] / self.t[3].clamp(min=1)).tolist()
        n, nw = self.t[1].tolist(), self.t[3].tolist()
        return [
            {
                "epoch": epoch,
                "step": step,
                "split": split,
                "frame": self.start + i,
                "samples": int(n[i]),
                "delta_x": dx[i] if n[i] else "",
                "weight": w[i] if focal and nw[i] else "",
            }
            for i in range(len(dx))
        ]


def _num(x: float) -> str:
    return f"{x:.8g}"


class CsvLog:
    """Appends rows to a CSV file (header once), flushed per row so a crash loses nothing."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        new = not path.is_file() or path.stat().st_size == 0
        if not new:
            _upgrade(path, columns)
        self.fh = path.open("a", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.fh, columns, extrasaction="ignore")
        if new:
            self.writer.writeheader()
            self.fh.flush()

    def write(self, row: dict[str, Any]) -> None:
        """Append one row (floats with 8 significant digits)."""
        self.writer.writerow({k: _num(v) if isinstance(v, float) else v for k, v in row.items()})
        self.fh.flush()

    def close(self) -> None:
        """Close the file."""
        self.fh.close()


def _upgrade(path: Path, columns: list[str]) -> None:
    """Rewrite a log written with other columns (an older version) under `columns`."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        header = reader.fieldnames
    if header is None or list(header) == columns:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def truncate_logs(run: Path, step: int) -> None:
    """Drop log rows written after the checkpoint a run resumes from (they will be redone)."""
    for name in ("metrics.csv", "frames.csv"):
        path = run / name
        if not path.is_file():
            continue
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        if not rows:
            continue
        col = rows[0].index("step")
        keep = [rows[0]] + [r for r in rows[1:] if r and int(r[col]) <= step]
        tmp = path.with_name(f".{name}.tmp")
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(keep)
        os.replace(tmp, path)
