"""Verify a forecast store against its observation store (SPEC §8): `evaluate` and `compare`.

The forecast store is read chunk by chunk (memory does not grow with the number of samples);
each chunk's observed frames are matched by valid time (issue time + lead) and fed, with the
forecasts, to the accumulators of `nowcast_cli.metrics`, one per issue-time block so that the
bootstrap can resample blocks without reading anything twice. While the kernels run on one
chunk, a reader thread decodes the next.

Conventions: thresholds in mm/h become pixels through the observation store's Z–R (rain ≥ τ
⇔ P ≥ P(τ)); pixels invalid in the observations are left out; forecast frames without an
observation (a gap in the store, or beyond its end) are not scored, and counted
(`Unobserved`, in the report and ``scores.json``). ``frames="forecast"``
scores the leads > 0; ``"all"`` also the reconstructions of observed frames (leads ≤ 0), as
the paper's tables do (its 19 output frames). The table value of a score is the mean of its
per-lead values (NaN if any lead is undefined), as in the authors' evaluation code.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import itertools
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nowcast_cli import encoding
from nowcast_cli.errors import ConfigError, DataError, StoreError
from nowcast_cli.metrics import bootstrap as boot
from nowcast_cli.metrics import categorical, continuous
from nowcast_cli.metrics.categorical import Contingency
from nowcast_cli.metrics.continuous import Continuous
from nowcast_cli.store import (
    ForecastStore,
    Location,
    Store,
    is_url,
    iso,
    location,
    resolve_forecasts,
)

Progress = Callable[[str, int, int], None]

DEFAULT_THRESHOLDS = (0.5, 2.0, 5.0, 10.0, 30.0)
FRAMES = ("forecast", "all")
GROUPS = ("categorical", "continuous")
#: bytes of forecasts read per step (several chunks, to amortise the observations they share)
BATCH_BYTES = 64 << 20
DEFAULT_COMPARE_BOOTSTRAP = 1000
#: below this many blocks of issue times, `verify --compare` says its intervals are rough
FEW_BLOCKS = 10


def parse_thresholds(text: str | list[float] | tuple[float, ...]) -> tuple[float, ...]:
    """Rain-rate thresholds (mm/h) from ``"0.5,2,5,10,30"``: positive, strictly increasing.

    Raises
    ------
    ConfigError
        If an item is not a number, or the list is empty, not positive, or not increasing.
    """
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    values = []
    for item in items:
        try:
            values.append(float(item))
        except (TypeError, ValueError):
            raise ConfigError(
                f"threshold {item!r} is not a number; give rain rates in mm/h, "
                "e.g. --thresholds 0.5,2,5,10,30"
            ) from None
    if not values:
        raise ConfigError("no thresholds given; e.g. --thresholds 0.5,2,5,10,30")
    bad = [v for v in values if not (math.isfinite(v) and v > 0)]
    if bad:
        raise ConfigError(f"thresholds must be positive rain rates in mm/h, got {bad[0]:g}")
    if any(b <= a for a, b in itertools.pairwise(values)):
        shown = ",".join(f"{v:g}" for v in values)
        raise ConfigError(f"thresholds must be strictly increasing, got {shown}")
    return tuple(values)


def precision(fine: bool) -> dict[str, Any]:
    """What the scored forecast values are, and how far they can be from a model's output."""
    step = 70.0 / 255.0  # dBZ per pixel
    if fine:
        return {
            "scored": "forecast_fine: the model's output at 1/256 pixel",
            "max_rounding_pixels": 1 / 512,
            "max_rounding_dbz": round(step / 512, 6),
            "note": "as the authors' code scores its float output, to within 1/512 pixel",
        }
    return {
        "scored": "forecast: whole pixels on the store encoding",
        "max_rounding_pixels": 0.5,
        "max_rounding_dbz": round(step / 2, 4),
        "note": "exact for forecasts made of observed pixels (persistence); a model's output "
        "rounded to whole pixels moves by up to half a pixel, which changes a pixel's class "
        "where the output lies within half a pixel of a threshold",
    }


