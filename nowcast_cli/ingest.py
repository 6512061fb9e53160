"""Raw radar files → observation store: scan, check, decode in parallel, append (SPEC §2, §9).

`ingest` is the library entry point behind ``nowcast ingest``. It never prints: progress goes to
an optional callback, the outcome comes back as an `IngestReport`.

Order of work, chosen so that nothing is written before the input is known to be coherent:

1. scan every file's header in worker threads (tar archives are unpacked into a temporary
   folder next to the store);
2. check that the frames share one product, grid and interval (and match an existing store),
   order them by valid time, drop duplicates and times already stored;
3. decode, convert to pixels and to the training-resolution copies in worker threads, and
   append in time order, chunk by chunk (memory stays bounded by a few chunks).

Bad files are reported and skipped; ``strict`` turns any of them into an error.
"""

from __future__ import annotations

import datetime as dt
import inspect
import os
import tempfile
import time as _time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from nowcast_cli import __version__
from nowcast_cli.errors import ConfigError, DataError, StoreError
from nowcast_cli.grid import Box, parse_box
from nowcast_cli.io import READERS, create_reader
from nowcast_cli.io.base import BadFileError, Failure, FrameInfo, Item, Reader, Scanned
from nowcast_cli.resample import Coarsener
from nowcast_cli.store import (
    DEFAULT_DIR,
    FULL_CHUNK_T,
    Gap,
    Location,
    Store,
    exists,
    find_gaps,
    is_url,
    iso,
    location,
    lock_path,
)

Progress = Callable[[str, int, int], None]
WRITE_BATCH = 4 * FULL_CHUNK_T  # frames per append: whole chunks, few metadata updates
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class IngestReport:
    """Outcome of one ingest run."""

    store: Location
    source: str
    product: str | None = None
    written: int = 0
    present: int = 0
    failed: list[Failure] = field(default_factory=list)
    skipped: list[Failure] = field(default_factory=list)  # usable but not appended, with reason
    warnings: list[Failure] = field(default_factory=list)
    frames: int = 0
    start: str | None = None
    end: str | None = None
    gaps: list[Gap] = field(default_factory=list)
    seconds: float = 0.0
    created: bool = False
    copies_made: list[int] = field(default_factory=list)  # training sizes added to a store

    def as_dict(self) -> dict[str, Any]:
        """JSON-serializable form (``--json`` and the store's ingest log)."""
        return {
            "store": str(self.store),
            "source": self.source,
            "product": self.product,
            "written": self.written,
            "already_present": self.present,
            "failed": [{"file": f.name, "reason": f.reason} for f in self.failed],
            "skipped": [{"file": f.name, "reason": f.reason} for f in self.skipped],
            "warnings": [{"file": f.name, "reason": f.reason} for f in self.warnings],
            "frames_in_store": self.frames,
            "start": self.start,
            "end": self.end,
            "gaps": len(self.gaps),
            "missing_frames": sum(g.missing for g in self.gaps),
            "seconds": round(self.seconds, 3),
            "training_copies_made": list(self.copies_made),
        }


def default_store_path(source: str) -> Path:
    """``./nowcast-data/<source>.zarr``."""
    return Path(DEFAULT_DIR) / f"{source}.zarr"


