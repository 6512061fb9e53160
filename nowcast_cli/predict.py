"""Forecasts into a forecast store (SPEC §8): from a trained run, or from a classical baseline.

`forecast` chooses the issue times, reads the observed frames straight from the observation
store, runs the model in batches under inference mode and appends uint8 frames on the store's
encoding to ``forecasts.zarr`` as it goes (memory does not grow with the number of samples).

What is forecast, and where it goes:

- a trained run (``run``; default the latest run in ./runs): its ``best.pt`` (or ``last.pt``),
  on the run's store, training copy and window length, into ``<run>/forecasts.zarr``. The
  output holds every frame the model makes: for the recurrent models the m − 1
  reconstructions of observed frames (leads −(m−2)Δ … 0, for ``verify --frames all``), then
  the n forecasts (Δ … nΔ); for forecast-only models (RainNet, SimVP) the n forecasts.
- a baseline (``model`` = ``persistence`` or ``extrapolation``): a new run folder
  ``runs/<baseline>-<UTC time>/``; with ``run`` it takes that run's store, copy, window
  length and split, so both answer the same issue times. ``native`` forecasts on the full
  grid instead of the training copy.

Issue times: a split of the store (``split``, default ``test``, exactly the windows the
training engine holds out, `nowcast_cli.samples`), every time in ``[start, end]`` with m
observed frames before it, or (``latest``) the newest frame of the store. The issue time of a
forecast is the time of its last observed frame.

An interrupted prediction resumes: when the forecast store exists and was made by the same
configuration, issue times already written are skipped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nowcast_cli import runs
from nowcast_cli.encoding import unit_to_fine, unit_to_pixel
from nowcast_cli.errors import ConfigError, DataError, RunError, StoreError
from nowcast_cli.store import Location, is_url, location

__all__ = ["BASELINES", "PredictConfig", "PredictResult", "forecast"]

BASELINES = ("persistence", "extrapolation")
FORECASTS = "forecasts.zarr"
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class PredictConfig:
    """What to forecast (see the module docstring); every field is a `nowcast predict` option.

    Attributes
    ----------
    run : str or None
        A training run folder (default: the latest in ./runs, unless `model` is a baseline).
    model : str or None
        ``persistence`` or ``extrapolation`` to forecast with a baseline.
    store : str or None
        Observation store (default: the run's; for a baseline without a run, the only store
        in ./nowcast-data).
    split : str
        ``test``, ``valid`` or ``train``: the split's windows (the run's split, or the
        default split of the store for a baseline without a run).
    start, end : str or None
        Forecast every issue time from `start` to `end` (ISO dates or times, UTC) instead.
    latest : bool
        One forecast from the newest frames of the store (the operational nowcast).
    native : bool
        Baselines only: forecast on the store's full grid instead of its training copy.
    checkpoint : str
        ``best``, ``last`` or a checkpoint file.
    in_frames, out_frames, size : int or None
        Window and training copy for a baseline without a run (default 10, 10 and the
        store's only training copy, or 120).
    batch : int
        Samples per forward pass.
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    motion : str
        Motion field of the extrapolation baseline: ``lk`` (Lucas–Kanade) or ``vet``.
    out : str or None
        The forecast store to write (default ``<run>/forecasts.zarr``).
    overwrite : bool
        Replace a forecast store written by another configuration (e.g. an older checkpoint
        of the same run), and the scores made from it, instead of refusing.
    """

    run: str | None = None
    model: str | None = None
    store: str | None = None
    split: str = "test"
    start: str | None = None
    end: str | None = None
    latest: bool = False
    native: bool = False
    checkpoint: str = "best"
    in_frames: int | None = None
    out_frames: int | None = None
    size: int | None = None
    batch: int = 16
    device: str = "auto"
    motion: str = "lk"
    out: str | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.model is not None and self.model.lower() not in BASELINES:
            from nowcast_cli.registry import Registry

            known: Registry[str] = Registry("baseline")
            for name in BASELINES:
                known.register(name)(name)
            known.get(self.model)  # the valid names and the closest match
            raise ConfigError(f"unknown baseline {self.model!r}")  # unreachable
        if self.split not in ("train", "valid", "test"):
            raise ConfigError(f"split must be train, valid or test, got {self.split!r}")
        modes = (self.start is not None or self.end is not None) + bool(self.latest)
        if modes > 1:
            raise ConfigError("--latest and --start/--end exclude each other")
        both = self.start is not None and self.end is not None
        if both and _time(str(self.end), "end") < _time(str(self.start), "start"):
            raise ConfigError(f"--end {self.end} is before --start {self.start}")
        if self.native and self.model is None:
            raise ConfigError(
                "--native applies to the baselines only: a trained model forecasts on the "
                "grid it was trained on"
            )
        for name in ("in_frames", "out_frames", "size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be ≥ 1, got {value}")
        if self.batch < 1:
            raise ConfigError(f"batch must be ≥ 1, got {self.batch}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.motion not in ("lk", "vet"):
            raise ConfigError(f"motion must be lk or vet, got {self.motion!r}")


@dataclass
class PredictResult:
    """What `forecast` wrote."""

    forecasts: Location
    run: Path
    model: str
    samples: int  # samples in the forecast store
    written: int  # samples written by this call
    skipped: int  # already present (resumed)
    leads: list[int]
    first: str | None
    last: str | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in vars(self).items()}


@dataclass(frozen=True)
class _Job:
    """Everything resolved before the first forecast."""

    run: Path
    out: Location
    store: Location
    model: str  # registry name or baseline
    size: int | None  # training copy edge; None = full grid
    in_frames: int
    out_frames: int
    inputs: np.ndarray  # (N, m) frame indices, -1 = missing
    issue: np.ndarray  # (N,) issue times
    leads: list[int]
    attrs: dict[str, Any]
    checkpoint: Path | None


# -- choosing what to forecast -----------------------------------------------------------------
def _time(text: str, what: str) -> int:
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"--{what} {text!r} is not a date or time (e.g. 2018-05-20 or 2018-05-20T12:00)"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp())


def _issue_windows(
    cfg: PredictConfig, store: Any, data_cfg: Any, m: int
) -> tuple[np.ndarray, np.ndarray, str]:
    """Input frame indices (N, m) and issue times (N,) to forecast, and how they were chosen."""
    from nowcast_cli.samples import find_windows, make_splits

    interval = store.interval_s
    if cfg.latest or cfg.start is not None or cfg.end is not None:
        frames, start = find_windows(store.times, interval, m, data_cfg.max_missing)
        issue = start + (m - 1) * interval
        if cfg.latest:
            newest = int(store.times[-1]) if len(store) else None
            keep = issue == newest
            if not keep.any():
                raise DataError(
                    f"{store.path}: its newest frame ({_iso(newest)}) does not end {m} "
                    f"consecutive frames (--in-frames {m}, --max-missing {data_cfg.max_missing})"
                )
            how = f"the newest frame of the store ({_iso(newest)})"
        else:
            lo = _time(cfg.start, "start") if cfg.start is not None else -(2**62)
            hi = _time(cfg.end, "end") if cfg.end is not None else 2**62
            if cfg.end is not None and len(cfg.end) <= 10:  # a date: the whole day
                hi += 86_400 - 1
            keep = (issue >= lo) & (issue <= hi)
            how = f"every issue time from {cfg.start or 'the start'} to {cfg.end or 'the end'}"
        return frames[keep], issue[keep], how
    splits = make_splits(data_cfg, store.path)
    split = splits[cfg.split]
    how = f"the {cfg.split} split ({splits.method}: {splits.note})"
    return split.frames[:, :m], split.issue_time, how


def _iso(t: int | None) -> str:
    if t is None:
        return "—"
    return dt.datetime.fromtimestamp(int(t), dt.UTC).strftime("%Y-%m-%d %H:%M")


def _plan(cfg: PredictConfig) -> _Job:
    from nowcast_cli.checkpoint import read_checkpoint
    from nowcast_cli.config import DataConfig
    from nowcast_cli.store import Store, ensure_copy, resolve_store

    run: Path | None = None
    checkpoint: Path | None = None
    run_opts: dict[str, Any] = {}
    if cfg.run is not None or cfg.model is None:
        run = runs.resolve_run(cfg.run, what="run to forecast with")
        run_opts = _run_options(run)
        if cfg.model is None:
            checkpoint = _checkpoint(run, cfg.checkpoint)
            meta = read_checkpoint(checkpoint)
            run_opts = dict(meta.get("options", run_opts))
    data_keys = {f for f in DataConfig.__dataclass_fields__}
    data_opts = {k: v for k, v in run_opts.items() if k in data_keys}
    given = {"in_frames": cfg.in_frames, "out_frames": cfg.out_frames, "size": cfg.size}
    if checkpoint is not None:
        for key, value in given.items():
            if value is not None and value != data_opts.get(key):
                raise ConfigError(
                    f"--{key.replace('_', '-')} {value}: the run was trained with "
                    f"{data_opts.get(key)}; a trained model forecasts with its own windows"
                )
    data_opts.update({k: v for k, v in given.items() if v is not None})
    store_path = resolve_store(cfg.store or data_opts.get("store"))
    if not cfg.native and "size" in data_opts:
        ensure_copy(store_path, int(data_opts["size"]))  # made once from the full grid
    with Store.open(store_path) as store:
        if "size" not in data_opts:
            data_opts["size"] = store.sizes[0] if len(store.sizes) == 1 else 120
        data_opts["store"] = str(store_path)
        data_cfg = DataConfig(**data_opts)
        m, n = data_cfg.in_frames, data_cfg.out_frames
        size: int | None = None if cfg.native else data_cfg.size
        if size is not None:
            from nowcast_cli.samples import check_size

            check_size(store, size)
        inputs, issue, how = _issue_windows(cfg, store, data_cfg, m)
        interval_min = store.interval_s // 60
    if len(issue) == 0:
        raise DataError(f"{store_path}: no issue time to forecast in {how}")
    model = cfg.model.lower() if cfg.model is not None else str(run_opts.get("model"))
    if cfg.model is None:
        assert run is not None
        out_dir = run
    elif cfg.out is not None and not is_url(location(cfg.out)):
        out_dir = Path(cfg.out).parent
        if not out_dir.exists() or not any(out_dir.iterdir()):
            # a new folder for a baseline is a run folder, like `runs/<baseline>-<time>/`
            out_dir.mkdir(parents=True, exist_ok=True)
            _write_baseline_config(out_dir, cfg, data_cfg, run)
    else:
        out_dir = runs.new_run_dir(model, None)
        _write_baseline_config(out_dir, cfg, data_cfg, run)
    # a forecast store may be a URL; the run folder (config, scores) stays local
    out = location(cfg.out) if cfg.out is not None else out_dir / FORECASTS
    if model == "extrapolation" or not _reconstructs(model):
        leads = [k * interval_min for k in range(1, n + 1)]  # X̂_m … X̂_{m+n−1}
    else:  # the rollout's X̂_1 … X̂_{m+n−1}: reconstructions, then the forecast
        leads = [k * interval_min for k in range(-(m - 2), n + 1)]
    attrs = {
        "model": model,
        "loss": run_opts.get("loss") if cfg.model is None else None,
        "run": str(out_dir.resolve()),
        "checkpoint": str(checkpoint.resolve()) if checkpoint is not None else None,
        "in_frames": m,
        "out_frames": n,
        "issue_times": how,
        "config": {
            k: v for k, v in asdict(cfg).items() if k not in ("batch", "device", "out", "overwrite")
        },
        "data": {k: v for k, v in asdict(data_cfg).items()},
    }
    if model == "extrapolation":
        attrs["motion"] = cfg.motion
    attrs["fingerprint"] = _fingerprint(attrs, checkpoint)
    return _Job(
        out_dir, out, store_path, model, size, m, n, inputs, issue, leads, attrs, checkpoint
    )


def _run_options(run: Path) -> dict[str, Any]:
    return {k: v for k, v in runs.read_config(run).items() if not isinstance(v, dict)}


def _checkpoint(run: Path, which: str) -> Path:
    if which == "best":
        return runs.best_checkpoint(run)
    if which == "last":
        path = run / "last.pt"
        if not path.is_file():
            raise RunError(f"{run}: no last.pt")
        return path
    path = Path(which)
    if not path.is_file():
        raise RunError(f"{path}: no such checkpoint (use best, last or a file)")
    return path


def _fingerprint(attrs: dict[str, Any], checkpoint: Path | None) -> str:
    """What makes two predictions the same: options, data, and the checkpoint's bytes' hash."""
    h = hashlib.sha256(json.dumps(attrs, sort_keys=True, default=str).encode())
    if checkpoint is not None:
        st = checkpoint.stat()
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _write_baseline_config(
    folder: Path, cfg: PredictConfig, data_cfg: Any, run: Path | None
) -> None:
    """A baseline's run folder gets a config.toml too, so `nowcast list runs` shows it."""
    import tomli_w

    doc = {
        "model": cfg.model,
        "loss": "",
        "store": data_cfg.store,
        "size": data_cfg.size,
        "in_frames": data_cfg.in_frames,
        "out_frames": data_cfg.out_frames,
        "native": cfg.native,
        "split": cfg.split,
        "like_run": str(run) if run is not None else "",
        "plan": {"created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")},
    }
    if cfg.model == "extrapolation":
        doc["motion"] = cfg.motion
    (folder / "config.toml").write_text(tomli_w.dumps(doc), encoding="utf-8")


