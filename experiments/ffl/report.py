"""RESULTS.md of the FFL study and its figures, from scores.csv alone.

    python experiments/ffl/report.py [--csv experiments/ffl/scores.csv] [--out experiments/ffl]

Every table and figure comes from the tidy CSV that run.py writes (columns model, fold, arm,
seed, rule, lead_min, threshold, score, stat, value): the runs' per-lead scores under each
selection rule, their training diagnostics and costs, the design (folds, options) and each
comparison's bootstrap intervals. The seed-level statistics (paired per-seed differences, their
t-interval, sign counts, power) are computed here with stats.py; ``discussion.md`` beside the
output is appended as written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import stats  # noqa: E402  (beside this script)

ARMS = ("plain", "ff")
SPLIT_KEYS = ("train", "valid", "test")
RULES = ("val-bmse+bmae", "last")
RULE_TEXT = {
    "val-bmse+bmae": "weights chosen by validation B-MSE + B-MAE (the same rule for both losses)",
    "last": "the last weights (no selection)",
}
LOSS = {"plain": "mse+mae", "ff": "ff-mse+mae"}
MODEL_NAME = {"convlstm": "ConvLSTM", "predrnn": "PredRNN", "rainnet": "RainNet", "simvp": "SimVP"}
#: scores whose smaller values are better
LOWER_BETTER = {"mse", "mae", "b_mse", "b_mae", "gdl", "far"}
LABEL = {"csi": "CSI", "hss": "HSS", "pod": "POD", "far": "FAR", "bias": "BIAS", "mse": "MSE",
         "mae": "MAE", "b_mse": "B-MSE", "b_mae": "B-MAE", "ssim": "SSIM", "gdl": "GDL",
         "psnr": "PSNR"}  # fmt: skip
#: the headline scores: (score, thresholds or None)
HEADLINE = [("csi", True), ("hss", True), ("pod", True), ("mse", False), ("b_mse", False),
            ("ssim", False)]  # fmt: skip

#: FFL − baseline in the paper's Tables II (HKO-7) and III (DWD-12), for the models we run:
#: (score, threshold, absolute difference, relative difference, table)
PAPER_EFFECTS: dict[str, list[tuple[str, float | None, float | None, float | None, str]]] = {
    "convlstm": [
        ("csi", 0.5, 0.696 - 0.666, None, "II"), ("csi", 5.0, 0.560 - 0.531, None, "II"),
        ("hss", 0.5, 0.803 - 0.779, None, "II"), ("hss", 5.0, 0.702 - 0.677, None, "II"),
        ("pod", 0.5, 0.771 - 0.717, None, "III"), ("pod", 2.0, 0.741 - 0.657, None, "III"),
        ("pod", 5.0, 0.676 - 0.542, None, "III"), ("pod", 10.0, 0.398 - 0.271, None, "III"),
        ("ssim", None, 0.803 - 0.785, None, "II"),
        ("mse", None, None, 67.133 / 75.144 - 1, "II"),
        ("b_mse", None, None, 132.148 / 158.658 - 1, "II"),
    ],
    "predrnn": [
        ("csi", 0.5, 0.703 - 0.680, None, "II"), ("csi", 5.0, 0.571 - 0.552, None, "II"),
        ("hss", 0.5, 0.809 - 0.791, None, "II"), ("hss", 5.0, 0.711 - 0.695, None, "II"),
        ("pod", 0.5, 0.774 - 0.738, None, "III"), ("pod", 2.0, 0.748 - 0.683, None, "III"),
        ("pod", 5.0, 0.680 - 0.581, None, "III"), ("pod", 10.0, 0.398 - 0.324, None, "III"),
        ("ssim", None, 0.805 - 0.792, None, "II"),
        ("mse", None, None, 64.833 / 69.312 - 1, "II"),
        ("b_mse", None, None, 135.582 / 144.775 - 1, "II"),
    ],
}  # fmt: skip


def _f(x: float | None, digits: int = 3, signed: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _digits(score: str) -> int:
    return 2 if score in ("mse", "b_mse", "mae", "b_mae", "gdl", "psnr") else 3


def _label(score: str, threshold: float | None) -> str:
    return LABEL[score] + (f" ≥ {threshold:g}" if threshold is not None else "")


def _seeds(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def _folds(n: int) -> str:
    return f"{n} fold{'s' if n != 1 else ''}"


# -- reading the CSV -----------------------------------------------------------------------------
@dataclass
class Data:
    runs: pd.DataFrame  # per-lead scores: model fold arm seed rule lead_min threshold score value
    means: pd.DataFrame  # mean over leads per run: model fold arm seed rule threshold score value
    base: pd.DataFrame  # baselines' mean over leads: fold arm threshold score value
    base_lead: pd.DataFrame  # baselines per lead
    train: pd.DataFrame  # training diagnostics (ΔX_t, W_t)
    cost: pd.DataFrame  # per-run costs
    boot: pd.DataFrame  # bootstrap rows
    design: pd.DataFrame  # fold days and options
    parts: pd.DataFrame  # invocations of run.py: start (fold column), wall_s, cpu_s, runs, load
    models: list[str]
    folds: list[str]


def load(csv_path: Path) -> Data:
    df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    num = pd.to_numeric(df["value"], errors="coerce")
    df["threshold"] = pd.to_numeric(df["threshold"], errors="coerce")
    df["lead_min"] = pd.to_numeric(df["lead_min"], errors="coerce")
    design = df[df["rule"].isin(["fold", "config"])].copy()
    raw = df.copy()
    df["value"] = num
    is_run = (df["seed"] != "") & (df["stat"] == "")
    runs = df[is_run & df["rule"].isin(RULES)].copy()
    runs["seed"] = runs["seed"].astype(int)
    keys = ["model", "fold", "arm", "seed", "rule", "score"]
    # the mean over leads, NaN when a lead is undefined (as nowcast verify's table value)
    means = (
        runs.assign(threshold=runs["threshold"].fillna(-1.0))
        .groupby([*keys, "threshold"], sort=False)["value"]
        .agg(lambda v: v.mean(skipna=False))
        .reset_index()
    )
    means["threshold"] = means["threshold"].replace(-1.0, np.nan)
    is_base = df["arm"].isin(["persistence", "extrapolation"])
    base_lead = df[is_base].copy()
    base = (
        base_lead.assign(threshold=base_lead["threshold"].fillna(-1.0))
        .groupby(["fold", "arm", "score", "threshold"])["value"]
        .agg(lambda v: v.mean(skipna=False))
        .reset_index()
    )
    base["threshold"] = base["threshold"].replace(-1.0, np.nan)
    train = df[is_run & (df["rule"] == "train")].copy()
    cost = df[is_run & (df["rule"] == "run")].copy()
    boot = df[df["stat"] != ""].copy()
    models = [m for m in dict.fromkeys(runs["model"]) if m]
    folds = sorted(set(design.loc[design["rule"] == "fold", "fold"]))
    part = raw[raw["rule"] == "part"]
    parts = part.pivot(index="fold", columns="score", values="value").reset_index()
    for col in ("wall_s", "cpu_s", "runs", "load", "cores"):
        if col in parts:
            parts[col] = pd.to_numeric(parts[col], errors="coerce")
    return Data(runs, means, base, base_lead, train, cost, boot, design, parts, models, folds)


def _design_value(d: Data, **kw: str) -> str:
    sel = d.design
    for k, v in kw.items():
        sel = sel[sel[k] == v]
    return str(sel["value"].iloc[0]) if len(sel) else ""


# -- seed-level comparisons ----------------------------------------------------------------------
@dataclass
class Cell:
    """One score of one comparison: both arms' means, the paired differences and intervals."""

    plain: float
    ff: float
    seed: stats.SeedLevel
    per_seed: np.ndarray
    block: tuple[float, float]
    hier: tuple[float, float]
    n_boot_seeds: int


