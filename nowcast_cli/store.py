"""The Zarr v3 observation store (SPEC §2): the only module that imports zarr.

Layout of ``<name>.zarr``::

    frames   (time, y, x) uint8   pixel P, dBZ = 70·P/255 − 10; 0 = no echo or no data
    valid    (time, y, x) bool    False where the radar had no data
    time     (time,)      int64   seconds since 1970-01-01 UTC, strictly increasing (CF attrs)
    x, y     (x,), (y,)   float64 projected cell centres in metres, when georeferenced
    <static> (y, x)               source-specific static arrays (e.g. an exclusion mask)
    coarse/<N>/frames, coarse/<N>/valid   (time, y, x) the N×N training copy, same time axis

The attributes of ``coarse/<N>`` record the region of the full grid the copy covers (``crop``:
pixels ``[x0, y0, x1, y1]``, ends exclusive; ``crop_m``: its projected bounds when the grid is
georeferenced): a square, so that coarse cells stay square. Stores written before this record
existed have a copy stretched over the whole grid; `Store.crop` returns None for them.

Root attributes hold the source description, grid, Z–R, encoding and ``ingest_log`` (one record
per ingest run: files written, failures with reasons). Metadata is consolidated after every
change so that ``xarray.open_zarr(path)`` opens the store directly; nowcast itself always reads
the arrays' own metadata. A writer holds the lock file ``.<name>.lock`` beside the store.

Appends are crash-safe: data arrays are extended and written first, ``time`` last. The number
of frames is the number of written ``time`` entries; anything beyond (left by a killed run) is
invisible and is overwritten by the next append.

A store may be a local folder or a URL (``s3://``, ``gs://``, ``https://`` read-only; a
``file://`` URL is a local folder): `location` tells them apart and `zarr_store` opens either
as zarr's own storage (``LocalStore``, or ``FsspecStore`` over s3fs/gcsfs/aiohttp, the
``nowcast[cloud]`` extra). Credentials come from the library's standard environment and
configuration (``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL``, fsspec's
``FSSPEC_S3``…) and never from the URL, so nothing that records a store's location records
a secret. Object storage has no file locks: the writer lock is local only, and two processes
must not ingest into one URL at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from nowcast_cli import __version__, encoding
from nowcast_cli.errors import ConfigError, MissingDependencyError, NowcastError, StoreError
from nowcast_cli.grid import NORTH_UP, Box, Grid, centred_square

FORMAT = "nowcast-observations"
FORMAT_VERSION = 1
TIME_FILL = -1
FULL_CHUNK_T = 8
COARSE_CHUNK_T = 64
MAX_LOGGED_FAILURES = 500
DEFAULT_DIR = "nowcast-data"
CENTRED_RULE = "largest centred square of the grid"


#: where a store lives: a local folder, or a URL (see `location`)
Location = Path | str
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
_READ_ONLY_SCHEMES = ("http", "https")
CLOUD_EXTRA = "pip install 'nowcast[cloud]'"
#: s3fs asks for an object's size (a HEAD request) before every whole-object read, to split
#: large objects into concurrent ranges; chunks are far smaller than its 50 MB block, so that
#: only doubled the requests. Everything else comes from the environment and fsspec's config.
_STORAGE_OPTIONS: dict[str, dict[str, Any]] = {"s3": {"max_concurrency": 1}}


def location(path: str | Path) -> Location:
    """A local folder as a `Path`, a URL as its string (``file://`` URLs are local folders).

    Raises
    ------
    ConfigError
        If the URL carries credentials (``https://user:secret@host/…``): they would be
        recorded wherever the store's location is (config.toml, checkpoints, forecast
        stores); the libraries read them from the environment instead.
    """
    if isinstance(path, Path):
        return path
    text = str(path)
    m = _SCHEME.match(text)
    if m is None:
        return Path(text)
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(text)
    if m.group(1).lower() == "file":
        return Path(unquote(parts.path))
    if parts.password is not None or parts.username is not None:
        shown = text.replace(parts.netloc, parts.hostname or "", 1)
        raise ConfigError(
            f"{shown}: credentials in a URL would be recorded with the store's location; "
            "give them in the environment (e.g. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or AWS_PROFILE) instead"
        )
    return text.rstrip("/")


def is_url(loc: Location) -> bool:
    """Whether `loc` is a URL (remote), not a local folder."""
    return isinstance(loc, str)


def resolved(loc: Location) -> Location:
    """An absolute local path, or the URL itself."""
    return loc.resolve() if isinstance(loc, Path) else loc


def stem(loc: Location) -> str:
    """The last name of a folder or URL without its suffix (``dwd.zarr`` → ``dwd``)."""
    from pathlib import PurePosixPath
    from urllib.parse import urlsplit

    return loc.stem if isinstance(loc, Path) else PurePosixPath(urlsplit(loc).path).stem


def child(loc: Location, name: str) -> Location:
    """``loc/name`` for a folder or a URL."""
    return loc / name if isinstance(loc, Path) else f"{loc}/{name}"


def zarr_store(loc: Location, read_only: bool = True) -> Any:
    """Zarr's own storage for `loc`: a ``LocalStore``, or an ``FsspecStore`` for a URL.

    Raises
    ------
    MissingDependencyError
        If the URL's filesystem (s3fs, gcsfs, aiohttp) is not installed: the extra to install.
    StoreError
        If the URL cannot be written (``https://``) and `read_only` is False.
    """
    if isinstance(loc, Path):
        return LocalStore(loc, read_only=read_only)
    scheme = loc.split("://", 1)[0].lower()
    if not read_only and scheme in _READ_ONLY_SCHEMES:
        raise StoreError(f"{loc}: {scheme}:// stores are read-only (write to s3://, gs://…)")
    try:
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(
            loc, read_only=read_only, storage_options=_STORAGE_OPTIONS.get(scheme)
        )
    except ImportError as exc:
        raise MissingDependencyError(
            f"{loc}: {scheme}:// stores need the cloud extra: {CLOUD_EXTRA} ({exc})"
        ) from None
    except ValueError as exc:  # fsspec: "Protocol not known"
        raise StoreError(f"{loc}: cannot open ({exc})") from None


def remote_error(loc: Location, exc: BaseException, doing: str = "cannot read") -> StoreError:
    """A one-line `StoreError` for a failed request to the store at `loc`.

    Object-storage libraries raise their own types (``PermissionError`` for bad credentials,
    ``FileNotFoundError`` for a missing bucket, timeouts and connection errors once their
    retries are spent); the message names what failed, and what to check.
    """
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, PermissionError):
        return StoreError(
            f"{loc}: access denied ({text}); check the credentials in the environment "
            "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the provider's own)"
        )
    if isinstance(exc, FileNotFoundError):
        return StoreError(f"{loc}: {doing}: not found ({text})")
    timeout = isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower()
    what = "timed out" if timeout else "failed"
    return StoreError(
        f"{loc}: {doing}: the request {what} after its retries ({type(exc).__name__}: {text})"
    )


#: packages whose exceptions are a remote store's failures (a bug elsewhere keeps its traceback)
_REMOTE_PACKAGES = ("botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "google", "fsspec")


def _is_remote_failure(exc: BaseException) -> bool:
    """Whether `exc` is a failed request (network, server, credentials), not a bug."""
    if isinstance(exc, (OSError, TimeoutError)):
        return True
    return type(exc).__module__.split(".")[0] in _REMOTE_PACKAGES


def _sync(loc: Location, coro: Any, doing: str = "cannot read") -> Any:
    """Run a coroutine of zarr's storage API on zarr's event loop; errors as `StoreError`."""
    from zarr.core.sync import sync

    try:
        return sync(coro)
    except Exception as exc:  # the libraries' own error types, see remote_error
        if isinstance(exc, NowcastError) or not _is_remote_failure(exc):
            raise
        raise remote_error(loc, exc, doing) from None


def exists(loc: Location) -> bool:
    """Whether a Zarr hierarchy (its root ``zarr.json``) is at `loc`."""
    return _exists(loc, "zarr.json")


def remove(loc: Location) -> None:
    """Delete the store at `loc`, a folder or every object under a URL."""
    if isinstance(loc, Path):
        import shutil

        shutil.rmtree(loc)
        return
    _sync(loc, zarr_store(loc, read_only=False).delete_dir(""), "cannot delete")


def _exists(loc: Location, key: str) -> bool:
    """Whether the object `key` exists in the store at `loc`."""
    if isinstance(loc, Path):
        return (loc / key).is_file()
    return bool(_sync(loc, zarr_store(loc).exists(key)))


@dataclass(frozen=True)
class Gap:
    """Missing frames between two stored frames."""

    after: int  # time (s) of the last frame before the gap
    before: int  # time (s) of the first frame after the gap
    missing: int  # number of missing frames at the product interval


def find_gaps(times: np.ndarray, interval_s: int) -> list[Gap]:
    """Gaps in a strictly increasing time axis sampled every `interval_s` seconds."""
    t = np.asarray(times, dtype=np.int64)
    if len(t) < 2 or interval_s <= 0:
        return []
    d = np.diff(t)
    idx = np.nonzero(d > interval_s)[0]
    return [Gap(int(t[i]), int(t[i + 1]), int(d[i] // interval_s) - 1) for i in idx]


def iso(t: int) -> str:
    """Seconds since the epoch as ``YYYY-MM-DD HH:MM`` UTC."""
    return dt.datetime.fromtimestamp(int(t), dt.UTC).strftime("%Y-%m-%d %H:%M")


class Store:
    """An observation store opened for reading or appending.

    Use `Store.open` or `Store.create`; ``Store.open(path, mode="a")`` holds an exclusive lock
    (one writer at a time) until `close`.
    """

    def __init__(self, path: Location, group: zarr.Group, lock: Any = None) -> None:
        self.path = path
        self.group = group
        self._lock = lock
        self._times: np.ndarray | None = None
        self._dirty = False
        self._writable: dict[str, zarr.Array[Any]] = {}
        self._readable: dict[str, zarr.Array[Any]] = {}

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, mode: str = "r", wait: bool = False) -> Store:
        """Open an existing store (``mode`` "r" to read, "a" to append under a lock).

        With `wait`, "a" waits for another (local) writer to finish instead of failing.
        """
        p = location(path)
        group, lock = _open_group(p, mode, FORMAT, FORMAT_VERSION, "store", wait)
        return cls(p, group, lock)

    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        attrs: dict[str, Any],
        grid: Grid,
        sizes: tuple[int, ...] = (120,),
        static: dict[str, np.ndarray] | None = None,
        crop: Box | None = None,
    ) -> Store:
        """Create an empty store and open it for appending.

        Parameters
        ----------
        path : path or URL
            Directory (or URL) to create (must not exist, or be empty).
        attrs : dict
            Source attributes (source, product, zr, interval_seconds, …).
        grid : Grid
            Frame grid.
        sizes : tuple of int
            Edges of the square training-resolution copies to maintain.
        static : dict, optional
            Static (rows, cols) arrays to store once.
        crop : Box, optional
            Square region of the grid the training copies cover (default: the largest centred
            square); checked to be inside the grid and at least as large as every copy.
        """
        p = location(path)
        box = crop or centred_square(grid.rows, grid.cols)
        for size in sizes:
            box.check(grid.shape, size)
        lock = _prepare_new(p)
        try:
            group = _new_group(p)
            rows, cols = grid.shape
            _frame_arrays(group, rows, cols, FULL_CHUNK_T)
            _array(
                group,
                "time",
                (0,),
                (4096,),
                "int64",
                TIME_FILL,
                ["time"],
                {
                    "standard_name": "time",
                    "units": "seconds since 1970-01-01 00:00:00",
                    "calendar": "standard",
                    "interval_seconds": int(attrs.get("interval_seconds", 0)),
                },
            )
            x, y = grid.x_centres(), grid.y_centres()
            if x is not None and y is not None:
                xa = _array(
                    group,
                    "x",
                    (cols,),
                    (cols,),
                    "float64",
                    0.0,
                    ["x"],
                    {"units": "m", "standard_name": "projection_x_coordinate"},
                )
                xa[:] = x
                ya = _array(
                    group,
                    "y",
                    (rows,),
                    (rows,),
                    "float64",
                    0.0,
                    ["y"],
                    {"units": "m", "standard_name": "projection_y_coordinate"},
                )
                ya[:] = y
            for name, arr in (static or {}).items():
                a = np.asarray(arr)
                if a.shape != (rows, cols):
                    raise StoreError(
                        f"static array {name!r} has shape {a.shape}, not {(rows, cols)}"
                    )
                sa = _array(group, name, a.shape, a.shape, a.dtype.str, 0, ["y", "x"], {})
                sa[:] = a
            rule = "chosen at ingest (--crop)" if crop is not None else CENTRED_RULE
            for size in sizes:
                _coarse_group(group, size, box, grid, rule)
            group.attrs.update(
                {
                    "nowcast": {
                        "format": FORMAT,
                        "version": FORMAT_VERSION,
                        "created_by": f"nowcast {__version__}",
                        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    },
                    **attrs,
                    "grid": grid.attrs(),
                    "encoding": {
                        "pixel_to_dbz": encoding.PIXEL_FORMULA,
                        "dbz_to_pixel": encoding.INVERSE_FORMULA,
                        "no_echo": "P = 0 where there is no echo or no data (see valid)",
                        "dbz_to_rain_rate": "dBZ = 10 log10(Z), Z = a R^b (zr)",
                    },
                    "coarse_sizes": list(sizes),
                    "ingest_log": [],
                }
            )
            _consolidate(p)
        except BaseException as exc:
            _release_lock(lock)
            _raise_remote(p, exc, "cannot create the store")
            raise
        return cls(p, group, lock)

    def close(self) -> None:
        """Refresh consolidated metadata if anything was appended; release the writer lock."""
        if self._dirty:
            self.consolidate()
        _release_lock(self._lock)
        self._lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        """Root attributes."""
        return dict(self.group.attrs)

    @property
    def times(self) -> np.ndarray:
        """Committed frame times (int64 seconds UTC)."""
        if self._times is None:
            self._times = _committed(self.group, "time")
        return self._times

    def __len__(self) -> int:
        return len(self.times)

    @property
    def shape(self) -> tuple[int, int]:
        """Full-resolution frame shape (rows, cols)."""
        rows, cols = _arr(self.group, "frames").shape[1:]
        return (int(rows), int(cols))

    @property
    def zr(self) -> tuple[float, float]:
        """Z–R coefficients (a, b)."""
        zr = self.attrs["zr"]
        return float(zr["a"]), float(zr["b"])

    @property
    def interval_s(self) -> int:
        """Product interval in seconds."""
        return int(self.attrs.get("interval_seconds", 0))

    @property
    def sizes(self) -> list[int]:
        """Edges of the training-resolution copies held."""
        return [int(s) for s in self.attrs.get("coarse_sizes", [])]

    def crop(self, size: int) -> Box | None:
        """Region of the full grid the size×size copy covers.

        None for a store made before regions were recorded: its copy stretches the whole grid.
        """
        box = self._coarse(size).attrs.get("crop")
        if not isinstance(box, list) or len(box) != 4:
            return None
        return Box(*(int(v) for v in box))

    def read(self, start: int, stop: int, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Frames and valid masks of committed frames ``start:stop`` (full or coarse ``size``)."""
        n = len(self)
        if not (0 <= start <= stop <= n):
            raise StoreError(f"{self.path}: frames {start}:{stop} out of range 0:{n}")
        prefix = "" if size is None else f"coarse/{size}/"
        if size is not None and size not in self.sizes:
            self._coarse(size)  # raises the error naming the copies there are
        return (
            _read_rows(self.path, self._for_reading(prefix + "frames"), start, stop),
            _read_rows(self.path, self._for_reading(prefix + "valid"), start, stop),
        )

    def _for_reading(self, path: str) -> zarr.Array[Any]:
        """The array at `path`, opened once (opening parses its metadata: ms per call)."""
        if path not in self._readable:
            self._readable[path] = _arr(self.group, path)
        return self._readable[path]

    def coordinates(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Projected cell centres (x west → east, y north → south) in metres, if georeferenced."""
        if "x" not in self.group or "y" not in self.group:
            return None
        return np.asarray(_arr(self.group, "x")[:]), np.asarray(_arr(self.group, "y")[:])

    def time_chunk(self, size: int | None = None) -> int:
        """Frames per stored chunk of the full grid or of the ``size`` copy (read aligned)."""
        g = self.group if size is None else self._coarse(size)
        return int(_arr(g, "frames").chunks[0])

    def _coarse(self, size: int) -> zarr.Group:
        if size not in self.sizes:
            have = ", ".join(map(str, self.sizes)) or "none"
            raise StoreError(f"{self.path}: no {size}x{size} copy (has {have})")
        return self.group[f"coarse/{size}"]  # type: ignore[return-value]

    def frame_reader(self, size: int | None = None, cache_bytes: int = 256 * 2**20) -> FrameReader:
        """A reader of arbitrary committed frames that decodes each time chunk once.

        Parameters
        ----------
        size : int, optional
            Edge of the training copy to read; None = full resolution.
        cache_bytes : int
            Bound on the decoded chunks kept (least recently used go first).
        """
        g = self.group if size is None else self._coarse(size)
        return FrameReader(self.path, _arr(g, "frames"), _arr(g, "valid"), len(self), cache_bytes)

    def uncommitted(self) -> int:
        """Frames written by an interrupted run but never committed (invisible)."""
        return max(0, _arr(self.group, "frames").shape[0] - len(self))

    # -- writing ---------------------------------------------------------------------------
    def append(
        self,
        times: np.ndarray,
        frames: np.ndarray,
        valid: np.ndarray,
        coarse: dict[int, tuple[np.ndarray, np.ndarray]],
    ) -> None:
        """Append frames (k, rows, cols) with their times; data first, then ``time`` (commit)."""
        times = np.asarray(times, dtype=np.int64)
        k = len(times)
        if k == 0:
            return
        n = len(self)
        last = self.times[-1] if n else None
        if np.any(np.diff(times) <= 0) or (last is not None and times[0] <= last):
            raise StoreError(f"{self.path}: appended times must increase past the last stored time")
        if set(coarse) != set(self.sizes):
            raise StoreError(f"{self.path}: coarse copies {sorted(coarse)} != store's {self.sizes}")
        try:
            self.write_data(n, frames, valid, coarse)
            self.commit(n, times)
        except Exception as exc:
            _raise_remote(
                self.path, exc, f"cannot write frames {n}:{n + k} (none of them is visible)"
            )
            raise

    def write_data(
        self,
        n: int,
        frames: np.ndarray,
        valid: np.ndarray,
        coarse: dict[int, tuple[np.ndarray, np.ndarray]],
    ) -> None:
        """Write frame data at committed position `n` (invisible until `commit`)."""
        k = len(frames)
        targets = [("", frames, valid)]
        targets += [(f"coarse/{s}/", f, v) for s, (f, v) in coarse.items()]
        for prefix, f, v in targets:
            for name, data in (("frames", f), ("valid", v)):
                arr = self._array_for_writing(prefix + name)
                arr.resize((n + k, *arr.shape[1:]))
                arr[n : n + k] = data

    def _array_for_writing(self, path: str) -> zarr.Array[Any]:
        """The array at `path`, opened once per writer.

        Opened with ``write_empty_chunks``: zarr's check for chunks equal to the fill value
        compares every byte (most of the write time for radar frames), while an all-zero chunk
        costs a few bytes to store.
        """
        if path not in self._writable:
            with zarr.config.set({"array.write_empty_chunks": True}):
                self._writable[path] = _arr(self.group, path)
        return self._writable[path]

    def commit(self, n: int, times: np.ndarray) -> None:
        """Make frames ``n:n+len(times)`` visible by writing their times."""
        arr = self._array_for_writing("time")
        arr.resize((n + len(times),))
        arr[n : n + len(times)] = times
        self._times = None
        self._dirty = True

    def consolidate(self) -> None:
        """Refresh the consolidated metadata xarray reads (after a run of appends)."""
        _consolidate(self.path)
        self._dirty = False

    def add_copy(
        self,
        size: int,
        *,
        workers: int | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> None:
        """Make the size×size training copy of every committed frame, as ingest makes it.

        The copy is the area mean in rain rate of the full grid (`nowcast_cli.resample`), over
        the region the store's other copies cover (or the largest centred square), chunk by
        chunk on `workers` threads. It becomes visible at the end, when `size` joins the
        store's ``coarse_sizes``: an interrupted build leaves no half copy (the next one starts
        over), and later ingests maintain the copy like the others.

        Raises
        ------
        StoreError
            If the store is open read-only.
        ConfigError
            If `size` does not fit the region.
        """
        from concurrent.futures import ThreadPoolExecutor

        from nowcast_cli.resample import Coarsener

        if self._lock is None:
            raise StoreError(f"{self.path}: opened read-only")
        if size in self.sizes:
            return
        box, rule = None, CENTRED_RULE
        for other in self.sizes:
            box = self.crop(other)
            if box is not None:
                rule = str(self._coarse(other).attrs.get("crop_rule", "recorded region"))
                break
        box = box or centred_square(*self.shape)
        if box.width < size:
            raise ConfigError(
                f"{self.path}: a {size}x{size} training copy cannot be made from its "
                f"{box.width}x{box.height} region (copies average the full grid, never upsample)"
            )
        box.check(self.shape, size)
        name = f"coarse/{size}"
        if name in self.group:  # left by an interrupted build: never committed
            del self.group[name]
        _coarse_group(self.group, size, box, _grid(self.attrs.get("grid", {}), self.shape), rule)
        coarsen = Coarsener(self.shape, size, self.zr, box)
        n = len(self)
        frames = self._array_for_writing(name + "/frames")
        valid = self._array_for_writing(name + "/valid")
        frames.resize((n, size, size))
        valid.resize((n, size, size))
        if progress:
            progress("copy", 0, n)
        nworkers = max(1, workers or os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=nworkers) as pool:  # the kernels release the GIL
            for lo, hi in iter_chunks(n, COARSE_CHUNK_T):
                f, v = self.read(lo, hi)
                out = list(pool.map(coarsen, f, v))
                frames[lo:hi] = np.stack([o[0] for o in out])
                valid[lo:hi] = np.stack([o[1] for o in out])
                if progress:
                    progress("copy", hi, n)
        self.group.attrs["coarse_sizes"] = [*self.sizes, size]  # the commit
        self.consolidate()

    def log_run(self, record: dict[str, Any]) -> None:
        """Append an ingest run record (failures capped) to the ``ingest_log`` attribute."""
        rec = json.loads(json.dumps(record, default=str))
        for key in ("failures", "skipped", "warnings"):
            items = rec.get(key, [])
            if len(items) > MAX_LOGGED_FAILURES:
                rec[key] = items[:MAX_LOGGED_FAILURES]
                rec[f"{key}_not_logged"] = len(items) - MAX_LOGGED_FAILURES
        try:
            self.group.attrs["ingest_log"] = [*self.read_log(), rec]
        except Exception as exc:
            _raise_remote(self.path, exc, "cannot write the ingest log")
            raise
        _consolidate(self.path)

    def read_log(self) -> list[dict[str, Any]]:
        """All ingest run records, oldest first."""
        log = self.group.attrs.get("ingest_log", [])
        return [dict(r) for r in log] if isinstance(log, list) else []

    def summary(self) -> dict[str, Any]:
        """What `nowcast info` shows: shape, time span, gaps, product, units."""
        a = self.attrs
        t = self.times
        gaps = find_gaps(t, self.interval_s)
        zr = a.get("zr", {})
        return {
            "path": str(self.path),
            "source": a.get("source"),
            "product": a.get("product"),
            "frames": len(t),
            "shape": list(self.shape),
            "grid": a.get("grid", {}).get("name"),
            "interval_seconds": self.interval_s,
            "start": iso(t[0]) if len(t) else None,
            "end": iso(t[-1]) if len(t) else None,
            "gaps": len(gaps),
            "missing_frames": int(sum(g.missing for g in gaps)),
            "gap_list": [
                {"after": iso(g.after), "before": iso(g.before), "missing": g.missing}
                for g in gaps[:20]
            ],
            "coarse_sizes": self.sizes,
            "coarse": [self._coarse_summary(n) for n in self.sizes],
            "units": "uint8 pixel P, dBZ = 70 P/255 - 10",
            "zr": {"a": zr.get("a"), "b": zr.get("b")},
            "attribution": a.get("attribution"),
            "uncommitted": self.uncommitted(),
        }

    def _coarse_summary(self, size: int) -> dict[str, Any]:
        """How the size×size copy was made: the region it covers, or that it was stretched."""
        rows, cols = self.shape
        box = self.crop(size)
        attrs = self._coarse(size).attrs
        if box is None:
            text = (
                f"stretched over the whole {rows}x{cols} grid (store made before crop regions "
                "were recorded)"
                if rows != cols
                else f"whole {rows}x{cols} grid"
            )
            return {
                "size": size,
                "crop": None,
                "crop_m": None,
                "stretched": rows != cols,
                "description": text,
            }
        if box.as_list() == [0, 0, cols, rows]:
            text = f"whole {rows}x{cols} grid"
        else:
            text = (
                f"{box.width}x{box.height} px at x {box.x0}–{box.x1}, y {box.y0}–{box.y1} "
                f"({attrs.get('crop_rule', 'recorded region')})"
            )
        return {
            "size": size,
            "crop": box.as_list(),
            "crop_m": attrs.get("crop_m"),
            "stretched": not box.is_square,
            "description": text,
        }


class FrameReader:
    """Reads frames by index from a ``frames``/``valid`` pair, chunk by decoded chunk.

    Reading a 20-frame window through zarr's array API costs a few milliseconds of overhead
    per call; this reader loads each time chunk's file once, decodes it (`_read_rows`) and
    keeps decoded
    chunks in a least-recently-used cache bounded by `cache_bytes`, so memory stays bounded
    however long the archive is. Safe to use from one thread at a time; each worker process
    opens its own.
    """

    def __init__(
        self,
        root: Location,
        frames: zarr.Array[Any],
        valid: zarr.Array[Any],
        n_committed: int,
        cache_bytes: int,
    ) -> None:
        self.root = root
        self.arrays = (frames, valid)
        self.n = n_committed
        self.chunk_t = int(frames.chunks[0])
        self.shape = tuple(int(s) for s in frames.shape[1:])
        self.cache_bytes = max(0, int(cache_bytes))
        self._cache: dict[tuple[int, int], np.ndarray] = {}  # insertion order = LRU order
        self._held = 0
        self._pool: Any = None  # the threads that fetch a batch's chunks from a URL

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frames (k, rows, cols) uint8 and valid (k, rows, cols) bool of frame `indices`.

        An index of -1 stands for a missing frame: zeros, not valid.
        """
        idx = np.asarray(indices, dtype=np.int64)
        if np.any(idx >= self.n) or np.any(idx < -1):
            raise StoreError(f"{self.root}: frame index out of range 0:{self.n}")
        out_f = np.zeros((len(idx), *self.shape), dtype=np.uint8)
        out_v = np.zeros((len(idx), *self.shape), dtype=bool)
        present = np.nonzero(idx >= 0)[0]
        chunks = idx[present] // self.chunk_t
        for c in np.unique(chunks):
            sel = present[chunks == c]
            local = idx[sel] - c * self.chunk_t
            out_f[sel] = self._chunk(0, int(c))[local]
            out_v[sel] = self._chunk(1, int(c))[local]
        return out_f, out_v

    def prefetch(self, indices: np.ndarray) -> None:
        """Load the chunks that frame `indices` need and the cache lacks, all at once.

        From a URL each chunk is a request whose latency dominates: fetching a batch's
        chunks concurrently costs about one round trip instead of one per chunk. A local
        store decodes on demand (`read`), so this does nothing there.
        """
        if isinstance(self.root, Path):
            return
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        chunks = [int(c) for c in np.unique(idx[idx >= 0] // self.chunk_t)]
        todo = [(w, c) for c in chunks for w in (0, 1) if (w, c) not in self._cache]
        if not todo:
            return
        if sum(self._chunk_bytes(w) for w, _ in todo) > self.cache_bytes:
            return  # they would evict each other before use: read them one by one
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="nowcast-fetch")
        decoded = list(self._pool.map(lambda job: self._decode(*job), todo))
        for key, chunk in zip(todo, decoded, strict=True):
            self._store(key, chunk)

    def _chunk_bytes(self, which: int) -> int:
        return int(self.chunk_t * np.prod(self.shape) * self.arrays[which].dtype.itemsize)

    def _store(self, key: tuple[int, int], chunk: np.ndarray) -> None:
        """Cache a decoded chunk as the most recently used, evicting the least."""
        self._held += chunk.nbytes
        while self._cache and self._held > self.cache_bytes:
            self._held -= self._cache.pop(next(iter(self._cache))).nbytes
        if chunk.nbytes <= self.cache_bytes:
            self._cache[key] = chunk
        else:
            self._held -= chunk.nbytes

    def _chunk(self, which: int, c: int) -> np.ndarray:
        key = (which, c)
        hit = self._cache.pop(key, None)
        if hit is None:
            hit = self._decode(which, c)
        else:
            self._held -= hit.nbytes
        self._store(key, hit)  # (re)insert as most recently used
        return hit

    def _decode(self, which: int, c: int) -> np.ndarray:
        """Time chunk `c` of frames (0) or valid (1), decoded; rows past the end are fill."""
        arr = self.arrays[which]
        t0 = c * self.chunk_t
        t1 = min(t0 + self.chunk_t, int(arr.shape[0]))
        if t1 - t0 == self.chunk_t:
            return _read_rows(self.root, arr, t0, t1)
        full = np.full((self.chunk_t, *self.shape), arr.fill_value, dtype=arr.dtype)
        _read_rows(self.root, arr, t0, t1, out=full)
        return full


def _read_rows(
    root: Location,
    arr: zarr.Array[Any],
    start: int,
    stop: int,
    out: np.ndarray | None = None,
    leads: np.ndarray | None = None,
) -> np.ndarray:
    """Rows ``start:stop`` (first axis) of an array of this package's layout.

    Arrays whose chunks span every axis but the first — or, for (sample, lead, y, x) forecast
    arrays, every axis but the first two with one lead per chunk — of 1-byte (or
    native-endian) values, stored plain or with zstd (what `Store` and `ForecastStore`
    create), are read by decoding their chunk files directly with numcodecs' Zstd, the decoder
    zarr itself calls, on a few threads and straight into the result: zarr's general read path
    (asyncio tasks, a buffer per chunk, then a copy) took 2–5× longer for the large reads of
    verification here. Any other layout, or codec, is read through zarr. `leads` selects
    entries of the second axis (with one lead per chunk, only their chunks are decoded).
    `out`, if given, is a C-contiguous buffer with room for at least the rows (reusing one
    spares the page faults of a fresh array per read); the result is then a view of it. From a
    URL the chunk objects are fetched concurrently through zarr's store (one round trip for the
    lot), then decoded the same way.
    """
    from numcodecs import Zstd
    from zarr.codecs import BytesCodec, ZstdCodec

    meta = arr.metadata
    codecs = tuple(getattr(meta, "codecs", ()))
    plain = len(codecs) == 1 and isinstance(codecs[0], BytesCodec)
    zstd = (
        len(codecs) == 2 and isinstance(codecs[0], BytesCodec) and isinstance(codecs[1], ZstdCodec)
    )
    shape, chunks = tuple(arr.shape), tuple(arr.chunks)
    sel = None if leads is None else np.asarray(leads, dtype=np.int64).reshape(-1)
    if sel is not None and np.array_equal(sel, np.arange(shape[1])):
        sel = None  # every lead: a plain read
    want = (stop - start, *shape[1:]) if sel is None else (stop - start, len(sel), *shape[2:])
    endian = getattr(codecs[0], "endian", None) if codecs else None
    native = arr.dtype.itemsize == 1 or str(getattr(endian, "value", endian)) == sys.byteorder
    whole_rows = chunks[1:] == shape[1:]
    per_lead = len(shape) == 4 and chunks[1] == 1 and chunks[2:] == shape[2:]
    direct = (plain or zstd) and native and (whole_rows or per_lead)
    if out is not None:
        if out.dtype != arr.dtype or out.shape[1:] != want[1:] or len(out) < want[0]:
            raise ValueError(f"out must be {arr.dtype} with room for {want}, got {out.shape}")
        out = out[: want[0]]
    else:
        out = np.empty(want, dtype=arr.dtype)
    if stop <= start:
        return out
    if not direct or (whole_rows and sel is not None):  # read every lead, then select
        if direct:
            every = _read_rows(root, arr, start, stop)
        else:
            try:
                every = np.asarray(arr[start:stop])
            except Exception as exc:
                _raise_remote(root, exc, f"cannot read {arr.path} {start}:{stop}")
                raise
        if sel is None:
            out[:] = every
        else:
            np.take(every, sel, axis=1, out=out)
        return out
    rows = chunks[0]
    codec = Zstd() if zstd else None
    planes = list(range(shape[1])) if (per_lead and sel is None) else sel
    if per_lead:
        assert planes is not None
        flat = out.reshape(stop - start, len(planes), -1).view(np.uint8)
    else:
        flat = out.reshape(stop - start, 1, -1).view(np.uint8)
    plane_bytes = flat.shape[2]
    zeros = (0,) * (len(shape) - (2 if per_lead else 1))
    ids = range(start // rows, (stop - 1) // rows + 1)
    jobs = [(ci, j) for ci in ids for j in range(flat.shape[1])]
    local = root if isinstance(root, Path) else None
    fetched: dict[tuple[int, ...], Any] = {}
    if local is None:  # every chunk object of the read in one concurrent round of requests
        chunk_keys = [
            (ci, planes[j], *zeros) if per_lead and planes is not None else (ci, *zeros)
            for ci, j in jobs
        ]
        names = [meta.encode_chunk_key(k) for k in chunk_keys]
        fetched = dict(zip(chunk_keys, _fetch(root, arr, names), strict=True))

    def one(job: tuple[int, int]) -> None:
        ci, j = job
        c0 = ci * rows
        lo, hi = max(start, c0), min(stop, c0 + rows)
        target = flat[lo - start : hi - start, j]
        key = (ci, planes[j], *zeros) if per_lead and planes is not None else (ci, *zeros)
        raw: Any
        if local is not None:
            try:
                raw = (local / arr.path / meta.encode_chunk_key(key)).read_bytes()
            except FileNotFoundError:  # never written: the fill value
                target.view(arr.dtype)[:] = arr.fill_value
                return
        else:
            raw = fetched[key]
            if raw is None:
                target.view(arr.dtype)[:] = arr.fill_value
                return
        whole = lo == c0 and hi == c0 + rows and target.flags.c_contiguous
        buf = target if whole else np.empty((rows, plane_bytes), np.uint8)
        if codec is None:
            buf.reshape(-1)[:] = np.frombuffer(raw, np.uint8)
        else:
            codec.decode(raw, out=buf)
        if not whole:
            target[:] = buf[lo - c0 : hi - c0]

    if len(jobs) == 1:
        one(jobs[0])
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:
            list(pool.map(one, jobs))  # the decoder releases the GIL
    return out


def _fetch(loc: Location, arr: zarr.Array[Any], keys: list[str]) -> list[Any]:
    """The stored bytes of chunks `keys` of `arr` (None where never written), all at once.

    The requests go out concurrently through the array's own zarr store (s3fs/gcsfs pool
    the connections), so reading k chunks costs about one round trip, not k.
    """
    import asyncio

    from zarr.core.buffer import default_buffer_prototype

    store = arr.store_path.store
    prefix = arr.store_path.path
    proto = default_buffer_prototype()

    async def get_all() -> list[Any]:
        return await asyncio.gather(*(store.get(f"{prefix}/{k}", proto) for k in keys))

    bufs = _sync(loc, get_all(), f"cannot read {prefix}")
    return [None if b is None else b.as_numpy_array() for b in bufs]


def _raise_remote(loc: Location, exc: BaseException, doing: str) -> None:
    """Raise the one-line `StoreError` for a failed request to a URL (local errors pass)."""
    if isinstance(loc, str) and not isinstance(exc, NowcastError) and _is_remote_failure(exc):
        raise remote_error(loc, exc, doing) from None


def _prepare_new(p: Location) -> Any:
    """Check that a new store can be made at `p` (absent or empty); its writer lock."""
    if isinstance(p, str):
        store = zarr_store(p, read_only=False)
        if not _sync(p, store.is_empty(""), "cannot check the location"):
            raise StoreError(f"{p}: exists and is not empty")
        return _NoLock()
    if p.exists() and (not p.is_dir() or any(p.iterdir())):
        raise StoreError(f"{p}: exists and is not an empty directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{p}: cannot create store ({exc.strerror or exc})") from None
    if not os.access(p, os.W_OK):
        raise StoreError(f"{p}: not writable")
    return _acquire_lock(p)


def _new_group(p: Location) -> zarr.Group:
    """An empty Zarr v3 root group at `p` (checked empty by `_prepare_new`)."""
    return zarr.open_group(zarr_store(p, read_only=False), mode="w", zarr_format=3)


def _grid(attrs: dict[str, Any], shape: tuple[int, int]) -> Grid:
    """The `Grid` of a store's ``grid`` attribute."""
    return Grid(
        str(attrs.get("name", "")),
        int(attrs.get("rows", shape[0])),
        int(attrs.get("cols", shape[1])),
        float(attrs.get("cell_m") or 0.0),
        str(attrs.get("projection") or ""),
        attrs.get("x_ll_m"),
        attrs.get("y_ll_m"),
        str(attrs.get("orientation") or NORTH_UP),
    )


def _open_group(
    p: Location, mode: str, fmt: str, version: int, what: str, wait: bool = False
) -> tuple[zarr.Group, Any]:
    """The Zarr group of a nowcast `what` and its writer lock (mode "a"; else None).

    Checks the format and version; `what` is "store" or "forecast store" in messages.
    """
    if not _exists(p, "zarr.json"):
        if isinstance(p, Path) and p.exists():
            raise StoreError(f"{p}: not a nowcast {what} (no zarr.json)")
        raise StoreError(f"{p}: no such {what}")
    lock = (_acquire_lock(p, wait) if isinstance(p, Path) else _NoLock()) if mode == "a" else None
    try:
        group = zarr.open_group(
            zarr_store(p, read_only=mode == "r"),
            mode="r" if mode == "r" else "r+",
            use_consolidated=False,
        )
    except NowcastError:
        _release_lock(lock)
        raise
    except Exception as exc:  # zarr raises several types for unreadable metadata
        _release_lock(lock)
        _raise_remote(p, exc, f"cannot open the {what}")
        raise StoreError(f"{p}: cannot open as a Zarr store ({exc})") from None
    meta = group.attrs.get("nowcast")
    kind = "observation store" if what == "store" else what
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        _release_lock(lock)
        raise StoreError(f"{p}: not a nowcast {kind}")
    if int(meta.get("version", 0)) > version:
        _release_lock(lock)
        raise StoreError(
            f"{p}: {what} format {meta.get('version')} is newer than this nowcast "
            f"({__version__}) understands; upgrade nowcast"
        )
    return group, lock


def _committed(group: zarr.Group, name: str) -> np.ndarray:
    """The committed prefix of a time axis: entries up to the first fill value."""
    try:
        t = np.asarray(_arr(group, name)[:], dtype=np.int64)
    except Exception as exc:
        _raise_remote(_url(group), exc, f"cannot read {name}")
        raise
    bad = np.nonzero(t == TIME_FILL)[0]
    return t[: bad[0]] if len(bad) else t


def _url(group: zarr.Group) -> Location:
    """The location of a group's store, for messages (a URL, or a local folder)."""
    store = group.store
    if isinstance(store, LocalStore):
        return Path(store.root)
    protocol = getattr(getattr(store, "fs", None), "protocol", "remote")
    scheme = protocol[0] if isinstance(protocol, (tuple, list)) else protocol
    return f"{scheme}://{getattr(store, 'path', '')}"


def _arr(group: zarr.Group, name: str) -> zarr.Array[Any]:
    try:
        node = group[name]
    except KeyError:
        raise
    except Exception as exc:
        _raise_remote(_url(group), exc, f"cannot read {name}")
        raise
    if not isinstance(node, zarr.Array):
        raise StoreError(f"{name!r} in the store is not an array")
    return node


def _coarse_group(group: zarr.Group, size: int, box: Box, grid: Grid, rule: str) -> zarr.Group:
    """Create the empty ``coarse/<size>`` group: its attributes and frame arrays."""
    sub = group.require_group(f"coarse/{size}")
    sub.attrs.update(
        {
            "size": size,
            "method": "area mean of rain rate; valid if ≥ half the area is valid",
            "crop": box.as_list(),
            "crop_m": grid.box_extent(box),
            "crop_rule": rule,
            "crop_note": (
                "region of the full grid covered: pixels [x0, y0, x1, y1], row 0 at "
                "the top, ends exclusive; crop_m: its projected bounds in metres"
            ),
        }
    )
    _frame_arrays(sub, size, size, COARSE_CHUNK_T)
    return sub


def _frame_arrays(group: zarr.Group, rows: int, cols: int, chunk_t: int) -> None:
    """Create the empty, time-growing ``frames`` and ``valid`` arrays of a group."""
    dims = ["time", "y", "x"]
    shape, chunks = (0, rows, cols), (chunk_t, rows, cols)
    _array(group, "frames", shape, chunks, "uint8", 0, dims, _frames_attrs())
    valid_attrs = {"long_name": "radar data available", "flag_values": [0, 1]}
    _array(group, "valid", shape, chunks, "bool", False, dims, valid_attrs)


def _frames_attrs() -> dict[str, Any]:
    return {
        "long_name": "radar reflectivity (encoded)",
        "units": "dBZ",
        "scale_factor": 70.0 / 255.0,
        "add_offset": -10.0,
        "comment": f"{encoding.PIXEL_FORMULA}; {encoding.INVERSE_FORMULA}",
    }


def _array(
    group: zarr.Group,
    name: str,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    dtype: str,
    fill: Any,
    dims: list[str],
    attrs: dict[str, Any],
) -> zarr.Array[Any]:
    arr = group.create_array(
        name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill, dimension_names=dims
    )
    arr.attrs.update(attrs)
    return arr


def _consolidate(path: Location) -> None:
    """Write consolidated metadata for xarray (zarr warns that v3 has no spec for it yet)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        try:
            zarr.consolidate_metadata(zarr_store(path, read_only=False))
        except Exception as exc:
            _raise_remote(path, exc, "cannot write the consolidated metadata")
            raise


def lock_path(path: Path) -> Path:
    """The writer lock file of a store: ``.<name>.lock`` beside it (kept out of the hierarchy)."""
    return path.parent / f".{path.name}.lock"


def _acquire_lock(path: Path, wait: bool = False) -> Any:
    try:
        fh = open(lock_path(path), "a")  # noqa: SIM115 (held until close)
    except OSError as exc:
        raise StoreError(f"{path}: not writable ({exc.strerror or exc})") from None
    try:
        fcntl.flock(fh, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise StoreError(f"{path}: another nowcast process is writing to this store") from None
    return fh


class _NoLock:
    """A URL's writer: object storage has no file locks (see the module docstring)."""


def _release_lock(fh: Any) -> None:
    if fh is not None and not isinstance(fh, _NoLock):
        with contextlib.suppress(OSError):
            fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def default_store_dir() -> Path:
    """``./nowcast-data`` in the working directory."""
    return Path.cwd() / DEFAULT_DIR


def list_stores(root: Path | None = None) -> list[Path]:
    """Stores in the default folder, most recently modified last."""
    d = root or default_store_dir()
    if not d.is_dir():
        return []
    found = [p for p in d.iterdir() if p.suffix == ".zarr" and (p / "zarr.json").is_file()]
    return sorted(
        found,
        key=lambda p: (
            (p / "time" / "zarr.json").stat().st_mtime if (p / "time" / "zarr.json").exists() else 0
        ),
    )


def resolve_store(path: str | Path | None) -> Location:
    """The store a command should use: the given path or URL, or the only one in ./nowcast-data."""
    if path is not None:
        return location(path)
    stores = list_stores()
    if not stores:
        raise StoreError(
            f"no store given and none in ./{DEFAULT_DIR}; run `nowcast ingest SOURCE RAW...` first"
        )
    if len(stores) > 1:
        names = ", ".join(
            str(p.relative_to(Path.cwd())) if p.is_relative_to(Path.cwd()) else str(p)
            for p in stores
        )
        raise StoreError(f"several stores in ./{DEFAULT_DIR}, pick one with --store: {names}")
    return stores[0]


def ensure_copy(
    store_path: str | Path, size: int, progress: Callable[[str, int, int], None] | None = None
) -> bool:
    """Give the store a `size`×`size` training copy if it has none (`Store.add_copy`).

    The copy is made once from the store's full grid, as ingest makes it (area mean in rain
    rate), and kept: later runs and ingests use it. Waits for another writer of the store.

    Returns
    -------
    bool
        True if the copy was made now.

    Raises
    ------
    StoreError
        If the store cannot be written (it is then named with the copies it has).
    """
    with Store.open(store_path) as store:
        if size in store.sizes:
            return False
        have = ", ".join(f"{s}×{s}" for s in store.sizes) or "none"
    try:
        writer = Store.open(store_path, mode="a", wait=True)
    except StoreError as exc:
        raise StoreError(
            f"{store_path} has no {size}×{size} training copy (it has {have}) and cannot be "
            f"given one: {exc}"
        ) from None
    with writer:
        made = size not in writer.sizes  # another process may have made it meanwhile
        writer.add_copy(size, progress=progress)
    return made


def iter_chunks(n: int, step: int) -> Iterator[tuple[int, int]]:
    """(start, stop) pairs covering range(n) in steps of `step`."""
    for s in range(0, n, step):
        yield s, min(n, s + step)


# -- forecast stores (SPEC §8) ---------------------------------------------------------------------
FORECAST_FORMAT = "nowcast-forecasts"
FORECAST_FORMAT_VERSION = 1
FORECASTS_NAME = "forecasts.zarr"
RUNS_DIR = "runs"
#: target size of one forecast chunk (bytes): a few MB keeps the decoded chunk in cache for the
#: verification kernels and the number of chunk files small
FORECAST_CHUNK_BYTES = 4 << 20
FINE_NAME = "forecast_fine"


class ForecastStore:
    """A forecast store: nowcasts of one model for many issue times, on an observation grid.

    Layout of ``forecasts.zarr`` (Zarr v3, ``dimension_names`` for xarray)::

        forecast      (sample, lead, y, x) uint8   pixel P on the observation store's encoding
        forecast_fine (sample, lead, y, x) uint16  optional: pixel × 256, the model's output at
                                                   1/256-pixel precision (what verify scores)
        issue_time    (sample,)            int64   seconds UTC of the last observed frame
        lead_minutes  (lead,)              int64   valid time = issue_time + 60·lead_minutes

    ``forecast`` is SPEC §8's layout, what every reader of the store (figures, xarray) uses;
    ``forecast_fine`` keeps a model's continuous output (rounding it to whole pixels moves it
    by up to half a pixel, 0.14 dBZ, which changes a pixel's class at a threshold within that
    distance), so that verification scores what the model forecast, as the authors' code
    does. Forecasts that are whole pixels (persistence, extrapolation) have no fine array.

    Leads are strictly increasing; leads ≤ 0 hold a model's reconstructions of observed frames
    (X̂_1 … X̂_{m−1} at −(m−2)Δ … 0), leads > 0 the forecast. Root attributes name the
    observation store (path, grid, copy size, Z–R, interval) and what produced the forecasts
    (model, loss, run, checkpoint, …). Appends are crash-safe as in `Store`: forecast data
    first, ``issue_time`` last (the commit). Use `create` or `open`.
    """

    def __init__(self, path: Location, group: zarr.Group, lock: Any = None) -> None:
        self.path = path
        self.group = group
        self._lock = lock
        self._issue: np.ndarray | None = None
        self._writable: dict[str, zarr.Array[Any]] = {}
        self._arrays: dict[str, zarr.Array[Any]] = {}

    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        observations: Store,
        size: int | None,
        lead_minutes: Any,
        attrs: dict[str, Any] | None = None,
        chunk_samples: int | None = None,
        fine: bool = False,
    ) -> ForecastStore:
        """Create an empty forecast store and open it for appending.

        Parameters
        ----------
        path : path
            Directory to create (must not exist, or be empty); by convention
            ``runs/<name>/forecasts.zarr``.
        observations : Store
            The observation store the forecasts are made from (and verified against).
        size : int or None
            Edge of the training copy of `observations` the forecasts live on (e.g. 120), or
            None for its full grid.
        lead_minutes : sequence of int
            Lead time of each forecast frame in minutes, strictly increasing, multiples of the
            product interval; ≤ 0 for reconstructions of observed frames.
        attrs : dict, optional
            What produced the forecasts: ``model``, ``loss``, ``run``, ``checkpoint``,
            ``config``… (JSON-serializable).
        chunk_samples : int, optional
            Samples per chunk (default: about 4 MB of all leads). Each chunk holds one lead,
            so that verification reads the leads it scores only (the forecasts, not the
            reconstructions).
        fine : bool
            Also keep ``forecast_fine`` (uint16, pixel × 256): for continuous model output.

        Raises
        ------
        StoreError
            If the path exists and is not empty, the copy `size` does not exist, or the leads
            are not strictly increasing multiples of the interval.
        """
        p = location(path)
        leads = np.asarray(lead_minutes, dtype=np.int64).reshape(-1)
        interval_s = observations.interval_s
        if len(leads) == 0 or np.any(np.diff(leads) <= 0):
            raise StoreError(f"{p}: lead_minutes must be strictly increasing, got {leads.tolist()}")
        if interval_s <= 0 or np.any((leads * 60) % interval_s):
            raise StoreError(
                f"{p}: lead_minutes {leads.tolist()} must be multiples of the product interval "
                f"({interval_s // 60 if interval_s > 0 else '?'} min)"
            )
        if size is None:
            rows, cols = observations.shape
        else:
            observations._coarse(size)  # raises StoreError naming the copies that exist
            rows = cols = int(size)
        sample_bytes = len(leads) * rows * cols
        cs = chunk_samples or max(1, round(FORECAST_CHUNK_BYTES / sample_bytes))
        lock = _prepare_new(p)
        try:
            group = _new_group(p)
            _array(
                group,
                "forecast",
                (0, len(leads), rows, cols),
                (cs, 1, rows, cols),
                "uint8",
                0,
                ["sample", "lead", "y", "x"],
                _frames_attrs() | {"long_name": "forecast radar reflectivity (encoded)"},
            )
            if fine:
                _array(
                    group,
                    FINE_NAME,
                    (0, len(leads), rows, cols),
                    (cs, 1, rows, cols),
                    "uint16",
                    0,
                    ["sample", "lead", "y", "x"],
                    {
                        "long_name": "forecast radar reflectivity at 1/256-pixel precision",
                        "units": "1/256 pixel",
                        "scale": encoding.FINE_SCALE,
                        "formula": encoding.FINE_FORMULA,
                        "note": "the model's output before rounding to `forecast`; verify "
                        "scores this when present",
                    },
                )
            _array(
                group,
                "issue_time",
                (0,),
                (4096,),
                "int64",
                TIME_FILL,
                ["sample"],
                {
                    "long_name": "issue time (time of the last observed frame)",
                    "units": "seconds since 1970-01-01 00:00:00",
                    "calendar": "standard",
                },
            )
            la = _array(
                group,
                "lead_minutes",
                (len(leads),),
                (len(leads),),
                "int64",
                0,
                ["lead"],
                {"long_name": "lead time (≤ 0: reconstruction of an observed frame)"},
            )
            la[:] = leads
            obs_attrs = observations.attrs
            group.attrs.update(
                {
                    "nowcast": {
                        "format": FORECAST_FORMAT,
                        "version": FORECAST_FORMAT_VERSION,
                        "created_by": f"nowcast {__version__}",
                        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    },
                    **(attrs or {}),
                    "observations": {
                        "path": str(resolved(observations.path)),
                        "relative_path": (
                            os.path.relpath(observations.path.resolve(), p.resolve())
                            if isinstance(observations.path, Path) and isinstance(p, Path)
                            else None
                        ),
                        "size": size,
                        "shape": [rows, cols],
                        "grid": obs_attrs.get("grid", {}),
                        "source": obs_attrs.get("source"),
                        "product": obs_attrs.get("product"),
                        "interval_seconds": interval_s,
                    },
                    "zr": dict(obs_attrs.get("zr", {})),
                    "encoding": dict(obs_attrs.get("encoding", {})),
                }
            )
            _consolidate(p)
        except BaseException as exc:
            _release_lock(lock)
            _raise_remote(p, exc, "cannot create the forecast store")
            raise
        return cls(p, group, lock)

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> ForecastStore:
        """Open an existing forecast store ("r" to read, "a" to append under a lock)."""
        p = location(path)
        group, lock = _open_group(
            p, mode, FORECAST_FORMAT, FORECAST_FORMAT_VERSION, "forecast store"
        )
        return cls(p, group, lock)

    def close(self) -> None:
        """Refresh the consolidated metadata if anything was appended; release the lock."""
        if self._lock is not None:
            _consolidate(self.path)
        _release_lock(self._lock)
        self._lock = None

    def __enter__(self) -> ForecastStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def attrs(self) -> dict[str, Any]:
        """Root attributes."""
        return dict(self.group.attrs)

    @property
    def issue_times(self) -> np.ndarray:
        """Committed issue times (int64 seconds UTC), strictly increasing."""
        if self._issue is None:
            self._issue = _committed(self.group, "issue_time")
        return self._issue

    def __len__(self) -> int:
        return len(self.issue_times)

    @property
    def lead_minutes(self) -> np.ndarray:
        """Lead time of each forecast frame (int64 minutes)."""
        return np.asarray(_arr(self.group, "lead_minutes")[:], dtype=np.int64)

    @property
    def shape(self) -> tuple[int, int]:
        """Frame shape (rows, cols)."""
        rows, cols = _arr(self.group, "forecast").shape[2:]
        return (int(rows), int(cols))

    @property
    def chunk_samples(self) -> int:
        """Samples per stored chunk (read in multiples of it)."""
        return int(_arr(self.group, "forecast").chunks[0])

    @property
    def observations(self) -> dict[str, Any]:
        """The observation store reference written at creation."""
        return dict(self.attrs.get("observations", {}))

    @property
    def zr(self) -> tuple[float, float]:
        """Z–R coefficients (a, b) of the encoding."""
        zr = self.attrs["zr"]
        return float(zr["a"]), float(zr["b"])

    def observation_path(self) -> Location:
        """The observation store: its recorded path relative to this store, else absolute.

        Raises
        ------
        StoreError
            If neither exists.
        """
        obs = self.observations
        candidates: list[Location] = []
        if obs.get("relative_path") and isinstance(self.path, Path):
            candidates.append(Path(os.path.normpath(self.path / obs["relative_path"])))
        if obs.get("path"):
            candidates.append(location(obs["path"]))
        for c in candidates:
            if _exists(c, "zarr.json"):
                return c
        shown = obs.get("path", "?")
        raise StoreError(
            f"{self.path}: its observation store {shown} is gone; pass it with --store"
        )

    def summary(self) -> dict[str, Any]:
        """What ``nowcast info`` shows of a forecast store: who made it, of what, when for."""
        a, t, lm = self.attrs, self.issue_times, self.lead_minutes
        obs = self.observations
        rows, cols = self.shape
        return {
            "path": str(self.path),
            "kind": "forecasts",
            "model": a.get("model"),
            "loss": a.get("loss") or None,
            "run": a.get("run"),
            "checkpoint": a.get("checkpoint"),
            "observations": obs.get("path"),
            "shape": [rows, cols],
            "samples": len(t),
            "start": iso(int(t[0])) if len(t) else None,
            "end": iso(int(t[-1])) if len(t) else None,
            "issue_times": a.get("issue_times"),
            "in_frames": a.get("in_frames"),
            "lead_minutes": lm.tolist(),
            "fine": self.has_fine,
            "created": a.get("nowcast", {}).get("created"),
        }

    @property
    def has_fine(self) -> bool:
        """Whether the store keeps ``forecast_fine`` (the unrounded model output)."""
        return FINE_NAME in self.group

    def read(
        self,
        start: int,
        stop: int,
        out: np.ndarray | None = None,
        fine: bool = False,
        leads: np.ndarray | None = None,
    ) -> np.ndarray:
        """Forecasts of committed samples ``start:stop``, (k, lead, y, x).

        uint8 pixels (``forecast``), or with `fine` uint16 codes (``forecast_fine``, pixel ×
        256); `leads`, positions along the lead axis, reads those only (a store written with
        one lead per chunk decodes nothing else). `out`, a buffer of that dtype with room for
        at least k samples, is filled and a view of it returned (a reader of many chunks reuses
        one instead of allocating).
        """
        n = len(self)
        if not (0 <= start <= stop <= n):
            raise StoreError(f"{self.path}: samples {start}:{stop} out of range 0:{n}")
        name = FINE_NAME if fine else "forecast"
        if fine and not self.has_fine:
            raise StoreError(f"{self.path}: holds no {FINE_NAME} (whole-pixel forecasts)")
        if name not in self._arrays:
            self._arrays[name] = _arr(self.group, name)
        return _read_rows(self.path, self._arrays[name], start, stop, out, leads)

    def uncommitted(self) -> int:
        """Samples written by an interrupted run but never committed (invisible)."""
        return max(0, _arr(self.group, "forecast").shape[0] - len(self))

    def append(
        self, issue_times: Any, forecast: np.ndarray, fine: np.ndarray | None = None
    ) -> None:
        """Append forecasts (k, lead, y, x) uint8 issued at `issue_times` (k,) seconds UTC.

        `fine`, the same forecasts as uint16 codes (pixel × 256), is required by a store made
        with ``fine=True`` and refused by others. Data first, then ``issue_time`` (the
        commit): a crash leaves nothing half-visible.

        Raises
        ------
        StoreError
            If the shapes or dtypes do not match, or the issue times do not increase past the
            last stored one.
        """
        if self._lock is None:
            raise StoreError(f"{self.path}: opened read-only")
        times = np.asarray(issue_times, dtype=np.int64).reshape(-1)
        k = len(times)
        want = (k, len(self.lead_minutes), *self.shape)
        if forecast.dtype != np.uint8 or forecast.shape != want:
            raise StoreError(
                f"{self.path}: forecasts must be uint8 {want}, got {forecast.dtype} "
                f"{tuple(forecast.shape)}"
            )
        if (fine is not None) != self.has_fine:
            what = "keeps fine forecasts: give them" if self.has_fine else "keeps no fine forecasts"
            raise StoreError(f"{self.path}: {what}")
        if fine is not None and (fine.dtype != np.uint16 or fine.shape != want):
            raise StoreError(
                f"{self.path}: fine forecasts must be uint16 {want}, got {fine.dtype} "
                f"{tuple(fine.shape)}"
            )
        if k == 0:
            return
        n = len(self)
        last = self.issue_times[-1] if n else None
        if np.any(np.diff(times) <= 0) or (last is not None and times[0] <= last):
            raise StoreError(f"{self.path}: issue times must increase past the last stored one")
        parts = [("forecast", forecast), ("issue_time", times)]
        if fine is not None:
            parts.insert(0, (FINE_NAME, fine))
        for name, data in parts:
            if name not in self._writable:
                with zarr.config.set({"array.write_empty_chunks": True}):
                    self._writable[name] = _arr(self.group, name)
            arr = self._writable[name]
            try:
                arr.resize((n + k, *arr.shape[1:]))
                arr[n : n + k] = data
            except Exception as exc:
                _raise_remote(self.path, exc, f"cannot write samples {n}:{n + k}")
                raise
        self._issue = None


def list_forecasts(root: Path | None = None) -> list[Path]:
    """``runs/*/forecasts.zarr`` under `root` (default ./runs), most recently written last."""
    d = root or (Path.cwd() / RUNS_DIR)
    if not d.is_dir():
        return []
    found = [
        p / FORECASTS_NAME for p in d.iterdir() if (p / FORECASTS_NAME / "zarr.json").is_file()
    ]

    def written(p: Path) -> float:
        t = p / "issue_time" / "zarr.json"
        return t.stat().st_mtime if t.exists() else (p / "zarr.json").stat().st_mtime

    return sorted(found, key=written)


def resolve_forecasts(path: str | Path | None) -> Location:
    """The forecast store to verify: the given store or run folder, else the newest in ./runs.

    `path` may be a forecast store or a run folder holding ``forecasts.zarr``; None picks the
    most recently written ``runs/*/forecasts.zarr``.

    Raises
    ------
    StoreError
        If the path holds no forecast store, or none exists under ./runs.
    """
    if path is None:
        found = list_forecasts()
        if not found:
            raise StoreError(
                f"no forecasts given and none in ./{RUNS_DIR}/*/{FORECASTS_NAME}; make some with "
                "`nowcast predict` (e.g. `nowcast predict --model persistence`)"
            )
        return found[-1]
    p = location(path)
    if _exists(child(p, FORECASTS_NAME), "zarr.json"):
        return child(p, FORECASTS_NAME)
    if _exists(p, "zarr.json"):
        return p
    if isinstance(p, Path) and p.is_dir():
        raise StoreError(f"{p}: neither a forecast store nor a run folder with {FORECASTS_NAME}")
    raise StoreError(f"{p}: no such forecast store or run folder")