# -- forecasting -------------------------------------------------------------------------------
def forecast(cfg: PredictConfig, progress: Progress | None = None) -> PredictResult:
    """Forecast the chosen issue times into a forecast store (see the module docstring).

    Parameters
    ----------
    cfg : PredictConfig
        What to forecast.
    progress : callable, optional
        Called as ``progress("predict", done, total)`` after every batch.

    Returns
    -------
    PredictResult
        Where the forecasts are and how many were written.

    Raises
    ------
    NowcastError
        For an unknown run or baseline, a store without the windows asked for, a forecast
        store made by another configuration, or a missing optional dependency.
    """
    from nowcast_cli.store import Store

    t0 = time.perf_counter()
    job = _plan(cfg)
    predictor = _predictor(job, cfg)
    with Store.open(job.store) as obs:
        fstore = _open_output(job, obs, cfg.overwrite)
        with fstore:
            done = fstore.issue_times
            todo = np.ones(len(job.issue), bool)
            if len(done):
                todo = job.issue > done[-1]
            skipped = int((~todo).sum())
            idx = np.nonzero(todo)[0]
            reader = obs.frame_reader(job.size)
            total = len(idx)
            written = 0
            if progress is not None:
                progress("predict", 0, total)
            for batch in _chunks(idx, cfg.batch):
                frames = _read_inputs(reader, job.inputs[batch])  # (B, m, H, W) uint8
                pixels, fine = predictor(frames)
                # a store begun before fine forecasts were kept is resumed without them
                fstore.append(job.issue[batch], pixels, fine if fstore.has_fine else None)
                written += len(batch)
                if progress is not None:
                    progress("predict", written, total)
            samples = len(fstore)
            issue = fstore.issue_times
    return PredictResult(
        forecasts=job.out,
        run=job.run,
        model=job.model,
        samples=samples,
        written=written,
        skipped=skipped,
        leads=job.leads,
        first=_iso(int(issue[0])) if samples else None,
        last=_iso(int(issue[-1])) if samples else None,
        seconds=time.perf_counter() - t0,
    )


