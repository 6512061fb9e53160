"""`nowcast plot`: read runs and stores, choose what to draw, draw it (`plotting`), write files.

Kinds (`KINDS`):

- ``sample``: one issue time, observations over the forecast lead times above each run's
  forecasts (the paper's Figs. 4–5); default the issue time with the most observed rain among
  those every run forecast.
- ``scores``: a score against lead time, one panel per threshold, one line per run, bootstrap
  intervals as bands (from each run's ``scores.json``; run ``nowcast verify`` first).
- ``frames``: per-frame error ΔX_t over the output frames and, for focal losses, the weights
  W_t over the epochs (the paper's Figs. 2–3), from a run's ``frames.csv``.
- ``training``: training and validation loss against step, from a run's ``metrics.csv``.
- ``animate``: a GIF of the observations beside each run's forecasts, one lead time per frame.
- ``store``: one frame of a store, or its mean rain rate, for checking an ingest.

Files go to ``<first run>/figures/<kind>.<format>`` (``store``: ``./figures/``) unless `out`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nowcast_cli import runs
from nowcast_cli.errors import ConfigError, DataError, RunError, StoreError

__all__ = ["FORMATS", "KINDS", "PlotConfig", "make_figure"]

KINDS = ("sample", "scores", "frames", "training", "animate", "store")
FORMATS = ("png", "svg", "pdf")
DPI = 110


@dataclass(frozen=True)
class PlotConfig:
    """What to draw (every field is a `nowcast plot` option).

    Attributes
    ----------
    kind : str
        One of `KINDS`.
    runs : tuple of str
        Run folders or forecast stores (default: the latest run; ``sample``/``animate``/
        ``scores``: every run in ./runs that has what the figure needs, up to 6).
    store : str or None
        Observation store (``store``; default the only one in ./nowcast-data).
    time : str or None
        Issue time (``sample``, ``animate``; UTC ISO) or frame time (``store``).
    metrics : tuple of str
        Scores to draw (``scores``): one figure each.
    size : int or None
        ``store``: draw this training copy instead of the full grid.
    mean : bool
        ``store``: the mean rain rate over all frames instead of one frame.
    format : str
        ``png``, ``svg`` or ``pdf`` (``animate`` is always a GIF).
    out : str or None
        File to write (one figure) or folder (several).
    """

    kind: str
    runs: tuple[str, ...] = ()
    store: str | None = None
    time: str | None = None
    metrics: tuple[str, ...] = ("csi", "hss")
    size: int | None = None
    mean: bool = False
    format: str = "png"
    out: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            import difflib

            close = difflib.get_close_matches(self.kind, KINDS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown figure {self.kind!r}.{hint} Valid: {', '.join(KINDS)}")
        if self.format not in FORMATS:
            raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")


def make_figure(cfg: PlotConfig) -> list[Path]:
    """Draw the figure(s) of `cfg` and write them; returns the files written.

    Raises
    ------
    NowcastError
        When a run lacks what the figure needs (forecasts, scores, logs), the runs do not
        share an issue time or grid, or a time is not in the store.
    """
    draw = {
        "sample": _sample,
        "scores": _scores,
        "frames": _frames,
        "training": _training,
        "animate": _animate,
        "store": _store,
    }[cfg.kind]
    return draw(cfg)


# -- where things are --------------------------------------------------------------------------
def _label(run: Path) -> str:
    """A short name for a run in legends: model and loss, else the folder name."""
    try:
        cfg = runs.read_config(run)
    except RunError:
        return run.name
    model, loss = cfg.get("model"), cfg.get("loss")
    return f"{model} {loss}".strip() if model else run.name


def _forecast_path(target: Path) -> Path:
    if (target / "zarr.json").is_file():
        return target
    path = target / "forecasts.zarr"
    if not (path / "zarr.json").is_file():
        raise RunError(f"{target}: no forecasts; make them with: nowcast predict --run {target}")
    return path


def _runs_with(cfg: PlotConfig, needs: str) -> list[Path]:
    """The run folders (or forecast stores) to draw: given, else those in ./runs with `needs`."""
    if cfg.runs:
        return [Path(r) for r in cfg.runs]
    have = [r for r in runs.list_runs() if (r / needs).exists()]
    if not have:
        what = {
            "forecasts.zarr": "forecasts (nowcast predict)",
            "scores.json": "scores (nowcast verify)",
            "frames.csv": "training logs (nowcast train)",
            "metrics.csv": "training logs (nowcast train)",
        }[needs]
        raise RunError(f"no run in ./{runs.DEFAULT_DIR} has {what}; name one or make it first")
    if needs in ("frames.csv", "metrics.csv"):
        return have[-1:]
    return have[-6:]


def _run_folder(target: Path) -> Path:
    return target.parent if (target / "zarr.json").is_file() else target


def _output(cfg: PlotConfig, default_dir: Path, stem: str, suffix: str | None = None) -> Path:
    ext = suffix or cfg.format
    if cfg.out is not None:
        out = Path(cfg.out)
        if out.suffix:  # a file name
            out.parent.mkdir(parents=True, exist_ok=True)
            return (
                out
                if len(cfg.metrics) == 1 or cfg.kind != "scores"
                else out.with_stem(f"{out.stem}-{stem}")
            )
        out.mkdir(parents=True, exist_ok=True)
        return out / f"{stem}.{ext}"
    folder = default_dir / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{stem}.{ext}"


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, format=path.suffix.lstrip(".") or "png")
    return path


def _parse_time(text: str) -> int:
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--time {text!r} is not a time (e.g. 2018-05-20T14:30)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp())


def _iso(t: int) -> str:
    return dt.datetime.fromtimestamp(int(t), dt.UTC).strftime("%Y-%m-%d %H:%M")


# -- sample and animate: observations and forecasts of one issue time ---------------------------
@dataclass
class _Case:
    issue: int
    leads: list[int]
    observed: np.ndarray  # (L, H, W) uint8
    valid: np.ndarray  # (L, H, W) bool
    forecasts: dict[str, np.ndarray]  # label → (L, H, W) uint8
    zr: tuple[float, float]


def _case(cfg: PlotConfig) -> tuple[_Case, Path]:
    from nowcast_cli.store import ForecastStore, Store

    targets = _runs_with(cfg, "forecasts.zarr")
    stores = [ForecastStore.open(_forecast_path(t)) for t in targets]
    try:
        shapes = {fs.shape for fs in stores}
        if len(shapes) > 1:
            raise DataError(
                "the runs' forecasts are on different grids "
                f"({', '.join(f'{s[0]}×{s[1]}' for s in shapes)}): draw them separately"
            )
        shared = stores[0].issue_times
        for fs in stores[1:]:
            shared = np.intersect1d(shared, fs.issue_times)
        if len(shared) == 0:
            raise DataError("the runs share no issue time: forecast the same split (--run)")
        obs_path = stores[0].observation_path()
        size = stores[0].observations.get("size")
        with Store.open(obs_path) as obs:
            leads = [int(m) for m in stores[0].lead_minutes if m > 0]
            for fs in stores[1:]:
                leads = [m for m in leads if m in set(fs.lead_minutes.tolist())]
            rain = _observed_rain(obs, size, shared, leads)
            if cfg.time is not None:
                issue = _parse_time(cfg.time)
                if issue not in set(shared.tolist()):
                    near = shared[np.argmin(np.abs(shared - issue))]
                    raise DataError(
                        f"no forecast issued at {_iso(issue)} by every run; the nearest is "
                        f"{_iso(int(near))} (issue times run {_iso(int(shared[0]))} → "
                        f"{_iso(int(shared[-1]))})"
                    )
            else:
                issue = int(shared[int(np.argmax(rain))])
            want = np.array([issue + 60 * m for m in leads], dtype=np.int64)
            pos = np.searchsorted(obs.times, want)
            found = (pos < len(obs)) & (obs.times[np.minimum(pos, len(obs) - 1)] == want)
            if not found.all():
                raise DataError(
                    f"{obs_path} lacks the observations of the forecast issued at {_iso(issue)}"
                )
            observed, valid = [], []
            for p in pos:
                f, v = obs.read(int(p), int(p) + 1, size)
                observed.append(f[0])
                valid.append(v[0])
            zr = obs.zr
        forecasts: dict[str, np.ndarray] = {}
        for target, fs in zip(targets, stores, strict=True):
            k = int(np.searchsorted(fs.issue_times, issue))
            block = fs.read(k, k + 1)[0]
            cols = [int(np.nonzero(fs.lead_minutes == m)[0][0]) for m in leads]
            label = _label(_run_folder(target))
            if label in forecasts:
                label = _run_folder(target).name
            forecasts[label] = block[cols]
    finally:
        for fs in stores:
            fs.close()
    case = _Case(issue, leads, np.stack(observed), np.stack(valid), forecasts, zr)
    return case, _run_folder(targets[0])


def _observed_rain(
    obs: Any, size: int | None, issue: np.ndarray, leads: Sequence[int]
) -> np.ndarray:
    """Total observed rain rate over the forecast leads of each issue time (for the default)."""
    from nowcast_cli.encoding import rate_table

    table = rate_table(*obs.zr)
    times = obs.times
    wanted = np.unique(np.concatenate([issue + 60 * m for m in leads]))
    pos = np.searchsorted(times, wanted)
    ok = (pos < len(times)) & (times[np.minimum(pos, len(times) - 1)] == wanted)
    mean_rate = dict.fromkeys(wanted.tolist(), 0.0)
    chunk = 256
    sel = pos[ok]
    for lo in range(0, len(sel), chunk):
        idx = sel[lo : lo + chunk]
        a, b = int(idx.min()), int(idx.max()) + 1
        frames, valid = obs.read(a, b, size)
        for i in idx:
            f = frames[i - a]
            mean_rate[int(times[i])] = float(table[f][valid[i - a]].sum())
    return np.array([sum(mean_rate.get(int(t + 60 * m), 0.0) for m in leads) for t in issue])


def _sample(cfg: PlotConfig) -> list[Path]:
    from nowcast_cli.plotting import plot_sample

    case, folder = _case(cfg)
    fig = plot_sample(case.observed, case.valid, case.forecasts, case.leads, case.issue, case.zr)
    stamp = dt.datetime.fromtimestamp(case.issue, dt.UTC).strftime("%Y%m%d-%H%M")
    return [_save(fig, _output(cfg, folder, f"sample-{stamp}"))]


def _animate(cfg: PlotConfig) -> list[Path]:
    from PIL import Image

    from nowcast_cli.plotting import plot_animation_frame

    case, folder = _case(cfg)
    images = []
    for k, lead in enumerate(case.leads):
        fig = plot_animation_frame(
            case.observed[k], case.valid[k], {n: f[k] for n, f in case.forecasts.items()},
            lead, case.issue, case.zr,
        )  # fmt: skip
        import io

        buf = io.BytesIO()
        fig.savefig(buf, dpi=90, format="png")
        buf.seek(0)
        images.append(Image.open(buf).convert("P", palette=Image.Palette.ADAPTIVE, colors=255))
    stamp = dt.datetime.fromtimestamp(case.issue, dt.UTC).strftime("%Y%m%d-%H%M")
    path = _output(cfg, folder, f"animate-{stamp}", suffix="gif")
    images[0].save(path, save_all=True, append_images=images[1:], duration=700, loop=0)
    return [path]


# -- scores -------------------------------------------------------------------------------------
def _scores(cfg: PlotConfig) -> list[Path]:
    import json

    import pandas as pd

    from nowcast_cli.plotting import plot_scores

    targets = [_run_folder(Path(t)) for t in _runs_with(cfg, "scores.json")]
    rows: list[tuple[Any, ...]] = []
    for run in targets:
        path = run / "scores.json"
        if not path.is_file():
            raise RunError(f"{run}: no scores.json; verify it first: nowcast verify {run}")
        data = json.loads(path.read_text())
        label = _label(run)
        if any(r[0] == label for r in rows):
            label = run.name
        boot = data.get("bootstrap") or {}
        for metric, values in data["per_lead"].items():
            arr = np.asarray(values, dtype=np.float64)
            low = np.asarray(boot.get("per_lead", {}).get(metric, {}).get("low", arr * np.nan),
                             dtype=np.float64)  # fmt: skip
            high = np.asarray(boot.get("per_lead", {}).get(metric, {}).get("high", arr * np.nan),
                              dtype=np.float64)  # fmt: skip
            for i, minutes in enumerate(data["lead_minutes"]):
                if arr.ndim == 1:
                    rows.append((label, minutes, np.nan, metric, arr[i], low[i], high[i]))
                else:
                    for j, thr in enumerate(data["thresholds_mm_h"]):
                        rows.append((label, minutes, thr, metric, arr[i, j], low[i, j], high[i, j]))
    df = pd.DataFrame(
        rows, columns=["run", "lead_minutes", "threshold", "metric", "value", "low", "high"]
    )
    known = sorted(df["metric"].unique())
    out = []
    for metric in cfg.metrics:
        if metric not in known:
            raise ConfigError(f"unknown score {metric!r}; the scores files hold {', '.join(known)}")
        fig = plot_scores(df, metric)
        out.append(_save(fig, _output(cfg, targets[0], f"scores-{metric}")))
    return out


# -- training logs ------------------------------------------------------------------------------
def _per_run(
    cfg: PlotConfig, needs: str, why: str, draw: Callable[[Path], Any], stem: str
) -> list[Path]:
    """One figure per run, drawn from its file `needs`.

    In the run's own figures/ folder, or under --out with the run's name added when there
    are several (the given runs; by default the latest). Every run is checked before
    anything is drawn.
    """
    targets = [_run_folder(t) for t in _runs_with(cfg, needs)]
    for run in targets:
        if not (run / needs).is_file():
            raise RunError(f"{run}: no {needs} ({why})")
    out = []
    for run in targets:
        fig = draw(run)
        path = _output(cfg, run, stem)
        if len(targets) > 1 and cfg.out is not None:
            path = path.with_stem(f"{path.stem}-{run.name}")
        out.append(_save(fig, path))
    return out


def _frames(cfg: PlotConfig) -> list[Path]:
    import pandas as pd

    from nowcast_cli.plotting import plot_frames

    def draw(run: Path) -> Any:
        path = run / "frames.csv"
        df = pd.read_csv(path).rename(columns={"delta_x": "dx"})
        if df.empty:
            raise DataError(f"{path}: no epoch logged yet")
        m = int(runs.read_config(run).get("in_frames", 10))
        title = f"{_label(run)}: per-frame error and focal weights"
        return plot_frames(df, in_frames=m, title=title)

    return _per_run(cfg, "frames.csv", "a training run writes it every epoch", draw, "frames")


def _training(cfg: PlotConfig) -> list[Path]:
    import pandas as pd

    from nowcast_cli.plotting import plot_training

    def draw(run: Path) -> Any:
        path = run / "metrics.csv"
        df = pd.read_csv(path)
        if df.empty:
            raise DataError(f"{path}: no step logged yet")
        return plot_training(df, title=f"{_label(run)}: loss")

    return _per_run(cfg, "metrics.csv", "not a training run", draw, "training")


# -- a store ------------------------------------------------------------------------------------
def _store(cfg: PlotConfig) -> list[Path]:
    from nowcast_cli.encoding import rate_table
    from nowcast_cli.plotting import MEAN_LEVELS, plot_store
    from nowcast_cli.store import Store, iter_chunks, resolve_store
    from nowcast_cli.store import stem as store_stem

    path = resolve_store(cfg.store)
    with Store.open(path) as store:
        if len(store) == 0:
            raise StoreError(f"{path}: holds no frames")
        size = cfg.size
        coords = store.coordinates() if size is None else None
        x, y = coords if coords is not None else (None, None)
        name = store.attrs.get("product") or store_stem(path)
        if cfg.mean:
            table = rate_table(*store.zr)
            shape = store.shape if size is None else (size, size)
            total, count = np.zeros(shape), np.zeros(shape, np.int64)
            for a, b in iter_chunks(len(store), 256):
                frames, valid = store.read(a, b, size)
                total += np.where(valid, table[frames], 0.0).sum(0)
                count += valid.sum(0)
            field = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
            fig = plot_store(
                field, count > 0, None, x=x, y=y,
                title=f"{name}: mean rain rate\n{_iso(int(store.times[0]))} → "
                f"{_iso(int(store.times[-1]))} UTC, {len(store)} frames",
                units="mean rain rate (mm/h)", levels=MEAN_LEVELS,
            )  # fmt: skip
            stem = f"{store_stem(path)}-mean"
        else:
            k = len(store) - 1
            if cfg.time is not None:
                t = _parse_time(cfg.time)
                hit = np.nonzero(store.times == t)[0]
                if len(hit) == 0:
                    raise DataError(
                        f"{path}: no frame at {_iso(t)} (frames run {_iso(int(store.times[0]))} "
                        f"→ {_iso(int(store.times[-1]))})"
                    )
                k = int(hit[0])
            frames, valid = store.read(k, k + 1, size)
            grid = f"{size}×{size} training copy" if size else "full grid"
            fig = plot_store(
                frames[0], valid[0], store.zr, x=x, y=y,
                title=f"{name}, {_iso(int(store.times[k]))} UTC ({grid})",
            )  # fmt: skip
            when = dt.datetime.fromtimestamp(int(store.times[k]), dt.UTC)
            stem = f"{store_stem(path)}-{when:%Y%m%d-%H%M}"
    return [_save(fig, _output(cfg, Path.cwd(), stem))]