def complete_seeds(d: Data, model: str, rule: str, folds: list[str]) -> list[int]:
    """Seeds with both arms' runs in every one of `folds`."""
    m = d.means[(d.means["model"] == model) & (d.means["rule"] == rule)]
    have = {(f, a, s) for f, a, s in zip(m["fold"], m["arm"], m["seed"], strict=True)}
    seeds = sorted(set(m["seed"]))
    return [s for s in seeds if all((f, a, s) in have for f in folds for a in ARMS)]


def _run_means(d: Data, model: str, rule: str, score: str, thr: float | None) -> pd.DataFrame:
    m = d.means
    sel = (m["model"] == model) & (m["rule"] == rule) & (m["score"] == score)
    sel &= m["threshold"].isna() if thr is None else np.isclose(m["threshold"], thr)
    return m[sel]


def cell(d: Data, model: str, rule: str, score: str, thr: float | None,
         folds: list[str]) -> Cell | None:  # fmt: skip
    """ff − plain of a score (mean over leads) over `folds`, seeds as the unit."""
    seeds = complete_seeds(d, model, rule, folds)
    if not seeds:
        return None
    m = _run_means(d, model, rule, score, thr)
    table = m.pivot_table(index="seed", columns=["fold", "arm"], values="value", dropna=False)
    table = table.loc[seeds]
    diffs = np.mean([table[(f, "ff")].to_numpy() - table[(f, "plain")].to_numpy()
                     for f in folds], axis=0)  # fmt: skip
    plain = float(np.mean([table[(f, "plain")].mean() for f in folds]))
    ff = float(np.mean([table[(f, "ff")].mean() for f in folds]))
    fold_key = folds[0] if len(folds) == 1 else "pooled"
    b = d.boot[(d.boot["model"] == model) & (d.boot["rule"] == rule)
               & (d.boot["fold"] == fold_key) & (d.boot["score"] == score)]  # fmt: skip
    if thr is not None:
        b = b[np.isclose(b["threshold"], thr)]

    def stat(name: str) -> float:
        v = b.loc[b["stat"] == name, "value"]
        return float(v.iloc[0]) if len(v) else math.nan

    nb = d.boot[(d.boot["model"] == model) & (d.boot["rule"] == rule)
                & (d.boot["fold"] == fold_key) & (d.boot["score"] == "seeds")]  # fmt: skip
    return Cell(plain, ff, stats.t_interval(diffs), diffs,
                (stat("block_low"), stat("block_high")), (stat("hier_low"), stat("hier_high")),
                int(nb["value"].iloc[0]) if len(nb) else 0)  # fmt: skip