def _open_output(job: _Job, obs: Any, overwrite: bool) -> Any:
    """The forecast store to append to: new, or the same configuration's (resume)."""
    from nowcast_cli.store import ForecastStore, exists, remove

    if exists(job.out):
        fstore = ForecastStore.open(job.out, mode="a")
        if fstore.attrs.get("fingerprint") == job.attrs["fingerprint"]:
            return fstore
        fstore.close()
        if not overwrite:
            raise StoreError(
                f"{job.out} holds forecasts of another configuration (model, checkpoint, "
                "store or issue times); replace it with --overwrite or write elsewhere with --out"
            )
        remove(job.out)
        for stale in ("scores.csv", "scores.json"):  # they scored the forecasts just removed
            folder = job.out.parent if isinstance(job.out, Path) else job.run
            (folder / stale).unlink(missing_ok=True)
    return ForecastStore.create(
        job.out,
        observations=obs,
        size=job.size,
        lead_minutes=job.leads,
        attrs=job.attrs,
        fine=job.model not in BASELINES,  # a network's continuous output, kept unrounded
    )


def _chunks(idx: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for s in range(0, len(idx), size):
        yield idx[s : s + size]


def _read_inputs(reader: Any, inputs: np.ndarray) -> np.ndarray:
    """Observed frames (B, m, H, W) uint8; a missing frame is zeros (as in training)."""
    flat, _ = reader.read(inputs.reshape(-1))
    frames: np.ndarray = flat.reshape(*inputs.shape, *flat.shape[1:])
    return frames


def _reconstructs(model: str) -> bool:
    """Whether a registered model's output starts with reconstructions of observed frames."""
    from nowcast_cli.models import MODELS

    return bool(MODELS.get(model).reconstructs)


Forecasts = tuple[np.ndarray, np.ndarray | None]


def _predictor(job: _Job, cfg: PredictConfig) -> Callable[[np.ndarray], Forecasts]:
    """A function from observed frames (B, m, H, W) uint8 to forecasts (B, L, H, W).

    It returns uint8 pixels, and for a network its output as uint16 fine codes (None for the
    baselines, whose forecasts are whole pixels).
    """
    if job.model == "extrapolation":
        from nowcast_cli.baselines import extrapolate

        n = job.out_frames

        def extrapolation(frames: np.ndarray) -> Forecasts:
            return np.stack([extrapolate(f, n, motion=cfg.motion) for f in frames]), None

        extrapolation(np.zeros((1, job.in_frames, 4, 4), np.uint8))  # fail early without pysteps
        return extrapolation
    if job.model == "persistence":
        m, n = job.in_frames, job.out_frames

        def persistence(frames: np.ndarray) -> Forecasts:
            # the rollout of `create_model("persistence")`: X̂_{s+1} = X_s, then X_{m−1} repeated
            last = np.repeat(frames[:, m - 1 : m], n, axis=1)
            return np.ascontiguousarray(np.concatenate([frames[:, : m - 1], last], axis=1)), None

        return persistence
    import torch

    from nowcast_cli.checkpoint import load_checkpoint

    assert job.checkpoint is not None
    cuda = torch.cuda.is_available()
    if cfg.device == "cuda" and not cuda:
        raise ConfigError("--device cuda: no CUDA device is available (use --device cpu)")
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and cuda)
    device = torch.device("cuda" if use_cuda else "cpu")
    model, _ = load_checkpoint(job.checkpoint)
    model.to(device).eval()
    n = job.out_frames

    def network(frames: np.ndarray) -> Forecasts:
        with torch.inference_mode():
            x = torch.from_numpy(frames).to(device).unsqueeze(2).float().div_(255.0)
            # (B, m + n − 1, 1, H, W), or (B, n, 1, H, W) for a forecast-only model: linear
            # outputs on the [0, 1] scale, one per lead of the job
            out = model(x, n)
            y = out.squeeze(2).cpu().numpy()
            return unit_to_pixel(y), unit_to_fine(y)

    return network