@dataclass(frozen=True)
class Unobserved:
    """Forecast frames (issue time, lead) without an observation: skipped, counted here.

    Attributes
    ----------
    total : int
        Forecast frames at the scored leads (samples × leads).
    missing : int
        Of those, frames whose valid time has no frame in the observation store.
    after_end, before_start, in_gaps : int
        Where their valid times fall: after the store's last frame (the archive ends),
        before its first, or between two stored frames (a gap).
    per_lead : list of int
        Missing frames at each scored lead.
    last_observed : int or None
        Time of the store's last frame (s UTC).
    """

    total: int
    missing: int
    after_end: int
    before_start: int
    in_gaps: int
    per_lead: list[int]
    last_observed: int | None

    @classmethod
    def count(
        cls, match: np.ndarray, issue: np.ndarray, lead_minutes: np.ndarray, obs_times: np.ndarray
    ) -> Unobserved:
        """Count the unmatched entries of `match` (S, L) (−1: no observation)."""
        miss = match < 0
        vt = issue[:, None] + 60 * lead_minutes[None, :]
        last = int(obs_times[-1]) if len(obs_times) else None
        first = int(obs_times[0]) if len(obs_times) else None
        after = int(np.sum(miss & (vt > last))) if last is not None else int(miss.sum())
        before = int(np.sum(miss & (vt < first))) if first is not None else 0
        return cls(
            total=int(miss.size),
            missing=int(miss.sum()),
            after_end=after,
            before_start=before,
            in_gaps=int(miss.sum()) - after - before,
            per_lead=[int(x) for x in miss.sum(axis=0)],
            last_observed=last,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``scores.json``)."""
        return {
            "frames": self.total,
            "without_observation": self.missing,
            "after_store_end": self.after_end,
            "before_store_start": self.before_start,
            "in_store_gaps": self.in_gaps,
            "per_lead": self.per_lead,
            "store_last_frame": iso(self.last_observed) if self.last_observed is not None else None,
        }

    def describe(self) -> str:
        """One sentence for the report, e.g. "312 of 3,360 forecast frames have no …"."""
        where = [
            f"{n:,} {what}"
            for n, what in (
                (
                    self.after_end,
                    f"valid after its last frame, {iso(self.last_observed)} UTC"
                    if self.last_observed is not None
                    else "with no frame stored",
                ),
                (self.before_start, "valid before its first frame"),
                (self.in_gaps, "valid in its gaps"),
            )
            if n
        ]
        return (
            f"{self.missing:,} of {self.total:,} forecast frames have no observation in the "
            f"store ({'; '.join(where)}): they are not scored, and every score is over the "
            f"{self.total - self.missing:,} observed"
        )


@dataclass
class Verification:
    """Scores of one forecast store (what `evaluate` returns).

    Attributes
    ----------
    per_lead : dict
        Categorical scores (L, K) and continuous scores (L,) per lead.
    mean : dict
        Mean over leads: (K,) or scalar arrays.
    mean_interval, lead_interval : dict
        (low, high) 95% bootstrap intervals of `mean` and `per_lead` (empty without
        bootstrap).
    """

    forecasts: str
    observations: str
    size: int | None
    source: dict[str, Any]
    frames: str
    thresholds: tuple[float, ...]
    event_pixels: list[int]
    leads: np.ndarray
    lead_minutes: np.ndarray
    per_lead: dict[str, np.ndarray]
    mean: dict[str, np.ndarray]
    samples: int
    frames_scored: int
    frames_missing: int
    blocks: int
    seconds: float
    unobserved: Unobserved | None = None
    fine: bool = False  # scored on forecast_fine (1/256 pixel), else on whole pixels
    bootstrap: int = 0
    block_hours: float = 24.0
    seed: int = 0
    mean_interval: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    lead_interval: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """Tidy rows ``lead, lead_minutes, threshold, metric, value`` (``scores.csv``)."""
        out: list[dict[str, Any]] = []
        for i, (lead, minutes) in enumerate(zip(self.leads, self.lead_minutes, strict=True)):
            for name, values in self.per_lead.items():
                if name in categorical.NAMES:
                    for k, t in enumerate(self.thresholds):
                        out.append(_row(lead, minutes, t, name, values[i, k]))
                else:
                    out.append(_row(lead, minutes, None, name, values[i]))
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``scores.json``): undefined values are null."""
        return {
            "forecasts": self.forecasts,
            "observations": self.observations,
            "grid": "native" if self.size is None else f"{self.size}x{self.size}",
            **self.source,
            "frames": self.frames,
            "thresholds_mm_h": list(self.thresholds),
            "event_pixels": self.event_pixels,
            "leads": self.leads.tolist(),
            "lead_minutes": self.lead_minutes.tolist(),
            "samples": self.samples,
            "forecast_frames": self.frames_scored + self.frames_missing,
            "frames_scored": self.frames_scored,
            "frames_missing_observations": self.frames_missing,
            "unobserved": self.unobserved.as_dict() if self.unobserved is not None else None,
            "forecast_precision": precision(self.fine),
            "mean_over_leads": {k: _json(v) for k, v in self.mean.items()},
            "per_lead": {k: _json(v) for k, v in self.per_lead.items()},
            "bootstrap": (
                {
                    "replicates": self.bootstrap,
                    "block_hours": self.block_hours,
                    "blocks": self.blocks,
                    "seed": self.seed,
                    "level": boot.LEVEL,
                    "mean_over_leads": {
                        k: {"low": _json(lo), "high": _json(hi)}
                        for k, (lo, hi) in self.mean_interval.items()
                    },
                    "per_lead": {
                        k: {"low": _json(lo), "high": _json(hi)}
                        for k, (lo, hi) in self.lead_interval.items()
                    },
                }
                if self.bootstrap
                else None
            ),
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Comparison:
    """Paired differences A − B of every score on the issue times both runs share."""

    a: str
    b: str
    observations: str
    frames: str
    thresholds: tuple[float, ...]
    leads: np.ndarray
    lead_minutes: np.ndarray
    shared: int
    blocks: int
    bootstrap: int
    block_hours: float
    seed: int
    mean_a: dict[str, np.ndarray]
    mean_b: dict[str, np.ndarray]
    diff: dict[str, np.ndarray]
    diff_interval: dict[str, tuple[np.ndarray, np.ndarray]]
    lead_diff: dict[str, np.ndarray]
    lead_diff_interval: dict[str, tuple[np.ndarray, np.ndarray]]
    seconds: float
    unobserved: Unobserved | None = None
    pairs: int = 1  # runs per side, paired by position (e.g. seeds)
    trained: bool = True  # a side's forecasts come from a trained model (else baselines only)
    per_pair: list[dict[str, Any]] = field(default_factory=list)
    # each side's own scores per lead, and 95% intervals (same replicates as the difference)
    lead_a: dict[str, np.ndarray] = field(default_factory=dict)
    lead_b: dict[str, np.ndarray] = field(default_factory=dict)
    a_interval: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    b_interval: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    lead_a_interval: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    lead_b_interval: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def cautions(self) -> list[str]:
        """What the intervals do not cover, in words a report can quote.

        One run per side, a trained model on either: they cover which days were forecast,
        not the training's randomness, so they cannot say that one loss or model beats
        another (the baselines have no such randomness). Fewer than
        `FEW_BLOCKS` blocks: the bootstrap has only C(2n − 1, n) distinct resamples of n
        blocks (10 of 3), so its percentiles are coarse.
        """
        out = []
        if self.pairs == 1 and self.trained:
            out.append(
                "one run on each side: the intervals cover which days were forecast, not "
                "training randomness; to compare losses or models, give several runs per side "
                "paired by seed (--compare A1,A2,A3 B1,B2,B3)"
            )
        if self.blocks < FEW_BLOCKS:
            distinct = math.comb(2 * self.blocks - 1, self.blocks)
            out.append(
                f"only {self.blocks} blocks of issue times: they allow just {distinct} "
                "distinct resamples, so the intervals are rough (verify more days)"
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary; undefined values are null."""
        return {
            "pairs": self.pairs,
            "cautions": self.cautions,
            "per_pair": [
                {
                    "a": p["a"],
                    "b": p["b"],
                    "mean_over_leads": {
                        k: {
                            "a_minus_b": _json(v),
                            "low": _json(p["interval"][k][0]),
                            "high": _json(p["interval"][k][1]),
                        }
                        for k, v in p["diff"].items()
                    },
                }
                for p in self.per_pair
            ],
            "a": self.a,
            "b": self.b,
            "observations": self.observations,
            "frames": self.frames,
            "thresholds_mm_h": list(self.thresholds),
            "leads": self.leads.tolist(),
            "lead_minutes": self.lead_minutes.tolist(),
            "shared_issue_times": self.shared,
            "unobserved": self.unobserved.as_dict() if self.unobserved is not None else None,
            "bootstrap": {
                "replicates": self.bootstrap,
                "block_hours": self.block_hours,
                "blocks": self.blocks,
                "seed": self.seed,
                "level": boot.LEVEL,
            },
            "mean_over_leads": {
                k: {
                    "a": _json(self.mean_a[k]),
                    "b": _json(self.mean_b[k]),
                    "a_minus_b": _json(v),
                    "low": _json(self.diff_interval[k][0]),
                    "high": _json(self.diff_interval[k][1]),
                    **_side_intervals(k, self.a_interval, self.b_interval),
                }
                for k, v in self.diff.items()
            },
            "per_lead": {
                k: {
                    "a": _json(self.lead_a[k]),
                    "b": _json(self.lead_b[k]),
                    "a_minus_b": _json(v),
                    "low": _json(self.lead_diff_interval[k][0]),
                    "high": _json(self.lead_diff_interval[k][1]),
                    **_side_intervals(k, self.lead_a_interval, self.lead_b_interval),
                }
                for k, v in self.lead_diff.items()
                if k in self.lead_a
            },
            "per_lead_a_minus_b": {
                k: {
                    "value": _json(v),
                    "low": _json(self.lead_diff_interval[k][0]),
                    "high": _json(self.lead_diff_interval[k][1]),
                }
                for k, v in self.lead_diff.items()
            },
            "seconds": round(self.seconds, 3),
        }


def _side_intervals(
    k: str,
    a: dict[str, tuple[np.ndarray, np.ndarray]],
    b: dict[str, tuple[np.ndarray, np.ndarray]],
) -> dict[str, Any]:
    if k not in a:
        return {}
    return {
        "a_low": _json(a[k][0]),
        "a_high": _json(a[k][1]),
        "b_low": _json(b[k][0]),
        "b_high": _json(b[k][1]),
    }


def _row(
    lead: Any, minutes: Any, threshold: float | None, metric: str, value: Any
) -> dict[str, Any]:
    v = float(value)
    return {
        "lead": int(lead),
        "lead_minutes": int(minutes),
        "threshold": "" if threshold is None else f"{threshold:g}",
        "metric": metric,
        "value": "NaN" if not math.isfinite(v) else repr(v),
    }


def _json(x: Any) -> Any:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 0:
        return float(a) if math.isfinite(float(a)) else None
    return [_json(v) for v in a]


# -- opening and checking ------------------------------------------------------------------------
@dataclass
class _Target:
    """A forecast store with its observation store, checked to be comparable."""

    fstore: ForecastStore
    obs: Store
    size: int | None
    lead_sel: np.ndarray  # positions of the scored leads in the store
    leads: np.ndarray  # lead index (lead minutes / interval)
    lead_minutes: np.ndarray


def _open_target(
    forecasts: str | Path | None, observations: str | Path | None, frames: str
) -> _Target:
    if frames not in FRAMES:
        raise ConfigError(f"unknown --frames {frames!r}; valid: {', '.join(FRAMES)}")
    fpath = resolve_forecasts(forecasts)
    fstore = ForecastStore.open(fpath)
    opath = location(observations) if observations is not None else fstore.observation_path()
    obs = Store.open(opath)
    ref = fstore.observations
    size = ref.get("size")
    size = None if size is None else int(size)
    _check_compatible(fstore, obs, size)
    lm = fstore.lead_minutes
    sel = np.nonzero(lm > 0)[0] if frames == "forecast" else np.arange(len(lm))
    if frames == "all" and not np.any(lm <= 0):
        raise DataError(
            f"{fpath}: has no reconstruction frames (leads ≤ 0; leads are "
            f"{', '.join(map(str, lm.tolist()))} min), so --frames all cannot score the "
            "paper's 19 frames; use --frames forecast"
        )
    if len(sel) == 0:
        raise DataError(f"{fpath}: has no forecast frames (lead > 0); try --frames all")
    interval = obs.interval_s
    return _Target(fstore, obs, size, sel, lm[sel] * 60 // interval, lm[sel])


def _check_compatible(fstore: ForecastStore, obs: Store, size: int | None) -> None:
    name = f"{fstore.path} and {obs.path}"
    if size is None:
        shape = obs.shape
        copy = "full grid"
    else:
        if size not in obs.sizes:
            have = ", ".join(f"{s}x{s}" for s in obs.sizes) or "none"
            raise DataError(
                f"{name}: forecasts are on the {size}x{size} copy, which the observation "
                f"store does not have (copies: {have})"
            )
        shape = (size, size)
        copy = f"{size}x{size} copy"
    if fstore.shape != shape:
        raise DataError(
            f"{name}: different grids: forecasts are {fstore.shape[0]}x{fstore.shape[1]}, "
            f"the observations' {copy} is {shape[0]}x{shape[1]}"
        )
    fgrid = fstore.observations.get("grid", {})
    ogrid = obs.attrs.get("grid", {})
    keys = ("rows", "cols", "projection", "x_ll_m", "y_ll_m", "cell_m")
    diff = [k for k in keys if fgrid.get(k) != ogrid.get(k)]
    if diff:
        raise DataError(
            f"{name}: different grids ({', '.join(diff)} differ: forecasts on "
            f"{fgrid.get('name')!r}, observations on {ogrid.get('name')!r})"
        )
    fz, oz = fstore.zr, obs.zr
    fenc = fstore.attrs.get("encoding", {}).get("pixel_to_dbz")
    oenc = obs.attrs.get("encoding", {}).get("pixel_to_dbz")
    if not np.allclose(fz, oz, rtol=1e-9, atol=0) or fenc != oenc:
        raise DataError(
            f"{name}: different encodings (forecasts Z = {fz[0]:g} R^{fz[1]:g}, {fenc}; "
            f"observations Z = {oz[0]:g} R^{oz[1]:g}, {oenc})"
        )
    fint = int(fstore.observations.get("interval_seconds", 0))
    if fint != obs.interval_s:
        raise DataError(f"{name}: different product intervals ({fint} s and {obs.interval_s} s)")


def _event_pixels(thresholds: tuple[float, ...], zr: tuple[float, float]) -> np.ndarray:
    top = float(encoding.pixel_to_rate(255, *zr))
    over = [t for t in thresholds if t > top]
    if over:
        raise ConfigError(
            f"threshold {over[0]:g} mm/h is above the largest rain rate the store's encoding "
            f"holds ({top:.4g} mm/h at P = 255)"
        )
    return encoding.event_pixels(list(thresholds), *zr)


def _match(issue: np.ndarray, lead_minutes: np.ndarray, obs_times: np.ndarray) -> np.ndarray:
    """Observed frame of each (sample, lead): int64 (S, L), −1 where there is none."""
    vt = issue[:, None] + 60 * lead_minutes[None, :]
    if len(obs_times) == 0:
        return np.full(vt.shape, -1, np.int64)
    pos = np.clip(np.searchsorted(obs_times, vt), 0, len(obs_times) - 1)
    return np.where(obs_times[pos] == vt, pos, -1).astype(np.int64)


def _no_match_message(fpath: Location, obs: Store, issue: np.ndarray, lm: np.ndarray) -> str:
    t = obs.times
    have = f"{iso(t[0])} → {iso(t[-1])}" if len(t) else "no frames"
    want = f"{iso(issue[0] + 60 * lm[0])} → {iso(issue[-1] + 60 * lm[-1])}"
    return (
        f"{fpath}: no forecast frame has a matching observation in {obs.path} "
        f"(forecasts valid {want} UTC; observations {have})"
    )


# -- streaming ---------------------------------------------------------------------------------
class _ObservationCache:
    """Decoded observation chunks, least recently used dropped first (bounded memory)."""

    def __init__(self, obs: Store, size: int | None, capacity: int) -> None:
        self.obs, self.size = obs, size
        self.chunk = obs.time_chunk(size)
        self.capacity = max(2, capacity)
        self._cache: collections.OrderedDict[int, tuple[np.ndarray, np.ndarray]] = (
            collections.OrderedDict()
        )

    def frames(self, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frames and valid masks (U, H, W) of the sorted unique frame indices `wanted`."""
        shape = self.obs.shape if self.size is None else (self.size, self.size)
        out_f = np.empty((len(wanted), *shape), np.uint8)
        out_v = np.empty((len(wanted), *shape), bool)
        cids = wanted // self.chunk
        at = 0
        for cid in np.unique(cids):
            f, v = self._get(int(cid))
            take = wanted[cids == cid] - cid * self.chunk
            np.take(f, take, axis=0, out=out_f[at : at + len(take)])
            np.take(v, take, axis=0, out=out_v[at : at + len(take)])
            at += len(take)
        return out_f, out_v

    def _get(self, cid: int) -> tuple[np.ndarray, np.ndarray]:
        if cid in self._cache:
            self._cache.move_to_end(cid)
            return self._cache[cid]
        start = cid * self.chunk
        item = self.obs.read(start, min(len(self.obs), start + self.chunk), self.size)
        self._cache[cid] = item
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return item


@dataclass
class _Batch:
    fcst: list[np.ndarray]  # one (S, L, H, W) per forecast store, the scored leads
    obs: np.ndarray
    valid: np.ndarray
    index: np.ndarray  # (S, L) into obs, −1 unobserved
    block: np.ndarray
    count: int
    obs_ids: np.ndarray  # (U,) the store's frame index of each row of obs


def _batches(
    targets: list[_Target],
    positions: list[np.ndarray],
    match: np.ndarray,
    block: np.ndarray,
) -> Iterator[_Batch]:
    """Batches of the selected samples, read ahead by one batch in a thread."""
    first = targets[0]
    fstores = [t.fstore for t in targets]
    n = len(positions[0])
    cs = first.fstore.chunk_samples
    width = 2 if first.fstore.has_fine else 1  # bytes per forecast value
    # only the scored leads are read, from where each store keeps them (a store with
    # reconstructions, leads ≤ 0, holds the forecast leads further along its lead axis)
    leads = [t.lead_sel for t in targets]
    sample_bytes = width * len(leads[0]) * math.prod(first.fstore.shape)
    step = max(cs, BATCH_BYTES // max(1, sample_bytes) // cs * cs)
    bounds = [(lo, min(n, lo + step)) for lo in range(0, n, step)]
    # the cache holds the observation chunks of one batch and of the one read ahead
    obs_chunk = first.obs.time_chunk(first.size)
    touched = [len(np.unique(match[lo:hi][match[lo:hi] >= 0] // obs_chunk)) for lo, hi in bounds]
    cache = _ObservationCache(first.obs, first.size, 2 * max(touched, default=1) + 1)

    # two sets of forecast buffers, alternating: one batch is scored while the next is read
    # into the other (reused, so the reads do not page-fault fresh memory every time)
    sample_shape = (len(leads[0]), *first.fstore.shape)
    buffers: dict[tuple[int, int], np.ndarray] = {}

    def load(i: int) -> _Batch:
        lo, hi = bounds[i]
        fc = []
        for j, (fs, pos) in enumerate(zip(fstores, positions, strict=True)):
            p = pos[lo:hi]
            rows = int(p[-1]) + 1 - int(p[0])
            buf = buffers.get((i % 2, j))
            if buf is None or len(buf) < rows:
                dtype = np.uint16 if fs.has_fine else np.uint8
                buf = buffers[(i % 2, j)] = np.empty((max(rows, step), *sample_shape), dtype)
            data = fs.read(int(p[0]), int(p[-1]) + 1, out=buf, fine=fs.has_fine, leads=leads[j])
            fc.append(data if len(data) == len(p) else data[p - p[0]])
        idx = match[lo:hi]
        wanted = np.unique(idx[idx >= 0])
        if len(wanted):
            obs, valid = cache.frames(wanted)
            local = np.where(idx >= 0, np.searchsorted(wanted, np.maximum(idx, 0)), -1)
        else:
            shape = (0, *first.fstore.shape)
            obs, valid = np.zeros(shape, np.uint8), np.zeros(shape, bool)
            local = idx
        return _Batch(fc, obs, valid, local.astype(np.int64), block[lo:hi], hi - lo, wanted)

    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = pool.submit(load, 0) if bounds else None
        for i in range(len(bounds)):
            assert ahead is not None
            batch = ahead.result()
            ahead = pool.submit(load, i + 1) if i + 1 < len(bounds) else None
            yield batch


@dataclass
class _Accumulators:
    contingency: Contingency | None
    continuous: Continuous | None


def _accumulate(
    targets: list[_Target],
    positions: list[np.ndarray],
    match: np.ndarray,
    pixels: np.ndarray,
    fine: np.ndarray,
    groups: tuple[str, ...],
    block: np.ndarray,
    n_blocks: int,
    progress: Progress | None,
) -> list[_Accumulators]:
    first = targets[0]
    n_leads = len(first.lead_sel)
    accs = []
    for _ in targets:
        ct = Contingency.init(n_blocks, n_leads, pixels, fine) if "categorical" in groups else None
        cn = Continuous.init(n_blocks, n_leads, first.obs.zr) if "continuous" in groups else None
        accs.append(_Accumulators(ct, cn))
    done = 0
    total = len(match)
    if progress:
        progress("verify", 0, total)
    # observed events and valid pixels of each observed frame, counted once (consecutive
    # issue times share most of their observed frames)
    counted: dict[int, np.ndarray] = {}
    for batch in _batches(targets, positions, match, block):
        obs_counts = None
        if accs[0].contingency is not None and len(batch.obs_ids):
            new = [i for i, u in enumerate(batch.obs_ids.tolist()) if u not in counted]
            if new:
                rows = accs[0].contingency.observe(batch.obs[new], batch.valid[new])
                for i, row in zip(new, rows, strict=True):
                    counted[int(batch.obs_ids[i])] = row
            obs_counts = np.stack([counted[int(u)] for u in batch.obs_ids])
            first_needed = int(batch.obs_ids[0])  # batches go forward in time: forget the past
            for u in [u for u in counted if u < first_needed]:
                del counted[u]
        for acc, fc in zip(accs, batch.fcst, strict=True):
            if acc.contingency is not None:
                acc.contingency.accumulate(
                    fc, batch.obs, batch.valid, batch.index, batch.block, obs_counts
                )
            if acc.continuous is not None:
                acc.continuous.accumulate(fc, batch.obs, batch.valid, batch.index, batch.block)
        done += batch.count
        if progress:
            progress("verify", done, total)
    return accs


def _lead_mean(x: np.ndarray, lead_axis: int) -> np.ndarray:
    """Mean over leads; NaN if any lead is undefined (a partial mean is another quantity)."""
    return np.asarray(np.mean(x, axis=lead_axis))


def _scores(
    acc: _Accumulators, weights: np.ndarray | None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-lead scores and their lead means; with `weights` (R, B), per replicate."""
    per: dict[str, np.ndarray] = {}
    if acc.contingency is not None:
        c = acc.contingency.counts
        pooled = c.sum(axis=0) if weights is None else boot.resample(c, weights)
        per.update(categorical.scores(pooled))
    if acc.continuous is not None:
        s, f = acc.continuous.sums, acc.continuous.frames
        if weights is None:
            per.update(continuous.means(s.sum(axis=0), f.sum(axis=0)))
        else:
            per.update(continuous.means(boot.resample(s, weights), boot.resample(f, weights)))
    lead_axis = 0 if weights is None else 1
    return per, {k: _lead_mean(v, lead_axis) for k, v in per.items()}


def _groups(groups: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    g = tuple(groups)
    bad = [x for x in g if x not in GROUPS]
    if bad or not g:
        raise ConfigError(
            f"unknown score group {bad[0] if bad else ''!r}; valid: {', '.join(GROUPS)}"
        )
    return g


def evaluate(
    forecasts: str | Path | None = None,
    *,
    thresholds: tuple[float, ...] | str = DEFAULT_THRESHOLDS,
    frames: str = "forecast",
    groups: tuple[str, ...] = GROUPS,
    bootstrap: int = 0,
    block_hours: float = 24.0,
    seed: int = 0,
    observations: str | Path | None = None,
    progress: Progress | None = None,
) -> Verification:
    """Verify a forecast store against its observation store.

    Parameters
    ----------
    forecasts : path, optional
        A forecast store, or a run folder holding ``forecasts.zarr``; default the most
        recently written ``runs/*/forecasts.zarr``.
    thresholds : tuple of float or str
        Rain rates in mm/h (positive, increasing), or ``"0.5,2,5,10,30"``.
    frames : {"forecast", "all"}
        Score the forecast leads (> 0), or also the reconstructions (leads ≤ 0).
    groups : tuple of str
        ``"categorical"`` and/or ``"continuous"`` scores.
    bootstrap : int
        Block-bootstrap replicates for 95% intervals (0: none).
    block_hours : float
        Length of a bootstrap block of issue times (24: UTC days).
    seed : int
        Seed of the bootstrap draws.
    observations : path, optional
        Observation store to verify against instead of the one the forecasts name (it must
        have the same grid and encoding).
    progress : callable, optional
        ``progress("verify", samples_done, samples_total)``.

    Returns
    -------
    Verification

    Raises
    ------
    StoreError, DataError, ConfigError
        For a missing or incompatible store, no matching observations, or bad options.
    """
    t0 = time.perf_counter()
    ths = parse_thresholds(thresholds)
    grp = _groups(groups)
    if bootstrap < 0:
        raise ConfigError(f"--bootstrap must be ≥ 0, got {bootstrap}")
    _check_block_hours(block_hours)
    target = _open_target(forecasts, observations, frames)
    fs = target.fstore
    issue = fs.issue_times
    if len(issue) == 0:
        raise DataError(f"{fs.path}: holds no forecasts yet")
    pixels = _event_pixels(ths, target.obs.zr)
    block, n_blocks = boot.block_ids(issue, block_hours)
    match = _match(issue, target.lead_minutes, target.obs.times)
    if not np.any(match >= 0):
        raise DataError(_no_match_message(fs.path, target.obs, issue, target.lead_minutes))
    fine = encoding.event_codes(list(ths), *target.obs.zr, scale=encoding.FINE_SCALE)
    (acc,) = _accumulate(
        [target], [np.arange(len(issue))], match, pixels, fine, grp, block, n_blocks, progress
    )
    per, mean = _scores(acc, None)
    result = Verification(
        forecasts=str(fs.path),
        observations=str(target.obs.path),
        size=target.size,
        source={k: fs.attrs.get(k) for k in ("model", "loss", "run", "checkpoint")},
        frames=frames,
        thresholds=ths,
        event_pixels=[int(p) for p in pixels],
        leads=target.leads,
        lead_minutes=target.lead_minutes,
        per_lead=per,
        mean=mean,
        samples=len(issue),
        frames_scored=int(np.sum(match >= 0)),
        frames_missing=int(np.sum(match < 0)),
        blocks=n_blocks,
        seconds=0.0,
        unobserved=Unobserved.count(match, issue, target.lead_minutes, target.obs.times),
        fine=fs.has_fine,
        bootstrap=bootstrap,
        block_hours=block_hours,
        seed=seed,
    )
    if bootstrap:
        _check_blocks(n_blocks, len(issue), block_hours)
        w = boot.resample_weights(n_blocks, bootstrap, seed)
        rep_per, rep_mean = _scores(acc, w)
        result.mean_interval = {k: boot.interval(v) for k, v in rep_mean.items()}
        result.lead_interval = {k: boot.interval(v) for k, v in rep_per.items()}
    result.seconds = time.perf_counter() - t0
    return result


def _check_block_hours(block_hours: float) -> None:
    if not (block_hours > 0 and math.isfinite(block_hours)):
        raise ConfigError(f"--block-hours must be a positive number of hours, got {block_hours:g}")


def _check_blocks(n_blocks: int, samples: int, block_hours: float) -> None:
    """A block bootstrap needs at least two blocks: with one, every replicate is the sample."""
    if n_blocks < 2:
        raise DataError(
            f"the {samples} issue time(s) fall in {n_blocks} block of {block_hours:g} h: a "
            "bootstrap needs at least 2 blocks (a shorter --block-hours, or more issue times)"
        )


def _run_list(runs: str | Path | Sequence[str | Path]) -> list[str | Path]:
    """One run, several runs, or a comma-separated list of runs."""
    if isinstance(runs, (str, Path)):
        return [r for r in str(runs).split(",") if r] if "," in str(runs) else [runs]
    return list(runs)


def compare(
    run_a: str | Path | Sequence[str | Path],
    run_b: str | Path | Sequence[str | Path],
    *,
    thresholds: tuple[float, ...] | str = DEFAULT_THRESHOLDS,
    frames: str = "forecast",
    groups: tuple[str, ...] = GROUPS,
    bootstrap: int = DEFAULT_COMPARE_BOOTSTRAP,
    block_hours: float = 24.0,
    seed: int = 0,
    observations: str | Path | None = None,
    progress: Progress | None = None,
) -> Comparison:
    """Paired comparison A − B on the issue times every run holds, with 95% intervals.

    Parameters are those of `evaluate`; `run_a` and `run_b` are forecast stores or run folders
    on the same observation grid and encoding, with the same scored leads: one run each, or
    the same number of runs each (a sequence, or a comma-separated string), paired by
    position — typically the seeds of two configurations, A's seed i against B's seed i.

    With several pairs, each side's scores pool the contingency tables and pixel sums of all
    its runs (one score per configuration, as if its seeds were one forecast set), and the
    bootstrap resamples both the pairs (training randomness) and the blocks of issue times
    (weather), with replacement, in two stages: the interval answers whether the difference
    would survive other seeds *and* other days. Each pair's own difference, with a
    blocks-only interval, is in ``per_pair``.

    Raises
    ------
    DataError
        If the runs are not comparable or share no issue time with observations.
    """
    t0 = time.perf_counter()
    ths = parse_thresholds(thresholds)
    grp = _groups(groups)
    if bootstrap < 1:
        raise ConfigError(f"--compare needs bootstrap replicates ≥ 1, got {bootstrap}")
    _check_block_hours(block_hours)
    runs_a, runs_b = _run_list(run_a), _run_list(run_b)
    if len(runs_a) != len(runs_b) or not runs_a:
        raise ConfigError(
            f"--compare pairs runs by position: A has {len(runs_a)} run(s), B {len(runs_b)}"
        )
    first = _open_target(runs_a[0], observations, frames)
    obs_path = observations or first.obs.path
    targets = [first] + [_open_target(r, obs_path, frames) for r in runs_a[1:]]
    targets += [_open_target(r, obs_path, frames) for r in runs_b]
    ta = targets[0]
    for t in targets[1:]:
        if t.fstore.shape != ta.fstore.shape or t.size != ta.size:
            raise DataError(
                f"{ta.fstore.path} and {t.fstore.path}: forecasts on different grids "
                f"({ta.fstore.shape} and {t.fstore.shape})"
            )
        if not np.array_equal(t.lead_minutes, ta.lead_minutes):  # the leads scored
            raise DataError(
                f"{ta.fstore.path} and {t.fstore.path}: different lead times "
                f"({ta.lead_minutes.tolist()} and {t.lead_minutes.tolist()} min)"
            )
    issue = targets[0].fstore.issue_times
    for t in targets[1:]:
        issue = np.intersect1d(issue, t.fstore.issue_times, assume_unique=True)
    if len(issue) == 0:
        span = "; ".join(
            f"{t.fstore.path}: {len(t.fstore.issue_times)} issued "
            f"{iso(t.fstore.issue_times[0])} → {iso(t.fstore.issue_times[-1])}"
            if len(t.fstore.issue_times)
            else f"{t.fstore.path}: none"
            for t in targets
        )
        raise DataError(f"--compare: the runs share no issue times ({span})")
    positions = [np.searchsorted(t.fstore.issue_times, issue) for t in targets]
    pixels = _event_pixels(ths, ta.obs.zr)
    block, n_blocks = boot.block_ids(issue, block_hours)
    match = _match(issue, ta.lead_minutes, ta.obs.times)
    if not np.any(match >= 0):
        raise DataError(_no_match_message(ta.fstore.path, ta.obs, issue, ta.lead_minutes))
    _check_blocks(n_blocks, len(issue), block_hours)
    fine = encoding.event_codes(list(ths), *ta.obs.zr, scale=encoding.FINE_SCALE)
    accs = _accumulate(targets, positions, match, pixels, fine, grp, block, n_blocks, progress)
    pairs = len(runs_a)
    acc_a, acc_b = _pool(accs[:pairs]), _pool(accs[pairs:])
    per_a, mean_a = _scores(acc_a, None)
    per_b, mean_b = _scores(acc_b, None)
    w_blocks = boot.resample_weights(n_blocks, bootstrap, seed)
    if pairs > 1:  # two stages: pairs of runs, then blocks of issue times
        w_pairs = boot.resample_weights(pairs, bootstrap, seed + 1)
        w = (w_pairs[:, :, None] * w_blocks[:, None, :]).reshape(bootstrap, pairs * n_blocks)
    else:
        w = w_blocks
    rep_pa, rep_ma = _scores(acc_a, w)
    rep_pb, rep_mb = _scores(acc_b, w)
    per_pair = []
    if pairs > 1:
        for k in range(pairs):
            _, ma = _scores(accs[k], None)
            _, mb = _scores(accs[pairs + k], None)
            _, ra = _scores(accs[k], w_blocks)
            _, rb = _scores(accs[pairs + k], w_blocks)
            per_pair.append(
                {
                    "a": str(targets[k].fstore.path),
                    "b": str(targets[pairs + k].fstore.path),
                    "diff": {m: ma[m] - mb[m] for m in ma},
                    "interval": {m: boot.interval(ra[m] - rb[m]) for m in ra},
                }
            )
    return Comparison(
        a=", ".join(str(t.fstore.path) for t in targets[:pairs]),
        b=", ".join(str(t.fstore.path) for t in targets[pairs:]),
        observations=str(ta.obs.path),
        frames=frames,
        thresholds=ths,
        leads=ta.leads,
        lead_minutes=ta.lead_minutes,
        shared=len(issue),
        blocks=n_blocks,
        bootstrap=bootstrap,
        block_hours=block_hours,
        seed=seed,
        mean_a=mean_a,
        mean_b=mean_b,
        diff={k: mean_a[k] - mean_b[k] for k in mean_a},
        diff_interval={k: boot.interval(rep_ma[k] - rep_mb[k]) for k in rep_ma},
        lead_diff={k: per_a[k] - per_b[k] for k in per_a},
        lead_diff_interval={k: boot.interval(rep_pa[k] - rep_pb[k]) for k in rep_pa},
        seconds=time.perf_counter() - t0,
        unobserved=Unobserved.count(match, issue, ta.lead_minutes, ta.obs.times),
        pairs=pairs,
        trained=any(t.fstore.attrs.get("checkpoint") for t in targets),
        per_pair=per_pair,
        lead_a=per_a,
        lead_b=per_b,
        a_interval={k: boot.interval(v) for k, v in rep_ma.items()},
        b_interval={k: boot.interval(v) for k, v in rep_mb.items()},
        lead_a_interval={k: boot.interval(v) for k, v in rep_pa.items()},
        lead_b_interval={k: boot.interval(v) for k, v in rep_pb.items()},
    )


def _pool(accs: Sequence[_Accumulators]) -> _Accumulators:
    """Several runs' accumulators as one, their blocks side by side (run-major)."""
    if len(accs) == 1:
        return accs[0]
    con = cont = None
    if accs[0].contingency is not None:
        c0 = accs[0].contingency
        counts = np.concatenate([a.contingency.counts for a in accs if a.contingency])
        con = dataclasses.replace(c0, counts=counts)
    if accs[0].continuous is not None:
        k0 = accs[0].continuous
        sums = np.concatenate([a.continuous.sums for a in accs if a.continuous])
        frames = np.concatenate([a.continuous.frames for a in accs if a.continuous])
        cont = dataclasses.replace(k0, sums=sums, frames=frames)
    return _Accumulators(con, cont)


def write_scores(result: Verification, folder: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``scores.csv`` and ``scores.json`` (atomically) beside the forecasts.

    Forecasts at a URL have no local folder: their scores go to the working directory.

    Returns
    -------
    (Path, Path)
        The CSV and JSON paths.
    """
    if folder is not None:
        d = Path(folder)
    elif is_url(location(result.forecasts)):
        d = Path.cwd()
    else:
        d = Path(result.forecasts).parent
    csv_path, json_path = d / "scores.csv", d / "scores.json"
    columns = ["lead", "lead_minutes", "threshold", "metric", "value"]
    _atomic_write(csv_path, lambda fh: _write_csv(fh, columns, result.rows()))
    _atomic_write(
        json_path, lambda fh: fh.write(json.dumps(result.as_dict(), indent=2, allow_nan=False))
    )
    return csv_path, json_path


def _write_csv(fh: Any, columns: list[str], rows: list[dict[str, Any]]) -> None:
    w = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)


def _atomic_write(path: Path, write: Callable[[Any], Any]) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise StoreError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