def _iv(lo: float, hi: float, digits: int) -> str:
    return f"[{_f(lo, digits, True)}, {_f(hi, digits, True)}]"


def _signs(c: Cell, score: str) -> str:
    worse = c.seed.above if score in LOWER_BETTER else c.seed.below
    better = c.seed.below if score in LOWER_BETTER else c.seed.above
    tie = f", {c.seed.zero} equal" if c.seed.zero else ""
    return f"{worse} worse, {better} better{tie}"


def _verdict_word(c: Cell, score: str) -> str:
    if not c.seed.excludes_zero:
        return "no significant difference"
    good = (c.seed.mean < 0) == (score in LOWER_BETTER)
    return "**FF better**" if good else "**FF worse**"


def comparison_table(d: Data, model: str, rule: str, folds: list[str]) -> list[str]:
    lines = [
        "| score | plain | FF | FF − plain | seed-level 95% t-interval | seeds | verdict "
        "| block bootstrap | hierarchical |",
        "|---|---:|---:|---:|---|---|---|---|---|",
    ]
    for score, per_thr in HEADLINE:
        for thr in thresholds(d) if per_thr else [None]:
            c = cell(d, model, rule, score, thr, folds)
            if c is None:
                continue
            k = _digits(score)
            lines.append(
                f"| {_label(score, thr)} | {_f(c.plain, k)} | {_f(c.ff, k)} | "
                f"{_f(c.seed.mean, k, True)} | {_iv(c.seed.low, c.seed.high, k)} | "
                f"{_signs(c, score)} | {_verdict_word(c, score)} | "
                f"{_iv(*c.block, k)} | {_iv(*c.hier, k)} |"
            )
    return lines


def _bootstrap_coverage(d: Data, model: str, rule: str, seeds: int) -> list[str]:
    """A line when the bootstrap columns cover fewer seeds than the seed-level interval."""
    c = cell(d, model, rule, "csi", thresholds(d)[0], d.folds)
    if c is None or c.n_boot_seeds == seeds:
        return []
    return [
        f"The bootstrap columns cover {c.n_boot_seeds} of these {seeds} seeds: they need every "
        "run's per-block tables, which were not kept for the runs of the earliest parts; the "
        "seed-level interval covers them all.",
        "",
    ]


def thresholds(d: Data) -> list[float]:
    t = d.runs["threshold"].dropna().unique()
    return sorted(float(x) for x in t)


def fold_table(d: Data, model: str, rule: str) -> list[str]:
    """CSI per fold: each fold's seed-level interval and sign count, and its block bootstrap."""
    thr = thresholds(d)
    lines = ["| fold | " + " | ".join(f"CSI ≥ {t:g}" for t in thr) + " | MSE |",
             "|---|" + "---|" * (len(thr) + 1)]  # fmt: skip
    for fold in d.folds:
        cells = []
        for score, t in [("csi", t) for t in thr] + [("mse", None)]:
            c = cell(d, model, rule, score, t, [fold])
            if c is None:
                cells.append("—")
                continue
            k = _digits(score)
            worse = c.seed.above if score in LOWER_BETTER else c.seed.below
            star = " *" if c.seed.excludes_zero else ""
            cells.append(f"{_f(c.seed.mean, k, True)} {_iv(c.seed.low, c.seed.high, k)}{star} "
                         f"({worse}/{c.seed.n} worse; blocks {_iv(*c.block, k)})")  # fmt: skip
        lines.append(f"| {fold} | " + " | ".join(cells) + " |")
    return lines