def ingest(
    source: str,
    paths: Iterable[str | Path],
    out: str | Path | None = None,
    *,
    product: str | None = None,
    strict: bool = False,
    workers: int | None = None,
    sizes: tuple[int, ...] = (120,),
    crop: str | tuple[int, int, int, int] | None = None,
    reader_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest raw radar files into an observation store (created if missing).

    Parameters
    ----------
    source : str
        Reader name (``nowcast list sources``).
    paths : iterable of path
        Files and directories (walked recursively).
    out : path, optional
        Store path; default ``./nowcast-data/<source>.zarr``.
    product : str, optional
        Keep only this product when the input holds several.
    strict : bool
        Fail (write nothing more) if any file cannot be used.
    workers : int, optional
        Worker threads for scanning and decoding (default: all cores; 1 = no pool).
    sizes : tuple of int
        Training-resolution copies to maintain in a new store.
    crop : str or tuple of int, optional
        Square region ``x0,y0,x1,y1`` (pixels of the full grid, row 0 at the top, ends
        exclusive) the training copies of a new store cover; default: the largest centred
        square. For an existing store it must equal the recorded region.
    reader_options : dict, optional
        Source-specific options (e.g. ``timezone`` for hko7).
    progress : callable, optional
        ``progress(phase, done, total)`` with phase "scan" or "write".

    Returns
    -------
    IngestReport
    """
    t0 = _time.perf_counter()
    reader_cls = READERS.get(source)
    reader = _make_reader(source, reader_options or {})
    roots = [Path(p) for p in paths]
    if not roots:
        raise ConfigError("no input paths given")
    for r in roots:
        if not r.exists():
            raise DataError(f"{r}: no such file or directory")
    if any(s < 1 for s in sizes):
        raise ConfigError(f"training sizes must be positive, got {sizes}")
    box = parse_box(crop) if crop is not None else None
    out_path = location(out) if out is not None else default_store_path(reader_cls.name)
    report = IngestReport(store=out_path, source=reader_cls.name)
    made = _missing_dirs(out_path.parent) if isinstance(out_path, Path) else []
    store = _open_or_check(out_path)
    try:
        if store is not None:
            _check_existing(store, reader, reader_options or {}, box)
        files = reader.candidates(roots)
        if not files:
            raise DataError(f"no files found in {', '.join(map(str, roots))}")
        nworkers = max(1, min(workers or os.cpu_count() or 1, len(files)))
        # tar members unpack beside a local store (same disk), else in the system's temp dir
        workroot = out_path.parent if isinstance(out_path, Path) else None
        with (
            tempfile.TemporaryDirectory(prefix=".nowcast-ingest-", dir=workroot) as tmp,
            _pool(nworkers) as pool,
        ):
            results = _ordered_map(
                pool, _scan_one, [(reader, f, Path(tmp)) for f in files], nworkers, progress, "scan"
            )
            scanned: list[Scanned] = []
            for res in results:
                for entry in res:
                    if isinstance(entry, Scanned):
                        scanned.append(entry)
                    else:
                        report.failed.append(entry)
            if strict and report.failed:
                raise DataError(_strict_message(report.failed))
            todo, meta = _plan(scanned, store, product, report)
            if store is None and todo:
                attrs = {**reader.store_attrs(), **meta}
                store = Store.create(
                    out_path,
                    attrs=attrs,
                    grid=todo[0].info.grid,
                    sizes=tuple(sizes),
                    static=reader.static_arrays(),
                    crop=box,
                )
                report.created = True
            if store is not None and todo:
                _write(pool, nworkers, reader, store, todo, report, strict, progress)
        if store is not None:
            t = store.times
            report.frames = len(t)
            report.product = store.attrs.get("product")
            if len(t):
                report.start, report.end = iso(t[0]), iso(t[-1])
            report.gaps = find_gaps(t, store.interval_s)
            report.seconds = _time.perf_counter() - t0
            record = report.as_dict()
            record.update(
                utc=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                tool=f"nowcast {__version__}",
                inputs=[str(r) for r in roots],
                failures=record.pop("failed"),
            )
            if report.written or report.failed or report.skipped:
                store.log_run(record)
        report.seconds = _time.perf_counter() - t0
        return report
    finally:
        if store is not None:
            store.close()  # consolidates, also after an error: xarray sees what was committed
        if isinstance(out_path, Path):  # an empty store at a URL stays (the report says so)
            _remove_if_empty(out_path, report.created, made)


def _make_reader(source: str, options: dict[str, Any]) -> Reader:
    """Create the reader; options it does not take are an error naming them (never ignored)."""
    cls = READERS.get(source)
    init = cls.__init__
    params = {} if init is object.__init__ else dict(inspect.signature(init).parameters)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    bad = [k for k in options if k not in params or k == "self"] if not takes_any else []
    if bad:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in bad)
        own = [f"--{k.replace('_', '-')}" for k in params if k != "self"]
        valid = f" (its options: {', '.join(own)})" if own else " (it takes no options)"
        raise ConfigError(f"option {flags} does not apply to source {cls.name!r}{valid}")
    return create_reader(source, **options)


def _check_existing(store: Store, reader: Reader, options: dict[str, Any], box: Box | None) -> None:
    """Options that would change how an existing store's frames are made must match it."""
    if "zr" in options:
        zr = reader.store_attrs()["zr"]
        want = (float(zr["a"]), float(zr["b"]))
        if want != store.zr:
            raise ConfigError(
                f"{store.path} converts with Z = {store.zr[0]:g} R^{store.zr[1]:g}; "
                f"--zr {want[0]:g},{want[1]:g} differs (use another --out, or drop --zr)"
            )
    if box is None:
        return
    for size in store.sizes:
        have = store.crop(size)
        if have is None:
            raise ConfigError(
                f"{store.path} was made before crop regions were recorded: its {size}x{size} "
                "copy stretches the whole grid and --crop cannot change it (use another --out)"
            )
        if have != box:
            raise ConfigError(
                f"{store.path}: its {size}x{size} copy covers "
                f"{','.join(map(str, have.as_list()))}; --crop "
                f"{','.join(map(str, box.as_list()))} differs (use another --out, or drop --crop)"
            )


def _missing_dirs(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet (innermost first)."""
    out = []
    p = folder.absolute()
    while not p.exists() and p != p.parent:
        out.append(p)
        p = p.parent
    return out


def _remove_if_empty(path: Path, created: bool, made: list[Path]) -> None:
    """Leave nothing behind a run that wrote no frame.

    Removes the store it created if that holds no frame (every file failed to decode), and the
    folders it made for it.
    """
    import shutil

    if created and path.is_dir():
        try:
            empty = len(Store.open(path)) == 0
        except StoreError:
            empty = False
        if empty:
            shutil.rmtree(path, ignore_errors=True)
            lock_path(path).unlink(missing_ok=True)
    for d in made:  # innermost first; stops at the first folder that holds something
        try:
            d.rmdir()
        except OSError:
            break


def _open_or_check(path: Location) -> Store | None:
    """Open an existing store for appending, or check that a new one can be created."""
    if is_url(path):
        return Store.open(path, mode="a") if exists(path) else None
    assert isinstance(path, Path)
    if path.exists():
        if path.is_dir() and not any(path.iterdir()):
            return None
        return Store.open(path, mode="a")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{path}: cannot create ({exc.strerror or exc})") from None
    if not os.access(parent, os.W_OK):
        raise StoreError(f"{path}: {parent} is not writable")
    return None


def _strict_message(failed: list[Failure]) -> str:
    first = failed[0]
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    return f"--strict: {first.name}: {first.reason}{more}; nothing more was written"


def _plan(
    scanned: list[Scanned], store: Store | None, product: str | None, report: IngestReport
) -> tuple[list[Scanned], dict[str, Any]]:
    """Choose, check and order the frames to append; fill the report's skip lists."""
    if product is not None:
        keep = [s for s in scanned if s.info.product.lower() == product.lower()]
        for s in scanned:
            if s.info.product.lower() != product.lower():
                report.skipped.append(
                    Failure(s.info.name, f"product {s.info.product}, not {product}")
                )
        if not keep and scanned:
            found = ", ".join(sorted({s.info.product for s in scanned}))
            raise DataError(f"no {product} frames in the input (found: {found})")
        scanned = keep
    kinds = Counter((s.info.product, s.info.grid.shape, s.info.interval_s) for s in scanned)
    if len(kinds) > 1:
        desc = "; ".join(
            f"{p} {r}x{c} every {i // 60} min ({n} frames)"
            for (p, (r, c), i), n in kinds.most_common()
        )
        raise DataError(
            f"the input mixes products or grids: {desc}. A store holds one product on one grid: "
            "ingest them separately (choose with --product, and a separate --out)"
        )
    if not scanned:
        return [], {}
    info0 = scanned[0].info
    if store is not None:
        a = store.attrs
        if (a.get("product"), tuple(store.shape), store.interval_s) != (
            info0.product,
            info0.grid.shape,
            info0.interval_s,
        ):
            raise DataError(
                f"{store.path} holds {a.get('product')} {store.shape[0]}x{store.shape[1]} every "
                f"{store.interval_s // 60} min; the input is {info0.product} "
                f"{info0.grid.rows}x{info0.grid.cols} every {info0.interval_s // 60} min: "
                "use another --out"
            )
    ordered = sorted(scanned, key=lambda s: (s.info.time, s.info.lead_min, s.info.name))
    todo: list[Scanned] = []
    seen: dict[int, str] = {}
    stored = set(store.times.tolist()) if store is not None else set()
    last = int(store.times[-1]) if store is not None and len(store) else None
    for s in ordered:
        t = s.info.time
        if t in seen:
            report.skipped.append(
                Failure(s.info.name, f"duplicate of {seen[t]} (same valid time {iso(t)})")
            )
            continue
        seen[t] = s.info.name
        if t in stored:
            report.present += 1
        elif last is not None and t < last:
            report.skipped.append(
                Failure(
                    s.info.name,
                    f"valid time {iso(t)} is before the store's last frame {iso(last)} "
                    "(stores are append-only; ingest older data into a new store)",
                )
            )
        else:
            todo.append(s)
    meta = {
        "product": info0.product,
        "quantity_ingested": info0.quantity,
        "interval_seconds": info0.interval_s,
    }
    return todo, meta


def _write(
    pool: Executor | None,
    nworkers: int,
    reader: Reader,
    store: Store,
    todo: list[Scanned],
    report: IngestReport,
    strict: bool,
    progress: Progress | None,
) -> None:
    """Decode `todo` in parallel and append it in order, one chunk-aligned batch at a time."""
    zr = store.zr
    sizes = tuple(store.sizes)
    # the region each copy covers; None (a store from before regions were recorded) stretches
    # the whole grid, as that store's earlier frames were made
    boxes = tuple(store.crop(s) for s in sizes)
    jobs = [(reader, s.item, s.info, zr, sizes, boxes) for s in todo]
    buf: list[tuple[int, np.ndarray, np.ndarray, dict[int, tuple[np.ndarray, np.ndarray]]]] = []

    def flush() -> None:
        if not buf:
            return
        times = np.array([b[0] for b in buf], dtype=np.int64)
        frames = np.stack([b[1] for b in buf])
        valid = np.stack([b[2] for b in buf])
        coarse = {
            s: (np.stack([b[3][s][0] for b in buf]), np.stack([b[3][s][1] for b in buf]))
            for s in sizes
        }
        store.append(times, frames, valid, coarse)
        report.written += len(buf)
        buf.clear()

    results = _ordered_map(pool, _decode_one, jobs, nworkers, None, "write")
    for done, result in enumerate(results, start=1):
        if isinstance(result, Failure):
            report.failed.append(result)
            if strict:
                flush()
                raise DataError(_strict_message([result]))
        else:
            t, pix, valid, coarse, warns = result
            report.warnings.extend(warns)
            buf.append((t, pix, valid, coarse))
            if len(buf) >= WRITE_BATCH and (len(store) + len(buf)) % FULL_CHUNK_T == 0:
                flush()
        if progress:
            progress("write", done, len(jobs))
    flush()


# -- worker side -----------------------------------------------------------------------------
_COARSENERS: dict[tuple[tuple[int, int], int, tuple[float, float], Box | None], Coarsener] = {}


def _scan_one(reader: Reader, path: Path, workdir: Path) -> list[Scanned | Failure]:
    return reader.scan(path, workdir)


def _decode_one(
    reader: Reader,
    item: Item,
    info: FrameInfo,
    zr: tuple[float, float],
    sizes: tuple[int, ...],
    boxes: tuple[Box | None, ...],
) -> (
    Failure
    | tuple[int, np.ndarray, np.ndarray, dict[int, tuple[np.ndarray, np.ndarray]], list[Failure]]
):
    try:
        got, pix, valid, notes = reader.read_pixels(item, zr)
    except BadFileError as exc:
        return Failure(item.name, exc.reason)
    if pix.shape != info.grid.shape:
        return Failure(
            item.name, f"frame shape {pix.shape} differs from its header {info.grid.shape}"
        )
    if _describe(got) != _describe(info):  # what was planned must be what was read
        return Failure(
            item.name,
            f"its header says {_describe(got)}, its scan (file name) said {_describe(info)}",
        )
    coarse = {}
    for size, box in zip(sizes, boxes, strict=True):
        key = (info.grid.shape, size, zr, box)
        if key not in _COARSENERS:
            _COARSENERS[key] = Coarsener(info.grid.shape, size, zr, box)
        coarse[size] = _COARSENERS[key](pix, valid)
    warns = [Failure(item.name, w) for w in notes]
    return info.time, pix, valid, coarse, warns


def _describe(info: FrameInfo) -> str:
    lead = f" +{info.lead_min} min" if info.lead_min else ""
    return (
        f"{info.product} {iso(info.time)}{lead}, {info.grid.rows}x{info.grid.cols} every "
        f"{info.interval_s // 60} min"
    )


def _pool(nworkers: int) -> Any:
    """A thread pool, or an in-process stand-in for 1 worker.

    Threads, not processes: the heavy steps (file reads, zlib-ng/bz2 inflate, the numba decode
    and coarsening kernels, PNG decoding) release the GIL, so threads use all cores without
    process start-up, module imports per worker, or pickling every frame back (measured: a
    process pool made a 300-frame ingest 2x slower than one thread).
    """
    if nworkers <= 1:
        return _Inline()
    return ThreadPoolExecutor(max_workers=nworkers, thread_name_prefix="nowcast-ingest")


class _Inline:
    """Context manager standing for 'no pool': work runs in the calling process."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _ordered_map(
    pool: Executor | None,
    fn: Callable[..., R],
    jobs: list[tuple[Any, ...]],
    nworkers: int,
    progress: Progress | None,
    phase: str,
) -> Iterator[R]:
    """Apply `fn` to each job, yielding results in job order with a bounded number in flight."""
    total = len(jobs)
    if pool is None:
        for i, job in enumerate(jobs):
            yield fn(*job)
            if progress:
                progress(phase, i + 1, total)
        return
    window = 2 * nworkers + FULL_CHUNK_T
    pending: deque[Future[R]] = deque()
    it = iter(jobs)
    done = 0
    for job in it:
        pending.append(pool.submit(fn, *job))
        if len(pending) >= window:
            break
    while pending:
        fut = pending.popleft()
        res = fut.result()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.submit(fn, *nxt))
        done += 1
        if progress:
            progress(phase, done, total)
        yield res
