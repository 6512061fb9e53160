"""RESULTS.md of the FFL study, from the runs' scores and `nowcast verify --compare`."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import platform
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
THRESHOLDS = [0.5, 2.0, 5.0, 10.0]


def _f(x: float | None, digits: int = 3, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _seeds(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def _iv(v: float | None, lo: float | None, hi: float | None, signed: bool = False) -> str:
    if v is None:
        return "—"
    star = " *" if signed and lo is not None and hi is not None and (lo > 0 or hi < 0) else ""
    return f"{_f(v, signed=signed)} [{_f(lo, signed=signed)}, {_f(hi, signed=signed)}]{star}"


def _runs_csv(study: Any, folders: list[str]) -> list[dict[str, Any]]:
    rows = []
    for f in folders:
        with (study.work / f / "metrics.csv").open() as fh:
            last = [r for r in csv.DictReader(fh) if r["split"] == "train"][-1]
        minutes = float(last["elapsed_s"]) / 60
        rows.append({"run": f, "steps": int(last["step"]), "minutes": minutes})
    return rows


def _main_table(cmp: dict[str, Any], metric: str, lead_minutes: list[int]) -> list[str]:
    """Per lead and threshold: plain, focal (pooled over seeds) and FF − plain, intervals."""
    pl = cmp["per_lead"][metric]
    lines = [
        "| lead | threshold | plain (mse+mae) | focal (ff-mse+mae) | FF − plain |",
        "|---:|---:|---:|---:|---:|",
    ]
    for i, minutes in enumerate(lead_minutes):
        for j, thr in enumerate(THRESHOLDS):
            a = (pl["a"][i][j], pl["a_low"][i][j], pl["a_high"][i][j])
            b = (pl["b"][i][j], pl["b_low"][i][j], pl["b_high"][i][j])
            d = (pl["a_minus_b"][i][j], pl["low"][i][j], pl["high"][i][j])
            lines.append(
                f"| {minutes} min | {thr:g} mm/h | {_iv(*b)} | {_iv(*a)} | {_iv(*d, signed=True)} |"
            )
    return lines


def _mean_rows(cmp: dict[str, Any], label: str) -> list[str]:
    m = cmp["mean_over_leads"]
    lines = []
    for metric in ("csi", "hss"):
        for j, thr in enumerate(THRESHOLDS):
            x = m[metric]
            lines.append(
                f"| {label} | {metric.upper()} ≥ {thr:g} | "
                f"{_iv(x['b'][j], x['b_low'][j], x['b_high'][j])} | "
                f"{_iv(x['a'][j], x['a_low'][j], x['a_high'][j])} | "
                f"{_iv(x['a_minus_b'][j], x['low'][j], x['high'][j], signed=True)} |"
            )
    for metric in ("mse", "b_mse", "ssim"):
        x = m[metric]
        lines.append(
            f"| {label} | {metric.upper().replace('_', '-')} | "
            f"{_iv(x['b'], x['b_low'], x['b_high'])} | {_iv(x['a'], x['a_low'], x['a_high'])} | "
            f"{_iv(x['a_minus_b'], x['low'], x['high'], signed=True)} |"
        )
    return lines


def _diff_row(cmp: dict[str, Any], label: str) -> str:
    """One compact row: the mean-over-leads differences with their pooled intervals."""
    m = cmp["mean_over_leads"]
    cells = [_iv(m["csi"]["a_minus_b"][j], m["csi"]["low"][j], m["csi"]["high"][j], True)
             for j in range(len(THRESHOLDS))]  # fmt: skip
    for metric in ("mse", "ssim"):
        x = m[metric]
        cells.append(_iv(x["a_minus_b"], x["low"], x["high"], True))
    return f"| {label} | " + " | ".join(cells) + " |"


def _baseline_rows(study: Any) -> list[str]:
    lines = []
    for name in ("persistence", "extrapolation"):
        path = study.work / "runs" / name / "scores.json"
        if not path.is_file():
            continue
        d = json.loads(path.read_text())
        m, boot = d["mean_over_leads"], d.get("bootstrap", {}).get("mean_over_leads", {})
        cells = []
        for metric in ("csi", "hss"):
            for j in range(len(THRESHOLDS)):
                lo = boot.get(metric, {}).get("low", [None] * 4)[j]
                hi = boot.get(metric, {}).get("high", [None] * 4)[j]
                cells.append(f"{metric.upper()} ≥ {THRESHOLDS[j]:g}: {_iv(m[metric][j], lo, hi)}")
        for metric in ("mse", "b_mse", "ssim"):
            lo, hi = boot.get(metric, {}).get("low"), boot.get(metric, {}).get("high")
            cells.append(f"{metric.upper().replace('_', '-')}: {_iv(m[metric], lo, hi)}")
        lines.append(f"- **{name}**: " + "; ".join(cells))
    return lines


def _per_seed(cmp: dict[str, Any]) -> list[str]:
    lines = ["| pair | " + " | ".join(f"CSI ≥ {t:g}" for t in THRESHOLDS) + " | MSE |",
             "|---|" + "---:|" * (len(THRESHOLDS) + 1)]  # fmt: skip
    for p in cmp["per_pair"]:
        m = p["mean_over_leads"]
        cells = [_iv(m["csi"]["a_minus_b"][j], m["csi"]["low"][j], m["csi"]["high"][j], True)
                 for j in range(len(THRESHOLDS))]  # fmt: skip
        cells.append(_iv(m["mse"]["a_minus_b"], m["mse"]["low"], m["mse"]["high"], True))
        seed = Path(p["a"]).parent.name.split("-s")[-1]
        lines.append(f"| seed {seed} | " + " | ".join(cells) + " |")
    return lines


def _verdict(cmp: dict[str, Any]) -> str:
    """One sentence per score family from the pooled intervals (no claim without one)."""
    pl = cmp["per_lead"]["csi"]
    better = worse = 0
    cells = 0
    for i in range(len(pl["a_minus_b"])):
        for j in range(len(THRESHOLDS)):
            lo, hi = pl["low"][i][j], pl["high"][i][j]
            if lo is None or hi is None:
                continue
            cells += 1
            better += lo > 0
            worse += hi < 0
    m = cmp["mean_over_leads"]["csi"]
    means = ", ".join(
        f"{THRESHOLDS[j]:g} mm/h {_iv(m['a_minus_b'][j], m['low'][j], m['high'][j], True)}"
        for j in range(len(THRESHOLDS))
    )
    return (
        f"Of the {cells} (lead time, threshold) cells of CSI, the pooled 95% interval of FF − "
        f"plain is above 0 in {better} and below 0 in {worse}; it contains 0 in "
        f"{cells - better - worse}. Mean over lead times: {means}."
    )


def _figure_scores(cmp: dict[str, Any], study: Any, path: Path) -> None:
    from matplotlib.figure import Figure

    lead = cmp["lead_minutes"]
    pl = cmp["per_lead"]["csi"]
    fig = Figure(figsize=(13, 3.4), layout="constrained")
    axes = fig.subplots(1, len(THRESHOLDS), sharey=False)
    base = {}
    for name in ("persistence", "extrapolation"):
        f = study.work / "runs" / name / "scores.json"
        if f.is_file():
            base[name] = json.loads(f.read_text())["per_lead"]["csi"]
    for j, (ax, thr) in enumerate(zip(axes, THRESHOLDS, strict=True)):
        for side, label, colour in (("b", "mse+mae (plain)", "#1f6fc5"),
                                    ("a", "ff-mse+mae (focal)", "#e8531f")):  # fmt: skip
            v = [row[j] for row in pl[side]]
            lo = [row[j] for row in pl[f"{side}_low"]]
            hi = [row[j] for row in pl[f"{side}_high"]]
            ax.plot(lead, v, marker="o", ms=3, color=colour, label=label)
            ax.fill_between(lead, [x if x is not None else math.nan for x in lo],
                            [x if x is not None else math.nan for x in hi],
                            color=colour, alpha=0.2)  # fmt: skip
        for name, style in (("persistence", ":"), ("extrapolation", "--")):
            if name in base:
                ax.plot(lead, [row[j] for row in base[name]], style, color="grey", label=name)
        ax.set_title(f"CSI ≥ {thr:g} mm/h")
        ax.set_xlabel("lead time (min)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("CSI (seeds pooled)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=8)
    fig.savefig(path, dpi=100)


def _figure_frames(study: Any, plain: list[str], focal: list[str], path: Path) -> None:
    """The paper's Fig. 2: ΔX_t over the 19 output frames at the end of training."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.subplots()
    for folders, label, colour in ((plain, "mse+mae", "#1f6fc5"), (focal, "ff-mse+mae", "#e8531f")):
        for k, f in enumerate(folders):
            with (study.work / f / "frames.csv").open() as fh:
                rows = [r for r in csv.DictReader(fh) if r["split"] == "valid"]
            last = max(int(r["epoch"]) for r in rows)
            pts = sorted((int(r["frame"]), float(r["delta_x"])) for r in rows
                         if int(r["epoch"]) == last)  # fmt: skip
            ax.plot(*zip(*pts, strict=True), color=colour, alpha=0.6, lw=1,
                    label=label if k == 0 else None)  # fmt: skip
    ax.axvline(9.5, color="grey", ls=":", lw=0.8)
    ax.set_xlabel("output frame t (1–9 reconstruct inputs, 10–19 forecast)")
    ax.set_ylabel("ΔX_t, mean |error| (pixel/255)")
    ax.set_title("per-frame error at the end of training (validation day, every seed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=100)


def write_report(study: Any, runs: list[Any], seeds: list[int], seconds: float | None,
                 paper: bool = False, out_dir: Path = HERE) -> None:  # fmt: skip
    """Compare what exists and write ``out_dir/RESULTS.md`` and its figures."""
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    done = {r.folder for r in runs if (study.work / r.folder / "scores.json").is_file()}

    def group(name: str, n: int | None = None) -> list[str]:
        return [f"runs/{name}-s{s}" for s in seeds[:n] if f"runs/{name}-s{s}" in done]

    plain, focal = group("plain"), group("ff")
    pairs = min(len(plain), len(focal))
    out: list[str] = [
        "# Does the focal frame loss help? Results",
        "",
        f"Written by `python experiments/ffl/run.py{' --paper' if paper else ''}` on "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC ({platform.machine()}, "
        f"{study.threads} thread(s) per run). Every number below comes from `nowcast verify` "
        "(scores.json of each run, and `--compare` of groups of runs).",
        "",
        "## Setup",
        "",
        "- Data: DWD RADKLIM YW, 10–20 May 2018 (bundled), DWD Z–R (Z = 256 R^1.42). "
        "Train 10–16 May, validation 17 May, test 18–20 May: issue times every 10 minutes.",
        "- Model and schedule: "
        + ", ".join(f"{k} {v}" for k, v in study.config.items())
        + "; ConvLSTM; AdamHD lr 5e-4, loss × 0.001, scheduled sampling η 1 → 0 over the run, "
        "gradient clipping ±5 (the defaults of `nowcast train`).",
        "- Losses: plain = `mse+mae` (B-MSE + B-MAE, the paper's baseline); focal = "
        "`ff-mse+mae` (k = 2, ε = 0.01), both over all 19 output frames.",
        "- Verification: forecast lead times only (5–50 min), thresholds 0.5, 2, 5, 10 mm/h "
        "(events: rain ≥ τ), 95% intervals from 1000 block-bootstrap replicates over 12 "
        "six-hour blocks of issue times. Pooled over seeds: each loss's scores pool the "
        "contingency tables of its seeds; the paired difference FF − plain pairs seed i with "
        "seed i (same initialisation and data order) and the bootstrap resamples both the "
        "seeds and the blocks. `*`: the interval excludes 0.",
        "",
    ]
    if pairs == 0:
        out.append("No main-comparison run has finished yet.")
        (out_dir / "RESULTS.md").write_text("\n".join(out) + "\n")
        return
    cmp = study.compare(focal[:pairs], plain[:pairs])
    (figures / "compare-main.json").write_text(json.dumps(cmp, indent=1))
    lead = cmp["lead_minutes"]
    seeds_each = f"{_seeds(pairs)} each"
    out += [
        f"## Main comparison: ff-mse+mae against mse+mae, {seeds_each}",
        "",
        _verdict(cmp),
        "",
        "Mean over the forecast lead times (pooled over seeds, 95% intervals):",
        "",
        "| comparison | score | plain | focal | FF − plain |",
        "|---|---|---:|---:|---:|",
        *_mean_rows(cmp, "ff-mse+mae vs mse+mae"),
        "",
        "Reference rows (same issue times; one run each, intervals over blocks of issue times):",
        "",
        *_baseline_rows(study),
        "",
        "Per seed, FF − plain (mean over leads; intervals over blocks of issue times only):",
        "",
        *_per_seed(cmp),
        "",
        "![CSI against lead time](figures/main-csi.png)",
        "",
        "<details><summary>CSI per lead time and threshold</summary>",
        "",
        *_main_table(cmp, "csi", lead),
        "",
        "</details>",
        "",
        "<details><summary>HSS per lead time and threshold</summary>",
        "",
        *_main_table(cmp, "hss", lead),
        "",
        "</details>",
        "",
    ]
    _figure_scores(cmp, study, figures / "main-csi.png")
    out += ["## Ablations (3 seeds each, against the plain loss's first 3 seeds)", ""]
    plain3 = group("plain", 3)
    rows = ["| configuration − reference | " + " | ".join(f"CSI ≥ {t:g}" for t in THRESHOLDS)
            + " | MSE | SSIM |", "|---|" + "---:|" * (len(THRESHOLDS) + 2)]  # fmt: skip
    k0 = group("ff-k0", 1)
    if k0 and plain3:
        same = study.compare(k0, plain3[:1])
        values = [v["a_minus_b"] for v in same["mean_over_leads"].values()]
        flat = [x for v in values for x in (v if isinstance(v, list) else [v])]
        zero = all(x in (0, 0.0, None) for x in flat)
        out.append(
            f"- k = 0: `ff-mse+mae --ff-k 0` seed {seeds[0]} against `mse+mae` seed {seeds[0]}: "
            + ("every score identical — k = 0 is the plain loss, so its row is the plain runs."
               if zero else "scores differ (unexpected: k = 0 should be the plain loss).")
        )  # fmt: skip
    for name, label, ref in (
        ("ff-k1", "k = 1", plain3), ("ff", "k = 2", plain3), ("ff-k3", "k = 3", plain3),
        ("ff-k4", "k = 4", plain3), ("ff-forecast", "focal, forecast frames only", plain3),
    ):  # fmt: skip
        g = group(name, 3)
        n = min(len(g), len(ref))
        if n:
            c = study.compare(g[:n], ref[:n])
            rows.append(_diff_row(c, f"{label} − plain ({_seeds(n)})"))
    ffm, msem = group("ff-mse", 3), group("mse", 3)
    n = min(len(ffm), len(msem))
    if n:
        c = study.compare(ffm[:n], msem[:n])
        rows.append(_diff_row(c, f"`ff-mse` − `mse` ({_seeds(n)})"))
    fc, ff3 = group("ff-forecast", 3), group("ff", 3)
    n = min(len(fc), len(ff3))
    if n:
        c = study.compare(fc[:n], ff3[:n])
        rows.append(_diff_row(c, f"focal on forecast frames − on all 19 ({_seeds(n)})"))
    missing = sorted({r.name for r in runs if r.folder not in done} - {"plain", "ff"})
    out += [
        "",
        "Differences of the mean over lead times, pooled over seeds, 95% intervals over seeds "
        "and blocks of issue times:",
        "",
        *rows,
        "",
    ]
    if missing:
        out += [
            "Not finished yet: " + ", ".join(f"`{m}`" for m in missing) + " (some or all seeds). "
            "`python experiments/ffl/run.py` trains them; it skips what is done.",
            "",
        ]
    if plain and focal:
        _figure_frames(study, plain, focal, figures / "fig2-frames.png")
        study.nowcast("plot", "frames", focal[0], "--out", str(figures / "fig2-weights.png"), "-q")
        baselines = [f"runs/{b}" for b in ("persistence", "extrapolation")
                     if (study.work / "runs" / b / "scores.json").is_file()]  # fmt: skip
        study.nowcast("plot", "sample", focal[0], plain[0], *baselines,
                      "--out", str(figures / "sample.png"), "-q")  # fmt: skip
        out += [
            "## The paper's Fig. 2 from our runs",
            "",
            "![ΔX_t at the end of training](figures/fig2-frames.png)",
            "",
            f"![ΔX_t and W_t over epochs, {focal[0]}](figures/fig2-weights.png)",
            "",
            "![A test case](figures/sample.png)",
            "",
        ]
    timing = _runs_csv(study, sorted(done))
    total = sum(r["minutes"] for r in timing)
    out += [
        "## Runs and time",
        "",
        f"{len(done)} runs finished, {total:.0f} min of training in all (per run "
        f"{min(r['minutes'] for r in timing):.1f}–{max(r['minutes'] for r in timing):.1f} min)"
        + (f"; this invocation took {seconds / 60:.0f} min." if seconds is not None else "."),
        "",
    ]
    notes = out_dir / "discussion.md"
    if notes.is_file():
        out += [notes.read_text().strip(), ""]
    (out_dir / "RESULTS.md").write_text("\n".join(out) + "\n")