def verdict(d: Data, model: str, rule: str) -> str:
    """One paragraph per model and rule, from the seed-level intervals only."""
    c: list[tuple[float, Cell]] = []
    for t in thresholds(d):
        x = cell(d, model, rule, "csi", t, d.folds)
        if x is not None:
            c.append((t, x))
    if not c:
        return ""
    n = c[0][1].seed.n
    worse = [t for t, x in c if x.seed.excludes_zero and x.seed.mean < 0]
    better = [t for t, x in c if x.seed.excludes_zero and x.seed.mean > 0]
    parts = ", ".join(
        f"{t:g} mm/h {_f(x.seed.mean, 3, True)} {_iv(x.seed.low, x.seed.high, 3)} "
        f"({x.seed.below} of {x.seed.n} seeds below 0)"
        for t, x in c
    )

    def thr(ts: list[float]) -> str:
        return ", ".join(f"{t:g}" for t in ts) + " mm/h"

    if worse and not better:
        head = f"FF is worse at {thr(worse)}"
    elif better and not worse:
        head = f"FF is better at {thr(better)}"
    elif better and worse:
        head = f"FF is better at {thr(better)} and worse at {thr(worse)}"
    else:
        head = "no threshold's difference is significant"
    rest = [t for t, _ in c if t not in worse + better]
    tail = ""
    if rest and (worse or better):
        tail = f"; at {thr(rest)} the seed-level interval contains 0"
    return (
        f"**{MODEL_NAME.get(model, model)}, {RULE_TEXT[rule]}** ({_seeds(n)} × "
        f"{_folds(len(d.folds))}): {head}{tail}. CSI FF − plain, mean over leads and folds, "
        f"95% t-interval over the seeds: {parts}."
    )


