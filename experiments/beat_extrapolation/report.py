"""RESULTS.md of the extrapolation comparison, from scores.csv alone.

python experiments/beat_extrapolation/report.py [scores.csv] [RESULTS.md]
"""

from __future__ import annotations

import csv
import math
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GOAL = ("0.5", "2")  # thresholds of the goal (mm/h), as scores.csv writes them
MEAN = "mean"
NAMES = {"extrapolation": "extrapolation (pysteps LK + semi-Lagrangian)"}


def _f(x: Any, digits: int = 3, signed: bool = False) -> str:
    if x in ("", None) or not math.isfinite(float(x)):
        return "—"
    return f"{float(x):+.{digits}f}" if signed else f"{float(x):.{digits}f}"


def _iv(r: dict[str, str] | None, signed: bool = False) -> str:
    if r is None:
        return "—"
    lo, hi = r["low"], r["high"]
    star = ""
    if signed and lo != "" and (float(lo) > 0 or float(hi) < 0):
        star = " *"
    return (
        f"{_f(r['value'], signed=signed)} [{_f(lo, signed=signed)}, {_f(hi, signed=signed)}]{star}"
    )


def _thr(t: str) -> str:
    return f"{float(t):g}"


class Scores:
    """scores.csv, indexed by (section, config, seed, lead_minutes, threshold, metric)."""

    def __init__(self, path: Path) -> None:
        with path.open(newline="") as fh:
            self.rows = list(csv.DictReader(fh))
        self.index = {
            (
                r["section"],
                r["config"],
                r["seed"],
                r["lead_minutes"],
                r["threshold"],
                r["metric"],
            ): r
            for r in self.rows
        }

    def get(
        self,
        section: str,
        config: str = "",
        seed: Any = "",
        lead: Any = "",
        thr: Any = "",
        metric: str = "",
    ) -> dict[str, str] | None:
        return self.index.get((section, config, str(seed), str(lead), str(thr), metric))

    def value(self, *args: Any, **kw: Any) -> str:
        r = self.get(*args, **kw)
        return r["value"] if r else ""

    def setup(self) -> dict[str, str]:
        return {r["metric"]: r["value"] for r in self.rows if r["section"] == "setup"}

    def configs(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = defaultdict(dict)
        for r in self.rows:
            if r["section"] == "config":
                out[r["config"]][r["metric"]] = r["value"]
        return dict(out)

    def seeds(self, config: str) -> list[str]:
        return sorted(
            {r["seed"] for r in self.rows if r["section"] == "run" and r["config"] == config}
        )

    def baselines(self) -> list[str]:
        refs = {
            r["section"].removeprefix("vs-") for r in self.rows if r["section"].startswith("vs-")
        }
        return sorted({x.split("-")[0] for x in refs}, key=lambda x: x != "extrapolation")

    def thresholds(self) -> list[str]:
        seen = dict.fromkeys(
            r["threshold"] for r in self.rows if r["section"] == "score" and r["threshold"]
        )
        return sorted(seen, key=float)


def _mean_csi(s: Scores, config: str, seed: Any, thr: str) -> str:
    """Mean over leads of a run's CSI (scores.csv of the run, its lead rows)."""
    vals = [
        float(r["value"])
        for r in s.rows
        if r["section"] == "score"
        and r["config"] == config
        and r["seed"] == str(seed)
        and r["threshold"] == thr
        and r["metric"] == "csi"
        and r["lead_minutes"] not in ("", MEAN)
    ]
    return str(sum(vals) / len(vals)) if vals else ""


@dataclass(frozen=True)
class SeedInterval:
    """Mean of the per-seed differences, its Student-t 95% interval and the sign count."""

    n: int
    mean: float
    low: float
    high: float
    above: int  # seeds whose difference is > 0

    def text(self) -> str:
        if self.n < 2:
            return f"{_f(self.mean, signed=True)} (one seed: no interval)"
        star = " *" if self.low > 0 or self.high < 0 else ""
        return (
            f"{_f(self.mean, signed=True)} [{_f(self.low, signed=True)}, "
            f"{_f(self.high, signed=True)}]{star}, {self.above} of {self.n} seeds above 0"
        )


def seed_interval(diffs: list[float], level: float = 0.95) -> SeedInterval:
    """Student-t interval over independent training runs (the seeds are the unit)."""
    n = len(diffs)
    mean = sum(diffs) / n
    above = sum(d > 0 for d in diffs)
    if n < 2:
        return SeedInterval(n, mean, math.nan, math.nan, above)
    from scipy.stats import t  # scipy comes with pysteps, which the baseline needs

    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return SeedInterval(n, mean, mean - half, mean + half, above)


def seed_differences(s: Scores, config: str, thr: str, ref: str = "extrapolation") -> list[float]:
    """Each seed's mean-over-leads CSI difference config − ref (from its own comparison)."""
    return [
        float(r["value"])
        for seed in s.seeds(config)
        if (r := s.get(f"vs-{ref}-seed", config, seed, MEAN, thr, "csi")) is not None
    ]


def verdict(s: Scores, config: str, ref: str = "extrapolation") -> tuple[bool, list[str]]:
    """Whether config beats ref at every goal threshold: the seed-level t-interval of the
    difference above 0 (at least 3 seeds), with the one-line reasons (and the bootstrap)."""
    parts, met = [], True
    for thr in GOAL:
        r = s.get(f"vs-{ref}", config, "all", MEAN, thr, "csi")
        diffs = seed_differences(s, config, thr, ref)
        if r is None or not diffs:
            return False, ["no comparison"]
        seeds = seed_interval(diffs)
        met &= seeds.n >= 3 and seeds.low > 0
        parts.append(
            f"CSI ≥ {_thr(thr)} mm/h: over seeds {seeds.text()}; bootstrap {_iv(r, signed=True)}"
        )
    return met, parts


def write_report(scores: Path, out: Path) -> str:
    s = Scores(scores)
    setup, configs = s.setup(), s.configs()
    refs = s.baselines()
    ths = s.thresholds()
    budget = float(setup.get("budget_s", 3600))
    lines = [
        "# Does a network trained for an hour on this CPU beat extrapolation? Results",
        "",
        "Written by `python experiments/beat_extrapolation/report.py` from `scores.csv` "
        "(which `run.py` collects from `nowcast verify`). Discussion and the pilot runs that "
        "chose the configurations: [discussion.md](discussion.md).",
        "",
        "## Verdict",
        "",
        "Goal (issue 20): mean CSI over the forecast leads at 0.5 and 2 mm/h above "
        "extrapolation's: the 95% Student-t interval of the per-seed differences (the "
        "independent training runs are the unit; at least 3 seeds) above 0. The two-stage "
        "bootstrap over seeds and six-hour blocks of issue times is shown beside it.",
        "",
    ]
    for config in configs:
        met, parts = verdict(s, config)
        n = len(s.seeds(config))
        word = "**met**" if met else "**not met**"
        lines.append(f"- `{config}` ({n} seeds): {word}. " + "; ".join(parts) + ".")
    times = [
        float(r["value"])
        for r in s.rows
        if r["section"] == "run" and r["metric"] == "train_seconds"
    ]
    if times:
        within = "within" if max(times) <= budget else "**over**"
        lines += [
            "",
            f"Training time per run: {min(times) / 60:.0f}–{max(times) / 60:.0f} min, "
            f"{within} the budget of {budget / 60:.0f} min.",
        ]
    size = setup.get("size", "?")
    lines += [
        "",
        "## Setup",
        "",
        "- Data: DWD RADKLIM YW, 10–20 May 2018 (bundled), DWD Z–R (Z = 256 R^1.42), the "
        f"training copy at {size}×{size} of the 190×190 km cut-out. Train 10–16 May, "
        "validation 17 May, test 18–20 May: issue times every 10 minutes.",
        f"- Windows: {setup.get('in-frames')} observed + {setup.get('out-frames')} forecast "
        f"frames (5–{5 * int(setup.get('out-frames', 10))} min), every window (stride "
        f"{setup.get('stride')}), batch {setup.get('batch')}, {setup.get('optimizer')} at lr "
        f"{setup.get('lr')}, validation on {setup.get('valid-samples')} windows; "
        f"{setup.get('threads')} thread per run, two runs at a time on the 2 cores.",
        "- Selection: every run's last weights (`nowcast predict --checkpoint last`), the same "
        "rule for all.",
        "- Verification: `nowcast verify --compare` on the issue times all runs share, forecast "
        f"leads only, thresholds {', '.join(_thr(t) for t in ths)} mm/h (rain ≥ τ). Each model's "
        "seeds are pooled and paired with the baseline; the 95% interval comes from "
        f"{setup.get('bootstrap')} two-stage bootstrap replicates (seeds, then "
        f"{setup.get('block_hours')}-hour blocks of issue times). `*`: the interval excludes 0.",
        "",
        "| configuration | model | loss | options |",
        "|---|---|---|---|",
    ]
    for name, cfg in configs.items():
        opts = ", ".join(f"--{k} {v}" for k, v in cfg.items() if k not in ("model", "loss"))
        lines.append(f"| `{name}` | {cfg.get('model')} | {cfg.get('loss')} | {opts} |")

    for ref in refs:
        lines += [
            "",
            f"## Against {NAMES.get(ref, ref)}: mean over the forecast leads",
            "",
            "| configuration | score | model (seeds pooled) | " + ref + " | model − " + ref + " |",
            "|---|---|---:|---:|---:|",
        ]
        for config in configs:
            for metric in ("csi", "hss"):
                for thr in ths:
                    a = s.get(f"vs-{ref}-a", config, "all", MEAN, thr, metric)
                    b = s.get(f"vs-{ref}-b", config, "all", MEAN, thr, metric)
                    d = s.get(f"vs-{ref}", config, "all", MEAN, thr, metric)
                    lines.append(
                        f"| `{config}` | {metric.upper()} ≥ {_thr(thr)} | {_iv(a)} | {_iv(b)} | "
                        f"{_iv(d, signed=True)} |"
                    )
        shared = {s.value(f"vs-{ref}", c, "all", "", "", "shared_issue_times") for c in configs}
        lines += ["", f"Issue times compared: {', '.join(sorted(shared))}."]

    lines += [
        "",
        "## Per seed (against extrapolation, mean over leads; a seed's interval is over blocks of "
        "issue times, the last row's over seeds: Student-t, 95%)",
        "",
    ]
    head = " | ".join(f"CSI ≥ {_thr(t)}" for t in ths)
    lines += [
        f"| configuration | seed | {head} | training [min] | steps |",
        "|---|---:|" + "---:|" * len(ths) + "---:|---:|",
    ]
    for config in configs:
        for seed in s.seeds(config):
            cells = [
                _iv(s.get("vs-extrapolation-seed", config, seed, MEAN, t, "csi"), signed=True)
                for t in ths
            ]
            minutes = _f(
                float(s.value("run", config, seed, "", "", "train_seconds") or "nan") / 60, 1
            )
            steps = s.value("run", config, seed, "", "", "steps")
            lines.append(f"| `{config}` | {seed} | {' | '.join(cells)} | {minutes} | {steps} |")
        over = [seed_interval(d).text() if (d := seed_differences(s, config, t)) else "—"
                for t in ths]  # fmt: skip
        lines.append(f"| `{config}` | **over seeds** | {' | '.join(over)} | | |")

    lines += ["", "## CSI per lead time: model − extrapolation (seeds pooled)", ""]
    leads = sorted(
        {
            int(r["lead_minutes"])
            for r in s.rows
            if r["section"] == "vs-extrapolation" and r["lead_minutes"] not in ("", MEAN)
        }
    )
    for config in configs:
        lines += [
            f"`{config}`:",
            "",
            "| lead | " + " | ".join(f"≥ {_thr(t)} mm/h" for t in ths) + " |",
            "|---:|" + "---:|" * len(ths),
        ]
        for lead in leads:
            cells = [
                _iv(s.get("vs-extrapolation", config, "all", lead, t, "csi"), signed=True)
                for t in ths
            ]
            lines.append(f"| {lead} min | " + " | ".join(cells) + " |")
        lines.append("")

    lines += ["## Reference rows (one run each, CSI mean over leads)", ""]
    lines += [
        "| forecast | " + " | ".join(f"CSI ≥ {_thr(t)}" for t in ths) + " |",
        "|---|" + "---:|" * len(ths),
    ]
    for ref in refs:
        cells = [_f(_mean_csi(s, ref, "", t)) for t in ths]
        lines.append(f"| {ref} | " + " | ".join(cells) + " |")
    for config in configs:
        for seed in s.seeds(config):
            cells = [_f(_mean_csi(s, config, seed, t)) for t in ths]
            lines.append(f"| `{config}` seed {seed} | " + " | ".join(cells) + " |")
    text = "\n".join(lines).rstrip() + "\n"
    out.write_text(text)
    return text


if __name__ == "__main__":
    args = [Path(a) for a in sys.argv[1:]]
    write_report(
        args[0] if args else HERE / "scores.csv", args[1] if len(args) > 1 else HERE / "RESULTS.md"
    )
