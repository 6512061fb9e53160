"""Figures from arrays and tables: every function returns a matplotlib Figure.

Figures are built as `matplotlib.figure.Figure` objects, never through pyplot: no global
state, no GUI backend, nothing to close; ``fig.savefig`` renders with Agg (PNG) or the vector
backends (SVG, PDF).

Rain is shown as rain rate in mm/h on a discrete radar colour scale (`rain_scale`), with a
labelled colour bar; pixels without radar data are grey, rain below the lowest level is left
white. Frames arrive as the store's uint8 pixels and are decoded with the store's Z–R
relation (`nowcast_cli.encoding`), so every figure shows physical units.

Reading stores and run folders, and choosing what to draw, is `nowcast_cli.figures`' job.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
from matplotlib import colors
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure

from nowcast_cli import encoding

__all__ = [
    "MEAN_LEVELS",
    "RAIN_LEVELS",
    "RainScale",
    "plot_animation_frame",
    "plot_frames",
    "plot_sample",
    "plot_scores",
    "plot_store",
    "plot_training",
    "rain_scale",
    "to_rate",
]

#: rain-rate levels (mm/h) of the colour scale; below the first nothing is drawn
RAIN_LEVELS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 6.0, 10.0, 16.0, 25.0, 40.0, 63.0, 100.0)
#: levels of mean rain rate over many frames (an archive's climatology is 10–100× lower)
MEAN_LEVELS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
# light blue → blue → green → yellow → orange → red → magenta: the usual radar sequence
RAIN_COLOURS = (
    "#c6e6fb",
    "#8ccbf2",
    "#4a9fe0",
    "#1f6fc5",
    "#35b04a",
    "#1d7a2c",
    "#f6e43b",
    "#f5a623",
    "#e8531f",
    "#c0161c",
    "#8f0d52",
    "#c23fd1",
)
NO_DATA = "#b4b4b4"


@dataclass(frozen=True)
class RainScale:
    """A discrete colour map for rain rate: colours, level boundaries, norm."""

    cmap: colors.Colormap
    norm: colors.BoundaryNorm
    levels: tuple[float, ...]


def rain_scale(levels: Sequence[float] = RAIN_LEVELS) -> RainScale:
    """The radar colour scale of every rain figure: discrete `levels` in mm/h (13 of them)."""
    if len(levels) != len(RAIN_COLOURS) + 1:
        raise ValueError(f"need {len(RAIN_COLOURS) + 1} levels, got {len(levels)}")
    cmap = colors.ListedColormap(list(RAIN_COLOURS), name="nowcast_rain").with_extremes(
        under="white", over="#5c0a6e", bad=NO_DATA
    )
    norm = colors.BoundaryNorm(list(levels), cmap.N)
    return RainScale(cmap, norm, tuple(levels))


def to_rate(pixels: np.ndarray, valid: np.ndarray | None, zr: tuple[float, float]) -> np.ndarray:
    """Store pixels → rain rate (mm/h), masked where there is no radar data."""
    rate = encoding.rate_table(*zr)[np.asarray(pixels, dtype=np.uint8)]
    mask = np.zeros(rate.shape, bool) if valid is None else ~np.asarray(valid, bool)
    return np.ma.masked_array(rate, mask=mask)


def _utc(t: int) -> str:
    return dt.datetime.fromtimestamp(int(t), dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _rain_axes(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_linewidth(0.5)


def _colourbar(fig: Figure, image: Any, axes: Any, scale: RainScale) -> None:
    bar = fig.colorbar(image, ax=axes, extend="max", ticks=scale.levels, shrink=0.9, pad=0.01)
    bar.set_label("rain rate (mm/h)")
    bar.ax.set_yticklabels([f"{v:g}" for v in scale.levels])


def plot_sample(
    observed: np.ndarray,
    observed_valid: np.ndarray | None,
    forecasts: Mapping[str, np.ndarray],
    lead_minutes: Sequence[int],
    issue_time: int,
    zr: tuple[float, float],
    *,
    title: str | None = None,
) -> Figure:
    """Observations over the lead times above each forecast (the paper's Figs. 4–5).

    Parameters
    ----------
    observed : np.ndarray
        (L, H, W) uint8 pixels observed at the lead times.
    observed_valid : np.ndarray or None
        (L, H, W) bool, False where the radar had no data (grey in every row).
    forecasts : mapping of str to np.ndarray
        Row label → (L, H, W) uint8 forecast pixels, one row each, in order.
    lead_minutes : sequence of int
        Lead time of each column, in minutes.
    issue_time : int
        Seconds since the epoch (UTC) of the last observed frame.
    zr : (a, b)
        Z–R relation of the store.
    """
    n_rows, n_cols = 1 + len(forecasts), len(lead_minutes)
    scale = rain_scale()
    fig = Figure(figsize=(1.45 * n_cols + 1.4, 1.5 * n_rows + 0.6), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    rows = [("observed", observed), *forecasts.items()]
    image = None
    for r, (label, data) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            valid = None if observed_valid is None else observed_valid[c]
            image = ax.imshow(
                to_rate(data[c], valid, zr),
                cmap=scale.cmap,
                norm=scale.norm,
                interpolation="nearest",
            )
            _rain_axes(ax)
            if r == 0:
                ax.set_title(f"+{lead_minutes[c]} min", fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
    _colourbar(fig, image, axes, scale)
    fig.suptitle(title or f"Nowcasts issued {_utc(issue_time)}", fontsize=11)
    return fig


def plot_animation_frame(
    observed: np.ndarray,
    observed_valid: np.ndarray | None,
    forecasts: Mapping[str, np.ndarray],
    lead_minutes: int,
    issue_time: int,
    zr: tuple[float, float],
) -> Figure:
    """One frame of an animation: the observation beside each forecast at one lead time.

    Parameters
    ----------
    observed, observed_valid : np.ndarray
        (H, W) uint8 pixels observed at the lead time and their valid mask (or None).
    forecasts : mapping of str to np.ndarray
        Panel title → (H, W) uint8 forecast pixels at the lead time.
    lead_minutes, issue_time : int
        Lead time (min) and issue time (s since the epoch, UTC) for the title.
    zr : (a, b)
        Z–R relation of the store.
    """
    scale = rain_scale()
    panels = [("observed", observed), *forecasts.items()]
    fig = Figure(figsize=(2.6 * len(panels) + 1.2, 3.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    image = None
    for ax, (label, data) in zip(axes, panels, strict=True):
        image = ax.imshow(
            to_rate(data, observed_valid, zr),
            cmap=scale.cmap,
            norm=scale.norm,
            interpolation="nearest",
        )
        _rain_axes(ax)
        ax.set_title(label, fontsize=10)
    _colourbar(fig, image, axes, scale)
    valid_time = _utc(issue_time + 60 * lead_minutes)
    fig.suptitle(f"+{lead_minutes} min: {valid_time} (issued {_utc(issue_time)})", fontsize=10)
    return fig


def plot_store(
    field: np.ndarray,
    valid: np.ndarray | None,
    zr: tuple[float, float] | None,
    *,
    x: np.ndarray | None = None,
    y: np.ndarray | None = None,
    title: str = "",
    units: str = "rain rate (mm/h)",
    levels: Sequence[float] = RAIN_LEVELS,
) -> Figure:
    """One frame (uint8 pixels, decoded with `zr`) or a rain-rate field (`zr` None) of a store.

    With projected cell centres `x` (west → east) and `y` (north → south), in metres, the axes
    show the extent in km; otherwise pixel indices. `levels`: the colour scale's boundaries
    (`MEAN_LEVELS` suits a mean over many frames).
    """
    scale = rain_scale(levels)
    data: np.ndarray
    if zr is None:
        mask = np.zeros(field.shape, bool) if valid is None else ~np.asarray(valid, bool)
        data = np.ma.masked_array(np.asarray(field, dtype=float), mask=mask)
    else:
        data = to_rate(field, valid, zr)
    fig = Figure(figsize=(6.4, 5.4), layout="constrained")
    ax = fig.subplots()
    extent = None
    if x is not None and y is not None and len(x) > 1 and len(y) > 1:
        dx, dy = (x[1] - x[0]) / 2, (y[0] - y[1]) / 2
        extent = ((x[0] - dx) / 1e3, (x[-1] + dx) / 1e3, (y[-1] - dy) / 1e3, (y[0] + dy) / 1e3)
        ax.set_xlabel("x (km, projected)")
        ax.set_ylabel("y (km, projected)")
    else:
        ax.set_xlabel("column (pixel)")
        ax.set_ylabel("row (pixel)")
    image = ax.imshow(
        data, cmap=scale.cmap, norm=scale.norm, extent=extent, interpolation="nearest"
    )
    bar = fig.colorbar(image, ax=ax, extend="max", ticks=scale.levels, shrink=0.85)
    bar.set_label(units)
    bar.ax.set_yticklabels([f"{v:g}" for v in scale.levels])
    ax.set_title(title, fontsize=10)
    return fig


def plot_scores(
    scores: Any,
    metric: str,
    *,
    title: str = "",
) -> Figure:
    """One score against lead time, one panel per threshold, one line per run.

    Parameters
    ----------
    scores : pandas.DataFrame
        Tidy rows with columns ``run``, ``lead_minutes``, ``threshold``, ``metric``, ``value``
        and, when a bootstrap was run, ``low`` and ``high`` (the 95% interval, drawn as a band).
    metric : str
        The score to draw (``csi``, ``hss``, ``pod``, …); continuous scores (no threshold) get
        one panel.
    """
    rows = scores[scores["metric"] == metric]
    thresholds = sorted(t for t in rows["threshold"].dropna().unique())
    panels: list[float | None] = list(thresholds) if thresholds else [None]
    fig = Figure(figsize=(3.3 * len(panels) + 0.8, 3.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)
    for ax, thr in zip(axes[0], panels, strict=True):
        sub = rows if thr is None else rows[rows["threshold"] == thr]
        for run, group in sub.groupby("run", sort=False):
            g = group.sort_values("lead_minutes")
            (line,) = ax.plot(g["lead_minutes"], g["value"], marker="o", ms=3, label=str(run))
            if {"low", "high"} <= set(g.columns) and g["low"].notna().any():
                ax.fill_between(
                    g["lead_minutes"], g["low"], g["high"], color=line.get_color(), alpha=0.2
                )
        ax.set_title(metric.upper() if thr is None else f"{metric.upper()} ≥ {thr:g} mm/h")
        ax.set_xlabel("lead time (min)")
        ax.grid(alpha=0.3)
        if sub["value"].notna().sum() == 0:  # e.g. no observed event at a high threshold
            ax.set_xlim(rows["lead_minutes"].min(), rows["lead_minutes"].max())
            ax.text(
                0.5, 0.5, "undefined\n(no events)", transform=ax.transAxes, ha="center",
                va="center", color="grey",
            )  # fmt: skip
    axes[0, 0].set_ylabel(metric.upper())
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_frames(frames: Any, *, in_frames: int, title: str = "") -> Figure:
    """Per-frame error ΔX_t over the output frames, and the focal weights W_t over epochs.

    Parameters
    ----------
    frames : pandas.DataFrame
        Columns ``epoch``, ``split``, ``frame`` (t = 1 .. m + n − 1), ``dx`` (mean |e|) and
        optionally ``weight`` (W_t, focal losses only): the training run's ``frames.csv``.
    in_frames : int
        m: frames t ≤ m − 1 reconstruct observations, later ones are forecasts.
    """
    has_w = "weight" in frames.columns and frames["weight"].notna().any()
    fig = Figure(figsize=(11 if has_w else 6, 3.6), layout="constrained")
    axes = fig.subplots(1, 2 if has_w else 1, squeeze=False)
    cmap = matplotlib.colormaps["viridis"]
    ax = axes[0, 0]
    for split, style in (("train", "-"), ("valid", "--")):
        sub = frames[frames["split"] == split]
        if sub.empty:
            continue
        last = sub[sub["epoch"] == sub["epoch"].max()].sort_values("frame")
        ax.plot(last["frame"], last["dx"], style, marker="o", ms=3, label=f"{split}, last epoch")
    _forecast_marker(ax, in_frames)
    ax.set_xlabel("output frame t")
    ax.set_ylabel("ΔX_t (mean |error|, pixel/255)")
    ax.set_title("per-frame error")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    if has_w:
        ax = axes[0, 1]
        weighted = frames[frames["weight"].notna()]
        # the weights as training saw them; a run stopped inside its first epoch has only
        # the validation pass's
        split = "train" if (weighted["split"] == "train").any() else "valid"
        sub = weighted[weighted["split"] == split]
        shown = sorted(sub["epoch"].unique())
        for i, epoch in enumerate(shown):
            e = sub[sub["epoch"] == epoch].sort_values("frame")
            colour = cmap(i / max(len(shown) - 1, 1))
            ax.plot(e["frame"], e["weight"], color=colour, lw=1.2, label=f"epoch {epoch}")
        _forecast_marker(ax, in_frames)
        if len(shown) > 6:  # many epochs: a colour bar, not a legend
            from matplotlib.ticker import MaxNLocator

            bar = fig.colorbar(
                ScalarMappable(norm=colors.Normalize(min(shown), max(shown)), cmap=cmap), ax=ax
            )
            bar.set_label("epoch")
            bar.locator = MaxNLocator(integer=True)
            bar.update_ticks()
        elif shown:
            ax.legend(fontsize=8)
        ax.set_xlabel("output frame t")
        ax.set_ylabel("W_t (mean over samples)")
        ax.set_title(f"focal frame weights over training ({split})")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def _forecast_marker(ax: Any, in_frames: int) -> None:
    """A line between reconstructed and forecast frames, integer frame ticks."""
    from matplotlib.ticker import MaxNLocator

    ax.axvline(in_frames - 0.5, color="grey", lw=0.8, ls=":")
    ax.text(
        in_frames - 0.3, 0.02, "forecast →", transform=ax.get_xaxis_transform(),
        fontsize=8, color="grey",
    )  # fmt: skip
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_training(metrics: Any, *, title: str = "") -> Figure:
    """Training loss (per step, and a running mean) and validation loss against step.

    `metrics` is a run's ``metrics.csv`` (columns ``step``, ``split``, ``loss``).
    """
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.subplots()
    train = metrics[metrics["split"] == "train"].sort_values("step")
    if not train.empty:
        ax.plot(train["step"], train["loss"], color="#1f6fc5", alpha=0.3, lw=0.8, label="train")
        window = max(1, len(train) // 25)
        if window > 1:
            smooth = train["loss"].rolling(window, min_periods=1).mean()
            ax.plot(
                train["step"], smooth, color="#1f6fc5", lw=1.8, label=f"train ({window}-step mean)"
            )
    valid = metrics[metrics["split"] == "valid"].sort_values("step")
    if not valid.empty:
        ax.plot(valid["step"], valid["loss"], "o--", color="#e8531f", ms=4, label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(title or "training")
    return fig