# -- power ---------------------------------------------------------------------------------------
def power_table(d: Data, rule: str) -> list[str]:
    lines = [
        "| model | score | paper's FF − plain (table) | ours: FF − plain | per-seed SD σ | "
        "detectable at 80% power with our seeds | power for the paper's effect | seeds needed "
        "for 80% |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for model in d.models:
        for score, thr, absolute, relative, table in PAPER_EFFECTS.get(model, []):
            c = cell(d, model, rule, score, thr, d.folds)
            if c is None or c.seed.n < 2 or not c.seed.sd > 0 or not c.plain > 0:
                continue  # no scatter (e.g. a score that is 0 for every run): no power to compute
            k = _digits(score)
            if relative is not None:  # per-frame sums scale with the grid: compare in %
                effect = relative * c.plain
                paper = f"{100 * relative:+.1f}% ({table})"
                ours = f"{100 * c.seed.mean / c.plain:+.1f}%"
                sd = f"{100 * c.seed.sd / c.plain:.1f}%"
                mde = f"{100 * stats.detectable(c.seed.n, c.seed.sd) / c.plain:.1f}%"
            else:
                assert absolute is not None
                effect = absolute
                paper = f"{absolute:+.3f} ({table})"
                ours = _f(c.seed.mean, k, True)
                sd = _f(c.seed.sd, k)
                mde = _f(stats.detectable(c.seed.n, c.seed.sd), k)
            pw = stats.power(c.seed.n, effect, c.seed.sd)
            need = stats.seeds_needed(effect, c.seed.sd)
            lines.append(
                f"| {MODEL_NAME.get(model, model)} | {_label(score, thr)} | {paper} | {ours} | "
                f"{sd} | {mde} | {pw:.2f} | {need} |"
            )
    return lines


# -- baselines -----------------------------------------------------------------------------------
def skill_table(d: Data, rule: str) -> list[str]:
    """CSI (mean over leads) of every model and loss against persistence and extrapolation."""
    thr = thresholds(d)
    lines = ["| fold | forecast | " + " | ".join(f"CSI ≥ {t:g}" for t in thr) + " |",
             "|---|---|" + "---:|" * len(thr)]  # fmt: skip
    for fold in [*d.folds, "all"]:
        folds = d.folds if fold == "all" else [fold]
        for name in ("persistence", "extrapolation"):
            b = d.base[(d.base["arm"] == name) & d.base["fold"].isin(folds)
                       & (d.base["score"] == "csi")]  # fmt: skip
            if b["fold"].nunique() != len(folds):
                continue
            vals = [b.loc[np.isclose(b["threshold"], t), "value"].mean() for t in thr]
            lines.append(f"| {fold} | {name} | " + " | ".join(_f(v) for v in vals) + " |")
        for model in d.models:
            for arm in ARMS:
                vals = []
                for t in thr:
                    m = _run_means(d, model, rule, "csi", t)
                    m = m[(m["arm"] == arm) & m["fold"].isin(folds)]
                    vals.append(m.groupby("fold")["value"].mean().mean() if len(m) else math.nan)
                name = f"{MODEL_NAME.get(model, model)} {LOSS[arm]}"
                lines.append(f"| {fold} | {name} | " + " | ".join(_f(v) for v in vals) + " |")
    return lines


# -- figures -------------------------------------------------------------------------------------
def figure_leads(d: Data, rule: str, path: Path) -> None:
    """CSI against lead time per threshold: each model's two arms (seed-level 95% band of the
    arm's mean) and the baselines, all folds together."""
    from matplotlib.figure import Figure

    thr = thresholds(d)
    fig = Figure(figsize=(3.3 * len(thr), 3.4 * len(d.models)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(d.models), len(thr), squeeze=False))
    colours = {"plain": "#1f6fc5", "ff": "#e8531f"}
    for i, model in enumerate(d.models):
        for j, t in enumerate(thr):
            ax = axes[i, j]
            r = d.runs[(d.runs["model"] == model) & (d.runs["rule"] == rule)]
            r = r[(r["score"] == "csi") & np.isclose(r["threshold"], t)]
            seeds = complete_seeds(d, model, rule, d.folds)
            for arm in ARMS:
                a = r[(r["arm"] == arm) & r["seed"].isin(seeds)]
                per_seed = a.groupby(["seed", "lead_min"])["value"].mean().unstack("lead_min")
                if per_seed.empty:
                    continue
                lead = per_seed.columns.to_numpy()
                ivs = [stats.t_interval(per_seed[c].to_numpy()) for c in per_seed.columns]
                ax.plot(lead, [v.mean for v in ivs], marker="o", ms=3, color=colours[arm],
                        label=LOSS[arm])  # fmt: skip
                ax.fill_between(lead, [v.low for v in ivs], [v.high for v in ivs],
                                color=colours[arm], alpha=0.2)  # fmt: skip
            for name, style in (("persistence", ":"), ("extrapolation", "--")):
                b = d.base_lead[(d.base_lead["arm"] == name) & (d.base_lead["score"] == "csi")
                                & np.isclose(d.base_lead["threshold"], t)]  # fmt: skip
                if b["fold"].nunique() == len(d.folds):
                    line = b.groupby("lead_min")["value"].mean()
                    ax.plot(line.index, line.to_numpy(), style, color="grey", label=name)
            ax.set_title(f"{MODEL_NAME.get(model, model)}: CSI ≥ {t:g} mm/h", fontsize=9)
            ax.set_xlabel("lead time (min)")
            ax.grid(alpha=0.3)
        axes[i, 0].set_ylabel("CSI (mean over folds and seeds)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=8)
    fig.savefig(path, dpi=90)


def figure_seeds(d: Data, path: Path) -> None:
    """Every seed's CSI difference FF − plain (mean over leads and folds), with the t-interval."""
    from matplotlib.figure import Figure

    thr = thresholds(d)
    fig = Figure(figsize=(3.0 * len(thr), 2.8 * len(d.models)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(d.models), len(thr), squeeze=False))
    for i, model in enumerate(d.models):
        for j, t in enumerate(thr):
            ax = axes[i, j]
            for k, rule in enumerate(RULES):
                c = cell(d, model, rule, "csi", t, d.folds)
                if c is None:
                    continue
                x = np.full(len(c.per_seed), k) + np.linspace(-0.15, 0.15, len(c.per_seed))
                ax.plot(x, c.per_seed, "o", ms=4, color="#555555", alpha=0.7)
                ax.errorbar([k + 0.3], [c.seed.mean], yerr=[[c.seed.mean - c.seed.low],
                            [c.seed.high - c.seed.mean]], fmt="s", color="#e8531f",
                            capsize=3)  # fmt: skip
            ax.axhline(0, color="grey", lw=0.8)
            ax.set_xticks(range(len(RULES)), ["val-bmse+bmae", "last"], fontsize=8)
            ax.set_title(f"{MODEL_NAME.get(model, model)}: CSI ≥ {t:g} mm/h", fontsize=9)
            ax.grid(alpha=0.3, axis="y")
        axes[i, 0].set_ylabel("FF − plain per seed")
    fig.savefig(path, dpi=90)


def figure_frames(d: Data, path: Path) -> None:
    """The paper's Fig. 2: ΔX_t on the validation windows at the end of training, and W_t."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0 * len(d.models), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(d.models), squeeze=False)[0])
    colours = {"plain": "#1f6fc5", "ff": "#e8531f"}
    for ax, model in zip(axes, d.models, strict=True):
        tr = d.train[d.train["model"] == model]
        for arm in ARMS:
            x = tr[(tr["arm"] == arm) & (tr["score"] == "delta_x_valid")]
            line = x.groupby("lead_min")["value"].mean()
            ax.plot(line.index, line.to_numpy(), marker="o", ms=3, color=colours[arm],
                    label=f"ΔX_t, {LOSS[arm]}")  # fmt: skip
        w = tr[(tr["arm"] == "ff") & (tr["score"] == "weight_train")]
        handles, labels = ax.get_legend_handles_labels()
        if len(w):
            twin = ax.twinx()
            line = w.groupby("lead_min")["value"].mean()
            (h,) = twin.plot(line.index, line.to_numpy(), "--", color="#8c2d04")
            twin.set_ylabel("W_t, last epoch (ff)")
            handles, labels = [*handles, h], [*labels, "W_t, last epoch (ff; right axis)"]
        ax.axvline(0, color="grey", ls=":", lw=0.8)
        ax.set_xlabel("lead time of output frame t (min; ≤ 0: reconstructions)")
        ax.set_ylabel("ΔX_t, mean |error| (pixel/255)")
        ax.set_title(f"{MODEL_NAME.get(model, model)}: end of training, all folds and seeds")
        ax.grid(alpha=0.3)
        ax.legend(handles, labels, fontsize=8, loc="upper left")
    fig.savefig(path, dpi=90)


# -- costs and selection -------------------------------------------------------------------------
def cost_lines(d: Data) -> list[str]:
    c = d.cost.pivot_table(index=["model", "fold", "arm", "seed"], columns="score",
                           values="value")  # fmt: skip
    if c.empty:
        return []
    lines = ["| model | runs | steps | threads | training CPU per run (min) | "
             "everything per run, CPU (min) | wall per run (min) | CPU in all (h) |",
             "|---|---:|---:|---:|---|---|---|---:|"]  # fmt: skip

    def rng(x: pd.DataFrame, col: str) -> str:
        v = x[col] / 60
        return f"{v.median():.1f} ({v.min():.1f}–{v.max():.1f})"

    for model in d.models:
        if model not in c.index.get_level_values(0):
            continue
        x = c.loc[model]
        lines.append(
            f"| {MODEL_NAME.get(model, model)} | {len(x)} | {int(x['steps'].median())} | "
            f"{int(x['threads'].max())} | {rng(x, 'train_cpu_s')} | {rng(x, 'cpu_s')} | "
            f"{rng(x, 'wall_s')} | {x['cpu_s'].sum() / 3600:.1f} |"
        )
    total_cpu = c["cpu_s"].sum() / 3600
    lines += ["", f"All {len(c)} runs: {total_cpu:.1f} h of CPU time (user + system, every "
              "command of a run: training, both forecasts, both verifications, the per-block "
              "tables)."]  # fmt: skip
    return lines


def how_lines(d: Data) -> list[str]:
    """The commands, and each invocation's wall-clock and CPU time."""
    lines = [
        "From the repository root (`make setup` first; the bundled data need nothing else):",
        "",
        "```bash",
        "python experiments/ffl/run.py --hours 1.5   # once per part: trains what is left,",
        "                                            # starts no run after 1.5 h, then tabulates",
        "python experiments/ffl/report.py            # RESULTS.md and figures/ from scores.csv",
        "```",
        "",
    ]
    if d.parts.empty:
        return lines
    p = d.parts.sort_values("fold")
    lines += [
        "| part | started (UTC) | code | runs finished | wall-clock (h) | CPU time (h) | "
        "mean load average |",
        "|---:|---|---|---:|---:|---:|---:|",
        *[
            f"| {i + 1} | {r['fold'].replace('T', ' ').rstrip('Z')} | {r.get('commit') or '—'} "
            f"| {int(r['runs'])} | {r['wall_s'] / 3600:.2f} | {r['cpu_s'] / 3600:.2f} | "
            f"{r['load']:.1f} |"
            for i, (_, r) in enumerate(p.iterrows())
        ],
        "",
    ]
    wall, cpu = p["wall_s"].sum() / 3600, p["cpu_s"].sum() / 3600
    cores = int(p["cores"].max())
    lines.append(
        f"In all {wall:.1f} h of wall-clock time over {len(p)} part(s) and {cpu:.1f} h of CPU "
        f"time (user + system of the script and every command it ran) on {cores} cores, "
        "shared with other jobs (the load average above counts every runnable process on the "
        f"machine, ours included). With two runs at a time on {cores} otherwise idle cores "
        f"the same work takes about the CPU time divided by two: {cpu / 2:.1f} h."
    )
    return lines


def selection_lines(d: Data) -> list[str]:
    c = d.cost.pivot_table(index=["model", "fold", "arm", "seed"], columns="score",
                           values="value")  # fmt: skip
    if c.empty or "selected_step" not in c:
        return []
    lines = ["| model | loss | steps | val-bmse+bmae chose step (median, range) | "
             "runs where it chose the last step | own validation loss would choose (median) | "
             "runs where the two rules differ |", "|---|---|---:|---|---:|---|---:|"]  # fmt: skip
    for model in d.models:
        for arm in ARMS:
            try:
                x = c.loc[(model, slice(None), arm)]
            except KeyError:
                continue
            sel, own = x["selected_step"], x["val_loss_step"]
            lines.append(
                f"| {MODEL_NAME.get(model, model)} | {LOSS[arm]} | {int(x['steps'].median())} "
                f"| {int(sel.median())} ({int(sel.min())}–{int(sel.max())}) | "
                f"{int((sel == x['steps']).sum())} of {len(x)} | {int(own.median())} | "
                f"{int((sel != own).sum())} of {len(x)} |"
            )
    return lines


# -- RESULTS.md ----------------------------------------------------------------------------------
def write_report(csv_path: Path, out_dir: Path = HERE) -> None:
    """Write ``out_dir/RESULTS.md`` and ``out_dir/figures/`` from `csv_path` alone."""
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    out = ["# Does the focal frame loss help? Results", ""]
    if not csv_path.is_file():
        out.append("No run has finished yet: `python experiments/ffl/run.py` trains them.")
        (out_dir / "RESULTS.md").write_text("\n".join(out) + "\n")
        return
    d = load(csv_path)
    thr = thresholds(d)
    out += [
        f"Written by `python experiments/ffl/report.py` from `{csv_path.name}` alone "
        f"({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC); the runs were made by "
        "`python experiments/ffl/run.py` (see *How it was run* at the end).",
        "",
        "## Design",
        "",
        "- **Arms**: `mse+mae` (B-MSE + B-MAE, the paper's baseline; *plain*) against "
        "`ff-mse+mae` (its focal-frame form, k = 2, ε = 0.01; *FF*), both over all output "
        "frames (the recurrent models' 19: 9 reconstructions and 10 forecasts; SimVP's 10 "
        "forecasts, made at once). The two arms of a seed share the initial weights, the data "
        "order and the scheduled-sampling draws; they differ in the loss only.",
        "- **Models**: "
        + "; ".join(
            f"{MODEL_NAME.get(m, m)} `{_design_value(d, model=m, score='options')}`"
            for m in d.models
        )
        + ".",
        "- **Folds** (test days rotated over the 11 days; training and validation days "
        "disjoint from the test days):",
        "",
        "| fold | training days | validation | test days |",
        "|---|---|---|---|",
        *[
            "| " + " | ".join([f, *(_design_value(d, fold=f, score=k) for k in SPLIT_KEYS)]) + " |"
            for f in d.folds
        ],
        "",
        "- **Selection rules, the same for both arms**: `val-bmse+bmae` (the weights of the "
        "validation with the lowest B-MSE + B-MAE over the forecast frames, whatever the "
        "training loss: `best.pt`) and `last` (the final weights, as the authors test). One "
        "training run gives both.",
        "- **Scores**: `nowcast verify` on the fold's test issue times (every 10 minutes), "
        f"forecast leads only, thresholds {', '.join(f'{t:g}' for t in thr)} mm/h (events: rain "
        "≥ τ); a run's score is the mean over lead times of its per-lead score. MSE and B-MSE "
        "are per-frame sums on the [0, 1] pixel scale (as the paper's), so they scale with the "
        "grid.",
        "- **Intervals** of FF − plain: *seed-level* — each seed's difference averaged over the "
        "folds is one observation, 95% Student-t interval over the seeds, and how many seeds "
        "are worse or better; a difference is called significant only when this interval "
        "excludes 0. Beside it the *block bootstrap* (runs fixed; the "
        f"{_design_value(d, score='block_hours')}-hour blocks of test issue times of each fold "
        "resampled, the same draw for every run of the fold) and the *hierarchical* bootstrap "
        "(seeds resampled, then each drawn seed's blocks), "
        f"{_design_value(d, score='bootstrap')} replicates, percentile intervals.",
        "",
    ]
    if d.runs.empty:
        out.append("No main-comparison run has finished yet.")
        (out_dir / "RESULTS.md").write_text("\n".join(out) + "\n")
        return
    out += ["## The answer", ""]
    for rule in RULES:
        for model in d.models:
            v = verdict(d, model, rule)
            if v:
                out += [v, ""]
    for rule in RULES:
        out += [f"## FF − plain, {RULE_TEXT[rule]}", ""]
        for model in d.models:
            seeds = complete_seeds(d, model, rule, d.folds)
            if len(seeds) < 1:
                continue
            out += [
                f"### {MODEL_NAME.get(model, model)}: {_seeds(len(seeds))} × "
                f"{_folds(len(d.folds))} per arm",
                "",
                "Mean over lead times and folds; *seeds*: how many seeds' differences (each "
                "averaged over the folds) are worse or better for FF.",
                "",
                *comparison_table(d, model, rule, d.folds),
                "",
                *_bootstrap_coverage(d, model, rule, len(seeds)),
                "Per fold (CSI and MSE, FF − plain with the seed-level interval, `*` when it "
                "excludes 0; how many seeds are worse; the block bootstrap over that fold's "
                "issue times):",
                "",
                *fold_table(d, model, rule),
                "",
            ]
    figure_seeds(d, figures / "seeds-csi.png")
    out += [
        "### Every seed",
        "",
        "![FF − plain per seed](figures/seeds-csi.png)",
        "",
        "Grey: each seed's CSI difference FF − plain (mean over leads and folds); orange: "
        "their mean with the 95% t-interval; left the `val-bmse+bmae` weights, right the last.",
        "",
        "## Could this study detect the paper's improvement?",
        "",
        "The paper reports FF − plain for each model (Table II, HKO-7: CSI, HSS, SSIM, MSE, "
        "B-MSE; Table III, DWD-12: POD). Against the scatter of our per-seed differences "
        "(σ, weights chosen by `val-bmse+bmae`), the power of the two-sided paired t-test "
        "(95%) to detect an improvement of the paper's size with our seeds, the smallest "
        "difference our seeds detect with 80% power, and the seeds that 80% power for the "
        "paper's effect would need. MSE and B-MSE in % of the plain arm (they scale with the "
        "grid). The paper's effects come from other data and a larger, longer-trained model, "
        "so they are a yardstick, not a prediction for this setting.",
        "",
        *power_table(d, RULES[0]),
        "",
        "## Against persistence and extrapolation",
        "",
        "CSI, mean over leads (models: mean over seeds, `val-bmse+bmae` weights; *all*: mean "
        "over the folds):",
        "",
        *skill_table(d, RULES[0]),
        "",
    ]
    figure_leads(d, RULES[0], figures / "leads-csi.png")
    figure_frames(d, figures / "fig2-frames.png")
    out += [
        "![CSI against lead time](figures/leads-csi.png)",
        "",
        "CSI against lead time (`val-bmse+bmae` weights), mean over folds and seeds; bands: "
        "95% t-interval over the seeds of each arm's mean.",
        "",
        "## The paper's Fig. 2 from our runs",
        "",
        "![ΔX_t at the end of training](figures/fig2-frames.png)",
        "",
        "ΔX_t (mean absolute error of output frame t on the validation windows, at the last "
        "validation) for both losses, and the focal weights W_t of the FF runs in their last "
        "epoch, averaged over folds and seeds.",
        "",
        "## Which weights the rules chose",
        "",
        *selection_lines(d),
        "",
        "## Runs and time",
        "",
        *cost_lines(d),
        "",
        "## How it was run",
        "",
        *how_lines(d),
        "",
    ]
    notes = out_dir / "discussion.md"
    if notes.is_file():
        out += [notes.read_text().strip(), ""]
    (out_dir / "RESULTS.md").write_text("\n".join(out) + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--csv", type=Path, default=HERE / "scores.csv")
    p.add_argument("--out", type=Path, default=None, help="default: the CSV's folder")
    args = p.parse_args(argv)
    write_report(args.csv, args.out or args.csv.parent)


if __name__ == "__main__":
    main()
