"""The ``netcdf`` reader: scans files into frames and decodes them in shared blocks.

- Reading streams: frames are read in blocks of consecutive time steps made of whole HDF5 time
  chunks (`layout.BLOCK_BYTES`), each block read once and shared by the worker threads, at most
  `CACHED_BLOCKS` kept per reader; memory does not grow with the number of frames in a file,
  and no chunk is inflated twice.
- Decoding (`decode`): integer variables of up to 16 bits go through one lookup table per pixel;
  wider integers and floats are converted per pixel.
- What the store records (attributes, latitude/longitude) is kept for one file only (the first
  by name); every other file keeps a digest of its latitude/longitude, so memory does not grow
  with the number of files, and files on another latitude/longitude grid are still refused.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nowcast_cli.errors import ConfigError, MissingDependencyError
from nowcast_cli.io import READERS
from nowcast_cli.io.base import (
    BadFileError,
    Failure,
    Frame,
    FrameInfo,
    Item,
    Reader,
    Scanned,
    walk_files,
)
from nowcast_cli.io.netcdf.decode import code_key, code_tables, float_frame, physical, pixel_lut
from nowcast_cli.io.netcdf.files import SUFFIXES, FileProblem, kind_of, open_dataset
from nowcast_cli.io.netcdf.layout import Described, Layout, Options, describe_file, item_name
from nowcast_cli.io.netcdf.units import UNITS_HELP, parse_units

CACHED_BLOCKS = 2  # ingest reads in time order: the block being used and the next one


# -- block cache -----------------------------------------------------------------------------------
class _Entry:
    def __init__(self) -> None:
        self.ready = threading.Event()
        self.value: np.ndarray | None = None
        self.error: BaseException | None = None


class BlockCache:
    """Blocks of consecutive frames shared by threads: each is read once, the last few kept.

    Parameters
    ----------
    capacity : int
        Blocks kept after use (least recently used dropped first).
    """

    def __init__(self, capacity: int = CACHED_BLOCKS) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, int], _Entry] = OrderedDict()
        self.loads = 0  # blocks read (tests check that none is read twice)

    def get(self, key: tuple[str, int], load: Callable[[], np.ndarray]) -> np.ndarray:
        """The block `key`, read by `load` in the first thread that asks for it."""
        with self._lock:
            entry = self._entries.get(key)
            owner = entry is None
            if entry is None:
                entry = _Entry()
                self._entries[key] = entry
                self.loads += 1
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                old_key, old = next(iter(self._entries.items()))
                if old is entry:
                    break
                del self._entries[old_key]
        if owner:
            try:
                entry.value = load()
            except BaseException as exc:
                entry.error = exc
                with self._lock:
                    if self._entries.get(key) is entry:
                        del self._entries[key]
            finally:
                entry.ready.set()
        else:
            entry.ready.wait()
        if entry.error is not None:
            raise entry.error
        assert entry.value is not None
        return entry.value

    def __len__(self) -> int:
        return len(self._entries)


# -- the reader ------------------------------------------------------------------------------------
@READERS.register("netcdf")
class NetcdfReader(Reader):
    """CF-netCDF rain amount, rain rate or reflectivity grids (xarray + h5netcdf; scipy: netCDF3).

    Parameters
    ----------
    var : str, optional
        Variable to read (default: the one CF standard_name or units mark as precipitation).
    units : str, optional
        Units of that variable, overriding the file's (see `UNITS_HELP`).
    interval : int or float, optional
        Accumulation period / product interval in minutes, for files that do not state it.
    zr : str or tuple of float, optional
        Z–R coefficients ``"a,b"`` (default Marshall–Palmer 200, 1.6).
    attribution : str, optional
        Credit line to record in the store (default: the file's attribution or institution).
    """

    name = "netcdf"
    attribution = "as stated by each file (institution / attribution attributes)"
    licence = "as stated by each file (license attribute)"
    zr = (200.0, 1.6)
    zr_reference = "Marshall-Palmer Z = 200 R^1.6, nowcast's default for CF-netCDF (SPEC §3)"

    def __init__(
        self,
        var: str | None = None,
        units: str | None = None,
        interval: float | None = None,
        zr: str | tuple[float, float] | None = None,
        attribution: str | None = None,
    ) -> None:
        if var is not None and not var.strip():
            raise ConfigError("--var: give a variable name")
        parsed_units = None
        if units is not None:
            parsed_units = parse_units(units)
            if parsed_units is None:
                raise ConfigError(f"--units {units!r} is not understood; accepted: {UNITS_HELP}")
        interval_s = None
        if interval is not None:
            seconds = float(interval) * 60.0
            if not (math.isfinite(seconds) and seconds > 0 and seconds == round(seconds)):
                raise ConfigError(
                    f"--interval {interval!r}: give a positive number of minutes "
                    "(whole seconds), e.g. --interval 5"
                )
            interval_s = round(seconds)
        self.options = Options(var.strip() if var else None, parsed_units, interval_s)
        self._zr = self.zr if zr is None else parse_zr(zr)
        self._zr_given = zr is not None
        if attribution is not None and not attribution.strip():
            raise ConfigError("--attribution: give the credit line the data's provider asks for")
        self._attribution = attribution.strip() if attribution else None
        self._init_state()

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._layouts: dict[Path, Layout] = {}
        self._first: tuple[Path, Described] | None = None  # the first file by name, in full
        self.blocks = BlockCache()

    def __getstate__(self) -> dict[str, Any]:
        return {
            "options": self.options,
            "_zr": self._zr,
            "_zr_given": self._zr_given,
            "_attribution": self._attribution,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_state()

    def candidates(self, paths: list[Path]) -> list[Path]:
        """Files under `paths` with a netCDF suffix or signature (files named explicitly: all)."""
        out = []
        for p in walk_files(paths):
            if p in paths or p.suffix.lower() in SUFFIXES:
                out.append(p)
                continue
            try:
                if kind_of(p):
                    out.append(p)
            except FileProblem:
                continue
        return out

    def scan(self, path: Path, workdir: Path) -> list[Scanned | Failure]:
        """Read one file's metadata: one `Scanned` per frame (time step) it holds.

        A frame whose time is missing (the fill value) is a `Failure`: skipped and reported.
        """
        try:
            lay = self._keep(path, describe_file(path, self.options))
        except BadFileError as exc:
            return [Failure(str(path), exc.reason)]
        out: list[Scanned | Failure] = []
        for i in range(lay.n):
            name = item_name(path, i, lay.n)
            if not lay.present[i]:
                out.append(Failure(name, f"frame {i} has no time (a missing value): skipped"))
                continue
            out.append(Scanned(Item(path, name, (("frame", str(i)),)), lay.info(name, i)))
        return out

    def _keep(self, path: Path, described: Described) -> Layout:
        """Remember a file's layout; its attributes and arrays only if it is the first by name."""
        with self._lock:
            self._layouts[path] = described.layout
            if self._first is None or str(path) < str(self._first[0]):
                self._first = (path, described)
        return described.layout

    def _layout(self, path: Path) -> Layout:
        with self._lock:
            lay = self._layouts.get(path)
        return lay if lay is not None else self._keep(path, describe_file(path, self.options))

    def _frame_raw(self, item: Item) -> tuple[Layout, int, np.ndarray]:
        """The layout, frame index and raw values (north-up view) of one frame."""
        lay = self._layout(item.path)
        try:
            i = int(item.extra("frame", "0") or 0)
        except ValueError:
            raise BadFileError(item.name, "item has no frame index") from None
        if not 0 <= i < lay.n or not lay.present[i]:
            raise BadFileError(item.name, f"frame {i} is not a frame of the file with a time")
        b = i // lay.block
        block = self.blocks.get((str(item.path), b), lambda: self._read_block(item, lay, b))
        raw = block[i - b * lay.block]
        if lay.flip_rows:
            raw = raw[::-1]
        if lay.flip_cols:
            raw = raw[:, ::-1]
        return lay, i, raw

    def _read_block(self, item: Item, lay: Layout, b: int) -> np.ndarray:
        """Raw values of frames ``b·block … (b+1)·block`` as (k, rows, cols)."""
        lo, hi = b * lay.block, min(lay.n, (b + 1) * lay.block)
        try:
            ds = open_dataset(item.path, lay.engine)
        except MissingDependencyError:
            raise
        except Exception as exc:
            raise BadFileError(
                item.name, f"unreadable netCDF ({type(exc).__name__}: {exc})"
            ) from None
        try:
            v = ds.variables.get(lay.var)
            if v is None or tuple(str(d) for d in v.dims) != lay.dims:
                raise BadFileError(item.name, f"variable {lay.var!r} changed since the scan")
            index: dict[str, Any] = dict(lay.squeeze)
            if lay.time_dim is not None:
                index[lay.time_dim] = slice(lo, hi)
            data = np.asarray(v.isel(index).values)
        except BadFileError:
            raise
        except MemoryError:
            raise
        except Exception as exc:  # damaged chunks surface here as OSError, ValueError, …
            raise BadFileError(
                item.name, f"cannot read frames {lo}–{hi - 1} ({type(exc).__name__}: {exc})"
            ) from None
        finally:
            ds.close()
        rows, cols = lay.grid.shape
        if lay.transposed:  # stored (x, y): one copy per block makes every frame (y, x)
            data = np.ascontiguousarray(data.reshape(hi - lo, cols, rows).transpose(0, 2, 1))
        data = data.reshape(hi - lo, rows, cols)
        if not data.dtype.isnative:  # netCDF3 is big-endian
            data = data.astype(data.dtype.newbyteorder("="))
        if lay.unsigned:
            data = data.view(f"u{lay.dtype.itemsize}")
        data.flags.writeable = False
        return data

    def read(self, item: Item) -> Frame:
        """Decode one frame to a quantized, north-up frame (mm/h or dBZ)."""
        lay, i, raw = self._frame_raw(item)
        info = lay.info(item.name, i)
        if lay.packed:
            values, ok = code_tables(*code_key(lay))
            codes = np.ascontiguousarray(raw).view(f"u{lay.dtype.itemsize}")
            valid = ok[codes]
            table = physical(values, lay.factor, lay.units.linear)
            codes = np.where(valid, codes, 0).astype(codes.dtype)
            return Frame(info, codes, table, valid)
        phys, valid = float_frame(lay, raw)
        uniq, inverse = np.unique(np.where(valid, phys, 0.0), return_inverse=True)
        codes = inverse.reshape(raw.shape).astype(np.uint32 if len(uniq) > 65535 else np.uint16)
        return Frame(info, codes, uniq, valid)

    def read_pixels(
        self, item: Item, zr: tuple[float, float]
    ) -> tuple[FrameInfo, np.ndarray, np.ndarray, list[str]]:
        """Decode straight to store pixels: one table lookup per pixel for packed integers."""
        from nowcast_cli.encoding import dbz_to_pixel, rate_to_dbz

        lay, i, raw = self._frame_raw(item)
        info = lay.info(item.name, i)
        if lay.packed:
            pix_lut, ok = pixel_lut(code_key(lay), lay.factor, lay.units.linear, lay.quantity, zr)
            # one index array for both lookups (numpy would convert the 16-bit codes twice)
            codes = raw.view(f"u{lay.dtype.itemsize}").astype(np.intp)
            return info, np.take(pix_lut, codes), np.take(ok, codes), []
        phys, valid = float_frame(lay, raw)
        dbz = phys if lay.quantity == "reflectivity" else rate_to_dbz(phys, *zr)
        pix = dbz_to_pixel(np.where(valid, dbz, -np.inf))
        return info, pix, valid, []

    # -- what the store records -----------------------------------------------------------------
    def static_arrays(self) -> dict[str, np.ndarray]:
        """Latitude/longitude (north-up) when they are the grid's only georeference.

        Raises
        ------
        DataError
            If the files scanned have different latitude/longitude on the same grid shape.
        """
        from nowcast_cli.errors import DataError

        with self._lock:
            first = self._first
            items = sorted(self._layouts.items(), key=lambda kv: str(kv[0]))
        if first is None or not first[1].static:
            return {}
        ref_path, ref = first[0], first[1].layout
        for p, lay in items:
            if lay.grid.shape != ref.grid.shape or p == ref_path:
                continue
            if lay.static_digest != ref.static_digest:
                raise DataError(
                    f"{ref_path} and {p} have different latitude/longitude grids: a store holds "
                    "one grid, ingest them into separate stores"
                )
        return {k: a.copy() for k, a in first[1].static.items()}

    def store_attrs(self) -> dict[str, Any]:
        """Source attributes: the file's attribution and licence, Z–R, how values were read."""
        with self._lock:
            first = self._first
        attrs_nc = first[1].attrs if first else None
        g = attrs_nc.get("global_attributes", {}) if attrs_nc else {}
        attribution = self._attribution or next(
            (g[k] for k in ("attribution", "acknowledgement", "acknowledgment") if g.get(k)), None
        )
        if attribution is None:
            attribution = (
                f"Source: {g['institution']} (from the file's institution attribute)"
                if g.get("institution")
                else "not stated in the file: credit the data provider"
            )
        licence = next((g[k] for k in ("license", "licence") if g.get(k)), "not stated in the file")
        reference = (
            f"given with --zr (Z = {self._zr[0]:g} R^{self._zr[1]:g})"
            if self._zr_given
            else self.zr_reference
        )
        attrs: dict[str, Any] = {
            "source": self.name,
            "attribution": attribution,
            "licence": licence,
            "zr": {"a": self._zr[0], "b": self._zr[1], "reference": reference},
        }
        if attrs_nc is not None:
            attrs["netcdf"] = attrs_nc
        return attrs


def parse_zr(value: str | tuple[float, float] | list[float]) -> tuple[float, float]:
    """Z–R coefficients from ``"a,b"`` or a pair: two positive finite numbers."""
    try:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",")]
            if len(parts) != 2:
                raise ValueError
            a, b = float(parts[0]), float(parts[1])
        else:
            a, b = (float(x) for x in value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"--zr {value!r}: expected two positive numbers a,b of Z = a R^b, e.g. --zr 200,1.6"
        ) from None
    if not (math.isfinite(a) and math.isfinite(b) and a > 0 and b > 0):
        raise ConfigError(f"--zr {value!r}: a and b must be positive, e.g. --zr 200,1.6")
    return a, b
