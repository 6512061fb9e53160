"""Training configuration: frozen dataclasses, loaded from command-line options and TOML.

Every ``nowcast train`` option is also a TOML key with the same name (``in-frames`` or
``in_frames``), so ``nowcast train --config run.toml`` and the command line are
interchangeable; options given on the command line win over the file. A run folder's
``config.toml`` is such a file (plus the informational tables ``[data]``, ``[split]``, ``[plan]``,
which loading skips), so ``nowcast train --config runs/X/config.toml`` repeats a run.

The defaults are the paper's (Ma, Zhang & Liu 2022, §V-C): batch 4, AdamHD with
hypergradient rate 1e-8, learning rate 5e-4, 30 epochs, loss scale 0.001, seed 2021, 10 input
and 10 output frames at 120×120, 3 layers × 64 hidden channels with 3×3 kernels.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nowcast_cli.errors import ConfigError

__all__ = [
    "INFO_TABLES",
    "RESUMABLE",
    "SELECT_RULES",
    "DataConfig",
    "TrainConfig",
    "config_dict",
    "diff_configs",
    "load_config",
    "parse_range",
    "parse_ranges",
    "read_toml",
]

#: tables a run's config.toml carries for the reader; `load_config` skips them
INFO_TABLES = ("data", "split", "plan")
#: options a resumed run may change: they do not change what is computed
RESUMABLE = frozenset(
    {
        "max_steps",
        "device",
        "devices",
        "workers",
        "compile",
        "checkpoint_every",
        "run",
        "resume",
        "predict",
    }
)


#: ``--select``: which weights make the test forecasts (``best.pt``), and how they are chosen
SELECT_RULES = {
    "val-bmse+bmae": "lowest validation B-MSE + B-MAE over the forecast frames (the store's "
    "Z–R), whatever the training loss",
    "val-csi": "highest validation CSI over the forecast frames, mean over the thresholds "
    "0.5, 2, 5, 10, 30 mm/h that the validation observations reach",
    "val-loss": "lowest validation value of the run's own training loss (depends on the loss: "
    "runs with different losses are chosen by different rules)",
    "last": "the last weights (the authors test the final weights)",
}


@dataclass(frozen=True)
class DataConfig:
    """Which windows of which store a model trains and is evaluated on (SPEC §4).

    Attributes
    ----------
    store : str or None
        Observation store; None = the only store in ./nowcast-data.
    size : int
        Edge of the store's training copy to read (a ``coarse/<size>`` array).
    in_frames, out_frames : int
        Observed frames m and forecast frames n per window (window = m + n frames).
    max_missing : int
        Frames a window may lack (zero-filled, ``valid`` False), as the HKO-7 benchmark.
    stride : int or None
        Product intervals between the starts of consecutive windows of a split; None =
        in + out frames (non-overlapping windows, as the authors' loader).
    train, valid, test : str or None
        Date ranges ``START:END`` (inclusive days, either end may be empty), or several,
        comma-separated and in time order (``START:END,START:END``: e.g. training days on both
        sides of a test block); None for all three = 80/10/10 by day, or an HKO-7 store's own
        rainy-day lists.
    valid_samples : int
        Evaluate on at most this many validation windows (evenly spaced); 0 = all.
    """

    store: str | None = None
    size: int = 120  # the paper's 120×120
    in_frames: int = 10  # the paper: 10 observed frames
    out_frames: int = 10  # the paper: 10 forecast frames
    max_missing: int = 0  # gaps are skipped unless allowed here
    stride: int | None = None  # None = in + out: non-overlapping windows (authors' loader)
    train: str | None = None
    valid: str | None = None
    test: str | None = None
    valid_samples: int = 0  # 0 = every validation window

    def __post_init__(self) -> None:
        _positive(self, "size", "in_frames", "out_frames")
        if self.max_missing < 0:
            raise ConfigError(f"max-missing must be ≥ 0, got {self.max_missing}")
        if self.max_missing >= self.in_frames + self.out_frames:
            raise ConfigError(
                f"max-missing {self.max_missing} leaves no frame of a "
                f"{self.in_frames + self.out_frames}-frame window"
            )
        if self.stride is not None and self.stride < 1:
            raise ConfigError(f"stride must be ≥ 1, got {self.stride}")
        if self.valid_samples < 0:
            raise ConfigError(f"valid-samples must be ≥ 0, got {self.valid_samples}")
        for name in ("train", "valid", "test"):
            value = getattr(self, name)
            if value is not None:
                parse_ranges(value, name)

    @property
    def window(self) -> int:
        """Frames per window (m + n)."""
        return self.in_frames + self.out_frames

    @property
    def window_stride(self) -> int:
        """Stride between window starts, in product intervals."""
        return self.stride if self.stride is not None else self.window


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``nowcast train`` needs; defaults are the paper's recipe.

    Attributes
    ----------
    data : DataConfig
        Store, window shape and splits.
    model : str or None
        Registry name (``nowcast list models``).
    layers, hidden, kernel : int or None
        Size of the model: its depth (recurrent layers; RainNet's pooling levels; SimVP's
        translator blocks N_T), width (hidden channels; RainNet's first-level filters; SimVP's
        hid_S) and kernel. None = the model's own default, its published configuration (3, 64
        and 3 for the recurrent models). Baselines ignore them.
    conv : {"auto", "direct"}
        How 3×3 convolutions are computed on CPU (Winograd where it pays, or torch's).
    loss : str or None
        Registry name (``nowcast list losses``).
    balanced : bool
        B-MSE/B-MAE weights from the store's Z–R.
    ff_k, ff_eps : float
        Focal frame exponent and bias.
    loss_scale : float
        Factor on the loss (the paper's 0.001).
    loss_frames : {"all", "forecast"}
        Loss over all m + n − 1 outputs (the paper) or over the n forecast frames only.
    batch : int
        Global batch size (split over ``devices`` processes).
    optimizer : {"adamhd", "adam"}
        AdamHD (Adam with hypergradient learning-rate adaptation) or Adam.
    lr : float
        (Initial) learning rate.
    hypergrad_lr : float
        AdamHD's hypergradient rate β.
    epochs : int
        Passes over the training windows; scheduled sampling decays over all of them.
    max_steps : int or None
        Stop after this many optimizer steps in total (a cap; the schedule is unchanged).
    seed : int
        Seeds initialisation, data order and scheduled-sampling draws.
    scheduled_sampling : bool
        Linear decay of the true-frame probability from 1 to 0 over the run's steps.
    clip_value : float
        Clip each gradient element to ±clip_value before the step; 0 = off.
    device : {"auto", "cpu", "cuda"}
        Where to train (auto = CUDA when available).
    devices : int
        Processes for DistributedDataParallel (1 = none).
    precision : {"fp32", "bf16"}
        bf16 autocast (CUDA only).
    compile : bool
        torch.compile the recurrent cells (CUDA only).
    workers : int or None
        Data-loading worker processes per training process; None = 0 on CPU, 2 on CUDA.
    checkpoint_every : int
        Also write last.pt every this many steps (0 = at epoch ends only).
    valid_every : int
        Validate every this many steps; 0 = at every epoch end. The final planned step is
        always validated. The schedule depends on the step alone, never on where a process
        stops (``max_steps``, Ctrl-C), so a resumed run validates exactly where an
        uninterrupted one does.
    select : str
        Which weights ``best.pt`` keeps, by a rule of `SELECT_RULES`. The default,
        ``val-bmse+bmae``, does not depend on the training loss, so that runs trained with
        different losses are chosen alike; ``last`` keeps none (the final weights, which the
        authors test); ``val-loss`` is the run's own validation loss.
    predict : bool
        When training ends (finished or at ``max_steps``), forecast the test split with the
        checkpoint chosen by ``select`` (``best.pt``; ``last.pt`` when there is none) into
        ``<run>/forecasts.zarr``: ``nowcast verify`` can score it at once.
    run : str or None
        Run folder; None = ``runs/<model>-<loss>-<UTC time>/`` (or, with ``resume``, the
        latest run).
    resume : bool
        Continue the run in ``run`` from its last.pt.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: str | None = None
    layers: int | None = None  # None: the model's default (the paper: 3 recurrent layers)
    hidden: int | None = None  # None: the model's default (the paper: 64 hidden channels)
    kernel: int | None = None  # None: the model's default (the paper: 3×3 kernels)
    conv: str = "auto"
    loss: str | None = None
    balanced: bool = True  # the paper trains on B-MSE + B-MAE
    ff_k: float = 2.0  # the paper's k
    ff_eps: float = 0.01  # the paper's ε
    loss_scale: float = 0.001  # the paper: "multiply the loss by 0.001"
    loss_frames: str = "all"  # the paper's eq. 6 sums over all 19 outputs
    batch: int = 4  # the paper's batch
    optimizer: str = "adamhd"  # the paper: AdamHD
    lr: float = 5e-4  # the paper's learning rate
    hypergrad_lr: float = 1e-8  # the authors' AdamHD hypergradient rate
    epochs: int = 30  # the paper: 30 epochs on both datasets
    max_steps: int | None = None
    seed: int = 2021  # the authors' seed
    scheduled_sampling: bool = True  # the authors' code: η from 1 to 0 over the run
    clip_value: float = 5.0  # the authors' clip_grad_value_(5), applied before the step
    device: str = "auto"
    devices: int = 1
    precision: str = "fp32"
    compile: bool = False
    workers: int | None = None
    checkpoint_every: int = 0
    valid_every: int = 0  # the authors validate every third epoch; we validate every epoch
    select: str = "val-bmse+bmae"  # loss-independent, so runs of different losses compare
    predict: bool = True
    run: str | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        _positive(self, "batch", "epochs", "devices")
        sizes = ("layers", "hidden", "kernel")
        _positive(self, *(k for k in sizes if getattr(self, k) is not None))
        _choice(self, "conv", ("auto", "direct"))
        _choice(self, "loss_frames", ("all", "forecast"))
        _choice(self, "optimizer", ("adamhd", "adam"))
        _choice(self, "device", ("auto", "cpu", "cuda"))
        _choice(self, "precision", ("fp32", "bf16"))
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.hypergrad_lr < 0 or self.clip_value < 0:
            raise ConfigError("hypergrad-lr and clip-value must be ≥ 0")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max-steps must be ≥ 1, got {self.max_steps}")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"workers must be ≥ 0, got {self.workers}")
        if self.checkpoint_every < 0:
            raise ConfigError(f"checkpoint-every must be ≥ 0, got {self.checkpoint_every}")
        if self.valid_every < 0:
            raise ConfigError(f"valid-every must be ≥ 0, got {self.valid_every}")
        _choice(self, "select", tuple(SELECT_RULES))
        if self.batch % self.devices:
            raise ConfigError(
                f"batch {self.batch} must be a multiple of devices {self.devices} "
                "(each process takes an equal share of the global batch)"
            )


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")


def _choice(obj: Any, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(obj, name)
    if value not in choices:
        raise ConfigError(
            f"{name.replace('_', '-')} must be one of {', '.join(choices)}, got {value!r}"
        )


def parse_range(text: str, what: str = "range") -> tuple[dt.date | None, dt.date | None]:
    """Parse ``START:END`` (ISO dates, inclusive, either side may be empty).

    Raises
    ------
    ConfigError
        If the text is not two ISO dates around a colon, or END is before START.
    """
    parts = str(text).split(":")
    if len(parts) != 2:
        raise ConfigError(f"--{what} {text!r}: expected START:END, e.g. 2006-01-01:2014-12-31")
    ends: list[dt.date | None] = []
    for part in parts:
        part = part.strip()
        try:
            ends.append(dt.date.fromisoformat(part) if part else None)
        except ValueError:
            raise ConfigError(f"--{what} {text!r}: {part!r} is not a date (YYYY-MM-DD)") from None
    start, end = ends
    if start is not None and end is not None and end < start:
        raise ConfigError(f"--{what} {text!r}: the end is before the start")
    return start, end


def parse_ranges(text: str, what: str = "range") -> list[tuple[dt.date | None, dt.date | None]]:
    """Parse one or more ``START:END`` ranges, comma-separated (``A:B,C:D``), in time order.

    Each range is as in `parse_range` (inclusive days). Ranges must not overlap and must come
    in time order, so only the first may have an open start and only the last an open end;
    adjacent ranges (one ends the day before the next starts) are allowed.

    Raises
    ------
    ConfigError
        If a range does not parse, a range is empty, or two ranges overlap or are out of order.
    """
    items = [item.strip() for item in str(text).split(",")]
    if any(not item for item in items):
        raise ConfigError(
            f"--{what} {text!r}: an empty range; expected START:END or START:END,START:END"
        )
    out = [parse_range(item, what) for item in items]
    for (a, (_, a_end)), (b, (b_start, _)) in itertools.pairwise(zip(items, out, strict=True)):
        if a_end is None or b_start is None or b_start <= a_end:
            raise ConfigError(
                f"--{what} {text!r}: ranges {a!r} and {b!r} overlap or are out of order "
                "(give them in time order, without shared days)"
            )
    return out


_DATA_FIELDS = {f.name for f in dataclasses.fields(DataConfig)}
_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)} - {"data"}
KEYS = _DATA_FIELDS | _TRAIN_FIELDS


def read_toml(path: str | Path) -> dict[str, Any]:
    """Options from a TOML file (keys as on the command line, ``-`` or ``_``).

    Raises
    ------
    ConfigError
        If the file is missing or not TOML, or holds a key that is not an option.
    """
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{p}: not a TOML file ({exc})") from None
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in INFO_TABLES and isinstance(value, dict):
            # what a run folder records about its store and split, not read back; an option
            # written there by hand ([data] size = 64) would silently not apply: say so
            for k, v in value.items():
                name = k.replace("-", "_")
                top = raw.get(k, raw.get(name))
                if key != "plan" and name in KEYS and not isinstance(v, dict) and top != v:
                    raise ConfigError(
                        f"{p}: {k} = {v!r} under [{key}] is not an option there ([{key}] is "
                        f"what a run folder records); put {k} = … above the first [table]"
                    )
            continue
        name = key.replace("-", "_")
        if name not in KEYS:
            import difflib

            close = difflib.get_close_matches(name, sorted(KEYS), n=1)
            hint = f"; did you mean {close[0].replace('_', '-')!r}?" if close else ""
            raise ConfigError(f"{p}: unknown option {key!r}{hint}")
        out[name] = value
    return out


def load_config(
    options: dict[str, Any] | None = None, config_file: str | Path | None = None
) -> TrainConfig:
    """Build a validated TrainConfig from a TOML file and options that override it.

    Parameters
    ----------
    options : dict
        Option name (``in_frames`` or ``in-frames``) → value; None values are "not given".
    config_file : path, optional
        TOML file with defaults for the options not given.

    Raises
    ------
    ConfigError
        For unknown keys, invalid values, or a file that cannot be read.
    """
    merged = read_toml(config_file) if config_file is not None else {}
    for key, value in (options or {}).items():
        name = key.replace("-", "_")
        if name not in KEYS:
            raise ConfigError(f"unknown option {key!r}")
        if value is not None:
            merged[name] = value
    return from_dict(merged)


def from_dict(values: dict[str, Any]) -> TrainConfig:
    """TrainConfig from a flat option dict (the inverse of `config_dict`)."""
    data = {k: v for k, v in values.items() if k in _DATA_FIELDS}
    rest = {k: v for k, v in values.items() if k in _TRAIN_FIELDS}
    for k, v in list(data.items()) + list(rest.items()):
        _check_type(k, v)
    return TrainConfig(data=DataConfig(**data), **rest)


def _check_type(name: str, value: Any) -> None:
    """Reject values of the wrong type with the option's name (TOML files are typed)."""
    cls = DataConfig if name in _DATA_FIELDS else TrainConfig
    annotation = str(next(f.type for f in dataclasses.fields(cls) if f.name == name))
    if value is None:
        if "None" not in annotation:
            raise ConfigError(f"{name.replace('_', '-')} needs a value")
        return
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
    }
    base = annotation.split("|")[0].strip()
    if not ok.get(base, True):
        raise ConfigError(f"{name.replace('_', '-')} must be {base}, got {value!r}")


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Flat option dict of a config (None values left out: TOML has no null)."""
    out = {k: v for k, v in dataclasses.asdict(cfg.data).items() if v is not None}
    for f in dataclasses.fields(cfg):
        if f.name != "data":
            value = getattr(cfg, f.name)
            if value is not None:
                out[f.name] = value
    return out


def diff_configs(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Options that differ between two flat option dicts, except `RESUMABLE` ones.

    Returns ``["lr 0.001 (run: 0.0005)", …]``; an option missing on one side counts as
    its default.
    """
    defaults = config_dict(TrainConfig())
    out = []
    for key in sorted((set(old) | set(new)) - RESUMABLE):
        a, b = old.get(key, defaults.get(key)), new.get(key, defaults.get(key))
        if a != b:
            out.append(f"{key.replace('_', '-')} {b!r} (run: {a!r})")
    return out
